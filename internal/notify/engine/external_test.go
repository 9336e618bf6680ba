package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// pagerConfig is a notifier type defined outside the engine's package, the
// way a new service is written: a config struct embedding engine.Common,
// its registration, and a Service.
type pagerConfig struct {
	engine.Common `koanf:",squash"`
	Token         config.Secret `koanf:"token"`
	// FailFirst answers that many attempts with a transient error.
	FailFirst int `koanf:"fail_first"`

	svc *pager // set by NewSink, for the test to look at
}

func init() {
	engine.Register("testpager", func() *pagerConfig {
		return &pagerConfig{Common: engine.Defaults("testpager", engine.ServiceDefaults{RateLimit: 3, RateWindow: time.Hour})}
	})
}

func (c *pagerConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	if c.Token == "" {
		errs = append(errs, config.Errorf("token", "is required"))
	}
	return errs
}

func (c *pagerConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("testpager notifier %q: %w", c.Name, config.Errors(errs))
	}
	c.svc = &pager{token: c.Token.Reveal(), failLeft: c.FailFirst, got: make(chan engine.Message, 16)}
	return engine.New(env, &c.Common, c.svc, c.Token.Reveal())
}

// pager fails its first attempts (echoing its token, as some services do)
// and then hands every message to the test.
type pager struct {
	token    string
	mu       sync.Mutex
	failLeft int
	attempts int
	got      chan engine.Message
}

func (p *pager) Send(_ context.Context, m engine.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if p.failLeft > 0 {
		p.failLeft--
		return engine.Transient(errors.New("pager: busy, token="+p.token), 0)
	}
	p.got <- m
	return nil
}

func (p *pager) Escape(s string) string { return engine.MarkupHTML.Escape(s) }

// TestServiceOutsideEngine: a service from another package is registered
// by type name, configured from YAML, and gets its messages through the
// engine's disk queue, retries (its secret redacted from the error) and
// rate limit (a burst beyond it coalesced into one digest).
func TestServiceOutsideEngine(t *testing.T) {
	dir := t.TempDir()
	const token = "pager-token-5150"
	path := filepath.Join(dir, "upsbridge.yaml")
	yaml := fmt.Sprintf(`
bridge:
  state_dir: %s
notify:
  - name: oncall
    type: testpager
    token: %s
    fail_first: 1
    flap_window: 0s
    retry_min: 5ms
    retry_max: 20ms
`, filepath.Join(dir, "state"), token)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(cfg.Notify) != 1 {
		t.Fatalf("notify entries: %d, want 1", len(cfg.Notify))
	}
	spec := cfg.Notify[0].Spec
	if spec == nil {
		t.Fatalf("testpager spec %T is no notifier", cfg.Notify[0].Spec)
	}
	pc := spec.(*pagerConfig)
	if pc.RateLimit != 3 || pc.RateWindow != time.Hour || pc.RetryMin != 5*time.Millisecond {
		t.Fatalf("defaults and config not merged: rate %d/%s, retry_min %s", pc.RateLimit, pc.RateWindow, pc.RetryMin)
	}
	sink, err := spec.NewSink(bridge.Env{Logger: slog.New(slog.DiscardHandler), StateDir: cfg.Bridge.StateDir, BridgeID: "b"})
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*engine.Sink)

	// Ten events wait in the bridge's queue before delivery starts: more
	// than the rate limit (3 an hour) allows one by one.
	q := bridge.NewQueue("n", 100, slog.New(slog.DiscardHandler))
	for i := range 10 {
		e := bridge.NewEvent(fmt.Sprintf("ups%d", i), time.Now(), bridge.EventLowBatt, "OB LB")
		q.PutEvent(&e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx, q); close(done) }()
	defer func() { cancel(); <-done }()

	var m engine.Message
	select {
	case m = <-pc.svc.got:
	case <-time.After(10 * time.Second):
		t.Fatalf("no message within 10s; stats %v", s.Stats())
	}
	if len(m.Records) != 10 || !strings.Contains(m.Title, "10 events") {
		t.Errorf("want one digest of the 10 events, got %d records, title %q", len(m.Records), m.Title)
	}
	for i, r := range m.Records {
		if want := fmt.Sprintf("ups%d", i); r.UPS != want || r.Type != string(bridge.EventLowBatt) {
			t.Errorf("record %d: %s %s, want %s LOWBATT in queue order", i, r.UPS, r.Type, want)
		}
	}
	pc.svc.mu.Lock()
	attempts := pc.svc.attempts
	pc.svc.mu.Unlock()
	if attempts != 2 {
		t.Errorf("attempts = %d, want 2 (one transient failure, one retry)", attempts)
	}
	// The service returns after handing the message over; the engine counts
	// the delivery only then.
	want := map[string]uint64{"failures_total": 1, "sent_total": 1, "digests_total": 1, "events_sent_total": 10}
	counted := func(st map[string]any) bool {
		for k, v := range want {
			if got, _ := st[k].(uint64); got != v {
				return false
			}
		}
		return true
	}
	st := s.Stats()
	for deadline := time.Now().Add(10 * time.Second); !counted(st) && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	le, _ := st["last_error"].(string)
	if !strings.Contains(le, "pager: busy") || strings.Contains(le, token) {
		t.Errorf("last_error %q: want the failure with the token redacted", le)
	}
	for k, want := range want {
		if got, _ := st[k].(uint64); got != want {
			t.Errorf("%s = %v, want %d", k, st[k], want)
		}
	}
}
