package httpapi

import (
	"compress/gzip"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/metricname"
)

// /metrics is the process's metrics set (github.com/VictoriaMetrics/metrics:
// every component registers its own typed metrics there), then the Go
// runtime's and the process's families from the same library. This file
// adds the families only the endpoint can know, computed at scrape time
// from the states and events it consumed, so nothing goes stale: a UPS that
// is no longer known stops being exported. Names, label names and types
// are a public contract (docs/deployment.md, testdata/metrics.golden);
// the library writes HELP lines without text for the metrics of the set;
// the families written here carry theirs.

// contentType is what /metrics answers with.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// initMetrics registers the endpoint's scrape-time families in set.
func (s *Server) initMetrics(set *metrics.Set) {
	set.RegisterMetricsWriter(s.writeMetrics)
}

// writeMetrics writes the endpoint's own families.
func (s *Server) writeMetrics(w io.Writer) {
	now := s.opts.Now()
	gauge := func(name, help string) *metricname.Family {
		return &metricname.Family{Name: name, Type: "gauge", Help: help}
	}
	var (
		vars = gauge("upsbridge_ups_variable",
			"Numeric UPS variable by its NUT name (battery.charge in %, battery.runtime in s, ups.load in %, voltages in V, ...).")
		flags = gauge("upsbridge_ups_status_flag",
			"1 if the ups.status flag is set, 0 if not, for every flag NUT defines.")
		onBattery = gauge("upsbridge_ups_on_battery", "1 while the UPS is on battery.")
		lowBatt   = gauge("upsbridge_ups_low_battery", "1 while the UPS reports a low battery.")
		critical  = gauge("upsbridge_ups_critical",
			"1 while the UPS is critical by upsmon's rule (FSD, OB+LB, OFF too long, lost on battery past dead_time).")
		comm   = gauge("upsbridge_ups_communicating", "1 while the source talks to the UPS.")
		gone   = gauge("upsbridge_ups_gone", "1 when the UPS's server no longer lists it.")
		ts     = gauge("upsbridge_ups_state_timestamp_seconds", "Unix time of the reading the UPS state reflects.")
		outage = gauge("upsbridge_ups_on_battery_duration_seconds", "Seconds since the current outage began; 0 on mains.")
		events = &metricname.Family{Name: "upsbridge_events_total", Type: "counter",
			Help: "Power events derived (or emitted by agents), by UPS, event type and host (agents only)."}
		queueLen = gauge("upsbridge_sink_queue_length", "Messages waiting in the bridge's queue for the sink.")
		dropped  = &metricname.Family{Name: "upsbridge_sink_events_dropped_total", Type: "counter",
			Help: "Events dropped because the sink fell too far behind."}
		info  = gauge("upsbridge_component_info", "Textual stats of sources and sinks: 1 with the value as a label.")
		build = gauge("upsbridge_build_info", "Always 1; labels carry the version and the bridge id.")
	)
	build.Add(1, "bridge_id", s.opts.BridgeID, "version", s.opts.Version)
	for _, st := range s.snapshot() {
		u := st.UPS
		for k := range st.Vars {
			if f, ok := st.Vars.Number(k); ok {
				vars.Add(f, "ups", u, "var", k)
			}
		}
		for bit := 0; bit < 32; bit++ {
			f := bridge.Flag(1 << bit)
			if name := f.String(); name != "" {
				flags.Add(metricname.Bool(st.Status.Has(f)), "flag", name, "ups", u)
			}
		}
		onBattery.Add(metricname.Bool(st.OnBattery()), "ups", u)
		lowBatt.Add(metricname.Bool(st.LowBattery()), "ups", u)
		critical.Add(metricname.Bool(st.Critical), "ups", u)
		src := ""
		if s.opts.Bridge != nil {
			src = s.opts.Bridge.SourceOf(u)
		}
		comm.Add(metricname.Bool(st.Comm && !st.Gone), "source", src, "ups", u)
		gone.Add(metricname.Bool(st.Gone), "ups", u)
		if !st.Time.IsZero() {
			ts.Add(float64(st.Time.UnixMilli())/1000, "ups", u)
		}
		d := 0.0
		if !st.OnBatterySince.IsZero() {
			d = now.Sub(st.OnBatterySince).Seconds()
		}
		outage.Add(d, "ups", u)
	}
	for _, ec := range s.eventCounts() {
		events.Add(ec.Count, "host", ec.Host, "type", ec.Type, "ups", ec.UPS)
	}
	for _, ns := range s.sourceStats() {
		addInfo(info, "source", ns.Name, ns.Stats)
	}
	for _, ns := range s.sinkStats() {
		queueLen.Add(float64(ns.QueueLength), "sink", ns.Name)
		dropped.Add(float64(ns.Dropped), "sink", ns.Name)
		addInfo(info, "sink", ns.Name, ns.Stats)
	}
	for _, f := range []*metricname.Family{build, info, events, vars, flags, onBattery, lowBatt, critical, comm, gone, ts, outage, queueLen, dropped} {
		metricname.WriteFamily(w, f)
	}
}

// addInfo adds a component's textual stats to upsbridge_component_info:
// 1 with the text as the value label. Error texts are left out: every
// distinct message would be a new series (they are in /api/state).
func addInfo(f *metricname.Family, kind, name string, st map[string]any) {
	keys := make([]string, 0, len(st))
	for k, v := range st {
		if _, ok := v.(string); ok && k != "error" && k != "problem" && !strings.HasSuffix(k, "_error") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		f.Add(1, "key", k, "kind", kind, "name", name, "value", st[k].(string))
	}
}

// gzipPool keeps gzip writers between scrapes: each one holds a few
// hundred KB of compression state that would otherwise be garbage every
// scrape. BestSpeed: the text is repetitive and compresses well anyway.
var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (present, and not with q=0).
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}
