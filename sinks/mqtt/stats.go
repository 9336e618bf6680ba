package mqtt

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/internal/metricname"
)

// sinkStats are the sink's numbers for observers, written by the
// publishing goroutine and the connection's callbacks. The counters are the
// sink's typed metrics (initMetrics); the gauges read the atomics.
type sinkStats struct {
	connected       atomic.Bool
	queued          atomic.Int64
	publishFailures *metrics.Counter
	// commandsRejected counts commands and sets refused before the UPS.
	commandsRejected *metrics.Counter
	// publishRefused counts refusals by the broker (PUBACK >= 0x80, or
	// larger than its maximum packet size); retrying is how many refused
	// messages wait for a retry; refused holds the dead letters, whose
	// number is deadLetters.
	publishRefused *metrics.Counter
	retrying       atomic.Int64
	refused        atomic.Pointer[refusedBook]
	deadLetters    *metrics.Counter
	duplicates     *metrics.Counter // states of another publisher on own UPS ids
	epoch          atomic.Uint64
	inboundRefused *metrics.Counter // received messages refused for their size
	inboundDropped *metrics.Counter // received messages dropped: handler busy
}

// initMetrics registers the sink's metrics in set (the process's, which
// /metrics writes; nil: a set of its own): upsbridge_sink_<name>{sink="mqtt"}
// and the publisher's upsbridge_mqtt_connected and upsbridge_mqtt_queue_depth.
func (st *sinkStats) initMetrics(set *metrics.Set) {
	set = metricname.Set(set)
	name := func(key string) string { return metricname.Series("upsbridge_sink_"+key, "sink", "mqtt") }
	st.publishFailures = set.GetOrCreateCounter(name("publish_failures_total"))
	st.commandsRejected = set.GetOrCreateCounter(name("commands_rejected_total"))
	st.publishRefused = set.GetOrCreateCounter(name("publish_refused_total"))
	st.deadLetters = set.GetOrCreateCounter(name("dead_letters_total"))
	st.duplicates = set.GetOrCreateCounter(name("duplicate_states_total"))
	st.inboundRefused = set.GetOrCreateCounter(name("inbound_refused_total"))
	st.inboundDropped = set.GetOrCreateCounter(name("inbound_dropped_total"))
	connected := func() float64 { return metricname.Bool(st.connected.Load()) }
	queued := func() float64 { return float64(st.queued.Load()) }
	set.GetOrCreateGauge(name("connected"), connected)
	set.GetOrCreateGauge(name("queue_depth"), queued)
	set.GetOrCreateGauge("upsbridge_mqtt_connected", connected)
	set.GetOrCreateGauge("upsbridge_mqtt_queue_depth", queued)
	set.GetOrCreateGauge(name("refused_retrying"), func() float64 { return float64(st.retrying.Load()) })
	set.GetOrCreateGauge(name("epoch"), func() float64 { return float64(st.epoch.Load()) })
}

// Connected reports whether the sink's broker connection is up.
func (s *Sink) Connected() bool { return s.stats.connected.Load() }

// Epoch returns this run's epoch (0 until it is chosen on the first
// connection).
func (s *Sink) Epoch() uint64 { return s.stats.epoch.Load() }

// QueueDepth returns how many events wait in the spool for the broker.
func (s *Sink) QueueDepth() int { return int(s.stats.queued.Load()) }

// DeadLetters returns how many messages were set aside since start and the
// most recent of them.
func (s *Sink) DeadLetters() (uint64, []DeadLetter) {
	if b := s.stats.refused.Load(); b != nil {
		return b.stats()
	}
	return 0, nil
}

// Stats implements bridge.StatsReporter for /readyz and /api/state (which
// shows the recent dead letters).
func (s *Sink) Stats() map[string]any {
	n, recent := s.DeadLetters()
	return map[string]any{
		"publish_refused_total":   s.stats.publishRefused.Get(),
		"refused_retrying":        s.stats.retrying.Load(),
		"dead_letters_total":      n,
		"dead_letters":            recent,
		"connected":               s.Connected(),
		"queue_depth":             s.QueueDepth(),
		"publish_failures_total":  s.stats.publishFailures.Get(),
		"commands_rejected_total": s.stats.commandsRejected.Get(),
		"duplicate_states_total":  s.stats.duplicates.Get(),
		"epoch":                   s.stats.epoch.Load(),
		"inbound_refused_total":   s.stats.inboundRefused.Get(),
		"inbound_dropped_total":   s.stats.inboundDropped.Get(),
	}
}
