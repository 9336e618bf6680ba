// Package news defines what the shutdown agent's intake hands to its policy:
// accepted pieces of news about the host's supplies, each stamped with the
// agent's own clock when it was received. The intake (internal/agent/intake) has
// already checked size, JSON, topic, signature and order, so the policy
// trusts every News it is given; this package only carries the types and the
// conversion of a state payload into a [Reading].
package news

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Kind says what a [News] reports.
type Kind int

// The kinds of news.
const (
	// KindState is a decoded, checked state of a supply.
	KindState Kind = iota
	// KindUPSAvailability is <prefix>/ups/<id>/availability (informational).
	KindUPSAvailability
	// KindBridgeAvailability is <prefix>/bridge/<id>/availability
	// (informational).
	KindBridgeAvailability
	// KindConnection is the agent's own broker connection going up or down.
	KindConnection
	// KindConflict reports two bridges publishing the same UPS id.
	KindConflict
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindState:
		return "state"
	case KindUPSAvailability:
		return "ups_availability"
	case KindBridgeAvailability:
		return "bridge_availability"
	case KindConnection:
		return "connection"
	case KindConflict:
		return "conflict"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// News is one accepted piece of news. The intake has already checked size,
// JSON, topic, signature (with require_signed), and order ((epoch,seq) must
// advance; replays dropped), so the policy trusts it.
type News struct {
	Kind   Kind
	UPS    string // KindState, KindUPSAvailability, KindConflict
	Bridge string // the publishing bridge (state's bridge field), KindBridgeAvailability
	// Live is false for a message delivered from the broker's retained
	// store: history, shown but never moving the host toward power-off.
	Live bool
	// At is the agent's own clock when the news was received (time.Now(),
	// so it carries the monotonic reading that every duration is taken on).
	At      time.Time
	Online  bool    // availability and connection kinds
	Reading Reading // KindState
	Detail  string  // KindConflict: e.g. "ups nas published by bridges a and b"
}

// Reading is what an agent needs of one state payload.
type Reading struct {
	// Bridge is the bridge that published the state; Order its place in
	// that bridge's sequence.
	Bridge string
	Order  mqttwire.Order
	// TS is the bridge's publication time: for people and logs only, never
	// for a decision.
	TS time.Time
	// CommOK is the bridge's word that the data is current.
	CommOK bool
	// Status is the raw ups.status; Flags its parsed flags, merged with the
	// payload's flags list and boolean fields.
	Status string
	Flags  bridge.Flags
	// Critical is the bridge's own verdict.
	Critical bool
	// Charge in percent and Runtime, when the UPS reports them.
	Charge     float64
	HasCharge  bool
	Runtime    time.Duration
	HasRuntime bool
	// Signed is true when the payload's signature was verified.
	Signed bool
}

// ReadingFrom turns a decoded state payload, published at ts, into a
// reading. Variables that do not parse as sane numbers are treated as
// absent; Signed is left for the intake to set.
func ReadingFrom(p mqttwire.StatePayload, ts time.Time) Reading {
	r := Reading{
		Bridge:   p.Bridge,
		Order:    p.Order(),
		TS:       ts,
		CommOK:   p.CommOK,
		Status:   p.Status,
		Critical: p.Critical,
	}
	st := bridge.ParseStatus(p.Status)
	r.Flags = st.Flags
	for _, f := range p.Flags {
		if fl, ok := bridge.LookupFlag(f); ok {
			r.Flags |= bridge.Flags(fl)
		}
	}
	if p.OnBattery {
		r.Flags |= bridge.Flags(bridge.OB)
	}
	if p.LowBattery {
		r.Flags |= bridge.Flags(bridge.LB)
	}
	if c, ok := number(p.Vars["battery.charge"]); ok && c >= 0 && c <= 100 {
		r.Charge, r.HasCharge = c, true
	}
	if rt, ok := number(p.Vars["battery.runtime"]); ok && rt >= 0 && rt < 1e7 {
		r.Runtime, r.HasRuntime = time.Duration(rt*float64(time.Second)), true
	}
	return r
}

func number(v any) (float64, bool) {
	var f float64
	var err error
	switch x := v.(type) {
	case json.Number:
		f, err = x.Float64()
	case string:
		f, err = strconv.ParseFloat(x, 64)
	case float64:
		f = x
	default:
		return 0, false
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// Source is where the runner takes news from: per-UPS latest-wins slots
// that the intake fills and the runner drains.
type Source interface {
	// Notify is signalled (without blocking, capacity 1) whenever news is
	// waiting.
	Notify() <-chan struct{}
	// Take appends the waiting news to buf, oldest first, empties the
	// slots and returns buf.
	Take(buf []News) []News
}
