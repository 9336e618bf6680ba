package nutserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
	"sync"
	"time"
)

// Rights, as upsd's user.c names them.
const (
	rightLogin  = "LOGIN"
	rightMaster = "MASTER"
	rightFSD    = "FSD"
	rightSet    = "SET"
)

type user struct {
	name     string
	hash     [32]byte // SHA-256 of the password: compared in constant time
	rights   map[string]bool
	allCmds  bool
	instcmds map[string]bool // lower-case
}

func newUser(u User) *user {
	x := &user{name: u.Name, hash: sha256.Sum256([]byte(u.Password)), rights: map[string]bool{}, instcmds: map[string]bool{}}
	switch u.Upsmon {
	case "primary":
		x.rights[rightLogin], x.rights[rightMaster], x.rights[rightFSD] = true, true, true
	case "secondary":
		x.rights[rightLogin] = true
	}
	for _, a := range u.Actions {
		x.rights[strings.ToUpper(a)] = true
	}
	for _, c := range u.InstCmds {
		if strings.EqualFold(c, "ALL") {
			x.allCmds = true
		}
		x.instcmds[strings.ToLower(c)] = true
	}
	return x
}

// dummyHash is compared against when the user is unknown, so that an
// unknown name takes as long as a wrong password.
var dummyHash = sha256.Sum256([]byte("upsbridge: no such user"))

// checkPassword reports whether name/password match an account, in time
// independent of the password.
func (s *Server) checkPassword(name, password string) *user {
	h := sha256.Sum256([]byte(password))
	u := s.users[name]
	want := dummyHash
	if u != nil {
		want = u.hash
	}
	if subtle.ConstantTimeCompare(h[:], want[:]) != 1 || u == nil {
		return nil
	}
	return u
}

// limiter rate-limits failed credential checks per client address: a
// token bucket of burst failures, refilled one per refill. An empty
// bucket refuses credentials without checking them, so a brute force
// gets AuthBurst guesses and then one per AuthRefill.
type limiter struct {
	burst  float64
	refill time.Duration
	mu     sync.Mutex
	m      map[string]*bucket
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int // refusals not yet logged
	logged     time.Time
}

// maxBuckets bounds the limiter's memory under a spread-out attack.
const maxBuckets = 8192

func newLimiter(burst int, refill time.Duration) *limiter {
	return &limiter{burst: float64(burst), refill: refill, m: map[string]*bucket{}}
}

func (l *limiter) get(addr string, now time.Time) *bucket {
	b := l.m[addr]
	if b == nil {
		if len(l.m) >= maxBuckets {
			for k, o := range l.m {
				if now.Sub(o.last) > time.Duration(l.burst)*l.refill {
					delete(l.m, k)
				}
			}
			if len(l.m) >= maxBuckets {
				l.m = map[string]*bucket{}
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.m[addr] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.last))/float64(l.refill))
	b.last = now
	return b
}

// allow reports whether addr may have its credentials checked. When it may
// not, logNow says whether to log the refusals so far (at most once a
// minute per address) and how many there were.
func (l *limiter) allow(addr string, now time.Time) (ok bool, logNow bool, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(addr, now)
	if b.tokens >= 1 {
		return true, false, 0
	}
	b.suppressed++
	if now.Sub(b.logged) >= time.Minute {
		n := b.suppressed
		b.suppressed, b.logged = 0, now
		return false, true, n
	}
	return false, false, 0
}

// fail records a failed check from addr.
func (l *limiter) fail(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(addr, now)
	b.tokens = max(0, b.tokens-1)
}
