// Package policy is the shutdown agent's state machine: a staged,
// cancellable policy that decides when a host powers off from the news its
// intake accepted, as carefully as NUT's upsmon.
//
// The policy does no I/O and reads no clock. It is fed [news.News] and
// instants of the agent's own monotonic clock ([Now]); a payload's ts and
// the agent's wall clock are only carried for people. Two rules make it
// safe against what comes from outside:
//
//   - History is not news: a state delivered from the broker's retained
//     store (Live false) is shown but never moves the host toward power-off.
//     Without live news the policy holds and warns.
//   - Only the bridge's own signed word counts: dead time runs from the last
//     live state whose comm_ok is true. Availability topics and the agent's
//     broker connection are informational: they give warnings and never
//     start, shorten or lengthen dead time. A broker that goes away
//     therefore looks like silence: on battery, silence for dead_time is
//     critical (upsmon's rule for a upsd that vanishes); on mains it only
//     warns.
package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Now is one instant of the agent's clock. Mono is the monotonic reading
// (time since the clock's origin, which is the boot on Linux so that it
// survives an agent restart); every decision uses it. Wall is the wall
// clock, for people only.
type Now struct {
	Mono time.Duration
	Wall time.Time
}

// Stage is one stage of the policy.
type Stage struct {
	Name         string
	OnBatteryFor time.Duration
	ChargeBelow  float64
	RuntimeBelow time.Duration
	Run, Undo    []string
	// Final is the poweroff stage: a critical host always triggers it, and
	// once started it is never cancelled (except by the resume re-check).
	Final bool
}

// Supply is a UPS feeding the host.
type Supply struct {
	UPS   string
	Power int
	// Bridge, when set, is the only bridge whose states count for this
	// supply.
	Bridge string
}

// Config is the policy's configuration.
type Config struct {
	Supplies    []Supply
	MinSupplies int
	// DeadTime: no live good state for this long while last seen on
	// battery is critical.
	DeadTime time.Duration
	// MaxStateAge: no live good state for this long makes the host
	// unprotected (reported, never acted on).
	MaxStateAge time.Duration
	// LowBatteryGrace and OffDuration are upsmon's OBLBDURATION and
	// OFFDURATION (bridge.CriticalRules).
	LowBatteryGrace time.Duration
	OffDuration     time.Duration
	// Stages in order; the last is final (a poweroff stage is added when
	// the configuration has none).
	Stages []Stage
	// DryRun: a rehearsal; its final stage is cancelled when mains returns.
	DryRun bool
}

// Rules returns the definition of critical this policy applies.
func (c Config) Rules() bridge.CriticalRules {
	return bridge.CriticalRules{DeadTime: c.DeadTime, OffDuration: c.OffDuration, LowBatteryGrace: c.LowBatteryGrace}
}

// ActionKind says what an [Action] asks for.
type ActionKind int

// Action kinds.
const (
	// ActOutageStart: the host went on battery.
	ActOutageStart ActionKind = iota
	// ActStage: run a non-final stage's command.
	ActStage
	// ActPoweroff: the final stage: publish shutting_down, run its
	// command, wait final_delay, publish powering_off, power off.
	ActPoweroff
	// ActUndo: mains returned: run a stage's undo command.
	ActUndo
	// ActOutageEnd: mains returned before the host powered off.
	ActOutageEnd
	// ActCancelFinal: a final stage resumed after a restart (or a dry
	// run's final stage) is cancelled because live news says mains is back.
	ActCancelFinal
	// ActWarn: something is wrong with the news (logged, published).
	ActWarn
)

func (k ActionKind) String() string {
	switch k {
	case ActOutageStart:
		return "outage_start"
	case ActStage:
		return "stage"
	case ActPoweroff:
		return "poweroff"
	case ActUndo:
		return "undo"
	case ActOutageEnd:
		return "outage_end"
	case ActCancelFinal:
		return "cancel_final"
	case ActWarn:
		return "warn"
	}
	return fmt.Sprintf("action(%d)", int(k))
}

// Action is one decision of the policy.
type Action struct {
	Kind    ActionKind
	Stage   string
	Command []string
	UPS     string // the supply concerned, if one
	Reason  string
	// Resumed is set on an ActPoweroff that continues a final stage
	// started before a restart.
	Resumed bool
}

// Progress is what survives an agent restart (state_file). Instants are
// on the agent's monotonic clock, comparable only within one boot; the
// wall times beside them are for people.
type Progress struct {
	Outage          bool          `json:"outage"`
	OutageStart     time.Duration `json:"outage_start_mono_ns"`
	OutageStartWall time.Time     `json:"outage_start,omitzero"`
	Ran             []string      `json:"ran"`
	Final           bool          `json:"final_started"`
	FinalWall       time.Time     `json:"final_started_at,omitzero"`
	// PoweringOff: the final stage's commands and final_delay are done;
	// PoweringOffWall is when the OS was asked (or, in a dry run, would
	// have been).
	PoweringOff     bool      `json:"powering_off"`
	PoweringOffWall time.Time `json:"powering_off_at,omitzero"`
}

type supply struct {
	spec Supply
	// last is the latest reading, live or history, for display.
	last    news.Reading
	hasLast bool
	// live: a live state arrived since start; liveAt when the last did.
	live   bool
	liveAt time.Duration
	// lastLive is the latest live reading (it may say comm_ok false).
	lastLive news.Reading
	// good is the latest live reading with comm_ok true, received at goodAt.
	good    news.Reading
	hasGood bool
	goodAt  time.Duration
	// lbSince and offSince: since when OB+LB and OFF are reported live.
	lbSince, offSince time.Duration
	lbOn, offOn       bool
	upsOffline        bool // informational
}

// Policy is the agent's state machine. It is not safe for concurrent use.
type Policy struct {
	cfg      Config
	start    time.Duration
	supplies []*supply
	byUPS    map[string]*supply
	// informational: the broker connection and bridges' availability.
	disconnected bool
	bridges      map[string]bool // bridge id -> online
	prog         Progress
	changed      bool // progress changed since the last TakeProgress
	// resumeFinal: the final stage had started before a restart and is
	// being re-checked against live news.
	resumeFinal bool
	warned      map[string]string // warning key -> text last given
}

// New returns a policy started at now, resuming prog (which may be zero).
func New(cfg Config, now Now, prog Progress) *Policy {
	if len(cfg.Stages) == 0 || !cfg.Stages[len(cfg.Stages)-1].Final {
		cfg.Stages = append(slices.Clone(cfg.Stages), Stage{Name: "poweroff", Final: true})
	}
	p := &Policy{cfg: cfg, start: now.Mono, byUPS: map[string]*supply{}, bridges: map[string]bool{},
		warned: map[string]string{}, prog: prog}
	p.prog.Ran = slices.Clone(prog.Ran)
	p.resumeFinal = prog.Final
	for _, s := range cfg.Supplies {
		sp := &supply{spec: s}
		p.supplies = append(p.supplies, sp)
		p.byUPS[s.UPS] = sp
	}
	return p
}

// Stages returns the stages, the final one last.
func (p *Policy) Stages() []Stage { return p.cfg.Stages }

// Observe applies one piece of news received at the monotonic instant at.
// It returns warnings about news that is not used.
func (p *Policy) Observe(n news.News, at time.Duration) []Action {
	switch n.Kind {
	case news.KindConnection:
		p.disconnected = !n.Online
	case news.KindBridgeAvailability:
		p.bridges[n.Bridge] = n.Online
	case news.KindUPSAvailability:
		if s := p.byUPS[n.UPS]; s != nil {
			s.upsOffline = !n.Online
		}
	case news.KindConflict:
		// Given once per distinct conflict (the intake rate-limits and
		// logs every occurrence).
		return p.warn(nil, "conflict "+n.UPS, n.UPS, "two bridges publish one UPS id: "+n.Detail)
	case news.KindState:
		s := p.byUPS[n.UPS]
		if s == nil {
			return nil
		}
		r := n.Reading
		if s.spec.Bridge != "" && r.Bridge != s.spec.Bridge {
			return []Action{{Kind: ActWarn, UPS: n.UPS, Reason: fmt.Sprintf("state from bridge %q ignored: the supply is pinned to bridge %q", r.Bridge, s.spec.Bridge)}}
		}
		s.last, s.hasLast = r, true
		if !n.Live {
			// History: shown, never acted on.
			return nil
		}
		s.live, s.liveAt, s.lastLive = true, at, r
		if !r.CommOK {
			return nil
		}
		s.good, s.hasGood, s.goodAt = r, true, at
		lb := r.Flags.Has(bridge.OB) && r.Flags.Has(bridge.LB)
		if lb && !s.lbOn {
			s.lbSince = at
		}
		s.lbOn = lb
		off := r.Flags.Has(bridge.OFF)
		if off && !s.offOn {
			s.offSince = at
		}
		s.offOn = off
	}
	return nil
}

// critical reports whether a supply is critical at now, and why. Only live
// news counts.
func (p *Policy) critical(s *supply, now time.Duration) (bool, string) {
	if !s.live {
		return false, ""
	}
	// FSD and the bridge's own verdict are the bridge's word even when it
	// has lost the UPS (the FSD latch is published with comm_ok false).
	if s.lastLive.Flags.Has(bridge.FSD) {
		return true, "forced shutdown (FSD)"
	}
	if s.lastLive.Critical {
		return true, "critical according to bridge " + s.lastLive.Bridge
	}
	if !s.hasGood {
		return false, ""
	}
	in := bridge.CriticalInput{
		Status: s.good.Flags,
		// Any gap since the last good state is lost communication: on
		// battery a bridge publishes every poll, so a gap longer than
		// dead_time means the bridge, the broker or the UPS is gone.
		CommLost:  true,
		SinceGood: now - s.goodAt,
	}
	if s.lbOn {
		in.LowBatteryFor = now - s.lbSince
	}
	if s.offOn {
		in.OffFor = now - s.offSince
	}
	return bridge.Critical(p.cfg.Rules(), in)
}

// onBattery reports whether the last good live state of a supply said OB.
func (s *supply) onBattery() bool { return s.hasGood && s.good.Flags.Has(bridge.OB) }

// host is the sums of a moment.
type host struct {
	okSum, mainsSum int
	why, whyUPS     string
	allKnown        bool // every supply has a live good state since start
	mainsKnown      int  // power of supplies whose live good state says on mains
	anyCritical     bool
}

func (p *Policy) host(now time.Duration) host {
	h := host{allKnown: true}
	for _, s := range p.supplies {
		crit, reason := p.critical(s, now)
		if !s.hasGood && s.spec.Power > 0 {
			h.allKnown = false
		}
		if crit {
			if s.spec.Power > 0 {
				h.anyCritical = true
			}
			if h.why == "" && s.spec.Power > 0 {
				h.why, h.whyUPS = reason, s.spec.UPS
			}
			continue
		}
		h.okSum += s.spec.Power
		// A supply without live news counts as on mains: silence never
		// starts an outage.
		if !s.onBattery() {
			h.mainsSum += s.spec.Power
			if s.hasGood {
				h.mainsKnown += s.spec.Power
			}
		}
	}
	return h
}

// Evaluate applies the passing of time and returns what to do now.
func (p *Policy) Evaluate(now Now) []Action {
	acts := p.warnings(now.Mono)
	h := p.host(now.Mono)
	minS := p.cfg.MinSupplies
	if p.prog.Final {
		return append(acts, p.evaluateFinal(now, h)...)
	}
	if minS > 0 && h.okSum < minS {
		acts = append(acts, p.startOutage(now, h.whyUPS, h.why)...)
		return append(acts, p.fire(now, len(p.cfg.Stages)-1, h.whyUPS, fmt.Sprintf("supply %s is critical (%s): powered supplies %d < min_supplies %d", h.whyUPS, h.why, h.okSum, minS), true)...)
	}
	if minS > 0 && h.mainsSum < minS {
		acts = append(acts, p.startOutage(now, "", fmt.Sprintf("supplies on mains %d < min_supplies %d", h.mainsSum, minS))...)
		// Fire the furthest stage whose condition holds, and every stage
		// before it that has not run, in order.
		for i := len(p.cfg.Stages) - 1; i >= 0; i-- {
			if p.ran(p.cfg.Stages[i].Name) {
				break
			}
			if reason, ok := p.holds(p.cfg.Stages[i], now.Mono); ok {
				acts = append(acts, p.fire(now, i, "", reason, false)...)
				break
			}
		}
		return acts
	}
	if p.prog.Outage {
		if !h.allKnown {
			// Resumed mid-outage without live news of every supply: hold,
			// never undo on silence.
			return acts
		}
		acts = append(acts, p.undos()...)
		acts = append(acts, Action{Kind: ActOutageEnd, Reason: fmt.Sprintf("mains returned after %s", (now.Mono - p.prog.OutageStart).Round(time.Second))})
		p.reset()
	}
	return acts
}

// evaluateFinal decides about a final stage that has started: normally it
// is never cancelled; resumed after a restart it is re-checked against live
// news; in a dry run it ends when mains returns.
func (p *Policy) evaluateFinal(now Now, h host) []Action {
	minS := p.cfg.MinSupplies
	critical := minS > 0 && h.okSum < minS
	onMains := h.allKnown && !h.anyCritical && (minS == 0 || h.mainsKnown >= minS)
	if p.resumeFinal {
		switch {
		case critical:
			p.resumeFinal = false
			return []Action{p.finalAction(len(p.cfg.Stages)-1, h.whyUPS, "resumed after a restart: live news says critical ("+h.why+")", true)}
		case onMains:
			p.resumeFinal = false
			acts := []Action{{Kind: ActCancelFinal, Reason: "the final stage had started before a restart, but live news says every supply is on line: cancelled"}}
			acts = append(acts, p.undos()...)
			acts = append(acts, Action{Kind: ActOutageEnd, Reason: "mains returned; final stage cancelled after a restart"})
			p.reset()
			return acts
		case p.liveOnBattery():
			p.resumeFinal = false
			return []Action{p.finalAction(len(p.cfg.Stages)-1, "", "resumed after a restart: live news says the outage goes on", true)}
		case now.Mono-p.start >= p.cfg.DeadTime:
			p.resumeFinal = false
			return []Action{p.finalAction(len(p.cfg.Stages)-1, "", fmt.Sprintf("resumed after a restart: no live news within dead_time %s", p.cfg.DeadTime), true)}
		}
		return nil
	}
	if p.cfg.DryRun && onMains {
		reason := "dry run: mains returned"
		if p.prog.PoweringOff {
			reason += "; would have powered off at " + mqttwire.FormatTime(p.prog.PoweringOffWall)
		} else if !p.prog.FinalWall.IsZero() {
			reason += "; the final stage started at " + mqttwire.FormatTime(p.prog.FinalWall)
		}
		acts := []Action{{Kind: ActCancelFinal, Reason: reason}}
		acts = append(acts, p.undos()...)
		acts = append(acts, Action{Kind: ActOutageEnd, Reason: reason})
		p.reset()
		return acts
	}
	return nil
}

// liveOnBattery reports whether some supply with a power value has a live
// good state since start saying it is on battery.
func (p *Policy) liveOnBattery() bool {
	for _, s := range p.supplies {
		if s.spec.Power > 0 && s.onBattery() {
			return true
		}
	}
	return false
}

func (p *Policy) reset() {
	p.prog = Progress{}
	p.resumeFinal = false
	p.changed = true
}

func (p *Policy) startOutage(now Now, ups, reason string) []Action {
	if p.prog.Outage {
		return nil
	}
	p.prog.Outage, p.prog.OutageStart, p.prog.OutageStartWall = true, now.Mono, now.Wall
	p.changed = true
	return []Action{{Kind: ActOutageStart, UPS: ups, Reason: reason}}
}

// undos returns the undo of every non-final stage that ran, newest first.
func (p *Policy) undos() []Action {
	var acts []Action
	for i := len(p.prog.Ran) - 1; i >= 0; i-- {
		st := p.stage(p.prog.Ran[i])
		if st != nil && !st.Final && len(st.Undo) > 0 {
			acts = append(acts, Action{Kind: ActUndo, Stage: st.Name, Command: st.Undo, Reason: "mains returned"})
		}
	}
	return acts
}

// fire starts every stage up to index i that has not run, in order; critical
// skips straight to the final stage.
func (p *Policy) fire(now Now, i int, ups, reason string, critical bool) []Action {
	var acts []Action
	for j := 0; j <= i; j++ {
		st := p.cfg.Stages[j]
		if p.ran(st.Name) || (critical && !st.Final) {
			continue
		}
		p.prog.Ran = append(p.prog.Ran, st.Name)
		p.changed = true
		if st.Final {
			p.prog.Final, p.prog.FinalWall = true, now.Wall
			return append(acts, p.finalAction(j, ups, reason, false))
		}
		acts = append(acts, Action{Kind: ActStage, Stage: st.Name, Command: st.Run, UPS: ups, Reason: reason})
	}
	return acts
}

func (p *Policy) finalAction(i int, ups, reason string, resumed bool) Action {
	st := p.cfg.Stages[i]
	return Action{Kind: ActPoweroff, Stage: st.Name, Command: st.Run, UPS: ups, Reason: reason, Resumed: resumed}
}

// PoweringOff records that the final stage's commands and final_delay are
// done and the OS is being asked to power off (or, in a dry run, would be).
func (p *Policy) PoweringOff(now Now) {
	if !p.prog.Final || p.prog.PoweringOff {
		return
	}
	p.prog.PoweringOff, p.prog.PoweringOffWall = true, now.Wall
	p.changed = true
}

func (p *Policy) ran(name string) bool { return slices.Contains(p.prog.Ran, name) }

func (p *Policy) stage(name string) *Stage {
	for i := range p.cfg.Stages {
		if p.cfg.Stages[i].Name == name {
			return &p.cfg.Stages[i]
		}
	}
	return nil
}

// holds reports whether any condition of a stage holds at now. Charge and
// runtime come from live good states only.
func (p *Policy) holds(st Stage, now time.Duration) (string, bool) {
	if st.OnBatteryFor > 0 && now-p.prog.OutageStart >= st.OnBatteryFor {
		return fmt.Sprintf("on battery for %s", st.OnBatteryFor), true
	}
	for _, s := range p.supplies {
		if !s.onBattery() {
			continue
		}
		r := s.good
		if st.ChargeBelow > 0 && r.HasCharge && r.Charge < st.ChargeBelow {
			return fmt.Sprintf("%s battery charge %.0f%% < %.0f%%", s.spec.UPS, r.Charge, st.ChargeBelow), true
		}
		if st.RuntimeBelow > 0 && r.HasRuntime && r.Runtime < st.RuntimeBelow {
			return fmt.Sprintf("%s runtime %s < %s", s.spec.UPS, r.Runtime, st.RuntimeBelow), true
		}
	}
	return "", false
}

// current reports whether news of a supply is current at now: live states
// keep arriving and the bridge says it talks to the UPS.
func (p *Policy) current(s *supply, now time.Duration) (bool, string) {
	switch {
	case !s.live && s.hasLast:
		return false, "only retained history since start (no live state yet)"
	case !s.live:
		return false, "no live state since start"
	case !s.lastLive.CommOK:
		return false, "bridge " + s.lastLive.Bridge + " has lost the UPS (comm_ok false)"
	case now-s.goodAt > p.cfg.MaxStateAge:
		return false, fmt.Sprintf("no live state for more than max_state_age %s", p.cfg.MaxStateAge)
	}
	return true, ""
}

// Protected reports whether the agent can protect the host at now: every
// supply has had a live good state within max_state_age. Reason lists what
// is missing, sorted by UPS id.
func (p *Policy) Protected(now time.Duration) (bool, string) {
	var why []string
	for _, s := range p.sorted() {
		switch {
		case !s.live:
			why = append(why, fmt.Sprintf("ups %s: no live state since start", s.spec.UPS))
		case !s.hasGood:
			why = append(why, fmt.Sprintf("ups %s: bridge %s has not reached the UPS since start (comm_ok false)", s.spec.UPS, s.lastLive.Bridge))
		case now-s.goodAt <= p.cfg.MaxStateAge:
		case !s.lastLive.CommOK:
			why = append(why, fmt.Sprintf("ups %s: bridge %s has lost the UPS (comm_ok false) for more than max_state_age %s", s.spec.UPS, s.lastLive.Bridge, p.cfg.MaxStateAge))
		default:
			why = append(why, fmt.Sprintf("ups %s: no live state for more than max_state_age %s", s.spec.UPS, p.cfg.MaxStateAge))
		}
	}
	return len(why) == 0, strings.Join(why, "; ")
}

func (p *Policy) sorted() []*supply {
	out := slices.Clone(p.supplies)
	sort.Slice(out, func(i, j int) bool { return out[i].spec.UPS < out[j].spec.UPS })
	return out
}

// warn gives a warning under key once, until its text changes; an empty
// text clears it.
func (p *Policy) warn(acts []Action, key, ups, text string) []Action {
	if p.warned[key] == text {
		return acts
	}
	p.warned[key] = text
	if text == "" {
		return acts
	}
	return append(acts, Action{Kind: ActWarn, UPS: ups, Reason: text})
}

// warnings gives each problem with the news once, in a fixed order.
func (p *Policy) warnings(now time.Duration) []Action {
	var acts []Action
	conn := ""
	if p.disconnected {
		conn = "broker connection lost: no live news (dead time keeps running from the last live state)"
	}
	acts = p.warn(acts, "conn", "", conn)
	started := now-p.start >= p.cfg.DeadTime
	relevant := map[string]bool{}
	for _, s := range p.sorted() {
		if s.spec.Bridge != "" {
			relevant[s.spec.Bridge] = true
		}
		if s.hasLast && s.last.Bridge != "" {
			relevant[s.last.Bridge] = true
		}
		w := ""
		if ok, why := p.current(s, now); !ok && (s.live || started) {
			w = "communication lost: " + why
			switch {
			case !s.hasGood:
				w += ": holding, never shutting down on silence"
			case !s.onBattery():
				w += " (last seen on mains: warning only)"
			default:
				w += fmt.Sprintf(" (last seen on battery: critical after dead_time %s)", p.cfg.DeadTime)
			}
		}
		acts = p.warn(acts, "ups "+s.spec.UPS, s.spec.UPS, w)
		a := ""
		if s.upsOffline {
			a = "the UPS's availability topic says offline (informational)"
		}
		acts = p.warn(acts, "avail "+s.spec.UPS, s.spec.UPS, a)
	}
	ids := make([]string, 0, len(p.bridges))
	for b := range p.bridges {
		ids = append(ids, b)
	}
	sort.Strings(ids)
	for _, b := range ids {
		w := ""
		if !p.bridges[b] && relevant[b] {
			w = "bridge " + b + " says offline (informational)"
		}
		acts = p.warn(acts, "bridge "+b, "", w)
	}
	return acts
}

// TakeProgress returns the progress and whether it changed since the last
// call (so the agent writes state_file only when needed).
func (p *Policy) TakeProgress() (Progress, bool) {
	c := p.changed
	p.changed = false
	pr := p.prog
	pr.Ran = slices.Clone(pr.Ran)
	return pr, c
}

// Snapshot is the agent's status at one moment.
type Snapshot struct {
	Status      string
	Stage       string
	NextStage   string
	NextStageIn *time.Duration
	Supplies    []mqttwire.SupplyStatus
	Protected   bool
	Reason      string
	Outage      bool
	OutageStart time.Time // wall, for people
}

// Snapshot describes the agent at now.
func (p *Policy) Snapshot(now time.Duration) Snapshot {
	var sn Snapshot
	switch {
	case p.prog.PoweringOff:
		sn.Status = mqttwire.AgentPoweringOff
	case p.prog.Final:
		sn.Status = mqttwire.AgentShuttingDown
	case !p.prog.Outage:
		sn.Status = mqttwire.AgentIdle
	case len(p.prog.Ran) > 0:
		sn.Status = mqttwire.AgentStaging
	default:
		sn.Status = mqttwire.AgentOnBattery
	}
	sn.Outage, sn.OutageStart = p.prog.Outage, p.prog.OutageStartWall
	if n := len(p.prog.Ran); n > 0 {
		sn.Stage = p.prog.Ran[n-1]
	}
	if !p.prog.Final && p.prog.Outage {
		for _, st := range p.cfg.Stages {
			if p.ran(st.Name) {
				continue
			}
			sn.NextStage = st.Name
			if st.OnBatteryFor > 0 {
				d := max(p.prog.OutageStart+st.OnBatteryFor-now, 0)
				sn.NextStageIn = &d
			}
			break
		}
	}
	for _, s := range p.sorted() {
		crit, _ := p.critical(s, now)
		cur, _ := p.current(s, now)
		ss := mqttwire.SupplyStatus{UPS: s.spec.UPS, Bridge: s.spec.Bridge, PowerValue: s.spec.Power, Critical: crit, Current: cur}
		if s.hasLast {
			ss.Status, ss.OnBattery = s.last.Status, s.last.Flags.Has(bridge.OB)
			if ss.Bridge == "" {
				ss.Bridge = s.last.Bridge
			}
		}
		sn.Supplies = append(sn.Supplies, ss)
	}
	sn.Protected, sn.Reason = p.Protected(now)
	return sn
}

// NextDeadline returns the earliest instant after now at which Evaluate
// could decide something new without news (a stage's time, a dead time, a
// grace), or ok false when there is none.
func (p *Policy) NextDeadline(now time.Duration) (next time.Duration, ok bool) {
	consider := func(t time.Duration) {
		if t > now && (!ok || t < next) {
			next, ok = t, true
		}
	}
	if p.prog.Outage && !p.prog.Final {
		for _, st := range p.cfg.Stages {
			if !p.ran(st.Name) && st.OnBatteryFor > 0 {
				consider(p.prog.OutageStart + st.OnBatteryFor)
			}
		}
	}
	if p.resumeFinal {
		consider(p.start + p.cfg.DeadTime)
	}
	for _, s := range p.supplies {
		if s.onBattery() {
			consider(s.goodAt + p.cfg.DeadTime + 1)
		}
		if s.offOn && p.cfg.OffDuration >= 0 {
			consider(s.offSince + max(p.cfg.OffDuration, 1))
		}
		if s.lbOn {
			consider(s.lbSince + p.cfg.LowBatteryGrace)
		}
		if s.hasGood {
			consider(s.goodAt + p.cfg.MaxStateAge + 1)
		}
	}
	for _, s := range p.supplies {
		if !s.live {
			// The warning about a supply without live news since start.
			consider(p.start + p.cfg.DeadTime)
			break
		}
	}
	return next, ok
}
