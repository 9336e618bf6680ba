package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/mqttwire"
)

func statNum(st map[string]any, k string) float64 {
	switch v := st[k].(type) {
	case uint64:
		return float64(v)
	case float64:
		return v
	}
	return -1
}

// TestAgentStatsFollowOutage walks one outage in a synctest bubble and
// checks what Stats says at each point: the countdown is exact because the
// bubble's clock only moves when the test sleeps.
func TestAgentStatsFollowOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{start: time.Now(), fail: map[string]bool{"failing": true}}
		cfg := policyCfg()
		cfg.Stages = []policy.Stage{
			{Name: "shed", OnBatteryFor: 2 * time.Minute, Run: []string{"failing"}},
			{Name: "poweroff", OnBatteryFor: 15 * time.Minute, Final: true},
		}
		a, err := New(Options{ID: "host1", TopicPrefix: "ub", Policy: cfg, FinalDelay: 5 * time.Second,
			StateFile: filepath.Join(t.TempDir(), "agent.json"), BootID: "boot1", Exec: rec})
		if err != nil {
			t.Fatal(err)
		}
		st := a.Stats()
		if st["agent"] != "host1" || st["status"] != mqttwire.AgentIdle || statNum(st, "decisions_total") != 0 || st["dry_run"] != false {
			t.Fatalf("before Run: %v", st)
		}
		if st["protected"] != false || !strings.Contains(fmt.Sprint(st["problem"]), "ups ups1: no live state since start") {
			t.Errorf("before any live state: protected %v, problem %q", st["protected"], st["problem"])
		}
		for _, k := range []string{"stage", "next_stage", "next_stage_in_s", "outage_start_seconds", "connected"} {
			if _, ok := st[k]; ok {
				t.Errorf("idle agent reports %s: %v", k, st)
			}
		}

		ctx, cancel := context.WithCancel(t.Context())
		src := newMemSource()
		done := make(chan struct{})
		go func() { _ = a.Run(ctx, src); close(done) }()
		send := func(n news.News) {
			n.At = time.Now()
			n.Reading.TS = n.At
			src.put(n)
			synctest.Wait()
		}
		t0 := time.Now()
		// feed keeps the supply's state fresh until offset `until`.
		feed := func(n news.News, until time.Duration) {
			for time.Since(t0) < until {
				send(n)
				time.Sleep(10 * time.Second)
			}
		}

		send(ob("ups1", "charge=90"))
		st = a.Stats()
		if st["status"] != mqttwire.AgentOnBattery || st["next_stage"] != "shed" || statNum(st, "next_stage_in_s") != 120 ||
			statNum(st, "decisions_total") != 1 || statNum(st, "outage_start_seconds") != float64(t0.UnixMilli())/1000 {
			t.Fatalf("on battery: %v", st)
		}
		feed(ob("ups1", "charge=90"), 30*time.Second)
		if st = a.Stats(); statNum(st, "next_stage_in_s") != 90 {
			t.Errorf("30 s into the outage: next_stage_in_s = %v, want 90", st["next_stage_in_s"])
		}

		feed(ob("ups1", "charge=90"), 2*time.Minute+10*time.Second)
		st = a.Stats()
		want := map[string]any{"status": mqttwire.AgentStaging, "stage": "shed", "next_stage": "poweroff"}
		for k, v := range want {
			if st[k] != v {
				t.Errorf("after shed: %s = %v, want %v", k, st[k], v)
			}
		}
		if got := statNum(st, "next_stage_in_s"); got != (13*time.Minute - 10*time.Second).Seconds() {
			t.Errorf("after shed: next_stage_in_s = %v, want %v", got, (13*time.Minute - 10*time.Second).Seconds())
		}
		if statNum(st, "decisions_total") != 2 || statNum(st, "actions_failed_total") != 1 {
			t.Errorf("after the failing shed command: %v", st)
		}

		send(ol("ups1"))
		st = a.Stats()
		if st["status"] != mqttwire.AgentIdle || statNum(st, "decisions_total") < 3 || statNum(st, "actions_failed_total") != 1 {
			t.Errorf("mains back: %v", st)
		}
		for _, k := range []string{"next_stage", "next_stage_in_s", "outage_start_seconds"} {
			if _, ok := st[k]; ok {
				t.Errorf("mains back, still reports %s: %v", k, st)
			}
		}
		cancel()
		<-done
	})
}

// TestAgentStatsConcurrent reads Stats from several goroutines while the
// agent decides and runs a failing stage in real time (run with -race).
func TestAgentStatsConcurrent(t *testing.T) {
	rec := &recorder{start: time.Now(), fail: map[string]bool{"failing": true}}
	cfg := policyCfg()
	cfg.Stages = []policy.Stage{
		{Name: "shed", OnBatteryFor: 50 * time.Millisecond, Run: []string{"failing"}},
		{Name: "poweroff", OnBatteryFor: time.Hour, Final: true},
	}
	a, err := New(Options{ID: "host1", Policy: cfg, StateFile: filepath.Join(t.TempDir(), "agent.json"), BootID: "b", Exec: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src := newMemSource()
	done := make(chan struct{})
	go func() { _ = a.Run(ctx, src); close(done) }()
	defer func() { cancel(); <-done }()

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_ = a.Stats()
				}
			}
		})
	}
	n := ob("ups1", "charge=90")
	n.At = time.Now()
	n.Reading.TS = n.At
	src.put(n)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := a.Stats()
		if st["stage"] == "shed" && statNum(st, "actions_failed_total") == 1 {
			if left := statNum(st, "next_stage_in_s"); left <= 3500 || left > 3600 {
				t.Errorf("next_stage_in_s = %v, want just under 3600", left)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stage shed not reported within 10s: %v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	readers.Wait()
}

// TestAgentStatsSink: the sink the agent adds to the bridge is named after
// it, reports its stats and drains its queue until it is closed.
func TestAgentStatsSink(t *testing.T) {
	a, err := New(Options{ID: "nas", Policy: policyCfg(), StateFile: filepath.Join(t.TempDir(), "agent.json"), Exec: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	s := a.StatsSink()
	if s.Name() != "agent-nas" {
		t.Errorf("name %q", s.Name())
	}
	r, ok := s.(bridge.StatsReporter)
	if !ok || r.Stats()["agent"] != "nas" || r.Stats()["status"] != mqttwire.AgentIdle {
		t.Fatalf("stats through the sink: %v", ok)
	}
	q := bridge.NewQueue("agent-nas", 16, slog.New(slog.DiscardHandler))
	e := bridge.NewEvent("ups1", time.Now(), bridge.EventOnBatt, "OB")
	q.PutEvent(&e)
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context(), q) }()
	deadline := time.Now().Add(5 * time.Second)
	for q.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("queue not drained")
		}
		time.Sleep(time.Millisecond)
	}
	q.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the queue closed")
	}
}
