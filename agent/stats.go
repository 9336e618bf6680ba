package agent

import (
	"context"
	"io"
	"math"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/internal/metricname"
)

// agentStats are the agent's numbers for observers. The policy is not safe
// for concurrent use, so the agent's goroutine copies what observers need
// into view after every evaluation; Stats reads only atomics.
//
// The counters are the agent's typed metrics; what follows the policy's
// view is written at scrape time by writeMetrics.
type agentStats struct {
	decisions      *metrics.Counter
	warnings       *metrics.Counter
	actionsFailed  *metrics.Counter
	poweroffFailed *metrics.Counter
	events         *metrics.Counter
	view           atomic.Pointer[agentView]
}

// initMetrics registers the agent's metrics in set (the process's, which
// /metrics writes; nil: a set of its own): its counters and dry_run as
// upsbridge_sink_<key>{sink="agent-<id>"}, and a writer for the families
// that follow the policy's view.
func (a *Agent) initMetrics(set *metrics.Set) {
	set = metricname.Set(set)
	sink := "agent-" + a.opts.ID
	name := func(key string) string { return metricname.Series("upsbridge_sink_"+key, "sink", sink) }
	a.st.decisions = set.GetOrCreateCounter(name("decisions_total"))
	a.st.warnings = set.GetOrCreateCounter(name("warnings_total"))
	a.st.actionsFailed = set.GetOrCreateCounter(name("actions_failed_total"))
	a.st.poweroffFailed = set.GetOrCreateCounter(name("poweroff_failed_total"))
	a.st.events = set.GetOrCreateCounter(name("events_total"))
	dry := metricname.Bool(a.opts.DryRun)
	set.GetOrCreateGauge(name("dry_run"), func() float64 { return dry })
	set.RegisterMetricsWriter(a.writeMetrics)
}

// writeMetrics writes what follows the policy's view, whose series come
// and go with the outage: upsbridge_agent_status{agent,status},
// upsbridge_agent_stage{agent,stage},
// upsbridge_agent_next_stage_seconds{agent,next_stage}, and
// upsbridge_sink_protected, _next_stage_in_s and _outage_start_seconds
// with {sink="agent-<id>"}. Nothing before the first evaluation.
func (a *Agent) writeMetrics(w io.Writer) {
	v := a.st.view.Load()
	if v == nil {
		return
	}
	id, sink := a.opts.ID, "agent-"+a.opts.ID
	one := func(family string, value float64, labels ...string) {
		f := metricname.Family{Name: family, Type: "gauge"}
		f.Add(value, labels...)
		metricname.WriteFamily(w, &f)
	}
	if v.status != "" {
		one("upsbridge_agent_status", 1, "agent", id, "status", v.status)
	}
	if v.stage != "" {
		one("upsbridge_agent_stage", 1, "agent", id, "stage", v.stage)
	}
	if !v.nextAt.IsZero() {
		left := nextStageIn(v.nextAt)
		one("upsbridge_agent_next_stage_seconds", left, "agent", id, "next_stage", v.next)
		one("upsbridge_sink_next_stage_in_s", left, "sink", sink)
	}
	if !v.outageStart.IsZero() {
		one("upsbridge_sink_outage_start_seconds", float64(v.outageStart.UnixMilli())/1000, "sink", sink)
	}
	one("upsbridge_sink_protected", metricname.Bool(v.protected), "sink", sink)
}

// nextStageIn is the countdown to a stage due at nextAt, in seconds with
// millisecond precision, never negative.
func nextStageIn(nextAt time.Time) float64 {
	left := max(time.Until(nextAt), 0)
	return math.Round(left.Seconds()*1000) / 1000
}

// agentView is the policy's status at its last evaluation. nextAt is when
// the next stage fires by its on_battery_for (zero: no timed stage
// pending), so the countdown is computed when it is read, not when it was
// stored.
type agentView struct {
	status, stage, next string
	nextAt              time.Time
	outageStart         time.Time
	protected           bool
	reason              string
}

// setView stores the snapshot taken at now for Stats, unless it says what
// the stored one says (the common case: the agent evaluates every second).
func (a *Agent) setView(sn policy.Snapshot, now policy.Now) {
	v := agentView{status: sn.Status, stage: sn.Stage, next: sn.NextStage, protected: sn.Protected, reason: sn.Reason}
	if sn.Outage {
		v.outageStart = sn.OutageStart
	}
	if sn.NextStageIn != nil {
		// Read back with time.Until, on the monotonic clock.
		v.nextAt = time.Now().Add(*sn.NextStageIn)
	}
	if old := a.st.view.Load(); old != nil && *old == v {
		return
	}
	a.st.view.Store(&v)
}

// Stats implements bridge.StatsReporter for /api/state and /readyz. The
// keys agent, status, stage, next_stage and next_stage_in_s are the labels
// and values of upsbridge_agent_status, upsbridge_agent_stage and
// upsbridge_agent_next_stage_seconds (writeMetrics); they mean what the
// same fields of the agent's MQTT state mean (stage and next_stage are absent when empty,
// next_stage_in_s when the next stage has no on_battery_for). Also:
//
//   - decisions_total: actions the policy decided (outage start and end,
//     a stage, an undo, the final stage); warnings_total: its warnings
//     (stale or lost news), which are logged and published, not acted on.
//   - actions_failed_total: stage and undo commands that failed or could
//     not be queued, a failed final-stage command.
//   - poweroff_failed_total: power-off attempts that failed (each is
//     retried); events_total: events the agent published.
//   - protected: false while some supply has had no live state since
//     start or none for longer than max_state_age; problem then says why
//     (the HTTP endpoint's /readyz answers 503 with it).
//   - outage_start_seconds: unix time the current outage began (absent on
//     mains); dry_run: true when actions are only logged.
//
// There is no "connected" key: the agent's broker connection is its own
// business and does not by itself make the process unready; the lack of
// live news it causes does, through problem.
func (a *Agent) Stats() map[string]any {
	out := map[string]any{
		"agent":                 a.opts.ID,
		"dry_run":               a.opts.DryRun,
		"decisions_total":       a.st.decisions.Get(),
		"warnings_total":        a.st.warnings.Get(),
		"actions_failed_total":  a.st.actionsFailed.Get(),
		"poweroff_failed_total": a.st.poweroffFailed.Get(),
		"events_total":          a.st.events.Get(),
	}
	v := a.st.view.Load()
	if v == nil {
		return out
	}
	out["status"] = v.status
	out["protected"] = v.protected
	if !v.protected {
		out["problem"] = "agent " + a.opts.ID + " unprotected: " + v.reason
	}
	if v.stage != "" {
		out["stage"] = v.stage
	}
	if v.next != "" {
		out["next_stage"] = v.next
	}
	if !v.nextAt.IsZero() {
		out["next_stage_in_s"] = nextStageIn(v.nextAt)
	}
	if !v.outageStart.IsZero() {
		out["outage_start_seconds"] = float64(v.outageStart.UnixMilli()) / 1000
	}
	return out
}

// StatsSink returns a bridge sink that carries the agent's Stats to the
// process's observers: the HTTP endpoint reads the numbers of the bridge's
// sinks, and an agent is not one otherwise (it reads MQTT, not the
// bridge's routing). The sink consumes nothing: it empties its
// queue and drops what it is given.
func (a *Agent) StatsSink() bridge.Sink { return statsSink{a} }

// statsSink is the agent as a bridge sink that only reports stats.
type statsSink struct{ a *Agent }

// Name implements bridge.Sink.
func (s statsSink) Name() string { return "agent-" + s.a.opts.ID }

// Run implements bridge.Sink: it drains the queue until it is closed.
func (s statsSink) Run(ctx context.Context, q *bridge.Queue) error {
	for {
		if _, ok := q.Next(ctx); !ok {
			return nil
		}
	}
}

// Stats implements bridge.StatsReporter.
func (s statsSink) Stats() map[string]any { return s.a.Stats() }
