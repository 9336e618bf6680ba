package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	_ "github.com/upsbridge/upsbridge/sinks/notify"
)

// fakeWeCom is a WeCom robot endpoint whose behaviour the test switches:
// HTTP 500, timeouts, errcode 45009 for a number of requests, then ok.
type fakeWeCom struct {
	mu      sync.Mutex
	mode    string // "500" | "timeout" | "45009" | "ok"
	n45009  int    // 45009 answers left before "ok"
	reqs    []time.Time
	ok      []string // contents delivered
	srv     *httptest.Server
	process int
	byProc  map[int][]time.Time
}

func newFakeWeCom(t *testing.T) *fakeWeCom {
	f := &fakeWeCom{mode: "500", byProc: map[int][]time.Time{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		now := time.Now()
		f.reqs = append(f.reqs, now)
		f.byProc[f.process] = append(f.byProc[f.process], now)
		mode := f.mode
		if mode == "45009" {
			if f.n45009--; f.n45009 <= 0 {
				f.mode = "ok"
			}
		}
		if r.URL.Query().Get("key") != "test-key" {
			mode = "badkey"
		}
		if mode == "ok" {
			var body struct {
				Text struct {
					Content string `json:"content"`
				} `json:"text"`
			}
			_ = json.Unmarshal(b, &body)
			f.ok = append(f.ok, body.Text.Content)
		}
		f.mu.Unlock()
		switch mode {
		case "500":
			http.Error(w, "internal error", 500)
		case "timeout":
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		case "45009":
			io.WriteString(w, `{"errcode":45009,"errmsg":"api freq out of limit, hint: [1], from ip: 127.0.0.1"}`)
		case "badkey":
			io.WriteString(w, `{"errcode":93000,"errmsg":"invalid webhook url, hint: [1]"}`)
		default:
			io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeWeCom) set(mode string, n int) {
	f.mu.Lock()
	f.mode, f.n45009 = mode, n
	f.mu.Unlock()
}

func (f *fakeWeCom) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// loadNotifier builds notifier specs from YAML through the real config
// loader, as `upsbridge run` does.
func loadNotifier(t *testing.T, yaml string) bridge.SinkSpec {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return cfg.Notify[0].Spec
}

// running is one "process": a notifier sink consuming its queue.
type running struct {
	q      *bridge.Queue
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, spec bridge.SinkSpec, stateDir string) *running {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := spec.NewSink(bridge.Env{Logger: log, StateDir: stateDir, BridgeID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	r := &running{q: bridge.NewQueue(s.Name(), 5000, log), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { _ = s.Run(ctx, r.q); close(r.done) }()
	return r
}

// kill stops the sink the way a killed process stops: no drain.
func (r *running) kill() { r.cancel(); <-r.done }

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var evID = regexp.MustCompile(`ev-(\d{4})`)

// TestNotifyPipelineOutageRestartExactlyOnce: 1,000 events arrive while
// the WeCom endpoint answers 500, then times out; the process is killed
// with everything queued and restarted; WeCom answers 45009 for a while,
// then recovers. Every event is delivered exactly once, in order, and no
// window of rate_window holds more than rate_limit requests.
func TestNotifyPipelineOutageRestartExactlyOnce(t *testing.T) {
	const (
		total  = 1000
		limit  = 20
		window = time.Second
	)
	f := newFakeWeCom(t)
	yaml := fmt.Sprintf(`
notify:
  - name: ops
    type: wecom
    url: %s/cgi-bin/webhook/send?key=test-key
    msgtype: text
    events: [all]
    template: "{{.Message}}"
    rate_limit: %d
    rate_window: %s
    flap_window: 0s
    retry_min: 10ms
    retry_max: 100ms
    timeout: 150ms
    no_sync: false
`, f.srv.URL, limit, window)
	stateDir := t.TempDir()
	spec := loadNotifier(t, yaml)

	p1 := start(t, spec, stateDir)
	put := func(r *running, from, to int) {
		for i := from; i < to; i++ {
			e := bridge.NewEvent("ups1", time.Now(), bridge.EventTrim, "OL TRIM")
			e.Message = fmt.Sprintf("ev-%04d", i)
			r.q.PutEvent(&e)
		}
	}
	put(p1, 0, total/2)
	waitFor(t, "attempts against the failing endpoint", 10*time.Second, func() bool { return f.requests() >= 3 })
	f.set("timeout", 0)
	put(p1, total/2, total)
	n := f.requests()
	waitFor(t, "attempts that time out", 10*time.Second, func() bool { return f.requests() >= n+2 })
	p1.kill()
	if q, _ := os.ReadFile(filepath.Join(stateDir, "notify-ops", "queue.log")); len(q) == 0 {
		t.Fatal("nothing queued on disk after the kill")
	}

	f.mu.Lock()
	f.process = 1
	f.mode, f.n45009 = "45009", 5
	f.mu.Unlock()
	p2 := start(t, spec, stateDir) // same state dir: a restart
	defer p2.kill()

	seen := map[int]int{}
	var order []int
	waitFor(t, "all events delivered", 30*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		seen, order = map[int]int{}, nil
		for _, c := range f.ok {
			for _, m := range evID.FindAllStringSubmatch(c, -1) {
				id, _ := strconv.Atoi(m[1])
				seen[id]++
				order = append(order, id)
			}
		}
		return len(order) >= total
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(order) != total || len(seen) != total {
		t.Fatalf("delivered %d event lines, %d distinct; want %d exactly once", len(order), len(seen), total)
	}
	for i, id := range order {
		if id != i {
			t.Fatalf("event %d delivered at position %d: out of order", id, i)
		}
	}
	for p, reqs := range f.byProc {
		sort.Slice(reqs, func(i, j int) bool { return reqs[i].Before(reqs[j]) })
		for i := range reqs {
			j := i
			for j < len(reqs) && reqs[j].Sub(reqs[i]) < window {
				j++
			}
			// Allow 1 for the clock skew between the client's and the
			// server's view of when a request happened.
			if j-i > limit+1 {
				t.Fatalf("process %d: %d requests within %s (limit %d)", p, j-i, window, limit)
			}
		}
	}
	t.Logf("1000 events delivered exactly once in order in %d successful messages; %d requests in all (%d before the restart)",
		len(f.ok), len(f.reqs), len(f.byProc[0]))
}

// TestNotifyRefusedKeyDoesNotStopOthers: a notifier with a bad key is
// refused (reported once) while another notifier keeps delivering.
func TestNotifyRefusedKeyDoesNotStopOthers(t *testing.T) {
	f := newFakeWeCom(t)
	f.set("ok", 0)
	mk := func(name, key string) bridge.SinkSpec {
		return loadNotifier(t, fmt.Sprintf(`
notify:
  - name: %s
    type: wecom
    url: %s/cgi-bin/webhook/send?key=%s
    msgtype: text
    flap_window: 0s
    retry_min: 10ms
    retry_max: 50ms
    permanent_retry: 50ms
`, name, f.srv.URL, key))
	}
	dir := t.TempDir()
	bad := start(t, mk("bad", "wrong-key"), dir)
	defer bad.kill()
	good := start(t, mk("good", "test-key"), dir)
	defer good.kill()
	for _, r := range []*running{bad, good} {
		e := bridge.NewEvent("ups1", time.Now(), bridge.EventOnBatt, "OB")
		r.q.PutEvent(&e)
	}
	waitFor(t, "the good notifier delivers", 5*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.ok) == 1
	})
}
