package httpapi

import (
	"fmt"
	"sort"
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
)

// Fixed metric descriptions. Per-source and per-sink numbers reported
// through bridge.StatsReporter get names built from their keys (see
// collectStats). Names, label names, HELP texts and types are a public
// contract (docs/deployment.md, testdata/metrics.golden).
var (
	descEvents = newDesc("upsbridge_events_total",
		"Power events derived (or emitted by agents), by UPS, event type and host (agents only).", counterType, "ups", "type", "host")
	descBuild = newDesc("upsbridge_build_info",
		"Always 1; labels carry the version and the bridge id.", gaugeType, "version", "bridge_id")
	descVar = newDesc("upsbridge_ups_variable",
		"Numeric UPS variable by its NUT name (battery.charge in %, battery.runtime in s, ups.load in %, voltages in V, ...).", gaugeType, "ups", "var")
	descFlag = newDesc("upsbridge_ups_status_flag",
		"1 if the ups.status flag is set, 0 if not, for every flag NUT defines.", gaugeType, "ups", "flag")
	descOnBattery = newDesc("upsbridge_ups_on_battery",
		"1 while the UPS is on battery.", gaugeType, "ups")
	descLowBattery = newDesc("upsbridge_ups_low_battery",
		"1 while the UPS reports a low battery.", gaugeType, "ups")
	descCritical = newDesc("upsbridge_ups_critical",
		"1 while the UPS is critical by upsmon's rule (FSD, OB+LB, OFF too long, lost on battery past dead_time).", gaugeType, "ups")
	descComm = newDesc("upsbridge_ups_communicating",
		"1 while the source talks to the UPS.", gaugeType, "ups", "source")
	descGone = newDesc("upsbridge_ups_gone",
		"1 when the UPS's server no longer lists it.", gaugeType, "ups")
	descTS = newDesc("upsbridge_ups_state_timestamp_seconds",
		"Unix time of the reading the UPS state reflects.", gaugeType, "ups")
	descOutage = newDesc("upsbridge_ups_on_battery_duration_seconds",
		"Seconds since the current outage began; 0 on mains.", gaugeType, "ups")
	descSinkQueue = newDesc("upsbridge_sink_queue_length",
		"Messages waiting in the bridge's queue for the sink.", gaugeType, "sink")
	descSinkDropped = newDesc("upsbridge_sink_events_dropped_total",
		"Events dropped because the sink fell too far behind.", counterType, "sink")
	descMQTTConnected = newDesc("upsbridge_mqtt_connected",
		"1 while the bridge's MQTT publisher is connected to the broker.", gaugeType)
	descMQTTQueue = newDesc("upsbridge_mqtt_queue_depth",
		"Events spooled on disk, not yet acknowledged by the broker.", gaugeType)
	descAgentStatus = newDesc("upsbridge_agent_status",
		"1 for the agent's current status (idle, on_battery, staging, shutting_down, powering_off).", gaugeType, "agent", "status")
	descAgentStage = newDesc("upsbridge_agent_stage",
		"1 for the last stage the agent started in this outage.", gaugeType, "agent", "stage")
	descAgentNext = newDesc("upsbridge_agent_next_stage_seconds",
		"Countdown to the agent's next stage, if one is pending.", gaugeType, "agent", "next_stage")
	descInfo = newDesc("upsbridge_component_info",
		"Textual stats of sources and sinks: 1 with the value as a label.", gaugeType, "kind", "name", "key", "value")
)

// validStatName reports whether a stats key may become part of a metric
// name: ^[a-z][a-z0-9_]*$.
func validStatName(k string) bool {
	if k == "" || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// reserved are stats keys whose generated names would clash with the fixed
// metrics above.
var reserved = map[string]bool{"sink_queue_length": true, "sink_events_dropped_total": true}

// collect adds upsbridge's own families, computed from the latest states
// and the components' stats at scrape time, so nothing goes stale: a UPS
// that is no longer known stops being exported.
func (s *Server) collect(m *metricSet) {
	now := s.opts.Now()
	m.add(descBuild, 1, s.opts.Version, s.opts.BridgeID)
	for _, st := range s.snapshot() {
		u := st.UPS
		names := make([]string, 0, len(st.Vars))
		for k := range st.Vars {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if f, ok := st.Vars.Number(k); ok {
				m.add(descVar, f, u, k)
			}
		}
		for bit := 0; bit < 32; bit++ {
			f := bridge.Flag(1 << bit)
			if name := f.String(); name != "" {
				m.add(descFlag, b2f(st.Status.Has(f)), u, name)
			}
		}
		m.add(descOnBattery, b2f(st.OnBattery()), u)
		m.add(descLowBattery, b2f(st.LowBattery()), u)
		m.add(descCritical, b2f(st.Critical), u)
		src := ""
		if s.opts.Bridge != nil {
			src = s.opts.Bridge.SourceOf(u)
		}
		m.add(descComm, b2f(st.Comm && !st.Gone), u, src)
		m.add(descGone, b2f(st.Gone), u)
		if !st.Time.IsZero() {
			m.add(descTS, float64(st.Time.UnixMilli())/1000, u)
		}
		outage := 0.0
		if !st.OnBatterySince.IsZero() {
			outage = now.Sub(st.OnBatterySince).Seconds()
		}
		m.add(descOutage, outage, u)
	}
	for _, ec := range s.eventCounts() {
		m.add(descEvents, ec.Count, ec.UPS, ec.Type, ec.Host)
	}
	for _, ns := range s.sourceStats() {
		collectStats(m, "source", ns.Name, ns.Stats)
	}
	for _, ns := range s.sinkStats() {
		m.add(descSinkQueue, float64(ns.QueueLength), ns.Name)
		m.add(descSinkDropped, float64(ns.Dropped), ns.Name)
		if ns.Name == "mqtt" {
			if v, ok := ns.Stats["connected"].(bool); ok {
				m.add(descMQTTConnected, b2f(v))
			}
			if v, ok := number(ns.Stats["queue_depth"]); ok {
				m.add(descMQTTQueue, v)
			}
		}
		if agent, ok := ns.Stats["agent"].(string); ok && agent != "" {
			collectAgent(m, agent, ns.Stats)
		}
		collectStats(m, "sink", ns.Name, ns.Stats)
	}
}

// collectAgent exports the well-known keys of a shutdown agent's stats.
func collectAgent(m *metricSet, agent string, st map[string]any) {
	if v, ok := st["status"].(string); ok && v != "" {
		m.add(descAgentStatus, 1, agent, v)
	}
	if v, ok := st["stage"].(string); ok && v != "" {
		m.add(descAgentStage, 1, agent, v)
	}
	if v, ok := number(st["next_stage_in_s"]); ok {
		next, _ := st["next_stage"].(string)
		m.add(descAgentNext, v, agent, next)
	}
}

// collectStats exports a component's reported numbers as
// upsbridge_<kind>_<key>{<kind>="name"}: counters for keys ending in
// _total, gauges otherwise; bools as 0/1; strings as upsbridge_component_info.
// Keys that cannot be part of a metric name are skipped (and logged once);
// keys that would clash with a fixed family are skipped silently.
func collectStats(m *metricSet, kind, name string, st map[string]any) {
	keys := make([]string, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if reserved[kind+"_"+k] {
			continue
		}
		if !validStatName(k) {
			m.skip("upsbridge_"+kind+"_*", "a "+kind+" reported a stats key that is not ^[a-z][a-z0-9_]*$")
			continue
		}
		v := st[k]
		if str, ok := v.(string); ok {
			if k == "error" || strings.HasSuffix(k, "_error") {
				// Free text: as a label every distinct message would be a
				// new series. It is in /api/state.
				continue
			}
			m.add(descInfo, 1, kind, name, k, str)
			continue
		}
		f, ok := number(v)
		if !ok {
			continue
		}
		typ := gaugeType
		if len(k) > 6 && k[len(k)-6:] == "_total" {
			typ = counterType
		}
		m.add(newDesc("upsbridge_"+kind+"_"+k, fmt.Sprintf("Reported by the %s as %q.", kind, k), typ, kind), f, name)
	}
}

// number converts the numeric and bool types stats may hold.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case bool:
		return b2f(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float32:
		return float64(x), true
	case float64:
		return x, true
	case interface{ Seconds() float64 }: // time.Duration
		return x.Seconds(), true
	}
	return 0, false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
