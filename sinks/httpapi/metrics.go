package httpapi

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upsbridge/upsbridge/bridge"
)

// Fixed metric descriptions. Per-source and per-sink numbers reported
// through bridge.StatsReporter get names built from their keys (see
// statMetric).
var (
	descBuild = prometheus.NewDesc("upsbridge_build_info",
		"Always 1; labels carry the version and the bridge id.", []string{"version", "bridge_id"}, nil)
	descVar = prometheus.NewDesc("upsbridge_ups_variable",
		"Numeric UPS variable by its NUT name (battery.charge in %, battery.runtime in s, ups.load in %, voltages in V, ...).",
		[]string{"ups", "var"}, nil)
	descFlag = prometheus.NewDesc("upsbridge_ups_status_flag",
		"1 if the ups.status flag is set, 0 if not, for every flag NUT defines.", []string{"ups", "flag"}, nil)
	descOnBattery = prometheus.NewDesc("upsbridge_ups_on_battery",
		"1 while the UPS is on battery.", []string{"ups"}, nil)
	descLowBattery = prometheus.NewDesc("upsbridge_ups_low_battery",
		"1 while the UPS reports a low battery.", []string{"ups"}, nil)
	descCritical = prometheus.NewDesc("upsbridge_ups_critical",
		"1 while the UPS is critical by upsmon's rule (FSD, OB+LB, OFF too long, lost on battery past dead_time).", []string{"ups"}, nil)
	descComm = prometheus.NewDesc("upsbridge_ups_communicating",
		"1 while the source talks to the UPS.", []string{"ups", "source"}, nil)
	descGone = prometheus.NewDesc("upsbridge_ups_gone",
		"1 when the UPS's server no longer lists it.", []string{"ups"}, nil)
	descTS = prometheus.NewDesc("upsbridge_ups_state_timestamp_seconds",
		"Unix time of the reading the UPS state reflects.", []string{"ups"}, nil)
	descOutage = prometheus.NewDesc("upsbridge_ups_on_battery_duration_seconds",
		"Seconds since the current outage began; 0 on mains.", []string{"ups"}, nil)
	descSinkQueue = prometheus.NewDesc("upsbridge_sink_queue_length",
		"Messages waiting in the bridge's queue for the sink.", []string{"sink"}, nil)
	descSinkDropped = prometheus.NewDesc("upsbridge_sink_events_dropped_total",
		"Events dropped because the sink fell too far behind.", []string{"sink"}, nil)
	descMQTTConnected = prometheus.NewDesc("upsbridge_mqtt_connected",
		"1 while the bridge's MQTT publisher is connected to the broker.", nil, nil)
	descMQTTQueue = prometheus.NewDesc("upsbridge_mqtt_queue_depth",
		"Events spooled on disk, not yet acknowledged by the broker.", nil, nil)
	descAgentStatus = prometheus.NewDesc("upsbridge_agent_status",
		"1 for the agent's current status (idle, on_battery, staging, shutting_down).", []string{"agent", "status"}, nil)
	descAgentStage = prometheus.NewDesc("upsbridge_agent_stage",
		"1 for the last stage the agent started in this outage.", []string{"agent", "stage"}, nil)
	descAgentNext = prometheus.NewDesc("upsbridge_agent_next_stage_seconds",
		"Countdown to the agent's next stage, if one is pending.", []string{"agent", "next_stage"}, nil)
	descInfo = prometheus.NewDesc("upsbridge_component_info",
		"Textual stats of sources and sinks: 1 with the value as a label.", []string{"kind", "name", "key", "value"}, nil)
)

// statName is what a stats key may look like to become part of a metric name.
var statName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// reserved are stats keys whose generated names would clash with the fixed
// metrics above.
var reserved = map[string]bool{"sink_queue_length": true, "sink_events_dropped_total": true}

// collector turns the latest states and the components' stats into
// metrics at scrape time, so nothing goes stale: a UPS that is no longer
// known stops being exported.
type collector struct{ s *Server }

// Describe is deliberately empty: the collector is unchecked because stats
// keys of sources and sinks are only known at scrape time.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.opts.Now()
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, s.opts.Version, s.opts.BridgeID)
	for _, st := range s.snapshot() {
		u := st.UPS
		names := make([]string, 0, len(st.Vars))
		for k := range st.Vars {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if f, ok := st.Vars.Number(k); ok {
				ch <- prometheus.MustNewConstMetric(descVar, prometheus.GaugeValue, f, u, k)
			}
		}
		for bit := 0; bit < 32; bit++ {
			f := bridge.Flag(1 << bit)
			if name := f.String(); name != "" {
				ch <- prometheus.MustNewConstMetric(descFlag, prometheus.GaugeValue, b2f(st.Status.Has(f)), u, name)
			}
		}
		ch <- prometheus.MustNewConstMetric(descOnBattery, prometheus.GaugeValue, b2f(st.OnBattery()), u)
		ch <- prometheus.MustNewConstMetric(descLowBattery, prometheus.GaugeValue, b2f(st.LowBattery()), u)
		ch <- prometheus.MustNewConstMetric(descCritical, prometheus.GaugeValue, b2f(st.Critical), u)
		src := ""
		if s.opts.Bridge != nil {
			src = s.opts.Bridge.SourceOf(u)
		}
		ch <- prometheus.MustNewConstMetric(descComm, prometheus.GaugeValue, b2f(st.Comm && !st.Gone), u, src)
		ch <- prometheus.MustNewConstMetric(descGone, prometheus.GaugeValue, b2f(st.Gone), u)
		if !st.Time.IsZero() {
			ch <- prometheus.MustNewConstMetric(descTS, prometheus.GaugeValue, float64(st.Time.UnixMilli())/1000, u)
		}
		outage := 0.0
		if !st.OnBatterySince.IsZero() {
			outage = now.Sub(st.OnBatterySince).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descOutage, prometheus.GaugeValue, outage, u)
	}
	for _, ns := range s.sourceStats() {
		c.stats(ch, "source", ns.Name, ns.Stats)
	}
	for _, ns := range s.sinkStats() {
		ch <- prometheus.MustNewConstMetric(descSinkQueue, prometheus.GaugeValue, float64(ns.QueueLength), ns.Name)
		ch <- prometheus.MustNewConstMetric(descSinkDropped, prometheus.CounterValue, float64(ns.Dropped), ns.Name)
		if ns.Name == "mqtt" {
			if v, ok := ns.Stats["connected"].(bool); ok {
				ch <- prometheus.MustNewConstMetric(descMQTTConnected, prometheus.GaugeValue, b2f(v))
			}
			if v, ok := number(ns.Stats["queue_depth"]); ok {
				ch <- prometheus.MustNewConstMetric(descMQTTQueue, prometheus.GaugeValue, v)
			}
		}
		if agent, ok := ns.Stats["agent"].(string); ok && agent != "" {
			c.agent(ch, agent, ns.Stats)
		}
		c.stats(ch, "sink", ns.Name, ns.Stats)
	}
}

// agent exports the well-known keys of a shutdown agent's stats.
func (c *collector) agent(ch chan<- prometheus.Metric, agent string, st map[string]any) {
	if v, ok := st["status"].(string); ok && v != "" {
		ch <- prometheus.MustNewConstMetric(descAgentStatus, prometheus.GaugeValue, 1, agent, v)
	}
	if v, ok := st["stage"].(string); ok && v != "" {
		ch <- prometheus.MustNewConstMetric(descAgentStage, prometheus.GaugeValue, 1, agent, v)
	}
	if v, ok := number(st["next_stage_in_s"]); ok {
		next, _ := st["next_stage"].(string)
		ch <- prometheus.MustNewConstMetric(descAgentNext, prometheus.GaugeValue, v, agent, next)
	}
}

// stats exports a component's reported numbers as
// upsbridge_<kind>_<key>{<kind>="name"}: counters for keys ending in
// _total, gauges otherwise; bools as 0/1; strings as upsbridge_component_info.
func (c *collector) stats(ch chan<- prometheus.Metric, kind, name string, st map[string]any) {
	keys := make([]string, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !statName.MatchString(k) || reserved[kind+"_"+k] {
			continue
		}
		v := st[k]
		if str, ok := v.(string); ok {
			ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, kind, name, k, str)
			continue
		}
		f, ok := number(v)
		if !ok {
			continue
		}
		vt := prometheus.GaugeValue
		help := fmt.Sprintf("Reported by the %s as %q.", kind, k)
		if len(k) > 6 && k[len(k)-6:] == "_total" {
			vt = prometheus.CounterValue
		}
		desc := prometheus.NewDesc("upsbridge_"+kind+"_"+k, help, []string{kind}, nil)
		m, err := prometheus.NewConstMetric(desc, vt, f, name)
		if err != nil {
			continue
		}
		ch <- m
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
