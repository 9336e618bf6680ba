package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// TimeFormat is the payloads' time format: RFC 3339 with milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// StatePayload is the JSON published retained on <prefix>/ups/<id>/state.
// Its fields are public API.
type StatePayload struct {
	UPS        string         `json:"ups"`
	TS         string         `json:"ts"`
	Seq        uint64         `json:"seq"`
	Status     string         `json:"status"`
	Flags      []string       `json:"flags"`
	OnBattery  bool           `json:"on_battery"`
	LowBattery bool           `json:"low_battery"`
	Critical   bool           `json:"critical"`
	Vars       map[string]any `json:"vars"`
	// Sig is the Ed25519 signature when state signing is on (see sinks/mqtt).
	Sig string `json:"sig,omitempty"`
}

// EventPayload is the JSON published on <prefix>/ups/<id>/event. Its fields
// are public API.
type EventPayload struct {
	UPS     string `json:"ups"`
	TS      string `json:"ts"`
	Type    string `json:"type"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Sig     string `json:"sig,omitempty"`
}

// FormatTime formats t as the payloads do, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// NewStatePayload converts a state to its wire form. Numeric variables whose
// value parses become JSON numbers; everything else stays a string.
func NewStatePayload(s *State) StatePayload {
	flags := s.Status.Tokens
	if flags == nil {
		flags = []string{}
	}
	vars := make(map[string]any, len(s.Vars))
	for k, v := range s.Vars {
		if IsNumeric(k) {
			if f, ok := ParseNumber(v); ok {
				vars[k] = json.Number(strconv.FormatFloat(f, 'g', -1, 64))
				continue
			}
		}
		vars[k] = v
	}
	return StatePayload{
		UPS:        s.UPS,
		TS:         FormatTime(s.Time),
		Seq:        s.Seq,
		Status:     s.Status.Raw,
		Flags:      flags,
		OnBattery:  s.OnBattery(),
		LowBattery: s.LowBattery(),
		Critical:   s.Critical,
		Vars:       vars,
	}
}

// NewEventPayload converts an event to its wire form.
func NewEventPayload(e *Event) EventPayload {
	return EventPayload{UPS: e.UPS, TS: FormatTime(e.Time), Type: string(e.Type), Message: e.Message, Status: e.Status}
}

// MaxPayload is the largest state or event payload a decoder accepts.
const MaxPayload = 1 << 20

// DecodeState parses and checks a state payload from the network. Anything
// malformed is an error naming the field; unknown fields are ignored so newer
// bridges can add some.
func DecodeState(data []byte) (StatePayload, time.Time, error) {
	var p StatePayload
	if len(data) == 0 {
		return p, time.Time{}, errors.New("state payload: empty")
	}
	if len(data) > MaxPayload {
		return p, time.Time{}, fmt.Errorf("state payload: %d bytes, more than %d", len(data), MaxPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return p, time.Time{}, fmt.Errorf("state payload: %w", err)
	}
	if dec.More() {
		return p, time.Time{}, errors.New("state payload: trailing data after the JSON object")
	}
	if !IDPattern.MatchString(p.UPS) {
		return p, time.Time{}, fmt.Errorf("state payload: field ups: bad id %q", p.UPS)
	}
	ts, err := time.Parse(time.RFC3339Nano, p.TS)
	if err != nil {
		return p, time.Time{}, fmt.Errorf("state payload: field ts: %w", err)
	}
	return p, ts, nil
}
