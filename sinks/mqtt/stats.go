package mqtt

import "sync/atomic"

// sinkStats are the sink's numbers for observers, written by the
// publishing goroutine and the connection's callbacks.
type sinkStats struct {
	connected       atomic.Bool
	queued          atomic.Int64
	publishFailures atomic.Uint64
	inboundRefused  atomic.Uint64 // received messages refused for their size
	inboundDropped  atomic.Uint64 // received messages dropped: handler busy
}

// Connected reports whether the sink's broker connection is up.
func (s *Sink) Connected() bool { return s.stats.connected.Load() }

// QueueDepth returns how many events wait in the spool for the broker.
func (s *Sink) QueueDepth() int { return int(s.stats.queued.Load()) }

// Stats implements bridge.StatsReporter for /metrics and /readyz.
func (s *Sink) Stats() map[string]any {
	return map[string]any{
		"connected":              s.Connected(),
		"queue_depth":            s.QueueDepth(),
		"publish_failures_total": s.stats.publishFailures.Load(),
		"inbound_refused_total":  s.stats.inboundRefused.Load(),
		"inbound_dropped_total":  s.stats.inboundDropped.Load(),
	}
}
