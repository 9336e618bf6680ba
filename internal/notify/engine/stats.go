package engine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/internal/metricname"
)

// sinkStats are a notifier's numbers for /metrics and /api/state. They are
// written by the notifier's own goroutines (ingest and deliver) and read by
// the HTTP server's, so every field is atomic; nothing here is held across
// a send. The counters are the notifier's typed metrics (initMetrics).
type sinkStats struct {
	set  *metrics.Set
	name func(key string) string // the series of a key
	// lastOnce registers the last_success/last_error gauges at the first
	// delivery or failure: before that they have no value to show.
	successOnce, errorOnce sync.Once

	// depth mirrors the disk queue's length. depthMu orders the refreshes
	// (read the spool's length, then store it) so that two goroutines
	// refreshing after their own change cannot leave an older length last.
	depthMu sync.Mutex
	depth   atomic.Int64

	sent        *metrics.Counter // messages delivered (a digest or blip is one)
	eventsSent  *metrics.Counter // events delivered (a digest of 12 is 12)
	digests     *metrics.Counter // digest messages delivered
	failures    *metrics.Counter // failed attempts, whatever the kind
	dropped     *metrics.Counter // events given up on (see Stats)
	rateLimited *metrics.Counter // times delivery paused at the rate limit
	isRefused   atomic.Bool      // the service refuses the notifier's credentials now

	lastSuccess atomic.Int64 // unix nanoseconds; 0: never
	lastErrorAt atomic.Int64 // unix nanoseconds; 0: never
	lastError   atomic.Pointer[string]
}

// initMetrics registers the notifier's metrics in set (the process's, which
// /metrics writes; nil: a set of its own) as
// upsbridge_sink_<key>{sink="<sink name>"}, with the keys Stats documents.
func (st *sinkStats) initMetrics(set *metrics.Set, sink string) {
	st.set = metricname.Set(set)
	st.name = func(key string) string { return metricname.Series("upsbridge_sink_"+key, "sink", sink) }
	st.sent = st.set.GetOrCreateCounter(st.name("sent_total"))
	st.eventsSent = st.set.GetOrCreateCounter(st.name("events_sent_total"))
	st.digests = st.set.GetOrCreateCounter(st.name("digests_total"))
	st.failures = st.set.GetOrCreateCounter(st.name("failures_total"))
	st.dropped = st.set.GetOrCreateCounter(st.name("dropped_total"))
	st.rateLimited = st.set.GetOrCreateCounter(st.name("rate_limited_total"))
	st.set.GetOrCreateGauge(st.name("queue_depth"), func() float64 { return float64(st.depth.Load()) })
	st.set.GetOrCreateGauge(st.name("refused"), func() float64 { return metricname.Bool(st.isRefused.Load()) })
}

// refreshDepth stores the disk queue's current length. Call it after every
// change to the queue.
func (s *Sink) refreshDepth() {
	if s.sp == nil {
		return
	}
	s.st.depthMu.Lock()
	s.st.depth.Store(int64(s.sp.Len()))
	s.st.depthMu.Unlock()
}

// noteSuccess counts a delivered message.
func (s *Sink) noteSuccess(m Message, digest bool) {
	st := &s.st
	st.sent.Inc()
	st.eventsSent.Add(len(m.Records))
	if digest {
		st.digests.Inc()
	}
	st.lastSuccess.Store(time.Now().UnixNano())
	st.successOnce.Do(func() {
		st.set.GetOrCreateGauge(st.name("last_success_seconds"), func() float64 { return unixSeconds(st.lastSuccess.Load()) })
	})
	s.st.isRefused.Store(false)
}

// noteFailure counts a failed attempt. err is the error attempt returned,
// which already has the notifier's secrets removed (the text the logs show).
func (s *Sink) noteFailure(err error) {
	st := &s.st
	st.failures.Inc()
	msg := err.Error()
	st.lastError.Store(&msg)
	st.lastErrorAt.Store(time.Now().UnixNano())
	st.errorOnce.Do(func() {
		st.set.GetOrCreateGauge(st.name("last_error_seconds"), func() float64 { return unixSeconds(st.lastErrorAt.Load()) })
	})
}

// noteDropped counts n events given up on.
func (s *Sink) noteDropped(n int) {
	if n > 0 {
		s.st.dropped.Add(n)
	}
}

// Stats implements bridge.StatsReporter for /api/state; the same keys are
// the notifier's metrics upsbridge_sink_<key>{sink="notify-<name>"}
// (initMetrics; last_error is in /api/state only):
//
//   - queue_depth: events waiting in the notifier's disk queue (they
//     survive restarts; includes an ONBATT held back for its flap window).
//   - sent_total: messages delivered; a digest or a power-blip message
//     is one. events_sent_total counts the events they carried.
//   - digests_total: digest messages delivered: events coalesced into one
//     message because more were queued than the rate limit allowed.
//   - rate_limited_total: times delivery paused because the rate limit
//     (rate_limit per rate_window) was used up.
//   - failures_total: failed delivery attempts of any kind (network,
//     5xx, timeouts, a refused key or token, a rejected message); a
//     message retried ten times counts ten.
//   - dropped_total: events given up on, never to be delivered: a message
//     the service rejected as unsendable (too long, bad format), a message
//     that failed max_attempts times, an unreadable queue record, or events
//     that could not be written to the disk queue (queue_max reached, disk
//     error). Events the filters (events, ups, min_severity) leave out are
//     not counted, nor are messages whose credentials are refused: those
//     stay queued and are retried every permanent_retry.
//   - refused: true while the service refuses the notifier's URL, key or
//     token (the loud "NOTIFIER REFUSED" log); false after a delivery.
//   - last_success_seconds, last_error_seconds: unix times; absent until
//     the first delivery or failure.
//   - last_error: the text of the last failed attempt, with the notifier's
//     secrets removed exactly as in its logs; absent until the first failure.
//
// There is deliberately no "connected" key: a failing notification service
// must not make the bridge unready. The test message of notify-test is not
// counted.
func (s *Sink) Stats() map[string]any {
	st := &s.st
	out := map[string]any{
		"queue_depth":        st.depth.Load(),
		"sent_total":         st.sent.Get(),
		"events_sent_total":  st.eventsSent.Get(),
		"digests_total":      st.digests.Get(),
		"rate_limited_total": st.rateLimited.Get(),
		"failures_total":     st.failures.Get(),
		"dropped_total":      st.dropped.Get(),
		"refused":            st.isRefused.Load(),
	}
	if t := st.lastSuccess.Load(); t != 0 {
		out["last_success_seconds"] = unixSeconds(t)
	}
	if t := st.lastErrorAt.Load(); t != 0 {
		out["last_error_seconds"] = unixSeconds(t)
	}
	if e := st.lastError.Load(); e != nil {
		out["last_error"] = *e
	}
	return out
}

// unixSeconds turns unix nanoseconds into seconds with millisecond
// precision (what Prometheus timestamps carry).
func unixSeconds(ns int64) float64 {
	return float64(ns/int64(time.Millisecond)) / 1000
}
