package agent

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
)

// agentStats are the agent's numbers for observers. The policy is not safe
// for concurrent use, so the agent's goroutine copies what observers need
// into view after every evaluation; Stats reads only atomics.
type agentStats struct {
	decisions      atomic.Uint64
	warnings       atomic.Uint64
	actionsFailed  atomic.Uint64
	poweroffFailed atomic.Uint64
	events         atomic.Uint64
	view           atomic.Pointer[agentView]
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

// Stats implements bridge.StatsReporter for /metrics and /api/state. The
// keys agent, status, stage, next_stage and next_stage_in_s are the ones the
// HTTP endpoint exports as upsbridge_agent_status, upsbridge_agent_stage and
// upsbridge_agent_next_stage_seconds; they mean what the same fields of the
// agent's MQTT state mean (stage and next_stage are absent when empty,
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
		"decisions_total":       a.st.decisions.Load(),
		"warnings_total":        a.st.warnings.Load(),
		"actions_failed_total":  a.st.actionsFailed.Load(),
		"poweroff_failed_total": a.st.poweroffFailed.Load(),
		"events_total":          a.st.events.Load(),
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
		left := max(time.Until(v.nextAt), 0)
		out["next_stage_in_s"] = math.Round(left.Seconds()*1000) / 1000
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
