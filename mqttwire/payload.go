package mqttwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

// FormatTime formats t as the payloads do (bridge.TimeFormat), in UTC.
func FormatTime(t time.Time) string { return bridge.FormatTime(t) }

// MaxPayload is the largest state, event or agent payload a decoder accepts.
// The largest device in NUT's corpus (an ePDU of about 300 variables) makes a
// state of about 20 KiB.
const MaxPayload = 256 << 10

// StatePayload is the JSON published retained on <prefix>/ups/<id>/state.
// Its fields are public API; a signature covers all of them.
//
// Ordering is (Epoch, Seq): Epoch is chosen by the bridge at start so that
// it only grows (see the bridge's epoch store), Seq increases with every
// state of the UPS within the epoch. Agents order states by these and never
// by TS, which is the bridge's wall clock and only for people and logs.
type StatePayload struct {
	UPS    string `json:"ups"`
	Bridge string `json:"bridge"`
	Epoch  uint64 `json:"epoch"`
	Seq    uint64 `json:"seq"`
	// TS is when the bridge published this state; ReadingTS is when the
	// reading it reflects was taken (older than TS after the UPS was lost).
	TS        string `json:"ts"`
	ReadingTS string `json:"reading_ts,omitempty"`
	// CommOK is false when the bridge has lost the UPS: the variables are
	// the last known ones and are not current.
	CommOK     bool           `json:"comm_ok"`
	Status     string         `json:"status"`
	Flags      []string       `json:"flags"`
	OnBattery  bool           `json:"on_battery"`
	LowBattery bool           `json:"low_battery"`
	Critical   bool           `json:"critical"`
	Vars       map[string]any `json:"vars"`
	// Sig is the Ed25519 signature of CanonicalState when signing is on.
	Sig string `json:"sig,omitempty"`
}

// EventPayload is the JSON published on <prefix>/ups/<id>/event. Its fields
// are public API.
type EventPayload struct {
	UPS     string `json:"ups"`
	Bridge  string `json:"bridge,omitempty"`
	TS      string `json:"ts"`
	Type    string `json:"type"`
	Message string `json:"message"`
	Status  string `json:"status"`
	Sig     string `json:"sig,omitempty"`
}

// Order is a state's place in its bridge's sequence.
type Order struct {
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// After reports whether o comes strictly after p.
func (o Order) After(p Order) bool {
	return o.Epoch > p.Epoch || (o.Epoch == p.Epoch && o.Seq > p.Seq)
}

// Order returns the payload's (epoch, seq).
func (p *StatePayload) Order() Order { return Order{Epoch: p.Epoch, Seq: p.Seq} }

// NewStatePayload converts a state to its wire form, published at now by
// bridgeID in epoch. Numeric variables whose value parses become JSON
// numbers; everything else stays a string.
func NewStatePayload(s *bridge.State, bridgeID string, epoch uint64, now time.Time) StatePayload {
	flags := s.Status.Tokens
	if flags == nil {
		flags = []string{}
	}
	vars := make(map[string]any, len(s.Vars))
	for k, v := range s.Vars {
		if bridge.IsNumeric(k) {
			if f, ok := bridge.ParseNumber(v); ok {
				vars[k] = json.Number(strconv.FormatFloat(f, 'g', -1, 64))
				continue
			}
		}
		vars[k] = v
	}
	p := StatePayload{
		UPS:        s.UPS,
		Bridge:     bridgeID,
		Epoch:      epoch,
		Seq:        s.Seq,
		TS:         FormatTime(now),
		CommOK:     s.Comm && !s.Gone,
		Status:     s.Status.Raw,
		Flags:      flags,
		OnBattery:  s.OnBattery(),
		LowBattery: s.LowBattery(),
		Critical:   s.Critical,
		Vars:       vars,
	}
	if !s.Time.IsZero() {
		p.ReadingTS = FormatTime(s.Time)
	}
	return p
}

// NewEventPayload converts an event to its wire form.
func NewEventPayload(e *bridge.Event, bridgeID string) EventPayload {
	return EventPayload{UPS: e.UPS, Bridge: bridgeID, TS: FormatTime(e.Time), Type: string(e.Type), Message: e.Message, Status: e.Status}
}

// decodeStrict decodes one JSON object with numbers kept exact and nothing
// after it.
func decodeStrict(what string, data []byte, v any) error {
	if len(data) == 0 {
		return fmt.Errorf("%s payload: empty", what)
	}
	if len(data) > MaxPayload {
		return fmt.Errorf("%s payload: %d bytes, more than %d", what, len(data), MaxPayload)
	}
	if data[0] != '{' {
		return fmt.Errorf("%s payload: not a JSON object", what)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s payload: %w", what, err)
	}
	if dec.More() {
		return fmt.Errorf("%s payload: trailing data after the JSON object", what)
	}
	return nil
}

// DecodeState parses and checks a state payload from the network. Anything
// malformed is an error naming the field; unknown fields are ignored so newer
// bridges can add some. The returned time is TS.
func DecodeState(data []byte) (StatePayload, time.Time, error) {
	var p StatePayload
	if err := decodeStrict("state", data, &p); err != nil {
		return p, time.Time{}, err
	}
	if !ValidID(p.UPS) {
		return p, time.Time{}, fmt.Errorf("state payload: field ups: bad id %q", p.UPS)
	}
	if p.Bridge != "" && !ValidID(p.Bridge) {
		return p, time.Time{}, fmt.Errorf("state payload: field bridge: bad id %q", p.Bridge)
	}
	ts, err := time.Parse(time.RFC3339Nano, p.TS)
	if err != nil {
		return p, time.Time{}, fmt.Errorf("state payload: field ts: %w", err)
	}
	return p, ts, nil
}

// DecodeEvent parses and checks an event payload from the network.
func DecodeEvent(data []byte) (EventPayload, error) {
	var p EventPayload
	if err := decodeStrict("event", data, &p); err != nil {
		return p, err
	}
	if !ValidID(p.UPS) {
		return p, fmt.Errorf("event payload: field ups: bad id %q", p.UPS)
	}
	if p.Type == "" {
		return p, errors.New("event payload: field type: empty")
	}
	return p, nil
}

// Domain labels separate the kinds of signed message. v2 covers bridge,
// epoch and comm_ok.
const (
	stateDomain = "upsbridge-state-v2\n"
	eventDomain = "upsbridge-event-v2\n"
)

// CanonicalState returns the bytes a state signature covers: a domain label
// and the payload re-encoded by encoding/json from its parsed fields with
// sig empty. Verifying the parsed fields (not the bytes received) means what
// is checked is exactly what is used: duplicate keys or unknown fields cannot
// smuggle in anything else.
func CanonicalState(p StatePayload) ([]byte, error) {
	p.Sig = ""
	if p.Flags == nil {
		p.Flags = []string{}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("canonical state of %q: %w", p.UPS, err)
	}
	return append([]byte(stateDomain), data...), nil
}

// CanonicalEvent returns the bytes an event signature covers.
func CanonicalEvent(p EventPayload) ([]byte, error) {
	p.Sig = ""
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("canonical event of %q: %w", p.UPS, err)
	}
	return append([]byte(eventDomain), data...), nil
}

// EnergyPayload is the JSON published retained on <prefix>/ups/<id>/energy.
type EnergyPayload struct {
	TS        string  `json:"ts"`
	EnergyKWh float64 `json:"energy_kwh"`
	Estimated bool    `json:"estimated"`
}

// CommandRequest is the payload of <prefix>/ups/<id>/command (a bare
// command name is accepted too).
type CommandRequest struct {
	Command string `json:"command"`
	Arg     string `json:"arg,omitempty"`
}

// SetRequest is the payload of <prefix>/ups/<id>/set.
type SetRequest struct {
	Var   string `json:"var"`
	Value string `json:"value"`
}

// CommandResponse is published on <prefix>/ups/<id>/command/result.
type CommandResponse struct {
	UPS     string `json:"ups"`
	TS      string `json:"ts"`
	Command string `json:"command,omitempty"`
	Var     string `json:"var,omitempty"`
	Status  string `json:"status"` // SUCCESS | FAILED | PENDING | REJECTED | ERROR
	Detail  string `json:"detail,omitempty"`
}
