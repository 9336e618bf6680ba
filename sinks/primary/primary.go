// Package primary is the bridge's side of the shutdown handshake, as a
// bridge sink. For each UPS of which the bridge is the primary
// (bridge.PrimaryReporter) it sets FSD when the UPS turns critical, then
// waits for every host the UPS feeds, as upsmon's primary waits for its
// secondaries:
//
//   - an agent that is offline (its Will, or a clean stop) is done;
//   - an agent that has been powering_off for host_sync is done;
//   - an agent that says nothing for host_sync counts as gone (agents
//     re-publish their state every 5 s while not idle);
//   - an agent still shutting_down (or not there yet) that keeps publishing
//     is waited for, up to max_wait after FSD;
//   - hosts a [HostCounter] reports (NUT secondaries logged in to the
//     bridge's NUT server) are waited for while they are counted, up to
//     host_sync after FSD, as upsmon's primary waits for its secondaries.
//
// Then it waits final_delay and, with kill_power, and only if the UPS is
// still not on line, sets ups.delay.shutdown to kill_power_delay where the
// UPS allows it and sends shutdown.return, so the UPS cuts its load and
// powers the hosts up again when mains returns. Every step is an event to
// every sink, and logged.
//
// Agents' states are read on the bridge's own MQTT connection: the
// primary is a listener of the MQTT sink (Subscriptions, OnReceive).
package primary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/metricname"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Bridge is what the primary needs of the bridge.
type Bridge interface {
	IsPrimary(ups string) bool
	SetFSD(ctx context.Context, ups string) error
	InstCmd(ctx context.Context, ups, command, arg string) (bridge.CommandResult, error)
	SetVar(ctx context.Context, ups, name, value string) (bridge.CommandResult, error)
	Emit(ev bridge.Event)
}

// HostCounter counts hosts fed by a UPS that the primary must wait for
// besides agents, such as NUT secondaries (upsmon) logged in to the
// bridge's own NUT server: while Hosts(ups) is above zero they are still up.
type HostCounter interface {
	Hosts(ups string) int
}

// HostCounterFunc is a function as a HostCounter.
type HostCounterFunc func(ups string) int

// Hosts implements HostCounter.
func (f HostCounterFunc) Hosts(ups string) int { return f(ups) }

// Defaults of the handshake's timings (bridge.primary.*).
const (
	DefaultHostSync       = 15 * time.Second
	DefaultMaxWait        = 10 * time.Minute
	DefaultFinalDelay     = 5 * time.Second
	DefaultKillPowerDelay = 20 * time.Second
	// DefaultMaxAgents bounds how many agents the primary tracks, so a
	// client publishing under endless agent ids cannot grow its memory.
	DefaultMaxAgents = 4096
)

// Options configure a [Primary].
type Options struct {
	Bridge Bridge
	// BridgeID is this bridge's id: an agent's supply pinned to another
	// bridge is not fed by this bridge's UPS of the same id.
	BridgeID    string
	TopicPrefix string
	// HostSync: an agent powering_off for this long is done; one silent
	// for this long counts as gone.
	HostSync time.Duration
	// MaxWait bounds the whole wait after FSD.
	MaxWait time.Duration
	// FinalDelay is waited after the hosts are done, before the kill.
	FinalDelay time.Duration
	// KillPower sends shutdown.return after the wait.
	KillPower bool
	// KillPowerDelay is set as ups.delay.shutdown before the kill where
	// the UPS allows it; 0 leaves the UPS's own delay.
	KillPowerDelay time.Duration
	// Hosts are further hosts to wait for (NUT secondaries).
	Hosts     []HostCounter
	MaxAgents int
	Logger    *slog.Logger
	// Metrics is the process's metrics set, where the primary registers
	// its own (nil: a set of its own).
	Metrics *metrics.Set
}

// Primary is the handshake sink. It is also an MQTT listener of agents'
// states (Subscriptions, OnReceive).
type Primary struct {
	opts   Options
	log    *slog.Logger
	topics mqttwire.Topics

	mu       sync.Mutex
	agents   map[string]*agent
	latest   map[string]*bridge.State
	changed  chan struct{} // closed and replaced when an agent's news arrives
	lastWarn time.Time     // rate limit of warnings about bad agent states

	// handshakes, kills and killFailures are the primary's typed metrics;
	// running is read by a gauge.
	handshakes, kills, killFailures *metrics.Counter
	running                         atomic.Int64
}

// initMetrics registers the primary's metrics as
// upsbridge_sink_<key>{sink="primary"}, the keys of Stats.
func (p *Primary) initMetrics(set *metrics.Set) {
	set = metricname.Set(set)
	name := func(key string) string { return metricname.Series("upsbridge_sink_"+key, "sink", p.Name()) }
	p.handshakes = set.GetOrCreateCounter(name("handshakes_total"))
	p.kills = set.GetOrCreateCounter(name("kills_total"))
	p.killFailures = set.GetOrCreateCounter(name("kill_failures_total"))
	set.GetOrCreateGauge(name("handshakes_running"), func() float64 { return float64(p.running.Load()) })
	set.GetOrCreateGauge(name("agents_known"), func() float64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return float64(len(p.agents))
	})
}

// Stats implements bridge.StatsReporter (/metrics, /api/state).
func (p *Primary) Stats() map[string]any {
	p.mu.Lock()
	agents := len(p.agents)
	p.mu.Unlock()
	return map[string]any{
		"agents_known":        agents,
		"handshakes_running":  p.running.Load(),
		"handshakes_total":    p.handshakes.Get(),
		"kills_total":         p.kills.Get(),
		"kill_failures_total": p.killFailures.Get(),
	}
}

// agent is what the primary knows of one agent, on its own clock.
type agent struct {
	status   string // an AgentState status, or mqttwire.Offline
	supplies []mqttwire.SupplyStatus
	dryRun   bool
	heard    time.Time // last message received
	// poweringOffSince is when powering_off was first received (zero
	// while the agent is in another status).
	poweringOffSince time.Time
}

// New returns the primary sink.
func New(opts Options) *Primary {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HostSync <= 0 {
		opts.HostSync = DefaultHostSync
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.FinalDelay < 0 {
		opts.FinalDelay = 0
	}
	if opts.MaxAgents <= 0 {
		opts.MaxAgents = DefaultMaxAgents
	}
	p := &Primary{
		opts:    opts,
		log:     opts.Logger.With("sink", "primary"),
		topics:  mqttwire.Topics{Prefix: opts.TopicPrefix},
		agents:  map[string]*agent{},
		latest:  map[string]*bridge.State{},
		changed: make(chan struct{}),
	}
	p.initMetrics(opts.Metrics)
	return p
}

var _ bridge.StatsReporter = (*Primary)(nil)

// Name implements bridge.Sink.
func (p *Primary) Name() string { return "primary" }

// Subscriptions lists the topics the primary reads: every agent's state.
func (p *Primary) Subscriptions() []string { return []string{p.topics.AllAgentStates()} }

// OnReceive takes an agent's state (retained or live) from the MQTT
// connection. It never blocks: it decodes, records and wakes waiters.
// Payloads are hostile input: bounded by mqttwire's decoder, ids checked,
// the number of agents bounded.
func (p *Primary) OnReceive(topic string, payload []byte, _ bool) {
	t := p.topics.Parse(topic)
	if t.Kind != mqttwire.KindAgentState {
		return
	}
	st, offline, err := mqttwire.DecodeAgentState(payload)
	if err == nil && !offline && st.Agent != t.ID {
		err = fmt.Errorf("agent %q on the topic of agent %q", st.Agent, t.ID)
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.warnLocked(now, "agent state ignored", "agent", t.ID, "err", err)
		return
	}
	a := p.agents[t.ID]
	if a == nil {
		if len(p.agents) >= p.opts.MaxAgents {
			p.warnLocked(now, "agent state ignored: too many agents", "agent", t.ID, "max", p.opts.MaxAgents)
			return
		}
		a = &agent{}
		p.agents[t.ID] = a
	}
	a.heard = now
	if offline {
		a.status = mqttwire.Offline // supplies kept: the host was fed by them
		a.poweringOffSince = time.Time{}
	} else {
		if st.Status == mqttwire.AgentPoweringOff {
			if a.status != mqttwire.AgentPoweringOff || a.poweringOffSince.IsZero() {
				a.poweringOffSince = now
			}
		} else {
			a.poweringOffSince = time.Time{}
		}
		a.status = st.Status
		a.supplies = st.Supplies
		a.dryRun = st.DryRun
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// warnLocked logs at most one warning a minute about hostile or broken
// agent states. Called with p.mu held.
func (p *Primary) warnLocked(now time.Time, msg string, args ...any) {
	if !p.lastWarn.IsZero() && now.Sub(p.lastWarn) < time.Minute {
		return
	}
	p.lastWarn = now
	p.log.Warn(msg+" (further such warnings suppressed for a minute)", args...)
}

// Run implements bridge.Sink: it starts a handshake when a UPS of which the
// bridge is the primary turns critical, and ends it when mains returns.
func (p *Primary) Run(ctx context.Context, q *bridge.Queue) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	running := map[string]context.CancelCauseFunc{}
	defer func() {
		for _, cancel := range running {
			cancel(context.Canceled)
		}
	}()
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return nil
		}
		if m.Kind != bridge.MessageState {
			continue
		}
		st := m.State
		p.mu.Lock()
		p.latest[st.UPS] = st
		p.mu.Unlock()
		if !p.opts.Bridge.IsPrimary(st.UPS) {
			// A secondary relays the FSD its server reports; it never
			// starts a handshake of its own.
			continue
		}
		cancel, active := running[st.UPS]
		switch {
		case st.Critical && !active:
			hctx, cancel := context.WithCancelCause(ctx)
			running[st.UPS] = cancel
			wg.Add(1)
			go func(ups string) {
				defer wg.Done()
				p.handshake(hctx, ups)
			}(st.UPS)
		case active && onLine(st):
			cancel(errMainsBack)
			delete(running, st.UPS)
		}
	}
}

var errMainsBack = errors.New("mains returned")

// onLine reports whether the UPS is on mains and not critical.
func onLine(st *bridge.State) bool {
	return st != nil && !st.Critical && st.Status.Has(bridge.OL) && !st.Status.Has(bridge.OB)
}

func (p *Primary) state(ups string) *bridge.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest[ups]
}

// emit sends one step of the handshake to every sink and logs it.
func (p *Primary) emit(ups string, typ bridge.EventType, msg string, args ...any) {
	now := time.Now()
	ev := bridge.NewEvent(ups, now, typ, "")
	if msg != "" {
		ev.Message = msg
	}
	if st := p.state(ups); st != nil {
		ev.Status = st.Status.Raw
		ev.State = st
	}
	p.opts.Bridge.Emit(ev)
	lvl := slog.LevelWarn
	if typ.Severity() == bridge.SeverityInfo {
		lvl = slog.LevelInfo
	}
	if typ == bridge.EventKillPowerFailed {
		lvl = slog.LevelError
	}
	p.log.Log(context.Background(), lvl, ev.Message, append([]any{"ups", ups, "event", string(typ)}, args...)...)
}

// verdict is one host's place in the handshake.
type verdict struct {
	done   bool
	reason string
	next   time.Time // when the verdict may change by time alone
}

// judge applies the handshake's rules to one agent at now.
func judge(a *agent, fsdAt, now time.Time, hostSync time.Duration) verdict {
	switch {
	case a.status == mqttwire.Offline:
		return verdict{done: true, reason: "offline"}
	case a.dryRun:
		return verdict{done: true, reason: "dry run: it will not power off"}
	case a.status == mqttwire.AgentPoweringOff:
		until := a.poweringOffSince.Add(hostSync)
		if !now.Before(until) {
			return verdict{done: true, reason: "powering off for host_sync " + hostSync.String()}
		}
		return verdict{reason: "powering off", next: until}
	}
	heard := a.heard
	if heard.Before(fsdAt) {
		heard = fsdAt
	}
	until := heard.Add(hostSync)
	if !now.Before(until) {
		return verdict{done: true, reason: fmt.Sprintf("said nothing for host_sync %s (last status %s): counted as gone", hostSync, a.status)}
	}
	return verdict{reason: a.status, next: until}
}

// feeds reports whether the agent's supplies include this bridge's ups.
func (p *Primary) feeds(a *agent, ups string) bool {
	for _, s := range a.supplies {
		if s.UPS == ups && s.PowerValue > 0 && (s.Bridge == "" || s.Bridge == p.opts.BridgeID) {
			return true
		}
	}
	return false
}

// look judges every agent fed by ups; it returns the verdicts by agent id,
// the earliest time one may change, and the channel closed on news.
func (p *Primary) look(ups string, fsdAt, now time.Time) (map[string]verdict, time.Time, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]verdict{}
	var next time.Time
	for id, a := range p.agents {
		if !p.feeds(a, ups) {
			continue
		}
		v := judge(a, fsdAt, now, p.opts.HostSync)
		out[id] = v
		if !v.done && (next.IsZero() || v.next.Before(next)) {
			next = v.next
		}
	}
	return out, next, p.changed
}

func (p *Primary) secondaries(ups string) int {
	n := 0
	for _, h := range p.opts.Hosts {
		n += h.Hosts(ups)
	}
	return n
}

func sortedIDs(m map[string]verdict, done bool) []string {
	var out []string
	for id, v := range m {
		if v.done == done {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// handshake runs the steps after ups turned critical, until the kill or
// until ctx ends (mains returned, or the bridge stops).
func (p *Primary) handshake(ctx context.Context, ups string) {
	p.handshakes.Inc()
	p.running.Add(1)
	defer p.running.Add(-1)
	fsdAt := time.Now()
	if err := p.opts.Bridge.SetFSD(ctx, ups); err != nil {
		// The latch is published even when the server refused: agents
		// learn FSD from the bridge's states.
		p.log.Error("set FSD", "ups", ups, "err", err)
	}
	vs, _, _ := p.look(ups, fsdAt, fsdAt)
	hosts := sortedIDs(vs, false)
	hosts = append(hosts, sortedIDs(vs, true)...)
	sort.Strings(hosts)
	p.emit(ups, bridge.EventHostSync,
		fmt.Sprintf("UPS %s: forced shutdown; waiting for the hosts it feeds to power off (agents: %s; NUT secondaries: %d; max_wait %s)",
			ups, list(hosts), p.secondaries(ups), p.opts.MaxWait),
		"agents", hosts, "host_sync", p.opts.HostSync, "max_wait", p.opts.MaxWait)

	deadline := fsdAt.Add(p.opts.MaxWait)
	secUntil := fsdAt.Add(p.opts.HostSync)
	secReported := false
	reported := map[string]bool{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		vs, next, changed := p.look(ups, fsdAt, now)
		for _, id := range sortedIDs(vs, true) {
			if !reported[id] {
				reported[id] = true
				p.emit(ups, bridge.EventHostDown, fmt.Sprintf("UPS %s: host %s is down: %s", ups, id, vs[id].reason),
					"agent", id, "reason", vs[id].reason, "after", now.Sub(fsdAt))
			}
		}
		waiting := sortedIDs(vs, false)
		// NUT secondaries are waited for as upsmon's primary waits for
		// its secondaries: until they log out or host_sync passes (a
		// LOGIN has no status telling a stopping host from a dead one).
		sec := 0
		if now.Before(secUntil) {
			sec = p.secondaries(ups)
		} else if !secReported {
			secReported = true
			if n := p.secondaries(ups); n > 0 {
				p.log.Warn("host_sync passed; not waiting for NUT secondaries still logged in", "ups", ups, "secondaries", n, "host_sync", p.opts.HostSync)
			}
		}
		if len(waiting) == 0 && sec == 0 {
			p.emit(ups, bridge.EventHostsDown, fmt.Sprintf("UPS %s: every host it feeds is down (%s after FSD)", ups, now.Sub(fsdAt).Round(time.Millisecond)),
				"after", now.Sub(fsdAt))
			break
		}
		if !now.Before(deadline) {
			var why []string
			for _, id := range waiting {
				why = append(why, id+" ("+vs[id].reason+")")
			}
			p.emit(ups, bridge.EventHostSyncTimeout,
				fmt.Sprintf("UPS %s: max_wait %s passed; still up: agents %s, NUT secondaries %d", ups, p.opts.MaxWait, list(why), sec),
				"waiting", waiting, "secondaries", sec)
			break
		}
		wake := deadline
		if !next.IsZero() && next.Before(wake) {
			wake = next
		}
		if sec > 0 {
			if now.Add(time.Second).Before(wake) {
				wake = now.Add(time.Second) // counters have no news channel
			}
			if secUntil.Before(wake) {
				wake = secUntil
			}
		}
		timer.Reset(wake.Sub(now))
		select {
		case <-ctx.Done():
			p.ended(ctx, ups)
			return
		case <-changed:
			timer.Stop() // Go 1.23 timers: no stale value to drain
		case <-timer.C:
		}
	}

	if p.opts.FinalDelay > 0 {
		p.log.Info("waiting final_delay before the end of the handshake", "ups", ups, "final_delay", p.opts.FinalDelay)
		timer.Reset(p.opts.FinalDelay)
		select {
		case <-ctx.Done():
			p.ended(ctx, ups)
			return
		case <-timer.C:
		}
	}
	if !p.opts.KillPower {
		p.log.Info("handshake done; kill_power is off, so the UPS keeps powering its load until its battery is empty", "ups", ups)
		return
	}
	p.kill(ctx, ups)
}

// ended logs why a handshake stopped before its end.
func (p *Primary) ended(ctx context.Context, ups string) {
	if errors.Is(context.Cause(ctx), errMainsBack) {
		if p.opts.KillPower {
			p.emit(ups, bridge.EventKillPowerSkipped, "", "reason", "mains returned during the handshake")
		} else {
			p.log.Info("mains returned during the handshake", "ups", ups)
		}
		return
	}
	p.log.Info("handshake stopped: the bridge is stopping", "ups", ups)
}

// Kill attempts: a UPS that does not answer once (a busy driver) gets a
// few more tries while it is still not on line.
const (
	killAttempts = 3
	killRetry    = 5 * time.Second
)

// kill asks the UPS to cut its load and return with mains, only if it is
// still not on line.
func (p *Primary) kill(ctx context.Context, ups string) {
	st := p.state(ups)
	if onLine(st) {
		p.emit(ups, bridge.EventKillPowerSkipped, "", "reason", "on line before the kill")
		return
	}
	if d := p.opts.KillPowerDelay; d > 0 {
		secs := strconv.Itoa(int(math.Ceil(d.Seconds())))
		if st != nil && st.Info != nil && writable(st.Info, "ups.delay.shutdown") {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := p.opts.Bridge.SetVar(cctx, ups, "ups.delay.shutdown", secs)
			cancel()
			if err != nil || !accepted(res) {
				p.log.Warn("kill_power_delay: could not set ups.delay.shutdown; the UPS's own delay applies", "ups", ups, "want", secs, "result", res.Status, "detail", res.Detail, "err", err)
			} else {
				p.log.Info("kill_power_delay set", "ups", ups, "ups.delay.shutdown", secs, "result", res.Status)
			}
		} else {
			own := ""
			if st != nil {
				own = st.Vars["ups.delay.shutdown"]
			}
			p.log.Warn("kill_power_delay: ups.delay.shutdown is not writable on this UPS; its own delay applies", "ups", ups, "want", secs, "ups.delay.shutdown", own)
		}
	}
	var lastErr error
	for attempt := 1; attempt <= killAttempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(killRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				p.ended(ctx, ups)
				return
			case <-t.C:
			}
			if onLine(p.state(ups)) {
				p.emit(ups, bridge.EventKillPowerSkipped, "", "reason", "on line before a retry of the kill")
				return
			}
		}
		p.log.Warn("kill power: sending shutdown.return", "ups", ups, "attempt", attempt)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := p.opts.Bridge.InstCmd(cctx, ups, "shutdown.return", "")
		cancel()
		if err == nil && accepted(res) {
			p.kills.Inc()
			p.emit(ups, bridge.EventKillPower, "", "result", res.Status, "attempt", attempt)
			return
		}
		if err == nil {
			err = fmt.Errorf("the UPS answered %s %s", res.Status, res.Detail)
		}
		lastErr = err
		p.log.Warn("kill power: shutdown.return failed", "ups", ups, "attempt", attempt, "err", err)
		if errors.Is(err, bridge.ErrCommandUnknown) || errors.Is(err, bridge.ErrNotSupported) {
			break // no retry can help
		}
	}
	p.killFailures.Inc()
	p.emit(ups, bridge.EventKillPowerFailed, fmt.Sprintf("UPS %s: could not cut the load: %v", ups, lastErr), "err", lastErr)
}

func accepted(r bridge.CommandResult) bool { return r.Status == "SUCCESS" || r.Status == "PENDING" }

func writable(info *bridge.Info, name string) bool {
	for _, w := range info.Writable {
		if w.Name == name {
			return true
		}
	}
	return false
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
