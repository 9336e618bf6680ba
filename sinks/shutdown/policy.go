// Package shutdown is the shutdown agent: a staged, cancellable policy that
// powers a host off from the bridge's retained MQTT state, as safely as NUT's
// upsmon, plus the executor that runs its decisions and the bridge's side of
// the FSD handshake (Primary).
//
// The policy ([Policy]) is a pure state machine: it is fed [srcmqtt.News]
// and the current time and returns [Action]s. It does no I/O and reads no
// clock, so every rule is tested with deterministic time.
package shutdown

import (
	"fmt"
	"sort"
	"time"

	srcmqtt "github.com/upsbridge/upsbridge/sources/mqtt"
)

// OffDuration is upsmon's OFFDURATION: OFF for longer makes a UPS critical.
const OffDuration = 30 * time.Second

// Stage is one stage of the policy.
type Stage struct {
	Name         string
	OnBatteryFor time.Duration
	ChargeBelow  float64
	RuntimeBelow time.Duration
	Run, Undo    []string
	// Final is the poweroff stage: a critical host always triggers it, and
	// once started it is never cancelled.
	Final bool
}

// SupplySpec is a UPS feeding the host.
type SupplySpec struct {
	UPS   string
	Power int
}

// PolicyConfig is the policy's configuration.
type PolicyConfig struct {
	Supplies    []SupplySpec
	MinSupplies int
	DeadTime    time.Duration
	MaxStateAge time.Duration
	// Stages in order; the last is final (a poweroff stage is added when
	// the configuration has none).
	Stages []Stage
}

// ActionKind says what an [Action] asks for.
type ActionKind int

// Action kinds.
const (
	// ActOutageStart: the host went on battery (for logs and events).
	ActOutageStart ActionKind = iota
	// ActStage: run a non-final stage's command.
	ActStage
	// ActPoweroff: the final stage: publish shutting_down, run its command,
	// wait final_delay, emit SHUTDOWN, power off.
	ActPoweroff
	// ActUndo: mains returned: run a stage's undo command.
	ActUndo
	// ActOutageEnd: mains returned before the final stage.
	ActOutageEnd
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
}

// Progress is what survives an agent restart (state_file).
type Progress struct {
	OutageStart time.Time `json:"outage_start,omitzero"`
	Ran         []string  `json:"ran"`
	Final       bool      `json:"final_started"`
}

type supply struct {
	spec     SupplySpec
	have     bool // a fresh state arrived since start
	r        srcmqtt.Reading
	lastGood time.Time // local time the last fresh, advancing state arrived
	upsOn    bool      // UPS availability (true until told otherwise)
	lostAt   time.Time // when the UPS availability went offline
	offSince time.Time
	warned   string // the warning last given, to give each once
}

// Policy is the agent's state machine. It is not safe for concurrent use.
type Policy struct {
	cfg       PolicyConfig
	start     time.Time
	supplies  []*supply
	byUPS     map[string]*supply
	connected bool
	connLost  time.Time // when the broker connection went down
	bridges   map[string]bool
	prog      Progress
	changed   bool // progress changed since the last TakeProgress
	warnedNo  bool
}

// NewPolicy returns a policy started at now, resuming prog (which may be
// zero).
func NewPolicy(cfg PolicyConfig, now time.Time, prog Progress) *Policy {
	if len(cfg.Stages) == 0 || !cfg.Stages[len(cfg.Stages)-1].Final {
		cfg.Stages = append(cfg.Stages, Stage{Name: "poweroff", Final: true})
	}
	p := &Policy{cfg: cfg, start: now, byUPS: map[string]*supply{}, bridges: map[string]bool{}, prog: prog, connected: true}
	for _, s := range cfg.Supplies {
		sp := &supply{spec: s, upsOn: true}
		p.supplies = append(p.supplies, sp)
		p.byUPS[s.UPS] = sp
	}
	return p
}

// Stages returns the stages, the final one last.
func (p *Policy) Stages() []Stage { return p.cfg.Stages }

// Observe applies one piece of news. It returns warnings for news that is
// not used (a stale state).
func (p *Policy) Observe(n srcmqtt.News) []Action {
	switch n.Kind {
	case srcmqtt.KindConnection:
		if !n.Online && p.connected {
			p.connLost = n.At
		}
		p.connected = n.Online
	case srcmqtt.KindBridgeAvailability:
		p.bridges[n.Bridge] = n.Online
	case srcmqtt.KindUPSAvailability:
		if s := p.byUPS[n.UPS]; s != nil {
			if !n.Online && s.upsOn {
				s.lostAt = n.At
			}
			s.upsOn = n.Online
		}
	case srcmqtt.KindState:
		s := p.byUPS[n.UPS]
		if s == nil {
			return nil
		}
		r := n.Reading
		if age := n.At.Sub(r.TS); age > p.cfg.MaxStateAge {
			// Never act on stale news: after a reboot the retained FSD or
			// OB of the last outage must not shut the host down again.
			return []Action{{Kind: ActWarn, UPS: n.UPS, Reason: fmt.Sprintf("state is %s old (max_state_age %s): ignored", age.Round(time.Second), p.cfg.MaxStateAge)}}
		}
		if s.have && !r.TS.After(s.r.TS) {
			// The same reading again (retained re-delivery, or a bridge
			// that lost its UPS re-publishing the last one): not news.
			return nil
		}
		s.have = true
		s.r = r
		if s.upsOn {
			s.lastGood = n.At
		}
		if r.Off {
			if s.offSince.IsZero() {
				s.offSince = n.At
			}
		} else {
			s.offSince = time.Time{}
		}
	}
	return nil
}

// critical reports whether a supply is critical at now, and why.
func (p *Policy) critical(s *supply, now time.Time) (bool, string) {
	if !s.have {
		return false, ""
	}
	r := s.r
	switch {
	case r.FSD:
		return true, "FSD"
	case r.OnBattery && r.LowBattery && !r.Cal:
		return true, "on battery with low battery"
	case r.Critical:
		return true, "critical according to the bridge"
	case !s.offSince.IsZero() && now.Sub(s.offSince) > OffDuration:
		return true, "off for more than " + OffDuration.String()
	case r.OnBattery && now.Sub(p.deadFrom(s)) > p.cfg.DeadTime:
		return true, fmt.Sprintf("no news for %s while last seen on battery (dead_time %s)", now.Sub(p.deadFrom(s)).Round(time.Second), p.cfg.DeadTime)
	}
	return false, ""
}

// deadFrom is when communication with a supply counts as lost: the last
// fresh state, or later, the moment the loss was noticed (broker connection
// or UPS availability), so a host never shuts down sooner than dead_time
// after a loss it saw.
func (p *Policy) deadFrom(s *supply) time.Time {
	t := s.lastGood
	if !p.connected && p.connLost.After(t) {
		t = p.connLost
	}
	if !s.upsOn && s.lostAt.After(t) {
		t = s.lostAt
	}
	return t
}

// current reports whether news of a supply is current at now.
func (p *Policy) current(s *supply, now time.Time) (bool, string) {
	switch {
	case !p.connected:
		return false, "broker connection lost"
	case !s.upsOn:
		return false, "UPS availability is offline"
	case !s.have:
		return false, "no fresh state since start"
	case now.Sub(s.lastGood) > p.cfg.MaxStateAge:
		return false, "no fresh state for " + now.Sub(s.lastGood).Round(time.Second).String()
	}
	for b, on := range p.bridges {
		if !on {
			return false, "bridge " + b + " is offline"
		}
	}
	return true, ""
}

// Evaluate applies the passing of time and returns what to do now.
func (p *Policy) Evaluate(now time.Time) []Action {
	var acts []Action
	acts = append(acts, p.warnings(now)...)
	if p.prog.Final {
		return acts // the final stage is never cancelled
	}
	okSum, mainsSum := 0, 0
	var why string
	var whyUPS string
	allKnown := true
	for _, s := range p.supplies {
		crit, reason := p.critical(s, now)
		if !s.have {
			allKnown = false
		}
		if crit {
			if why == "" {
				why, whyUPS = reason, s.spec.UPS
			}
			continue
		}
		okSum += s.spec.Power
		if !(s.have && s.r.OnBattery) {
			mainsSum += s.spec.Power
		}
	}
	minS := p.cfg.MinSupplies
	if minS > 0 && okSum < minS {
		if p.prog.OutageStart.IsZero() {
			p.prog.OutageStart = now
			acts = append(acts, Action{Kind: ActOutageStart, UPS: whyUPS, Reason: why})
		}
		acts = append(acts, p.fire(len(p.cfg.Stages)-1, whyUPS, fmt.Sprintf("supply %s is critical (%s): powered supplies %d < min_supplies %d", whyUPS, why, okSum, minS), true)...)
		return acts
	}
	if minS > 0 && mainsSum < minS {
		if p.prog.OutageStart.IsZero() {
			p.prog.OutageStart = now
			p.changed = true
			acts = append(acts, Action{Kind: ActOutageStart, Reason: fmt.Sprintf("supplies on mains %d < min_supplies %d", mainsSum, minS)})
		}
		// Fire the furthest stage whose condition holds, and every stage
		// before it that has not run, in order.
		for i := len(p.cfg.Stages) - 1; i >= 0; i-- {
			if p.ran(p.cfg.Stages[i].Name) {
				break
			}
			if reason, ok := p.holds(p.cfg.Stages[i], now); ok {
				acts = append(acts, p.fire(i, "", reason, false)...)
				break
			}
		}
		return acts
	}
	if !p.prog.OutageStart.IsZero() {
		if !allKnown {
			// Resumed mid-outage without news yet: hold, never undo on
			// silence.
			return acts
		}
		for i := len(p.prog.Ran) - 1; i >= 0; i-- {
			st := p.stage(p.prog.Ran[i])
			if st != nil && len(st.Undo) > 0 {
				acts = append(acts, Action{Kind: ActUndo, Stage: st.Name, Command: st.Undo, Reason: "mains returned"})
			}
		}
		acts = append(acts, Action{Kind: ActOutageEnd, Reason: fmt.Sprintf("mains returned after %s", now.Sub(p.prog.OutageStart).Round(time.Second))})
		p.prog = Progress{}
		p.changed = true
	}
	return acts
}

// fire starts every stage up to index i that has not run, in order; critical
// skips straight to the final stage.
func (p *Policy) fire(i int, ups, reason string, critical bool) []Action {
	var acts []Action
	for j := 0; j <= i; j++ {
		st := p.cfg.Stages[j]
		if p.ran(st.Name) || (critical && !st.Final) {
			continue
		}
		p.prog.Ran = append(p.prog.Ran, st.Name)
		p.changed = true
		if st.Final {
			p.prog.Final = true
			acts = append(acts, Action{Kind: ActPoweroff, Stage: st.Name, Command: st.Run, UPS: ups, Reason: reason})
			return acts
		}
		acts = append(acts, Action{Kind: ActStage, Stage: st.Name, Command: st.Run, UPS: ups, Reason: reason})
	}
	return acts
}

func (p *Policy) ran(name string) bool {
	for _, n := range p.prog.Ran {
		if n == name {
			return true
		}
	}
	return false
}

func (p *Policy) stage(name string) *Stage {
	for i := range p.cfg.Stages {
		if p.cfg.Stages[i].Name == name {
			return &p.cfg.Stages[i]
		}
	}
	return nil
}

// holds reports whether any condition of a stage holds at now.
func (p *Policy) holds(st Stage, now time.Time) (string, bool) {
	if st.OnBatteryFor > 0 && now.Sub(p.prog.OutageStart) >= st.OnBatteryFor {
		return fmt.Sprintf("on battery for %s", st.OnBatteryFor), true
	}
	for _, s := range p.supplies {
		if !s.have || !s.r.OnBattery {
			continue
		}
		if st.ChargeBelow > 0 && s.r.HasCharge && s.r.Charge < st.ChargeBelow {
			return fmt.Sprintf("%s battery charge %.0f%% < %.0f%%", s.spec.UPS, s.r.Charge, st.ChargeBelow), true
		}
		if st.RuntimeBelow > 0 && s.r.HasRuntime && s.r.Runtime < st.RuntimeBelow {
			return fmt.Sprintf("%s runtime %s < %s", s.spec.UPS, s.r.Runtime, st.RuntimeBelow), true
		}
	}
	return "", false
}

func (p *Policy) warnings(now time.Time) []Action {
	var acts []Action
	if !p.warnedNo && now.Sub(p.start) >= p.cfg.DeadTime {
		for _, s := range p.supplies {
			if !s.have {
				p.warnedNo = true
				acts = append(acts, Action{Kind: ActWarn, UPS: s.spec.UPS, Reason: "no fresh state since start: holding, never shutting down on silence"})
			}
		}
	}
	for _, s := range p.supplies {
		if !s.have {
			continue
		}
		ok, why := p.current(s, now)
		w := ""
		if !ok {
			w = why
			if !s.r.OnBattery {
				w = why + " (last seen on mains: warning only)"
			}
		}
		if w != s.warned {
			s.warned = w
			if w != "" {
				acts = append(acts, Action{Kind: ActWarn, UPS: s.spec.UPS, Reason: "communication lost: " + w})
			}
		}
	}
	return acts
}

// TakeProgress returns the progress and whether it changed since the last
// call (so the agent writes state_file only when needed).
func (p *Policy) TakeProgress() (Progress, bool) {
	c := p.changed
	p.changed = false
	pr := p.prog
	pr.Ran = append([]string(nil), pr.Ran...)
	return pr, c
}

// Status values published on the agent's state topic.
const (
	StatusIdle         = "idle"
	StatusOnBattery    = "on_battery"
	StatusStaging      = "staging"
	StatusShuttingDown = "shutting_down"
)

// SupplyStatus is one supply in the agent's state.
type SupplyStatus struct {
	UPS        string `json:"ups"`
	PowerValue int    `json:"power_value"`
	Status     string `json:"status"` // ups.status, "" when unknown
	OnBattery  bool   `json:"on_battery"`
	Critical   bool   `json:"critical"`
	Current    bool   `json:"current"`
}

// Snapshot is the agent's status at one moment.
type Snapshot struct {
	Status      string
	Stage       string
	NextStage   string
	NextStageIn *time.Duration
	Supplies    []SupplyStatus
}

// Snapshot describes the agent at now.
func (p *Policy) Snapshot(now time.Time) Snapshot {
	var sn Snapshot
	switch {
	case p.prog.Final:
		sn.Status = StatusShuttingDown
	case p.prog.OutageStart.IsZero():
		sn.Status = StatusIdle
	case len(p.prog.Ran) > 0:
		sn.Status = StatusStaging
	default:
		sn.Status = StatusOnBattery
	}
	if n := len(p.prog.Ran); n > 0 {
		sn.Stage = p.prog.Ran[n-1]
	}
	if !p.prog.Final && !p.prog.OutageStart.IsZero() {
		for _, st := range p.cfg.Stages {
			if p.ran(st.Name) {
				continue
			}
			sn.NextStage = st.Name
			if st.OnBatteryFor > 0 {
				d := max(p.prog.OutageStart.Add(st.OnBatteryFor).Sub(now), 0)
				sn.NextStageIn = &d
			}
			break
		}
	}
	for _, s := range p.supplies {
		crit, _ := p.critical(s, now)
		cur, _ := p.current(s, now)
		ss := SupplyStatus{UPS: s.spec.UPS, PowerValue: s.spec.Power, Critical: crit, Current: cur}
		if s.have {
			ss.Status, ss.OnBattery = s.r.Status, s.r.OnBattery
		}
		sn.Supplies = append(sn.Supplies, ss)
	}
	sort.Slice(sn.Supplies, func(i, j int) bool { return sn.Supplies[i].UPS < sn.Supplies[j].UPS })
	return sn
}

// NextDeadline returns the earliest future time at which Evaluate could
// decide something new without news (a stage's time, a dead time), or zero.
func (p *Policy) NextDeadline(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if !p.prog.OutageStart.IsZero() && !p.prog.Final {
		for _, st := range p.cfg.Stages {
			if !p.ran(st.Name) && st.OnBatteryFor > 0 {
				consider(p.prog.OutageStart.Add(st.OnBatteryFor))
			}
		}
	}
	for _, s := range p.supplies {
		if s.have && s.r.OnBattery {
			consider(p.deadFrom(s).Add(p.cfg.DeadTime + time.Millisecond))
		}
		if !s.offSince.IsZero() {
			consider(s.offSince.Add(OffDuration + time.Millisecond))
		}
	}
	return next
}
