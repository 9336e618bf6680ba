package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// rssKB reads a process's resident memory.
func rssKB(t testing.TB, pid int) int {
	t.Helper()
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
	t.Fatal("no VmRSS")
	return 0
}

// 10,000 idle connections to upsbridge's NUT server: all are served,
// memory stays bounded, and another client still gets its answers.
func TestNUTServerManyConnections(t *testing.T) {
	const n = 10000
	mq := harness.StartMosquitto(t)
	addr := harness.Addr(harness.FreePort(t))
	p := harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: nutmany, state_dir: %s}
hass: {enabled: false}
sources:
  - {id: sim1, type: sim, scenario: steady}
nut_server:
  listen: ["%s"]
`, mq.URL(), t.TempDir(), addr))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if l, err := upsdLine(addr, "GET VAR sim1 ups.status"); err == nil && l == `VAR sim1 ups.status "OL"` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upsbridge does not serve sim1")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := rssKB(t, p.PID())
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// Every connection is served: one request each, answered.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 50 {
				c := conns[i]
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := c.Write([]byte("NETVER\n")); err != nil {
					errs <- fmt.Errorf("conn %d: %w", i, err)
					return
				}
				l, err := bufio.NewReaderSize(c, 16).ReadString('\n')
				if err != nil || l != "1.3\n" {
					errs <- fmt.Errorf("conn %d: %q %v", i, l, err)
					return
				}
				_ = c.SetDeadline(time.Time{})
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after := rssKB(t, p.PID())
	per := float64(after-before) * 1024 / n
	t.Logf("upsbridge RSS %d kB -> %d kB with %d idle connections: %.0f bytes per connection", before, after, n, per)
	if per > 32*1024 {
		t.Errorf("%.0f bytes per idle connection: memory is not bounded as it should be", per)
	}
	// Another client is still answered.
	for i := 0; i < 20; i++ {
		if l, err := upsdLine(addr, "GET VAR sim1 ups.status"); err != nil || l != `VAR sim1 ups.status "OL"` {
			t.Fatalf("a new client among %d idle ones: %q %v", n, l, err)
		}
	}
}
