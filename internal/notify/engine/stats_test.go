package engine

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

// statsRig runs a notifier sink whose bridge queue may be filled before
// Run starts (so the first disk batch holds all of it).
type statsRig struct {
	s    *Sink
	q    *bridge.Queue
	logs *logBuf
	stop func()
}

func newStatsRig(t *testing.T, s *Sink, lb *logBuf, before ...*bridge.Event) *statsRig {
	t.Helper()
	q := bridge.NewQueue("n", 10000, slog.New(slog.DiscardHandler))
	for _, e := range before {
		q.PutEvent(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx, q); close(done) }()
	r := &statsRig{s: s, q: q, logs: lb, stop: func() { cancel(); <-done }}
	t.Cleanup(r.stop)
	return r
}

func newTestSink(t *testing.T, c Common, svc Service, secrets ...string) (*Sink, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	env := bridge.Env{Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), StateDir: t.TempDir(), BridgeID: "b"}
	s, err := New(env, &c, svc, secrets...)
	if err != nil {
		t.Fatal(err)
	}
	return s, lb
}

// waitStats polls Stats until cond holds or fails the test after 10 s.
func waitStats(t *testing.T, s *Sink, what string, cond func(st map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s; stats %v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// num reads a numeric stat as float64 (-1 if absent or not numeric).
func num(st map[string]any, k string) float64 {
	switch v := st[k].(type) {
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	case float64:
		return v
	}
	return -1
}

// TestStatsFailThenDeliver: while the service fails, failures count up,
// the events stay queued and last_error carries the scrubbed error; once it
// answers, the queue empties into sent_total. Stats is read concurrently
// all along (run with -race).
func TestNotifierStatsFailThenDeliver(t *testing.T) {
	const secret = "sekrit-key-4711"
	c := common("wecom")
	c.FlapWindow, c.RetryMin, c.RetryMax = 0, 5*time.Millisecond, 20*time.Millisecond
	c.Events = []string{"all"}
	var failing atomic.Bool
	failing.Store(true)
	rec := &recorder{fail: func(int) error {
		if failing.Load() {
			return Transient(errString("wecom: HTTP 500: upstream said key="+secret+" is busy"), 0)
		}
		return nil
	}}
	s, lb := newTestSink(t, c, rec, secret)

	st := s.Stats()
	for _, k := range []string{"last_success_seconds", "last_error_seconds", "last_error"} {
		if _, ok := st[k]; ok {
			t.Errorf("%s reported before anything happened: %v", k, st)
		}
	}
	if num(st, "queue_depth") != 0 || num(st, "sent_total") != 0 || num(st, "failures_total") != 0 {
		t.Errorf("fresh sink: %v", st)
	}

	// Readers beside the sink's goroutines, as the HTTP server has.
	stopReaders := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stopReaders:
					return
				default:
				}
				if _, ok := s.Stats()["connected"]; ok {
					t.Error("a notifier reports connected; a failing service would make the bridge unready")
					return
				}
			}
		})
	}
	defer func() { close(stopReaders); readers.Wait() }()

	r := newStatsRig(t, s, lb)
	r.q.PutEvent(ev("a", bridge.EventOnBatt))
	r.q.PutEvent(ev("a", bridge.EventLowBatt))
	r.q.PutEvent(ev("a", bridge.EventFSD))
	st = waitStats(t, s, "three failed attempts with three events queued", func(st map[string]any) bool {
		return num(st, "failures_total") >= 3 && num(st, "queue_depth") == 3
	})
	if num(st, "sent_total") != 0 || num(st, "dropped_total") != 0 {
		t.Errorf("while failing: %v", st)
	}
	le, _ := st["last_error"].(string)
	if strings.Contains(le, secret) || !strings.Contains(le, "[redacted]") || !strings.Contains(le, "HTTP 500") {
		t.Errorf("last_error %q: want the HTTP 500 with the key redacted", le)
	}
	if !strings.Contains(lb.String(), le) {
		t.Errorf("last_error %q is not the text the logs show:\n%s", le, lb.String())
	}
	if at := num(st, "last_error_seconds"); at < float64(time.Now().Add(-time.Minute).Unix()) || at > float64(time.Now().Unix()+1) {
		t.Errorf("last_error_seconds = %v, not a recent unix time", at)
	}
	if _, ok := st["last_success_seconds"]; ok {
		t.Errorf("last_success_seconds before any delivery: %v", st)
	}

	failing.Store(false)
	before := time.Now()
	st = waitStats(t, s, "queue delivered", func(st map[string]any) bool {
		return num(st, "sent_total") == 3 && num(st, "queue_depth") == 0
	})
	if num(st, "events_sent_total") != 3 || num(st, "dropped_total") != 0 || num(st, "digests_total") != 0 || st["refused"] != false {
		t.Errorf("after delivery: %v", st)
	}
	if at := num(st, "last_success_seconds"); at < float64(before.Unix()) || at > float64(time.Now().Unix()+1) {
		t.Errorf("last_success_seconds = %v, want a unix time after %d", at, before.Unix())
	}
	if strings.Contains(lb.String(), secret) {
		t.Errorf("secret in the logs:\n%s", lb.String())
	}
}

// TestStatsDropsAndRefusals says what dropped_total counts and what it
// does not.
func TestNotifierStatsDropsAndRefusals(t *testing.T) {
	tests := []struct {
		name        string
		events      []string // the notifier's events filter
		maxAttempts int
		err         error
		send        []bridge.EventType
		// wait until this holds, then check the rest
		until       func(st map[string]any) bool
		wantDropped float64
		wantDepth   float64
		wantRefused bool
	}{
		{
			name: "rejected message is dropped", err: Rejected(errString("wecom: errcode 40058: content too long")),
			send:        []bridge.EventType{bridge.EventLowBatt},
			until:       func(st map[string]any) bool { return num(st, "dropped_total") >= 1 && num(st, "queue_depth") == 0 },
			wantDropped: 1,
		},
		{
			name: "given up after max_attempts", maxAttempts: 2, err: Transient(errString("wecom: HTTP 502"), 0),
			send: []bridge.EventType{bridge.EventLowBatt},
			until: func(st map[string]any) bool {
				return num(st, "failures_total") >= 2 && num(st, "dropped_total") >= 1 && num(st, "queue_depth") == 0
			},
			wantDropped: 1,
		},
		{
			name: "refused credentials keep the queue", err: Refused(errString("wecom: errcode 93000: invalid webhook url")),
			send:        []bridge.EventType{bridge.EventLowBatt, bridge.EventFSD},
			until:       func(st map[string]any) bool { return num(st, "failures_total") >= 2 && num(st, "queue_depth") == 2 },
			wantDropped: 0, wantDepth: 2, wantRefused: true,
		},
		{
			name: "filtered out is not a drop", events: []string{"FSD"},
			send:        []bridge.EventType{bridge.EventLowBatt, bridge.EventFSD},
			until:       func(st map[string]any) bool { return num(st, "sent_total") == 1 && num(st, "queue_depth") == 0 },
			wantDropped: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := common("wecom")
			c.FlapWindow, c.RetryMin, c.RetryMax, c.PermanentRetry = 0, 5*time.Millisecond, 10*time.Millisecond, 10*time.Millisecond
			c.MaxAttempts = tc.maxAttempts
			c.Events = tc.events
			rec := &recorder{fail: func(int) error { return tc.err }}
			s, lb := newTestSink(t, c, rec)
			r := newStatsRig(t, s, lb)
			for _, typ := range tc.send {
				r.q.PutEvent(ev("a", typ))
			}
			st := waitStats(t, s, tc.name, tc.until)
			if got := num(st, "dropped_total"); got != tc.wantDropped {
				t.Errorf("dropped_total = %v, want %v (%v)", got, tc.wantDropped, st)
			}
			if got := num(st, "queue_depth"); got != tc.wantDepth {
				t.Errorf("queue_depth = %v, want %v", got, tc.wantDepth)
			}
			if st["refused"] != tc.wantRefused {
				t.Errorf("refused = %v, want %v", st["refused"], tc.wantRefused)
			}
		})
	}
}

// TestStatsDigestAndRateLimit: a backlog beyond the rate limit goes out as
// one digest; the next event waits for the window (rate_limited_total).
func TestNotifierStatsDigestAndRateLimit(t *testing.T) {
	c := common("wecom")
	c.FlapWindow, c.RateLimit, c.RateWindow = 0, 1, 300*time.Millisecond
	c.Events = []string{"all"}
	rec := &recorder{max: 4096}
	s, lb := newTestSink(t, c, rec)
	var backlog []*bridge.Event
	for range 6 {
		backlog = append(backlog, ev("a", bridge.EventTrim))
	}
	r := newStatsRig(t, s, lb, backlog...)
	st := waitStats(t, s, "backlog delivered", func(st map[string]any) bool { return num(st, "events_sent_total") == 6 })
	if num(st, "sent_total") != 1 || num(st, "digests_total") != 1 {
		t.Fatalf("6 events beyond a limit of 1: %v (want one digest)", st)
	}
	r.q.PutEvent(ev("a", bridge.EventLowBatt))
	st = waitStats(t, s, "next event after the window", func(st map[string]any) bool { return num(st, "sent_total") == 2 })
	if num(st, "rate_limited_total") < 1 || num(st, "digests_total") != 1 || num(st, "events_sent_total") != 7 {
		t.Errorf("after the window: %v", st)
	}
}
