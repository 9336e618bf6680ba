// Package mqtt reads what bridges publish about UPSes, for shutdown agents:
// the retained <prefix>/ups/<id>/state and <prefix>/ups/<id>/availability of
// the host's supplies and <prefix>/bridge/+/availability. Every payload is
// treated as hostile: it is size-limited, decoded strictly, checked against
// its topic, verified when signing is required, and dropped with a log line
// when anything is wrong; a dropped payload never counts as fresh news.
package mqtt

import (
	"encoding/json"
	"fmt"
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
	// KindUPSAvailability is <prefix>/ups/<id>/availability.
	KindUPSAvailability
	// KindBridgeAvailability is <prefix>/bridge/<id>/availability.
	KindBridgeAvailability
	// KindConnection is the agent's own broker connection going up or down.
	KindConnection
)

// News is one thing the agent learnt, with the local time it learnt it.
type News struct {
	Kind    Kind
	UPS     string // KindState, KindUPSAvailability
	Bridge  string // KindBridgeAvailability
	At      time.Time
	Online  bool    // availability and connection kinds
	Reading Reading // KindState
}

// Reading is what an agent needs of one state payload.
type Reading struct {
	TS     time.Time
	Seq    uint64
	Status string // raw ups.status
	// OnBattery, LowBattery, FSD, Off, Cal are the status flags; a flag
	// counts if either the flags list or the boolean fields say so.
	OnBattery, LowBattery, FSD, Off, Cal bool
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

// ReadingFrom turns a decoded state payload into a reading. Variables that
// do not parse as sane numbers are treated as absent.
func ReadingFrom(p mqttwire.StatePayload, ts time.Time) Reading {
	r := Reading{TS: ts, Seq: p.Seq, Status: p.Status, OnBattery: p.OnBattery, LowBattery: p.LowBattery, Critical: p.Critical}
	st := bridge.ParseStatus(p.Status)
	for _, f := range p.Flags {
		if fl, ok := bridge.LookupFlag(f); ok {
			st.Flags |= bridge.Flags(fl)
		}
	}
	r.OnBattery = r.OnBattery || st.Flags.Has(bridge.OB)
	r.LowBattery = r.LowBattery || st.Flags.Has(bridge.LB)
	r.FSD = st.Flags.Has(bridge.FSD)
	r.Off = st.Flags.Has(bridge.OFF)
	r.Cal = st.Flags.Has(bridge.CAL)
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

// ParseState decodes a state payload received on the state topic of ups.
// It rejects a payload naming another UPS than its topic.
func ParseState(ups string, data []byte) (mqttwire.StatePayload, time.Time, error) {
	p, ts, err := mqttwire.DecodeState(data)
	if err != nil {
		return p, ts, err
	}
	if p.UPS != ups {
		return p, ts, fmt.Errorf("state payload: field ups: %q on the topic of %q", p.UPS, ups)
	}
	return p, ts, nil
}
