package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge"
)

// A broker may refuse one publication on a live connection (PUBACK reason
// code >= 0x80: not authorized, packet too large, quota exceeded) or it
// would refuse it (larger than the maximum packet size of its CONNACK).
// Such a message is retried with backoff a bounded number of times, then
// set aside in the dead-letter file, while every other topic keeps
// flowing. A lost connection is another matter: everything waits for the
// reconnect, as before.

// DeadLetterFile is the dead-letter file's name in the spool directory;
// when it reaches its size limit it is renamed with ".1" (replacing the
// previous one), so at most twice the limit is kept.
const DeadLetterFile = "deadletter.jsonl"

// Defaults for refused messages.
const (
	defaultRefusedAttempts = 5
	defaultRefusedBackoff  = time.Second
	defaultDeadLetterBytes = 1 << 20
	// maxRetrying bounds the refused messages waiting for a retry; beyond
	// it they go to the dead-letter file at once.
	maxRetrying = 256
	// maxStoredPayload bounds the payload kept per dead letter.
	maxStoredPayload = 64 << 10
	// recentDeadLetters are shown in /api/state.
	recentDeadLetters = 16
)

// RefusedError is a publication the broker refused (or would refuse) on a
// working connection.
type RefusedError struct {
	Code   byte   // MQTT v5 reason code
	Reason string // the broker's reason string, or the code's meaning
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("broker refused the message: %s (reason code 0x%02x)", e.Reason, e.Code)
}

// refusal returns the RefusedError of a publish's outcome, or nil when the
// error (if any) is not a refusal.
func refusal(resp *paho.PublishResponse, err error) *RefusedError {
	var re *RefusedError
	if errors.As(err, &re) {
		return re
	}
	if err == nil || resp == nil || resp.ReasonCode < 0x80 {
		return nil
	}
	reason := reasonText(resp.ReasonCode)
	if resp.Properties != nil && resp.Properties.ReasonString != "" {
		reason += ": " + resp.Properties.ReasonString
	}
	return &RefusedError{Code: resp.ReasonCode, Reason: reason}
}

func reasonText(code byte) string {
	switch code {
	case 0x80:
		return "unspecified error"
	case 0x83:
		return "implementation specific error"
	case 0x87:
		return "not authorized"
	case 0x90:
		return "topic name invalid"
	case 0x91:
		return "packet identifier in use"
	case 0x95:
		return "packet too large"
	case 0x97:
		return "quota exceeded"
	case 0x99:
		return "payload format invalid"
	}
	return "refused"
}

// packetSize is the size of a PUBLISH of m (QoS > 0, no properties).
func packetSize(m Message) int {
	rem := 2 + len(m.Topic) + 2 + 1 + len(m.Payload)
	n := 1
	for v := rem; v >= 128; v >>= 7 {
		n++
	}
	return 1 + n + rem
}

// DeadLetter is one message set aside, as written to the file (one JSON
// object a line) and shown in /api/state.
type DeadLetter struct {
	TS       string          `json:"ts"`
	Topic    string          `json:"topic"`
	Reason   string          `json:"reason"`
	Code     byte            `json:"code"`
	Attempts int             `json:"attempts"`
	Retain   bool            `json:"retain,omitempty"`
	Size     int             `json:"size"`
	Payload  json.RawMessage `json:"payload,omitempty"`      // when JSON and small enough
	Text     string          `json:"payload_text,omitempty"` // otherwise, cut to the bound
}

// retrying is a refused message waiting for its next attempt.
type retrying struct {
	msg      Message
	attempts int
	next     time.Time
	last     *RefusedError
}

// refusedBook is the sink's record of refused messages: those waiting for
// a retry (owned by the publishing goroutine) and what was set aside
// (read by Stats from other goroutines).
type refusedBook struct {
	path     string
	maxBytes int64
	attempts int
	backoff  time.Duration

	retry map[string]*retrying // by topic (retained) or topic#n (events)
	seq   uint64
	timer *time.Timer

	// total counts the dead letters since start (the sink's metric).
	total *metrics.Counter

	mu     sync.Mutex
	recent []DeadLetter
}

func newRefusedBook(dir string, attempts int, backoff time.Duration, maxBytes int64, total *metrics.Counter) *refusedBook {
	if attempts <= 0 {
		attempts = defaultRefusedAttempts
	}
	if backoff <= 0 {
		backoff = defaultRefusedBackoff
	}
	if maxBytes <= 0 {
		maxBytes = defaultDeadLetterBytes
	}
	return &refusedBook{path: filepath.Join(dir, DeadLetterFile), maxBytes: maxBytes, attempts: attempts, backoff: backoff, retry: map[string]*retrying{}, total: total}
}

// key names a message's retry slot: a retained message replaces the one
// before on its topic; events are each their own.
func (b *refusedBook) key(m Message) string {
	if m.Retain {
		return m.Topic
	}
	b.seq++
	return fmt.Sprintf("%s#%d", m.Topic, b.seq)
}

// delivered forgets a retained topic's refused message once a newer one
// got through.
func (b *refusedBook) delivered(m Message) {
	if m.Retain {
		delete(b.retry, m.Topic)
	}
}

// refused records one refusal of m (attempt counts what came before).
// It returns the dead letter when m is set aside, or nil when it waits
// for a retry.
func (b *refusedBook) refused(m Message, key string, prev int, re *RefusedError, now time.Time) *DeadLetter {
	n := prev + 1
	if n >= b.attempts || (len(b.retry) >= maxRetrying && b.retry[key] == nil) {
		delete(b.retry, key)
		return b.setAside(m, n, re, now)
	}
	b.retry[key] = &retrying{msg: m, attempts: n, next: now.Add(bridge.Backoff(n-1, b.backoff, 30*b.backoff, rand.Float64)), last: re}
	return nil
}

// due returns the keys whose retry time has come, in order.
func (b *refusedBook) due(now time.Time) []string {
	var keys []string
	for k, r := range b.retry {
		if !r.next.After(now) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// rearm sets the timer for the earliest retry.
func (b *refusedBook) rearm(now time.Time) {
	var next time.Time
	for _, r := range b.retry {
		if next.IsZero() || r.next.Before(next) {
			next = r.next
		}
	}
	b.arm(next, now)
}

// disarm forgets a timer that fired.
func (b *refusedBook) disarm() { b.timer = nil }

func (b *refusedBook) arm(at, now time.Time) {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if !at.IsZero() {
		b.timer = time.NewTimer(max(at.Sub(now), 0))
	}
}

// wake is the channel that fires when a retry is due (nil when none waits).
func (b *refusedBook) wake() <-chan time.Time {
	if b == nil || b.timer == nil {
		return nil
	}
	return b.timer.C
}

func (b *refusedBook) setAside(m Message, attempts int, re *RefusedError, now time.Time) *DeadLetter {
	dl := DeadLetter{
		TS: bridge.FormatTime(now), Topic: m.Topic, Reason: re.Reason, Code: re.Code,
		Attempts: attempts, Retain: m.Retain, Size: len(m.Payload),
	}
	if len(m.Payload) <= maxStoredPayload && json.Valid(m.Payload) {
		dl.Payload = json.RawMessage(m.Payload)
	} else {
		dl.Text = string(m.Payload[:min(len(m.Payload), maxStoredPayload)])
	}
	b.total.Inc()
	b.mu.Lock()
	shown := dl
	shown.Payload, shown.Text = nil, "" // /api/state shows what and why, not the body
	b.recent = append(b.recent, shown)
	if len(b.recent) > recentDeadLetters {
		b.recent = b.recent[len(b.recent)-recentDeadLetters:]
	}
	b.mu.Unlock()
	return &dl
}

// write appends a dead letter to the file, rotating it at its size limit.
func (b *refusedBook) write(dl *DeadLetter) error {
	line, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter for %s: %w", dl.Topic, err)
	}
	line = append(line, '\n')
	if st, err := os.Stat(b.path); err == nil && st.Size()+int64(len(line)) > b.maxBytes {
		if err := os.Rename(b.path, b.path+".1"); err != nil {
			return fmt.Errorf("rotate dead-letter file %s: %w", b.path, err)
		}
	}
	f, err := os.OpenFile(b.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open dead-letter file: %w", err)
	}
	_, err = f.Write(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write dead-letter file %s: %w", b.path, err)
	}
	return nil
}

// stats returns the count and the most recent dead letters.
func (b *refusedBook) stats() (uint64, []DeadLetter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total.Get(), append([]DeadLetter(nil), b.recent...)
}

// onRefused handles one refusal of m: a retry later, or the dead-letter
// file once the attempts are used up.
func (s *Sink) onRefused(m Message, key string, prev int, re *RefusedError) {
	s.stats.publishRefused.Inc()
	b := s.refused
	if key == "" {
		key = b.key(m)
		if r := b.retry[key]; r != nil {
			prev = r.attempts // a newer message on a topic still refused
		}
	}
	now := time.Now()
	if dl := b.refused(m, key, prev, re, now); dl != nil {
		s.log.Error("broker refused a message; set aside in the dead-letter file", "topic", m.Topic, "reason", re.Reason, "code", fmt.Sprintf("0x%02x", re.Code), "attempts", dl.Attempts, "file", b.path)
		if err := b.write(dl); err != nil {
			s.log.Error("dead-letter file", "err", err)
		}
	} else {
		s.log.Warn("broker refused a message; retrying with backoff", "topic", m.Topic, "reason", re.Reason, "code", fmt.Sprintf("0x%02x", re.Code), "attempt", prev+1, "of", b.attempts)
	}
	s.stats.retrying.Store(int64(len(b.retry)))
	b.rearm(now)
}

// retryRefused tries again the refused messages whose time has come;
// false means the connection failed.
func (s *Sink) retryRefused(ctx context.Context) bool {
	b := s.refused
	if len(b.retry) == 0 {
		return true
	}
	now := time.Now()
	for _, k := range b.due(now) {
		r := b.retry[k]
		if r == nil {
			continue // delivered by a newer message meanwhile
		}
		if !s.publishTry(ctx, r.msg, k, r.attempts) {
			return false
		}
	}
	s.stats.retrying.Store(int64(len(b.retry)))
	b.rearm(time.Now())
	return true
}

// setAsideAll writes what still waits for a retry to the dead-letter file
// when the sink stops, so nothing refused is dropped silently.
func (s *Sink) setAsideAll() {
	b := s.refused
	if b == nil || len(b.retry) == 0 {
		return
	}
	keys := b.due(time.Now().Add(time.Hour * 24 * 365))
	for _, k := range keys {
		r := b.retry[k]
		dl := b.setAside(r.msg, r.attempts, r.last, time.Now())
		if err := b.write(dl); err != nil {
			s.log.Error("dead-letter file", "err", err)
		}
		delete(b.retry, k)
	}
	b.arm(time.Time{}, time.Now())
	s.stats.retrying.Store(0)
}
