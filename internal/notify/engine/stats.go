package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// sinkStats are a notifier's numbers for /metrics and /api/state. They are
// written by the notifier's own goroutines (ingest and deliver) and read by
// the HTTP server's, so every field is atomic; nothing here is held across
// a send.
type sinkStats struct {
	// depth mirrors the disk queue's length. depthMu orders the refreshes
	// (read the spool's length, then store it) so that two goroutines
	// refreshing after their own change cannot leave an older length last.
	depthMu sync.Mutex
	depth   atomic.Int64

	sent        atomic.Uint64 // messages delivered (a digest or blip is one)
	eventsSent  atomic.Uint64 // events delivered (a digest of 12 is 12)
	digests     atomic.Uint64 // digest messages delivered
	failures    atomic.Uint64 // failed attempts, whatever the kind
	dropped     atomic.Uint64 // events given up on (see Stats)
	rateLimited atomic.Uint64 // times delivery paused at the rate limit
	isRefused   atomic.Bool   // the service refuses the notifier's credentials now

	lastSuccess atomic.Int64 // unix nanoseconds; 0: never
	lastErrorAt atomic.Int64 // unix nanoseconds; 0: never
	lastError   atomic.Pointer[string]
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
	s.st.sent.Add(1)
	s.st.eventsSent.Add(uint64(len(m.Records)))
	if digest {
		s.st.digests.Add(1)
	}
	s.st.lastSuccess.Store(time.Now().UnixNano())
	s.st.isRefused.Store(false)
}

// noteFailure counts a failed attempt. err is the error attempt returned,
// which already has the notifier's secrets removed (the text the logs show).
func (s *Sink) noteFailure(err error) {
	s.st.failures.Add(1)
	msg := err.Error()
	s.st.lastError.Store(&msg)
	s.st.lastErrorAt.Store(time.Now().UnixNano())
}

// noteDropped counts n events given up on.
func (s *Sink) noteDropped(n int) {
	if n > 0 {
		s.st.dropped.Add(uint64(n))
	}
}

// Stats implements bridge.StatsReporter for /metrics and /api/state
// (exported as upsbridge_sink_<key>{sink="notify-<name>"}):
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
		"sent_total":         st.sent.Load(),
		"events_sent_total":  st.eventsSent.Load(),
		"digests_total":      st.digests.Load(),
		"rate_limited_total": st.rateLimited.Load(),
		"failures_total":     st.failures.Load(),
		"dropped_total":      st.dropped.Load(),
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
