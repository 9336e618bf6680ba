package notify

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }

// logBuf is a log destination safe for the sink's goroutines.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// statsRig runs a notifier sink on a bridge queue until the test ends.
type statsRig struct {
	q *bridge.Queue
}

func newStatsRig(t *testing.T, s *engine.Sink, _ *logBuf) *statsRig {
	t.Helper()
	q := bridge.NewQueue("n", 10000, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx, q); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &statsRig{q: q}
}

// waitStats polls Stats until cond holds or fails the test after 10 s.
func waitStats(t *testing.T, s *engine.Sink, what string, cond func(st map[string]any) bool) map[string]any {
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

func ev(ups string, typ bridge.EventType) *bridge.Event {
	e := bridge.NewEvent(ups, time.Now(), typ, "OB")
	return &e
}
