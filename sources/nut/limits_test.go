package nut

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
)

// fakeUpsd serves every connection with answer, which gets each request
// line and writes the reply.
func fakeUpsd(t *testing.T, answer func(w *bufio.Writer, req string)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					req, err := br.ReadString('\n')
					if err != nil {
						return
					}
					answer(bw, strings.TrimSpace(req))
					if bw.Flush() != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// manyUPS lists n UPSes with nvars variables each.
func manyUPS(n, nvars int) func(w *bufio.Writer, req string) {
	return func(w *bufio.Writer, req string) {
		f := strings.Fields(req)
		switch {
		case req == "LIST UPS":
			fmt.Fprintln(w, "BEGIN LIST UPS")
			for i := range n {
				fmt.Fprintf(w, "UPS u%d \"fake\"\n", i)
			}
			fmt.Fprintln(w, "END LIST UPS")
		case len(f) == 3 && f[0] == "LIST" && f[1] == "VAR":
			fmt.Fprintf(w, "BEGIN LIST VAR %s\n", f[2])
			fmt.Fprintf(w, "VAR %s ups.status \"OL\"\n", f[2])
			for i := 1; i < nvars; i++ {
				fmt.Fprintf(w, "VAR %s x.%d \"%d\"\n", f[2], i, i)
			}
			fmt.Fprintf(w, "END LIST VAR %s\n", f[2])
		default:
			fmt.Fprintln(w, "ERR UNKNOWN-COMMAND")
		}
	}
}

func runSource(t *testing.T, cfg *Config) (*Source, <-chan bridge.Update) {
	t.Helper()
	return runSourceIn(t, cfg, nil)
}

// runSourceIn is runSource with the source's metrics in set.
func runSourceIn(t *testing.T, cfg *Config, set *metrics.Set) (*Source, <-chan bridge.Update) {
	t.Helper()
	s := New(*cfg, slogDiscard(), set)
	s.tm.discover = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan bridge.Update, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx, out)
	}()
	// Drain so pollers never block on a full channel.
	updates := make(chan bridge.Update, 1024)
	go func() {
		for {
			select {
			case u := <-out:
				select {
				case updates <- u:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s, updates
}

func waitStats(t *testing.T, s *Source, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMaxUPS: a server listing more UPS names than max_ups gets max_ups
// pollers, the rest counted, and never more connections than the bound.
func TestMaxUPS(t *testing.T) {
	addr := fakeUpsd(t, manyUPS(300, 3))
	cfg := DefaultConfig()
	cfg.ID, cfg.Address, cfg.UPS, cfg.MaxUPS = "hostile", addr, "*", 20
	set := metrics.NewSet()
	s, _ := runSourceIn(t, cfg, set)
	st := waitStats(t, s, "20 pollers, 280 over the limit", func(st map[string]any) bool {
		return st["ups_polled"] == int64(20) && st["ups_over_limit"] == int64(280) && st["polls_total"].(uint64) >= 40
	})
	// The same numbers are the source's own metrics, typed.
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{
		"# TYPE upsbridge_source_polls_total counter\n",
		"# TYPE upsbridge_source_ups_polled gauge\n",
		`upsbridge_source_ups_polled{source="hostile"} 20` + "\n",
		`upsbridge_source_ups_over_limit{source="hostile"} 280` + "\n",
		`upsbridge_source_limit_errors_total{source="hostile"} `,
		`upsbridge_source_connected{source="hostile"} `,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
	if n := st["connections_open"].(int); n > 20+1 {
		t.Fatalf("%d connections open for 20 UPSes and the listing", n)
	}
	if st["limit_errors_total"].(uint64) < 1 {
		t.Fatalf("limit not counted: %v", st)
	}
}

// TestMaxConnections: with fewer connection slots than UPSes, the pollers
// beyond the bound fail to connect with an error naming max_connections,
// and the open connections never exceed it.
func TestMaxConnections(t *testing.T) {
	addr := fakeUpsd(t, manyUPS(10, 3))
	cfg := DefaultConfig()
	cfg.ID, cfg.Address, cfg.UPS, cfg.MaxConnections = "hostile", addr, "*", 4
	s, updates := runSource(t, cfg)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-updates:
			if u.Kind == bridge.CommLost && u.Err != nil && strings.Contains(u.Err.Error(), "max_connections") {
				if n := s.Stats()["connections_open"].(int); n > 4 {
					t.Fatalf("%d connections open, bound 4", n)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no max_connections error; stats %v", s.Stats())
		}
	}
}

// TestMaxVars: a UPS with more variables than max_vars is not read (comm
// lost, with an error naming the bound), counted, and memory stays bounded
// across polls because nothing beyond the bound is kept.
func TestMaxVars(t *testing.T) {
	addr := fakeUpsd(t, manyUPS(1, 600))
	cfg := DefaultConfig()
	cfg.ID, cfg.Address, cfg.UPS, cfg.MaxVars = "hostile", addr, "u0", 100
	cfg.PollInterval = 20 * time.Millisecond
	s, updates := runSource(t, cfg)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-updates:
			if u.Kind == bridge.Reading {
				t.Fatalf("a reading of %d variables passed max_vars 100", len(u.Vars))
			}
			if u.Kind == bridge.CommLost && strings.Contains(u.Err.Error(), "more than max_vars 100") {
				waitStats(t, s, "limit counted", func(st map[string]any) bool { return st["limit_errors_total"].(uint64) >= 1 })
				return
			}
		case <-deadline:
			t.Fatalf("no max_vars error; stats %v", s.Stats())
		}
	}
}
