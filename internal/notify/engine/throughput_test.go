package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

// countingSvc counts deliveries; while down it refuses transiently.
type countingSvc struct {
	down      atomic.Bool
	delivered atomic.Int64
}

func (c *countingSvc) MaxBytes() int { return 0 }
func (c *countingSvc) Send(context.Context, Message) error {
	if c.down.Load() {
		return Transient(errors.New("down"), 0)
	}
	c.delivered.Add(1)
	return nil
}

// TestQueueThroughput measures the notifier's disk queue with 10,000
// messages: events/s written (from the bridge queue to disk, fsync on),
// events/s replayed (read, rendered, sent to an instant service,
// acknowledged) and the heap held while 10,000 are queued. Run with -v to
// see the figures.
func TestQueueThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const n = 10000
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("no_sync=%v", noSync), func(t *testing.T) {
			c := common("webhook")
			c.Events = []string{"all"}
			c.FlapWindow, c.RetryMin, c.RetryMax, c.NoSync = 0, time.Hour, time.Hour, noSync
			svc := &countingSvc{}
			svc.down.Store(true)
			s, err := New(bridge.Env{Logger: slog.New(slog.DiscardHandler), StateDir: t.TempDir()}, &c, svc)
			if err != nil {
				t.Fatal(err)
			}
			q := bridge.NewQueue("n", n+1, slog.New(slog.DiscardHandler))
			st := &bridge.State{UPS: "ups1", Vars: bridge.Vars{"battery.charge": "80", "battery.runtime": "1200", "ups.load": "30"}}
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = s.Run(ctx, q); close(done) }()
			start := time.Now()
			for i := 0; i < n; i++ {
				e := bridge.NewEvent("ups1", time.Now(), bridge.EventTrim, "OL TRIM")
				e.State = st
				q.PutEvent(&e)
			}
			deadline := time.Now().Add(2 * time.Minute)
			for s.sp == nil || s.sp.Len() < n {
				if time.Now().After(deadline) {
					t.Fatal("events not queued in time")
				}
				time.Sleep(time.Millisecond)
			}
			write := time.Since(start)
			runtime.GC()
			var queued runtime.MemStats
			runtime.ReadMemStats(&queued)
			// The endpoint comes back: the first retry is an hour away, so
			// restart the sink (as after a reboot) to replay at once.
			cancel()
			<-done
			svc.down.Store(false)
			s2, _ := New(bridge.Env{Logger: slog.New(slog.DiscardHandler), StateDir: s.dir[:len(s.dir)-len("/notify-n1")]}, &c, svc)
			ctx, cancel = context.WithCancel(context.Background())
			defer cancel()
			done = make(chan struct{})
			start = time.Now()
			go func() { _ = s2.Run(ctx, bridge.NewQueue("n", 1, slog.New(slog.DiscardHandler))); close(done) }()
			for svc.delivered.Load() < n {
				if time.Now().After(deadline) {
					t.Fatalf("replayed %d of %d", svc.delivered.Load(), n)
				}
				time.Sleep(time.Millisecond)
			}
			replay := time.Since(start)
			cancel()
			<-done
			if got := svc.delivered.Load(); got != n {
				t.Fatalf("delivered %d, want %d", got, n)
			}
			t.Logf("%d events: written %.0f events/s (%s), replayed %.0f events/s (%s), heap with %d queued: %+.1f MiB",
				n, n/write.Seconds(), write.Round(time.Millisecond), n/replay.Seconds(), replay.Round(time.Millisecond), n,
				float64(int64(queued.HeapAlloc)-int64(before.HeapAlloc))/(1<<20))
		})
	}
}

// BenchmarkRender measures rendering one built-in message.
func BenchmarkRender(b *testing.B) {
	rn := renderer{lang: "en"}
	r := Record{Type: "ONBATT", Severity: 1, UPS: "ups1", Time: time.Now(), Message: "UPS ups1 is on battery",
		Vars: map[string]string{"battery.charge": "80", "battery.runtime": "1200"}, OBSince: time.Now().Add(-time.Minute)}
	b.ReportAllocs()
	for b.Loop() {
		_ = rn.render([]Record{r})
	}
}
