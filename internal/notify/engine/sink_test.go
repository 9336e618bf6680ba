package engine

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

// recorder is an in-process service that records messages; fail decides
// the answer to each attempt.
type recorder struct {
	mu    sync.Mutex
	msgs  []Message
	tries int
	fail  func(n int) error
	max   int
}

func (r *recorder) MaxBytes() int { return r.max }
func (r *recorder) Send(_ context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	if r.fail != nil {
		if err := r.fail(r.tries); err != nil {
			return err
		}
	}
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) wait(t *testing.T, n int) []Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		if len(r.msgs) >= n {
			out := append([]Message(nil), r.msgs...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("got %d messages, want %d", len(r.msgs), n)
	return nil
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func runSink(t *testing.T, c Common, svc Service) (*bridge.Queue, *logBuf, func()) {
	t.Helper()
	lb := &logBuf{}
	env := bridge.Env{Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), StateDir: t.TempDir(), BridgeID: "b"}
	s, err := New(env, &c, svc)
	if err != nil {
		t.Fatal(err)
	}
	q := bridge.NewQueue("n", 10000, env.Logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx, q); close(done) }()
	return q, lb, func() { cancel(); <-done }
}

func ev(ups string, typ bridge.EventType) *bridge.Event {
	e := bridge.NewEvent(ups, time.Now(), typ, "OB")
	return &e
}

func TestFlapBecomesBlip(t *testing.T) {
	c := common("wecom")
	c.FlapWindow = 300 * time.Millisecond
	rec := &recorder{}
	q, _, stop := runSink(t, c, rec)
	defer stop()
	q.PutEvent(ev("a", bridge.EventOnBatt))
	q.PutEvent(ev("b", bridge.EventLowBatt))
	q.PutEvent(ev("a", bridge.EventOnline))
	msgs := rec.wait(t, 2)
	if msgs[0].Event != "BLIP" || !strings.Contains(msgs[0].Body, "Power blip") || msgs[1].Event != "LOWBATT" {
		t.Fatalf("messages %q / %q", msgs[0].Event, msgs[1].Event)
	}
	// An ONBATT without ONLINE in the window is sent after the window.
	start := time.Now()
	q.PutEvent(ev("a", bridge.EventOnBatt))
	msgs = rec.wait(t, 3)
	if msgs[2].Event != "ONBATT" || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("ONBATT %q after %s", msgs[2].Event, time.Since(start))
	}
}

func TestRateLimitCoalescesBurst(t *testing.T) {
	c := common("wecom")
	c.RateLimit, c.RateWindow, c.FlapWindow = 3, 400*time.Millisecond, 0
	c.Events = []string{"all"}
	rec := &recorder{max: 4096}
	q, _, stop := runSink(t, c, rec)
	defer stop()
	for i := 0; i < 50; i++ {
		q.PutEvent(ev("a", bridge.EventTrim))
	}
	total := 0
	deadline := time.Now().Add(10 * time.Second)
	for total < 50 && time.Now().Before(deadline) {
		total = 0
		rec.mu.Lock()
		for _, m := range rec.msgs {
			total += len(m.Records)
		}
		rec.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if total != 50 {
		t.Fatalf("delivered %d events, want 50", total)
	}
	if len(rec.msgs) > 6 || !strings.Contains(rec.msgs[len(rec.msgs)-1].Title, "events") && len(rec.msgs) > 1 {
		t.Fatalf("%d messages for a burst of 50 with a limit of 3 per window", len(rec.msgs))
	}
}

func TestTemplateFallbackAndZh(t *testing.T) {
	c := common("wecom")
	c.Language = "zh"
	c.Template = `{{template "nope"}}`
	if errs := c.Validate(); len(errs) == 0 {
		t.Fatal("a template calling an undefined template passed validation")
	}
	c.Template = `{{.Charge}} {{call .Vars}}` // parses; sample execution fails
	if errs := c.Validate(); len(errs) == 0 || errs[0].Key != "template" {
		t.Fatalf("errs %v", errs)
	}
	// A template that passes the sample but fails on a real event falls
	// back to the built-in text and logs why.
	c.Template = `{{if eq .Event "ONBATT"}}{{.Charge}}{{else}}{{index .Vars 1}}{{end}}`
	if errs := c.Validate(); len(errs) != 0 {
		t.Fatalf("errs %v", errs)
	}
	c.Events = []string{"all"}
	c.FlapWindow = 0
	rec := &recorder{}
	q, lb, stop := runSink(t, c, rec)
	defer stop()
	q.PutEvent(ev("a", bridge.EventLowBatt))
	msgs := rec.wait(t, 1)
	if !strings.Contains(msgs[0].Body, "电池电量低") || !strings.Contains(msgs[0].Title, "严重") {
		t.Fatalf("zh fallback: %q %q", msgs[0].Title, msgs[0].Body)
	}
	if !strings.Contains(lb.String(), "template failed; using the built-in text") {
		t.Fatalf("fallback not logged: %s", lb.String())
	}
}

func TestRefusedReportedOnceAndKept(t *testing.T) {
	c := common("wecom")
	c.PermanentRetry = 50 * time.Millisecond
	c.FlapWindow = 0
	var mu sync.Mutex
	ok := false
	rec := &recorder{fail: func(int) error {
		mu.Lock()
		defer mu.Unlock()
		if ok {
			return nil
		}
		return Refused(errString("wecom: errcode 93000: invalid webhook url"))
	}}
	q, lb, stop := runSink(t, c, rec)
	defer stop()
	q.PutEvent(ev("a", bridge.EventLowBatt))
	q.PutEvent(ev("a", bridge.EventFSD))
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		n := rec.tries
		rec.mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no retries")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := strings.Count(lb.String(), "NOTIFIER REFUSED"); n != 1 {
		t.Fatalf("refusal reported %d times", n)
	}
	mu.Lock()
	ok = true
	mu.Unlock()
	msgs := rec.wait(t, 2)
	if msgs[0].Event != "LOWBATT" || msgs[1].Event != "FSD" {
		t.Fatalf("after recovery %s %s", msgs[0].Event, msgs[1].Event)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestFilters(t *testing.T) {
	c := common("wecom")
	c.UPS = []string{"a"}
	c.MinSeverity = "warning"
	f := newFilter(&c)
	cases := []struct {
		e    *bridge.Event
		want bool
	}{
		{ev("a", bridge.EventOnBatt), true},
		{ev("b", bridge.EventOnBatt), false},
		{ev("a", bridge.EventOnline), false}, // info < warning
		{ev("a", bridge.EventTrim), false},   // not a default event
		{&bridge.Event{Host: "h1", Type: bridge.EventShutdown}, true},
	}
	for _, tc := range cases {
		if got := f.match(tc.e); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.e.UPS, tc.e.Type, got, tc.want)
		}
	}
}
