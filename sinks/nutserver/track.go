package nutserver

import (
	"crypto/rand"
	"fmt"
	"sync"
	"time"
)

// tracker keeps the results of SET VAR and INSTCMD for GET TRACKING, as
// upsd does for TRACKINGDELAY (1 h), with a bound on entries.
type tracker struct {
	ttl time.Duration
	max int
	mu  sync.Mutex
	m   map[string]*trackEntry
	ids []string // insertion order, for expiry
}

type trackEntry struct {
	result string // "PENDING", "SUCCESS", or an ERR code (UNKNOWN, FAILED, INVALID-ARGUMENT)
	at     time.Time
}

func newTracker(ttl time.Duration, max int) *tracker {
	return &tracker{ttl: ttl, max: max, m: map[string]*trackEntry{}}
}

// newID returns an upper-case UUIDv4 as upsd's nut_uuid_v4 does.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// add registers a pending command and returns its id.
func (t *tracker) add(now time.Time) string {
	id := newID()
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.ids) > 0 && (len(t.ids) >= t.max || now.Sub(t.m[t.ids[0]].at) > t.ttl) {
		delete(t.m, t.ids[0])
		t.ids = t.ids[1:]
	}
	t.m[id] = &trackEntry{result: "PENDING", at: now}
	t.ids = append(t.ids, id)
	return id
}

func (t *tracker) set(id, result string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[id]; e != nil {
		e.result = result
	}
}

// get returns the result of id; ok is false for an unknown or expired id.
func (t *tracker) get(id string, now time.Time) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil || now.Sub(e.at) > t.ttl {
		return "", false
	}
	return e.result, true
}
