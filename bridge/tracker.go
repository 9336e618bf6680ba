package bridge

import (
	"time"
)

// Rules are the time limits of upsmon that event derivation uses.
type Rules struct {
	// DeadTime: communication lost while last seen on battery for longer
	// than this makes the UPS critical (upsmon DEADTIME, default 15 s).
	DeadTime time.Duration
	// NoCommWarnTime: NOCOMM after this long without a good poll, repeated
	// at this interval (upsmon NOCOMMWARNTIME, default 300 s).
	NoCommWarnTime time.Duration
	// OffDuration: OFF for longer than this makes the UPS critical (upsmon
	// OFFDURATION, default 30 s; negative disables).
	OffDuration time.Duration
	// LowBatteryGrace: OB LB must hold this long before the UPS is
	// critical (upsmon OBLBDURATION, default 0: at once).
	LowBatteryGrace time.Duration
	// RBWarnTime: REPLBATT is repeated at this interval while RB stays
	// (upsmon RBWARNTIME, default 12 h).
	RBWarnTime time.Duration
}

// DefaultRules returns upsmon's defaults.
func DefaultRules() Rules {
	return Rules{
		DeadTime:       15 * time.Second,
		NoCommWarnTime: 300 * time.Second,
		OffDuration:    30 * time.Second,
		RBWarnTime:     12 * time.Hour,
	}
}

type lineState int

const (
	lineUnknown lineState = iota // upsmon's linestate -1: the first OL is silent
	lineOnline
	lineOnBattery
)

type commState int

const (
	commUnknown commState = iota // nothing heard yet since start
	commOK
	commBad
)

// toggles are the status flags with an event when they appear and another
// when they go (upsmon 2.8.3+).
var toggles = []struct {
	flag    Flag
	on, off EventType
}{
	{CAL, EventCal, EventNotCal},
	{OFF, EventOff, EventNotOff},
	{BYPASS, EventBypass, EventNotBypass},
	{OVER, EventOver, EventNotOver},
	{TRIM, EventTrim, EventNotTrim},
	{BOOST, EventBoost, EventNotBoost},
	{ALARM, EventAlarm, EventNotAlarm},
	{ECO, EventEco, EventNotEco},
}

// Tracker derives events and the critical flag for one UPS from consecutive
// updates, with upsmon's rules. It is not safe for concurrent use; the bridge
// owns one per UPS. Time is passed in so tests control it.
type Tracker struct {
	ups   string
	rules Rules

	start       time.Time // first update or tick: NOCOMM counts from here until a good poll
	status      Status
	vars        Vars
	info        *Info
	readingTime time.Time
	haveReading bool

	comm         commState
	gone         bool
	lastGood     time.Time
	lastNoComm   time.Time
	line         lineState
	batterySince time.Time
	offSince     time.Time
	lbSince      time.Time // OB and LB both set since
	lastRB       time.Time
	alarmText    string
	critical     bool
}

// NewTracker returns a tracker for one UPS.
func NewTracker(ups string, rules Rules) *Tracker {
	return &Tracker{ups: ups, rules: rules}
}

func (t *Tracker) event(now time.Time, typ EventType) Event {
	return NewEvent(t.ups, now, typ, t.status.Raw)
}

// Reading applies a good poll and returns the events it causes and whether
// anything a consumer sees (status, variables, communication, critical)
// changed.
func (t *Tracker) Reading(now time.Time, vars Vars, info *Info) ([]Event, bool) {
	if t.start.IsZero() {
		t.start = now
	}
	var evs []Event
	changed := !t.haveReading || !vars.Equal(t.vars) || t.gone
	if info != nil {
		t.info = info
		changed = true
	}
	t.gone = false
	prev := t.status
	st := ParseStatus(vars[VarStatus])
	t.status = st
	t.vars = vars
	t.readingTime = now
	t.haveReading = true

	switch t.comm {
	case commBad:
		evs = append(evs, t.event(now, EventCommOK))
		changed = true
	case commUnknown:
		changed = true
	}
	t.comm = commOK
	t.lastGood = now
	t.lastNoComm = time.Time{}

	// Line state, as upsmon's ups_on_line / ups_on_batt: ONBATT on every
	// entry to OB (also at start-up), ONLINE only when leaving OB.
	switch {
	case st.Has(OB):
		if t.line != lineOnBattery {
			evs = append(evs, t.event(now, EventOnBatt))
			t.batterySince = now
		}
		t.line = lineOnBattery
	case st.Has(OL):
		if t.line == lineOnBattery {
			evs = append(evs, t.event(now, EventOnline))
		}
		t.line = lineOnline
		t.batterySince = time.Time{}
	}
	if st.Has(LB) && !prev.Has(LB) {
		evs = append(evs, t.event(now, EventLowBatt))
	}
	if st.Has(FSD) && !prev.Has(FSD) {
		evs = append(evs, t.event(now, EventFSD))
	}
	if st.Has(RB) {
		if t.lastRB.IsZero() || now.Sub(t.lastRB) >= t.rules.RBWarnTime {
			evs = append(evs, t.event(now, EventReplBatt))
			t.lastRB = now
		}
	} else {
		t.lastRB = time.Time{}
	}
	for _, tg := range toggles {
		has, had := st.Has(tg.flag), prev.Has(tg.flag)
		switch {
		case has && !had:
			evs = append(evs, t.event(now, tg.on))
		case !has && had:
			evs = append(evs, t.event(now, tg.off))
		}
	}
	// ALARM is notified again when the alarm text changes (upsmon 2.8.3+).
	alarm := vars[VarAlarm]
	if st.Has(ALARM) && prev.Has(ALARM) && alarm != t.alarmText {
		evs = append(evs, t.event(now, EventAlarm))
	}
	t.alarmText = alarm
	if st.Has(OFF) {
		if t.offSince.IsZero() {
			t.offSince = now
		}
	} else {
		t.offSince = time.Time{}
	}
	if st.Has(OB) && st.Has(LB) {
		if t.lbSince.IsZero() {
			t.lbSince = now
		}
	} else {
		t.lbSince = time.Time{}
	}
	for i := range evs {
		if evs[i].Type == EventAlarm && alarm != "" {
			evs[i].Message += ": " + alarm
		}
	}
	if t.updateCritical(now) {
		changed = true
	}
	if prev.Raw != st.Raw {
		changed = true
	}
	return evs, changed
}

// CommLost applies a failed poll.
func (t *Tracker) CommLost(now time.Time) ([]Event, bool) {
	if t.start.IsZero() {
		t.start = now
	}
	var evs []Event
	changed := false
	if t.comm != commBad {
		// COMMBAD on the first failure after success, or after start.
		evs = append(evs, t.event(now, EventCommBad))
		t.comm = commBad
		changed = true
	}
	evs = append(evs, t.noComm(now)...)
	if t.updateCritical(now) {
		changed = true
	}
	return evs, changed
}

// MarkGone records that the UPS is no longer offered by its server; it
// counts as communication lost.
func (t *Tracker) MarkGone(now time.Time) ([]Event, bool) {
	evs, changed := t.CommLost(now)
	if !t.gone {
		t.gone = true
		changed = true
	}
	return evs, changed
}

// Tick applies the passing of time: NOCOMM repeats and the dead-time and
// off-duration rules. It returns events and whether the state changed.
func (t *Tracker) Tick(now time.Time) ([]Event, bool) {
	if t.start.IsZero() {
		t.start = now
	}
	var evs []Event
	if t.comm == commBad {
		evs = t.noComm(now)
	}
	return evs, t.updateCritical(now)
}

func (t *Tracker) noComm(now time.Time) []Event {
	if t.rules.NoCommWarnTime <= 0 {
		return nil
	}
	since := t.lastGood
	if since.IsZero() {
		since = t.start
	}
	if now.Sub(since) < t.rules.NoCommWarnTime {
		return nil
	}
	if !t.lastNoComm.IsZero() && now.Sub(t.lastNoComm) < t.rules.NoCommWarnTime {
		return nil
	}
	t.lastNoComm = now
	return []Event{t.event(now, EventNoComm)}
}

// updateCritical recomputes the critical flag and reports a change.
func (t *Tracker) updateCritical(now time.Time) bool {
	c := t.isCritical(now)
	changed := c != t.critical
	t.critical = c
	return changed
}

func (t *Tracker) isCritical(now time.Time) bool {
	in := CriticalInput{Status: t.status.Flags, CommLost: t.comm == commBad && !t.lastGood.IsZero()}
	if in.CommLost {
		in.SinceGood = now.Sub(t.lastGood)
	}
	if !t.offSince.IsZero() {
		in.OffFor = max(now.Sub(t.offSince), time.Nanosecond)
	}
	if !t.lbSince.IsZero() {
		in.LowBatteryFor = now.Sub(t.lbSince)
	}
	c, _ := Critical(t.rules.critical(), in)
	return c
}

// critical returns the rules that decide the critical flag.
func (r Rules) critical() CriticalRules {
	return CriticalRules{DeadTime: r.DeadTime, OffDuration: r.OffDuration, LowBatteryGrace: r.LowBatteryGrace}
}

// Critical reports the current critical flag.
func (t *Tracker) Critical() bool { return t.critical }

// State returns a snapshot. Vars and Info are shared, not copied: the tracker
// replaces them rather than modifying them.
func (t *Tracker) State() State {
	return State{
		UPS:            t.ups,
		Time:           t.readingTime,
		Status:         t.status,
		Vars:           t.vars,
		Comm:           t.comm == commOK,
		Gone:           t.gone,
		Critical:       t.critical,
		OnBatterySince: t.batterySince,
		Info:           t.info,
	}
}

// HasReading reports whether a good poll was ever applied.
func (t *Tracker) HasReading() bool { return t.haveReading }
