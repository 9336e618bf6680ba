package mqtt

import "sync/atomic"

// sinkStats are the sink's numbers for observers, written by the
// publishing goroutine and the connection's callbacks.
type sinkStats struct {
	connected       atomic.Bool
	queued          atomic.Int64
	publishFailures atomic.Uint64
	duplicates      atomic.Uint64 // states of another publisher on own UPS ids
	epoch           atomic.Uint64
}

// Connected reports whether the sink's broker connection is up.
func (s *Sink) Connected() bool { return s.stats.connected.Load() }

// Epoch returns this run's epoch (0 until it is chosen on the first
// connection).
func (s *Sink) Epoch() uint64 { return s.stats.epoch.Load() }

// QueueDepth returns how many events wait in the spool for the broker.
func (s *Sink) QueueDepth() int { return int(s.stats.queued.Load()) }

// Stats implements bridge.StatsReporter for /metrics and /readyz.
func (s *Sink) Stats() map[string]any {
	return map[string]any{
		"connected":              s.Connected(),
		"queue_depth":            s.QueueDepth(),
		"publish_failures_total": s.stats.publishFailures.Load(),
		"duplicate_states_total": s.stats.duplicates.Load(),
		"epoch":                  s.stats.epoch.Load(),
	}
}
