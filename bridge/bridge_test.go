package bridge

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// scripted is a source fed by the test.
type scripted struct {
	id string
	in chan Update
}

func (s *scripted) ID() string { return s.id }

func (s *scripted) Run(ctx context.Context, out chan<- Update) error {
	for {
		select {
		case u := <-s.in:
			select {
			case out <- u:
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (s *scripted) InstCmd(_ context.Context, ups, cmd, _ string) (CommandResult, error) {
	return CommandResult{Status: "SUCCESS", Detail: ups + ":" + cmd}, nil
}

// recorder is a sink that records what it receives.
type recorder struct {
	mu     sync.Mutex
	states []State
	events []Event
	slow   time.Duration
}

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Run(ctx context.Context, q *Queue) error {
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return nil
		}
		if r.slow > 0 {
			time.Sleep(r.slow)
		}
		r.mu.Lock()
		if m.Kind == MessageState {
			r.states = append(r.states, *m.State)
		} else {
			r.events = append(r.events, *m.Event)
		}
		r.mu.Unlock()
	}
}

func (r *recorder) snapshot() ([]State, []Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]State(nil), r.states...), append([]Event(nil), r.events...)
}

func TestBridgeRoutesStatesAndEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		src := &scripted{id: "s", in: make(chan Update)}
		rec := &recorder{}
		b := New(Options{StateInterval: 30 * time.Second})
		b.AddSource(src)
		b.AddSink(rec)
		done := make(chan struct{})
		go func() { b.Run(ctx); close(done) }()

		send := func(u Update) { src.in <- u; synctest.Wait() }
		send(Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OL", "battery.charge": "100"}})
		send(Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OL", "battery.charge": "100"}})
		states, _ := rec.snapshot()
		if len(states) != 1 {
			t.Fatalf("unchanged reading on mains published again: %d states", len(states))
		}
		send(Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OB", "battery.charge": "100"}})
		send(Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OB", "battery.charge": "100"}})
		states, events := rec.snapshot()
		if len(states) != 3 {
			t.Fatalf("on battery every poll must publish: %d states", len(states))
		}
		if len(events) != 1 || events[0].Type != EventOnBatt || events[0].State == nil {
			t.Fatalf("events %+v", events)
		}
		for i := 1; i < len(states); i++ {
			if states[i].Seq <= states[i-1].Seq {
				t.Fatalf("seq not increasing: %d then %d", states[i-1].Seq, states[i].Seq)
			}
		}
		// Malformed updates are dropped, the previous state kept.
		send(Update{Source: "s", UPS: "bad/id", Kind: Reading, Vars: Vars{}})
		send(Update{Source: "s", UPS: "ups1", Kind: Reading})
		if snap := b.Snapshot(); len(snap) != 1 || snap[0].Status.Raw != "OB" {
			t.Fatalf("snapshot after malformed updates: %+v", snap)
		}
		// Back on mains, nothing changes: the state is still re-published
		// every state_interval.
		send(Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OL", "battery.charge": "100"}})
		before, _ := rec.snapshot()
		time.Sleep(31 * time.Second)
		synctest.Wait()
		after, _ := rec.snapshot()
		if len(after) != len(before)+1 {
			t.Fatalf("state_interval re-publish: %d -> %d states", len(before), len(after))
		}
		// Commands are routed to the owning source.
		res, err := b.InstCmd(ctx, "ups1", "beeper.mute", "")
		if err != nil || res.Detail != "ups1:beeper.mute" {
			t.Fatalf("InstCmd = %+v, %v", res, err)
		}
		if _, err := b.InstCmd(ctx, "nope", "beeper.mute", ""); !errors.Is(err, ErrUnknownUPS) {
			t.Fatalf("InstCmd on unknown UPS: %v", err)
		}
		cancel()
		<-done
	})
}

func TestBridgeDeadTimeMakesCritical(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		src := &scripted{id: "s", in: make(chan Update)}
		rec := &recorder{}
		b := New(Options{Rules: Rules{DeadTime: 15 * time.Second, NoCommWarnTime: time.Hour, OffDuration: 30 * time.Second, RBWarnTime: time.Hour}})
		b.AddSource(src)
		b.AddSink(rec)
		done := make(chan struct{})
		go func() { b.Run(ctx); close(done) }()
		src.in <- Update{Source: "s", UPS: "u", Kind: Reading, Vars: Vars{"ups.status": "OB"}}
		synctest.Wait()
		src.in <- Update{Source: "s", UPS: "u", Kind: CommLost}
		synctest.Wait()
		time.Sleep(14 * time.Second)
		synctest.Wait()
		if b.Snapshot()[0].Critical {
			t.Fatal("critical before dead time")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !b.Snapshot()[0].Critical {
			t.Fatal("not critical after dead time on battery without communication")
		}
		cancel()
		<-done
	})
}

func TestSlowSinkDoesNotBlockCore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		src := &scripted{id: "s", in: make(chan Update)}
		slow := &recorder{slow: time.Hour}
		fast := &recorder{}
		b := New(Options{})
		b.AddSource(src)
		b.AddSink(slow)
		b.AddSink(fast)
		done := make(chan struct{})
		go func() { b.Run(ctx); close(done) }()
		for i := 0; i < 50; i++ {
			st := "OL"
			if i%2 == 1 {
				st = "OB"
			}
			src.in <- Update{Source: "s", UPS: "u", Kind: Reading, Vars: Vars{"ups.status": st}}
			synctest.Wait()
		}
		_, events := fast.snapshot()
		if len(events) != 49 { // ONBATT x25, ONLINE x24
			t.Fatalf("fast sink got %d events, want 49", len(events))
		}
		cancel()
		<-done
	})
}

// Time-based rules ride along with updates when they arrive every poll
// (the bridge then wakes once per poll), and still run on their own timer
// when updates stop.
func TestBridgeTicksWithAndWithoutUpdates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		src := &scripted{id: "s", in: make(chan Update)}
		rec := &recorder{}
		b := New(Options{StateInterval: 10 * time.Second})
		b.AddSource(src)
		b.AddSink(rec)
		done := make(chan struct{})
		go func() { b.Run(ctx); close(done) }()
		start := time.Now()
		// A steady UPS polled every second for 35 s: a state at first, then
		// the periodic re-publish every 10 s, not more often.
		for time.Since(start) < 35*time.Second {
			src.in <- Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OL"}}
			synctest.Wait()
			time.Sleep(time.Second)
		}
		states, _ := rec.snapshot()
		if len(states) != 4 {
			t.Fatalf("35 s of steady polls with state_interval 10s: %d states, want 4", len(states))
		}
		// No updates at all: the timer alone re-publishes.
		time.Sleep(21 * time.Second)
		synctest.Wait()
		if after, _ := rec.snapshot(); len(after) != len(states)+2 {
			t.Fatalf("21 s without updates: %d more states, want 2", len(after)-len(states))
		}
		cancel()
		<-done
	})
}

// A UPS on battery whose source polls slowly (a USB UPS read every 30 s) is
// still published every BatteryStateInterval while the source talks to it:
// agents take silence on battery for a dead bridge. On mains, and once the
// UPS is lost, the normal state_interval applies.
func TestBridgeBatteryStateInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		src := &scripted{id: "s", in: make(chan Update)}
		rec := &recorder{}
		b := New(Options{StateInterval: time.Minute})
		b.AddSource(src)
		b.AddSink(rec)
		done := make(chan struct{})
		go func() { b.Run(ctx); close(done) }()
		count := func() int { synctest.Wait(); s, _ := rec.snapshot(); return len(s) }

		src.in <- Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OL"}}
		base := count()
		time.Sleep(30 * time.Second)
		if n := count() - base; n != 0 {
			t.Fatalf("on mains, 30 s without polls: %d states, want 0 (state_interval 1m)", n)
		}
		src.in <- Update{Source: "s", UPS: "ups1", Kind: Reading, Vars: Vars{"ups.status": "OB"}}
		base = count()
		time.Sleep(29*time.Second + 500*time.Millisecond)
		if n := count() - base; n != 5 {
			t.Fatalf("on battery, 29.5 s without polls: %d states, want 5 (every %s)", n, DefaultBatteryStateInterval)
		}
		src.in <- Update{Source: "s", UPS: "ups1", Kind: CommLost}
		base = count()
		time.Sleep(30 * time.Second)
		states, _ := rec.snapshot()
		for _, st := range states[base:] {
			if st.Comm {
				t.Fatalf("a state after the UPS was lost says comm ok: %+v", st)
			}
		}
		if n := len(states) - base; n > 2 {
			t.Fatalf("UPS lost on battery, 30 s: %d states; the battery interval must not re-publish a lost UPS", n)
		}
		cancel()
		<-done
	})
}
