package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
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

// memSource is an in-memory news.Source: news is queued in order and
// drained by Take.
type memSource struct {
	mu     sync.Mutex
	q      []news.News
	notify chan struct{}
}

func newMemSource() *memSource { return &memSource{notify: make(chan struct{}, 1)} }

func (m *memSource) Notify() <-chan struct{} { return m.notify }

func (m *memSource) Take(buf []news.News) []news.News {
	m.mu.Lock()
	defer m.mu.Unlock()
	buf = append(buf, m.q...)
	m.q = m.q[:0]
	return buf
}

func (m *memSource) put(n news.News) {
	m.mu.Lock()
	m.q = append(m.q, n)
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// testClock is the agent's clock in a synctest bubble, with a wall clock
// that can be stepped independently of the monotonic one (a monotonic
// reading is stripped from the wall part, as after an NTP step).
type testClock struct {
	origin time.Time
	base   time.Duration
	mu     sync.Mutex
	step   time.Duration
}

func newTestClock() *testClock { return &testClock{origin: time.Now(), base: time.Hour} }

func (c *testClock) Now() policy.Now {
	t := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return policy.Now{Mono: c.MonoOf(t), Wall: t.Round(0).Add(c.step)}
}

func (c *testClock) MonoOf(t time.Time) time.Duration { return c.base + t.Sub(c.origin) }

func (c *testClock) stepWall(d time.Duration) {
	c.mu.Lock()
	c.step += d
	c.mu.Unlock()
}

// recorder is a fake executor: it records what ran and when (offset from
// the bubble's start).
type recorder struct {
	mu           sync.Mutex
	start        time.Time
	log          []string
	fail         map[string]bool
	poweroffFail int // the first so many power offs fail
	dry          bool
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("%s@%s", s, time.Since(r.start).Round(time.Second)))
}

func (r *recorder) Run(_ context.Context, _ string, argv []string) error {
	r.add("run:" + strings.Join(argv, " "))
	if r.fail[argv[0]] {
		return fmt.Errorf("%s failed", argv[0])
	}
	return nil
}

func (r *recorder) PoweroffMethods() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dry {
		return []string{"dry"}
	}
	return []string{"logind", "command"}
}

func (r *recorder) Poweroff(_ context.Context, method string) error {
	r.mu.Lock()
	fail := r.poweroffFail > 0
	if fail {
		r.poweroffFail--
	}
	r.mu.Unlock()
	if fail {
		r.add("POWEROFF_FAILED(" + method + ")")
		return fmt.Errorf("%s refused", method)
	}
	r.add("POWEROFF(" + method + ")")
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// published collects what the agent publishes.
type published struct {
	mu     sync.Mutex
	events []mqttwire.AgentEvent
	states []mqttwire.AgentState
}

func (p *published) publish(_ context.Context, topic string, payload []byte, _ bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case strings.HasSuffix(topic, "/event"):
		var ev mqttwire.AgentEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return err
		}
		p.events = append(p.events, ev)
	case strings.HasSuffix(topic, "/state"):
		var st mqttwire.AgentState
		if err := json.Unmarshal(payload, &st); err != nil {
			return err
		}
		p.states = append(p.states, st)
	}
	return nil
}

func (p *published) eventTypes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		out = append(out, e.Type)
	}
	return out
}

func (p *published) last() mqttwire.AgentState {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.states) == 0 {
		return mqttwire.AgentState{}
	}
	return p.states[len(p.states)-1]
}

// reading builds a live state of ups with the given status words, comm_ok
// true, from bridge "nas". Words "charge=N" and "runtime=N" set variables.
func reading(ups string, words ...string) news.News {
	r := news.Reading{Bridge: "nas", CommOK: true, Signed: true}
	var status []string
	for _, w := range words {
		switch {
		case strings.HasPrefix(w, "charge="):
			fmt.Sscan(strings.TrimPrefix(w, "charge="), &r.Charge)
			r.HasCharge = true
		case strings.HasPrefix(w, "runtime="):
			var s float64
			fmt.Sscan(strings.TrimPrefix(w, "runtime="), &s)
			r.Runtime, r.HasRuntime = time.Duration(s*float64(time.Second)), true
		default:
			status = append(status, w)
		}
	}
	r.Status = strings.Join(status, " ")
	r.Flags = bridge.ParseStatus(r.Status).Flags
	return news.News{Kind: news.KindState, UPS: ups, Bridge: "nas", Live: true, Reading: r}
}

func ob(ups string, words ...string) news.News {
	return reading(ups, append([]string{"OB", "DISCHRG"}, words...)...)
}

func ol(ups string, words ...string) news.News {
	return reading(ups, append([]string{"OL"}, words...)...)
}

// history marks n as delivered from the broker's retained store.
func history(n news.News) news.News { n.Live = false; return n }

// commLost marks n as published by a bridge that lost its UPS.
func commLost(n news.News) news.News { n.Reading.CommOK = false; return n }

// dated sets the state's ts this far from the receiving clock.
func dated(n news.News, skew time.Duration) news.News {
	n.Detail = "skew=" + skew.String()
	return n
}

func conn(up bool) news.News { return news.News{Kind: news.KindConnection, Online: up, Live: true} }

func upsAvail(ups string, up bool, live bool) news.News {
	return news.News{Kind: news.KindUPSAvailability, UPS: ups, Online: up, Live: live}
}

func bridgeAvail(b string, up bool, live bool) news.News {
	return news.News{Kind: news.KindBridgeAvailability, Bridge: b, Online: up, Live: live}
}

// step is one scripted input at offset at: news, a restart of the agent
// (same state_file and clock, possibly another mode), or a wall-clock step.
type step struct {
	at       time.Duration
	news     []news.News
	restart  bool
	dryRun   bool // the mode after a restart
	stepWall time.Duration
	check    func(t *testing.T, r *run)
}

var stdStages = []policy.Stage{
	{Name: "shed", OnBatteryFor: 2 * time.Minute, Run: []string{"stop-plex"}, Undo: []string{"start-plex"}},
	{Name: "shed2", OnBatteryFor: 5 * time.Minute, ChargeBelow: 50, Run: []string{"stop-vm"}, Undo: []string{"start-vm"}},
	{Name: "poweroff", OnBatteryFor: 15 * time.Minute, ChargeBelow: 30, RuntimeBelow: 5 * time.Minute, Run: []string{"sync-disks"}, Final: true},
}

func policyCfg(supplies ...policy.Supply) policy.Config {
	if len(supplies) == 0 {
		supplies = []policy.Supply{{UPS: "ups1", Power: 1}}
	}
	return policy.Config{Supplies: supplies, MinSupplies: 1, DeadTime: 15 * time.Second, MaxStateAge: 90 * time.Second,
		OffDuration: 30 * time.Second, Stages: stdStages}
}

// run is one scripted agent run in a synctest bubble.
type run struct {
	cfg       policy.Config
	dryRun    bool
	recheck   time.Duration
	logs      *logCapture
	rec       *recorder
	pub       *published
	clock     *testClock
	stateFile string
	agent     *Agent
	src       *memSource
	cancel    context.CancelFunc
	done      chan struct{}
}

func (r *run) start(t *testing.T) {
	t.Helper()
	r.rec.mu.Lock()
	r.rec.dry = r.dryRun
	r.rec.mu.Unlock()
	recheck := r.recheck
	if recheck == 0 {
		recheck = 24 * time.Hour // the host went down: no run lasts that long
	}
	if r.logs == nil {
		r.logs = &logCapture{}
	}
	a, err := New(Options{ID: "host1", TopicPrefix: "ub", Policy: r.cfg, FinalDelay: 5 * time.Second, DryRun: r.dryRun,
		StateFile: r.stateFile, BootID: "boot1", Exec: r.rec, Publish: r.pub.publish, Clock: r.clock, PoweroffRecheck: recheck,
		Logger: slog.New(r.logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r.agent, r.src, r.cancel, r.done = a, newMemSource(), cancel, make(chan struct{})
	go func() { _ = a.Run(ctx, r.src); close(r.done) }()
	synctest.Wait()
}

func (r *run) stop() {
	r.cancel()
	<-r.done
}

// script runs an agent through steps until `until` and returns what the
// executor saw. News is stamped with the bubble's time.Now() as At, and a
// state's ts is At (unless dated).
type script struct {
	name   string
	cfg    policy.Config
	dryRun bool
	// poweroffFail makes the first so many power offs fail.
	poweroffFail int
	// recheck is Options.PoweroffRecheck (0: longer than any run).
	recheck time.Duration
	steps   []step
	until   time.Duration
	want    []string
	// after checks the run at its end.
	after func(t *testing.T, r *run)
}

func (sc script) run(t *testing.T) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		cfg := sc.cfg
		if cfg.Supplies == nil {
			cfg = policyCfg()
		}
		r := &run{cfg: cfg, dryRun: sc.dryRun, recheck: sc.recheck, pub: &published{}, clock: newTestClock(),
			rec:       &recorder{start: time.Now(), fail: map[string]bool{"failing": true}, poweroffFail: sc.poweroffFail},
			stateFile: filepath.Join(t.TempDir(), "agent.json")}
		r.start(t)
		t0 := time.Now()
		steps := slices.Clone(sc.steps)
		sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
		for _, s := range steps {
			if d := time.Until(t0.Add(s.at)); d > 0 {
				time.Sleep(d)
			}
			if s.restart {
				r.stop()
				r.dryRun = s.dryRun
				r.start(t)
			}
			if s.stepWall != 0 {
				r.clock.stepWall(s.stepWall)
			}
			for _, n := range s.news {
				n.At = time.Now()
				if n.Kind == news.KindState {
					n.Reading.TS = r.clock.Now().Wall
					if skew, ok := strings.CutPrefix(n.Detail, "skew="); ok {
						d, _ := time.ParseDuration(skew)
						n.Reading.TS = n.Reading.TS.Add(d)
						n.Detail = ""
					}
				}
				r.src.put(n)
			}
			synctest.Wait()
			if s.check != nil {
				s.check(t, r)
			}
		}
		if d := time.Until(t0.Add(sc.until)); d > 0 {
			time.Sleep(d)
		}
		synctest.Wait()
		if sc.after != nil {
			sc.after(t, r)
		}
		r.stop()
		got := r.rec.got()
		if !equal(got, sc.want) {
			t.Fatalf("executor saw\n  %q\nwant\n  %q", got, sc.want)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// every returns steps sending n every interval from `from` to `to`.
func every(from, to, interval time.Duration, n func(at time.Duration) news.News) []step {
	var s []step
	for at := from; at < to; at += interval {
		s = append(s, step{at: at, news: []news.News{n(at)}})
	}
	return s
}

// at is one step at offset d with news.
func at(d time.Duration, n ...news.News) step { return step{at: d, news: n} }

func cat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func const_(n news.News) func(time.Duration) news.News {
	return func(time.Duration) news.News { return n }
}

// logCapture is a slog handler that keeps the messages logged at warn and
// above.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCapture) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }

func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}

func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

// count returns how many messages were exactly msg ("ERROR text").
func (l *logCapture) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func slogOf(h slog.Handler) *slog.Logger { return slog.New(h) }
