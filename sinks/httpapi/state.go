package httpapi

import (
	"cmp"
	"encoding/json"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// StateDoc is the JSON of GET /api/state. Its fields are public API.
type StateDoc struct {
	BridgeID string `json:"bridge_id"`
	Version  string `json:"version"`
	TS       string `json:"ts"`
	Ready    bool   `json:"ready"`
	// Problems says why the process is not ready (as /readyz).
	Problems []string     `json:"problems"`
	UPS      []UPSDoc     `json:"ups"`
	Agents   []AgentDoc   `json:"agents"`
	Sources  []SourceDoc  `json:"sources"`
	Sinks    []SinkDoc    `json:"sinks"`
	Events   []EventCount `json:"events"`
}

// UPSDoc is one UPS: the MQTT state payload plus what only the bridge knows.
type UPSDoc struct {
	mqttwire.StatePayload
	Source         string `json:"source,omitempty"`
	Communicating  bool   `json:"communicating"`
	Gone           bool   `json:"gone"`
	OnBatterySince string `json:"on_battery_since,omitempty"`
}

// AgentDoc is a shutdown agent running in this process: its reported stats,
// or else the last event it emitted.
type AgentDoc struct {
	Agent     string                 `json:"agent"`
	Stats     map[string]any         `json:"stats,omitempty"`
	LastEvent *mqttwire.EventPayload `json:"last_event,omitempty"`
}

// SourceDoc is a source with its reported stats.
type SourceDoc struct {
	ID    string         `json:"id"`
	Stats map[string]any `json:"stats,omitempty"`
}

// SinkDoc is a sink with its queue and reported stats.
type SinkDoc struct {
	Name          string         `json:"name"`
	QueueLength   int            `json:"queue_length"`
	EventsDropped uint64         `json:"events_dropped"`
	Stats         map[string]any `json:"stats,omitempty"`
}

// EventCount is how many events of a type a UPS (or host) produced.
type EventCount struct {
	UPS   string  `json:"ups"`
	Host  string  `json:"host,omitempty"`
	Type  string  `json:"type"`
	Count float64 `json:"count"`
}

// Document assembles the /api/state document.
func (s *Server) Document() StateDoc {
	doc := StateDoc{
		BridgeID: s.opts.BridgeID,
		Version:  s.opts.Version,
		TS:       bridge.FormatTime(s.opts.Now()),
		Problems: s.problems(),
		UPS:      []UPSDoc{},
		Agents:   []AgentDoc{},
		Sources:  []SourceDoc{},
		Sinks:    []SinkDoc{},
		Events:   []EventCount{},
	}
	if doc.Problems == nil {
		doc.Problems = []string{}
	}
	doc.Ready = len(doc.Problems) == 0
	for _, st := range s.snapshot() {
		u := UPSDoc{StatePayload: mqttwire.NewStatePayload(st, s.opts.BridgeID, 0, st.Time), Communicating: st.Comm && !st.Gone, Gone: st.Gone}
		if st.Time.IsZero() {
			u.TS = ""
		}
		if !st.OnBatterySince.IsZero() {
			u.OnBatterySince = bridge.FormatTime(st.OnBatterySince)
		}
		if s.opts.Bridge != nil {
			u.Source = s.opts.Bridge.SourceOf(st.UPS)
		}
		doc.UPS = append(doc.UPS, u)
	}
	for _, ns := range s.sourceStats() {
		doc.Sources = append(doc.Sources, SourceDoc{ID: ns.Name, Stats: jsonSafe(ns.Stats)})
	}
	agents := map[string]bool{}
	for _, ns := range s.sinkStats() {
		doc.Sinks = append(doc.Sinks, SinkDoc{Name: ns.Name, QueueLength: ns.QueueLength, EventsDropped: ns.Dropped, Stats: jsonSafe(ns.Stats)})
		if a, ok := ns.Stats["agent"].(string); ok && a != "" {
			doc.Agents = append(doc.Agents, AgentDoc{Agent: a, Stats: jsonSafe(ns.Stats)})
			agents[a] = true
		}
	}
	s.mu.RLock()
	for host, ev := range s.agentEvents {
		if !agents[host] {
			p := mqttwire.NewEventPayload(ev, s.opts.BridgeID)
			doc.Agents = append(doc.Agents, AgentDoc{Agent: host, LastEvent: &p})
		}
	}
	s.mu.RUnlock()
	doc.Events = s.eventCounts()
	return doc
}

// eventCounts returns the event counters, ordered by host, type and UPS
// (the order of their labels' names, as /metrics lists them).
func (s *Server) eventCounts() []EventCount {
	s.mu.RLock()
	out := make([]EventCount, 0, len(s.events))
	for k, n := range s.events {
		out = append(out, EventCount{UPS: k.ups, Host: k.host, Type: k.typ, Count: float64(n)})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b EventCount) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), strings.Compare(a.Type, b.Type), strings.Compare(a.UPS, b.UPS))
	})
	return out
}

func (s *Server) handleState(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	// Encode first: a document that cannot be encoded is a 500 with the
	// reason, not a 200 with an empty body.
	data, err := json.MarshalIndent(s.Document(), "", "  ")
	if err != nil {
		s.log.Error("encode /api/state", "err", err)
		http.Error(w, "cannot encode the state document: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(data, '\n'))
}

// jsonSafe returns stats with NaN and infinite numbers as null, which JSON
// cannot carry (a stats reporter may compute 0/0).
func jsonSafe(stats map[string]any) map[string]any {
	var out map[string]any
	for k, v := range stats {
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		default:
			continue
		}
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			continue
		}
		if out == nil {
			out = maps.Clone(stats)
		}
		out[k] = nil
	}
	if out == nil {
		return stats
	}
	return out
}
