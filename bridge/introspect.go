package bridge

// This file lets observers (the HTTP endpoints: metrics, readiness,
// /api/state) look inside a running bridge without taking part in routing.

// StatsReporter is the optional ability of a source or sink to show its
// numbers in /api/state and /readyz. Keys are snake_case; values are
// numbers (counters end in "_total", durations in "_seconds"), bools, or
// strings (strings are also exported as upsbridge_component_info). The key
// "connected" (bool) is special: false makes the process not ready; so is
// "problem" (a string saying why the process is not ready). Metrics are
// not made from these keys: a component registers its own typed metrics in
// Env.Metrics. Stats is called from the HTTP server's goroutines, so it
// must be safe for concurrent use and cheap.
type StatsReporter interface {
	Stats() map[string]any
}

// SinkQueue is a sink with its queue, as the bridge runs them.
type SinkQueue struct {
	Sink  Sink
	Queue *Queue
}

// Sources returns the sources added, in order. Call it only after every
// AddSource (it is not synchronised with AddSource).
func (b *Bridge) Sources() []Source {
	return append([]Source(nil), b.sources...)
}

// Sinks returns the sinks added with their queues, in order. Call it only
// after every AddSink.
func (b *Bridge) Sinks() []SinkQueue {
	out := make([]SinkQueue, len(b.sinks))
	for i, se := range b.sinks {
		out[i] = SinkQueue{Sink: se.sink, Queue: se.queue}
	}
	return out
}

// SourceOf returns the id of the source that reads ups, or "" if none does.
func (b *Bridge) SourceOf(ups string) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if e := b.upss[ups]; e != nil && e.owner != nil {
		return e.owner.ID()
	}
	return ""
}
