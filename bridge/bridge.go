package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Options configure a [Bridge].
type Options struct {
	Rules Rules
	// StateInterval: a state is published at least this often even when
	// nothing changed, so consumers can judge freshness (default 30 s).
	StateInterval time.Duration
	// BatteryStateInterval: while a UPS is on battery and the source talks
	// to it, its state is published at least this often (default 5 s),
	// however slowly the source polls (a USB UPS read every 30 s). Agents
	// count dead time from the last live state, so silence on battery must
	// mean that the bridge, the broker or the UPS is gone, never that the
	// source polls slowly.
	BatteryStateInterval time.Duration
	// TickInterval is how often time-based rules (dead time, NOCOMM, state_interval) are evaluated (default 1 s).
	TickInterval time.Duration
	// EventCapacity is each sink queue's room for events.
	EventCapacity int
	// DrainTimeout bounds how long sinks may take to flush on shutdown.
	DrainTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Rules == (Rules{}) {
		o.Rules = DefaultRules()
	}
	if o.StateInterval <= 0 {
		o.StateInterval = 30 * time.Second
	}
	if o.BatteryStateInterval <= 0 {
		o.BatteryStateInterval = DefaultBatteryStateInterval
	}
	if o.TickInterval <= 0 {
		o.TickInterval = time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Bridge routes updates from sources through per-UPS trackers to sinks.
type Bridge struct {
	opts    Options
	log     *slog.Logger
	sources []Source
	sinks   []sinkEntry
	in      chan Update

	mu   sync.RWMutex
	upss map[string]*upsEntry
}

type sinkEntry struct {
	sink  Sink
	queue *Queue
}

type upsEntry struct {
	tracker  *Tracker
	owner    Source
	seq      uint64
	lastEmit time.Time
	last     *State
	fsd      bool // forced shutdown latched by the primary (primary.go)
}

// IDPattern is what UPS, source and bridge ids must match: they become MQTT
// topic levels and Home Assistant ids.
var IDPattern = regexp.MustCompile(`^[a-z0-9_-]+$`)

// New returns a bridge; add sources and sinks before Run.
func New(opts Options) *Bridge {
	opts.setDefaults()
	return &Bridge{
		opts: opts,
		log:  opts.Logger,
		in:   make(chan Update, 256),
		upss: map[string]*upsEntry{},
	}
}

// AddSource registers a source. It must be called before Run.
func (b *Bridge) AddSource(s Source) { b.sources = append(b.sources, s) }

// AddSink registers a sink with its own queue. It must be called before Run.
func (b *Bridge) AddSink(s Sink) *Queue {
	q := NewQueue(s.Name(), b.opts.EventCapacity, b.log)
	b.sinks = append(b.sinks, sinkEntry{sink: s, queue: q})
	return q
}

// Run starts sinks, then sources, and routes until ctx ends. On the way out
// sources stop first, then sinks get DrainTimeout to deliver what is queued.
func (b *Bridge) Run(ctx context.Context) error {
	sinkCtx, cancelSinks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSinks()
	var sinkWG sync.WaitGroup
	for _, se := range b.sinks {
		sinkWG.Add(1)
		go func() {
			defer sinkWG.Done()
			if err := se.sink.Run(sinkCtx, se.queue); err != nil && !errors.Is(err, context.Canceled) {
				b.log.Error("sink stopped", "sink", se.sink.Name(), "err", err)
			}
		}()
	}
	var srcWG sync.WaitGroup
	for _, s := range b.sources {
		srcWG.Add(1)
		go func() {
			defer srcWG.Done()
			b.runSource(ctx, s)
		}()
	}

	b.loop(ctx)

	srcWG.Wait()
	// Updates the sources sent before they stopped are still applied, so a
	// reading that made it into the channel is never lost on shutdown.
	for drained := false; !drained; {
		select {
		case u := <-b.in:
			b.handle(u)
		default:
			drained = true
		}
	}
	for _, se := range b.sinks {
		se.queue.Close()
	}
	done := make(chan struct{})
	go func() { sinkWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.opts.DrainTimeout):
		b.log.Warn("sinks did not drain in time; stopping them", "timeout", b.opts.DrainTimeout)
		cancelSinks()
		<-done
	}
	return nil
}

// runSource runs one source, restarting it after a pause if it fails.
func (b *Bridge) runSource(ctx context.Context, s Source) {
	for attempt := 0; ; attempt++ {
		err := s.Run(ctx, b.in)
		if ctx.Err() != nil {
			return
		}
		wait := Backoff(attempt, time.Second, time.Minute, rand.Float64)
		b.log.Error("source failed; restarting", "source", s.ID(), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// loop applies updates and evaluates the time-based rules at least every
// TickInterval. While updates arrive the rules are evaluated along with
// them (at most twice per interval) and the timer is pushed back, so a
// steady bridge wakes once per poll instead of once per poll and once per
// tick: an idle bridge's CPU is mostly such wake-ups.
func (b *Bridge) loop(ctx context.Context) {
	timer := time.NewTimer(b.opts.TickInterval)
	defer timer.Stop()
	last := time.Now()
	tick := func(now time.Time) {
		b.tick(now)
		last = now
		timer.Reset(b.opts.TickInterval)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-b.in:
			b.handle(u)
			if now := time.Now(); now.Sub(last) >= b.opts.TickInterval/2 {
				tick(now)
			}
		case now := <-timer.C:
			tick(now)
		}
	}
}

func (b *Bridge) ownerOf(sourceID string) Source {
	for _, s := range b.sources {
		if s.ID() == sourceID {
			return s
		}
	}
	return nil
}

// handle applies one update. Malformed updates are logged and dropped; the
// previous state is kept.
func (b *Bridge) handle(u Update) {
	if !IDPattern.MatchString(u.UPS) {
		b.log.Error("update dropped: bad UPS id", "source", u.Source, "ups", u.UPS, "want", IDPattern.String())
		return
	}
	now := time.Now()
	if u.Time.IsZero() {
		u.Time = now
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.upss[u.UPS]
	if e == nil {
		e = &upsEntry{tracker: NewTracker(u.UPS, b.opts.Rules), owner: b.ownerOf(u.Source)}
		b.upss[u.UPS] = e
	} else if o := b.ownerOf(u.Source); o != nil && e.owner != o && u.Kind == Reading {
		b.log.Warn("UPS id reported by two sources; the latest wins", "ups", u.UPS, "source", u.Source)
		e.owner = o
	}
	var evs []Event
	var changed, force bool
	switch u.Kind {
	case Reading:
		if u.Vars == nil {
			b.log.Error("malformed reading ignored: no variables", "source", u.Source, "ups", u.UPS)
			return
		}
		evs, changed = e.tracker.Reading(u.Time, u.Vars, u.Info)
		// On battery every poll is published, so consumers see it is live.
		force = e.tracker.State().OnBattery()
	case CommLost:
		if u.Err != nil {
			b.log.Debug("UPS communication failed", "source", u.Source, "ups", u.UPS, "err", u.Err)
		}
		evs, changed = e.tracker.CommLost(u.Time)
	case Gone:
		evs, changed = e.tracker.MarkGone(u.Time)
	default:
		b.log.Error("update dropped: unknown kind", "source", u.Source, "ups", u.UPS, "kind", int(u.Kind))
		return
	}
	b.emit(e, now, evs, changed || force)
}

func (b *Bridge) tick(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.upss {
		evs, changed := e.tracker.Tick(now)
		b.emit(e, now, evs, changed || b.stateDue(e, now))
	}
}

// DefaultBatteryStateInterval is Options.BatteryStateInterval's default.
const DefaultBatteryStateInterval = 5 * time.Second

// stateDue reports whether a state must be published again although nothing
// changed. Called with b.mu held.
func (b *Bridge) stateDue(e *upsEntry, now time.Time) bool {
	since := now.Sub(e.lastEmit)
	if since >= b.opts.StateInterval {
		return true
	}
	st := e.tracker.State()
	return st.Comm && !st.Gone && st.OnBattery() && since >= b.opts.BatteryStateInterval
}

// emit publishes the state (when due) and the events to every sink. Called
// with b.mu held.
func (b *Bridge) emit(e *upsEntry, now time.Time, evs []Event, publish bool) {
	if !publish && len(evs) == 0 {
		return
	}
	st := e.tracker.State()
	e.decorate(&st)
	e.seq++
	st.Seq = e.seq
	e.lastEmit = now
	e.last = &st
	for _, se := range b.sinks {
		se.queue.PutState(e.last)
	}
	for i := range evs {
		ev := evs[i]
		ev.State = e.last
		for _, se := range b.sinks {
			se.queue.PutEvent(&ev)
		}
		b.log.Info("ups event", "ups", ev.UPS, "event", string(ev.Type), "status", ev.Status)
	}
}

// Emit queues an event that did not come from a UPS reading (an agent's
// stage, SHUTDOWN) to every sink. It never blocks.
func (b *Bridge) Emit(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, se := range b.sinks {
		se.queue.PutEvent(&ev)
	}
}

// Snapshot returns the latest state of every UPS, sorted by id.
func (b *Bridge) Snapshot() []State {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]State, 0, len(b.upss))
	for _, e := range b.upss {
		if e.last != nil {
			out = append(out, *e.last)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UPS < out[j].UPS })
	return out
}

func (b *Bridge) owner(ups string) (Source, *State, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	e := b.upss[ups]
	if e == nil || e.owner == nil {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownUPS, ups)
	}
	return e.owner, e.last, nil
}

// InstCmd runs an instant command on a UPS through the source that reads it.
func (b *Bridge) InstCmd(ctx context.Context, ups, command, arg string) (CommandResult, error) {
	src, st, err := b.owner(ups)
	if err != nil {
		return CommandResult{}, err
	}
	c, ok := src.(Commander)
	if !ok {
		return CommandResult{}, fmt.Errorf("instant command %q on %q: %w", command, ups, ErrNotSupported)
	}
	if st != nil && st.Info != nil && !st.Info.HasCommand(command) {
		return CommandResult{}, fmt.Errorf("instant command %q on %q: %w", command, ups, ErrCommandUnknown)
	}
	res, err := c.InstCmd(ctx, ups, command, arg)
	if err != nil {
		return res, fmt.Errorf("instant command %q on %q: %w", command, ups, err)
	}
	b.log.Info("instant command run", "ups", ups, "command", command, "result", res.Status)
	return res, nil
}

// SetVar sets a writable variable through the source that reads the UPS.
func (b *Bridge) SetVar(ctx context.Context, ups, name, value string) (CommandResult, error) {
	src, _, err := b.owner(ups)
	if err != nil {
		return CommandResult{}, err
	}
	c, ok := src.(VarSetter)
	if !ok {
		return CommandResult{}, fmt.Errorf("set %q on %q: %w", name, ups, ErrNotSupported)
	}
	res, err := c.SetVar(ctx, ups, name, value)
	if err != nil {
		return res, fmt.Errorf("set %q on %q: %w", name, ups, err)
	}
	return res, nil
}

// HasCommand reports whether the UPS offers the instant command.
func (i *Info) HasCommand(name string) bool {
	for _, c := range i.Commands {
		if c.Name == name {
			return true
		}
	}
	return false
}

var _ CommandRunner = (*Bridge)(nil)
