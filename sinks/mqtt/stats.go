package mqtt

import "sync/atomic"

// sinkStats are the sink's numbers for observers, written by the
// publishing goroutine and the connection's callbacks.
type sinkStats struct {
	connected       atomic.Bool
	queued          atomic.Int64
	publishFailures atomic.Uint64
	// commandsRejected counts commands and sets refused before the UPS.
	commandsRejected atomic.Uint64
	// publishRefused counts refusals by the broker (PUBACK >= 0x80, or
	// larger than its maximum packet size); retrying is how many refused
	// messages wait for a retry; refused holds the dead letters.
	publishRefused atomic.Uint64
	retrying       atomic.Int64
	refused        atomic.Pointer[refusedBook]
	duplicates     atomic.Uint64 // states of another publisher on own UPS ids
	epoch          atomic.Uint64
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

// Stats implements bridge.StatsReporter for /metrics, /readyz and
// /api/state (which shows the recent dead letters).
func (s *Sink) Stats() map[string]any {
	n, recent := s.DeadLetters()
	return map[string]any{
		"publish_refused_total":   s.stats.publishRefused.Load(),
		"refused_retrying":        s.stats.retrying.Load(),
		"dead_letters_total":      n,
		"dead_letters":            recent,
		"connected":               s.Connected(),
		"queue_depth":             s.QueueDepth(),
		"publish_failures_total":  s.stats.publishFailures.Load(),
		"commands_rejected_total": s.stats.commandsRejected.Load(),
		"duplicate_states_total":  s.stats.duplicates.Load(),
		"epoch":                   s.stats.epoch.Load(),
	}
}
