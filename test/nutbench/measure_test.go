//go:build nutbench

// Package nutbench measures upsbridge's NUT server side by side with
// Debian's upsd 2.8 serving the same dummy-ups UPS (which upsbridge reads
// with a nut source):
//
//	go test -tags nutbench -count=1 -v -timeout 20m ./test/nutbench
//
// NUTBENCH_CLIENTS (500), NUTBENCH_SECONDS (60) and NUTBENCH_IDLE (10000)
// change the load. It prints the figures quoted in docs/nut-server.md.
package nutbench

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// device200 is a UPS with 200 variables as upsd serves it (dummy-ups adds
// its driver.* variables to what the file holds).
func device200() string {
	var b strings.Builder
	b.WriteString("ups.mfr: Example\nups.model: Sim 1500\nups.status: OL\nbattery.charge: 100\nbattery.runtime: 3000\nups.load: 20\ninput.voltage: 230.0\noutput.voltage: 230.0\n")
	for i := 0; i < 200-8-7; i++ {
		fmt.Fprintf(&b, "experimental.bench.v%03d: %d\n", i, i*7)
	}
	return b.String()
}

type server struct {
	name, addr, ups string
	pid             int
}

func cpuTicks(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

func rssKB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// load runs clients connections, each sending GET VAR ups.status once a
// second for dur, and returns the reply times and the server's CPU.
func load(t *testing.T, s server, clients int, dur time.Duration) ([]time.Duration, time.Duration, int) {
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatalf("%s: connection %d: %v", s.name, i, err)
		}
		conns[i] = c
		defer c.Close()
	}
	req := []byte("GET VAR " + s.ups + " ups.status\n")
	want := "VAR " + s.ups + " ups.status \"OL\"\n"
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	startCPU := cpuTicks(t, s.pid)
	start := time.Now()
	end := start.Add(dur)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := bufio.NewReader(c)
			next := start.Add(time.Duration(rand.Int64N(int64(time.Second))))
			var mine []time.Duration
			for next.Before(end) {
				time.Sleep(time.Until(next))
				next = next.Add(time.Second)
				t0 := time.Now()
				_ = c.SetDeadline(t0.Add(5 * time.Second))
				if _, err := c.Write(req); err != nil {
					mu.Lock()
					errs++
					mu.Unlock()
					return
				}
				l, err := rd.ReadString('\n')
				if err != nil || l != want {
					mu.Lock()
					errs++
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	cpu := time.Duration(cpuTicks(t, s.pid)-startCPU) * 10 * time.Millisecond
	return lat, cpu, errs
}

// idle opens n idle connections and returns the memory each costs, and
// the reply times of another client meanwhile.
func idle(t *testing.T, s server, n int) (float64, []time.Duration, int) {
	before := rssKB(t, s.pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// A server that stops accepting (upsd's MAXCONN) leaves SYNs
	// unanswered once the kernel's backlog is full: stop after 5 dials in
	// a row fail (upsd also accepts slowly: one per turn of its loop).
	for fails := 0; len(conns) < n && fails < 5; {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			fails++
			continue
		}
		fails = 0
		conns = append(conns, c)
	}
	// Each must be answered once, so the server holds it; a server that
	// stops accepting (upsd's MAXCONN) leaves the rest in the kernel's
	// backlog, unanswered: they are counted out after a short wait.
	var served atomic.Int64
	var logged atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			fails := 0
			for i := w; i < len(conns) && fails < 3; i += 64 {
				c := conns[i]
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write([]byte("NETVER\n")); err != nil {
					fails++
					if fails == 1 && logged.CompareAndSwap(false, true) {
						t.Logf("%s: connection %d of %d: %v", s.name, i, len(conns), err)
					}
					continue
				}
				if l, err := bufio.NewReaderSize(c, 16).ReadString('\n'); err == nil && l == "1.3\n" {
					served.Add(1)
					fails = 0
				} else {
					fails++ // three in a row: the server takes no more
					if fails == 1 && logged.CompareAndSwap(false, true) {
						t.Logf("%s: connection %d of %d: %q %v", s.name, i, len(conns), l, err)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	time.Sleep(time.Second)
	after := rssKB(t, s.pid)
	lat := probe(t, s, 200, 0)
	return float64(after-before) * 1024 / float64(max(served.Load(), 1)), lat, int(served.Load())
}

// probe measures one client's reply times while slow clients pipeline
// LIST VAR without reading their replies.
func probe(t *testing.T, s server, n, slow int) []time.Duration {
	for i := 0; i < slow; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			_, _ = c.Write([]byte(strings.Repeat("LIST VAR "+s.ups+"\n", 5000)))
		}()
	}
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Logf("%s: probe: %v", s.name, err)
		return nil
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	var lat []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		_ = c.SetDeadline(t0.Add(10 * time.Second))
		fmt.Fprintf(c, "GET VAR %s ups.status\n", s.ups)
		if _, err := rd.ReadString('\n'); err != nil {
			t.Logf("%s: probe: %v (stopped)", s.name, err)
			break
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(5 * time.Millisecond)
	}
	return lat
}

func upscTime(t *testing.T, s server, runs int) (time.Duration, time.Duration, int) {
	var d []time.Duration
	nvars := 0
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		out, err := exec.Command("upsc", s.ups+"@"+s.addr).Output()
		d = append(d, time.Since(t0))
		if err != nil {
			t.Fatalf("upsc on %s: %v", s.name, err)
		}
		nvars = strings.Count(string(out), "\n")
	}
	return pct(d, 0.5), pct(d, 0), nvars
}

// part reports whether NUTBENCH_PARTS (default: all) names part.
func part(name string) bool {
	p := os.Getenv("NUTBENCH_PARTS")
	return p == "" || strings.Contains(","+p+",", ","+name+",")
}

func TestMeasureNUTServer(t *testing.T) {
	clients := envInt("NUTBENCH_CLIENTS", 500)
	secs := envInt("NUTBENCH_SECONDS", 60)
	nIdle := envInt("NUTBENCH_IDLE", 10000)
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: device200()}}})
	mq := harness.StartMosquitto(t)
	addr := harness.Addr(harness.FreePort(t))
	p := harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: nutbench, state_dir: %s}
hass: {enabled: false}
sources:
  - {id: rack, type: nut, address: "%s", ups: dummy}
nut_server:
  listen: ["%s"]
  ups: [{id: rack, name: dummy}]
`, mq.URL(), t.TempDir(), u.Addr(), addr))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, err := exec.Command("upsc", "dummy@"+addr, "ups.status").Output(); err == nil && string(out) == "OL\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upsbridge does not serve the UPS")
		}
		time.Sleep(100 * time.Millisecond)
	}
	servers := []server{{"upsd 2.8.0", u.Addr(), "dummy", u.PID()}, {"upsbridge", addr, "dummy", p.PID()}}

	for _, s := range servers {
		if !part("upsc") {
			break
		}
		med, best, n := upscTime(t, s, 20)
		t.Logf("%-11s upsc full read of %d variables: median %s, best %s (20 runs)", s.name, n, med.Round(10*time.Microsecond), best.Round(10*time.Microsecond))
	}
	if part("load") {
		// The bridge's own cost without clients (its nut source polls upsd).
		c0 := cpuTicks(t, p.PID())
		time.Sleep(time.Duration(secs) * time.Second)
		base := time.Duration(cpuTicks(t, p.PID())-c0) * 10 * time.Millisecond
		t.Logf("upsbridge   CPU with no NUT client over %ds (its nut source polling upsd): %s", secs, base)
	}
	for _, s := range servers {
		if !part("load") {
			break
		}
		lat, cpu, errs := load(t, s, clients, time.Duration(secs)*time.Second)
		perMin := time.Duration(float64(cpu) * 60 / float64(secs))
		t.Logf("%-11s %d clients x GET VAR ups.status 1/s for %ds: %d replies, %d errors, CPU %s (%s per minute), reply p50 %s p99 %s max %s",
			s.name, clients, secs, len(lat), errs, cpu, perMin, pct(lat, 0.5).Round(time.Microsecond), pct(lat, 0.99).Round(time.Microsecond), pct(lat, 1).Round(time.Microsecond))
	}
	for _, s := range servers {
		if !part("slow") {
			break
		}
		lat := probe(t, s, 200, 10)
		t.Logf("%-11s one client while 10 clients pipeline LIST VAR without reading: p50 %s p99 %s max %s",
			s.name, pct(lat, 0.5).Round(time.Microsecond), pct(lat, 0.99).Round(time.Microsecond), pct(lat, 1).Round(time.Microsecond))
	}
	for _, s := range servers {
		if !part("idle") {
			break
		}
		per, lat, served := idle(t, s, nIdle)
		t.Logf("%-11s %d idle connections served (of %d): %.0f bytes RSS each; another client meanwhile p50 %s p99 %s",
			s.name, served, nIdle, per, pct(lat, 0.5).Round(time.Microsecond), pct(lat, 0.99).Round(time.Microsecond))
	}
}
