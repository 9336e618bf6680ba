package intake

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Reason says why a message was dropped. ReasonNone is an accepted message.
type Reason int

// The reasons a message is dropped, each with its own counter.
const (
	ReasonNone Reason = iota
	// ReasonMalformed: a topic outside what was subscribed, a payload too
	// large, not JSON, a field missing or wrong, a UPS other than the
	// topic's.
	ReasonMalformed
	// ReasonUnsigned: require_signed, and the message carries no signature
	// (availability never does).
	ReasonUnsigned
	// ReasonBadSignature: the signature does not verify.
	ReasonBadSignature
	// ReasonReplay: (epoch, seq) does not advance past the highest seen.
	ReasonReplay
	// ReasonSkew: the first live epoch of a bridge the agent knows nothing
	// of is dated further than max_state_age from the agent's clock.
	ReasonSkew
	// ReasonUnknownBridge: availability of a bridge that publishes none of
	// the supplies.
	ReasonUnknownBridge
	// ReasonConflict: a state of a supply from another bridge than the one
	// it is pinned to, or than the one whose states are accepted.
	ReasonConflict
	numReasons
)

var reasonNames = [numReasons]string{"accepted", "malformed", "unsigned", "bad_signature", "replay", "skew", "unknown_bridge", "conflict"}

// String is the reason's metric label.
func (r Reason) String() string {
	if r >= 0 && r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Counts are the intake's counters: messages accepted and dropped by reason.
type Counts struct {
	Accepted uint64
	// Dropped is indexed by Reason (ReasonNone unused).
	Dropped [numReasons]uint64
}

// Total is every message read, accepted or not.
func (c Counts) Total() uint64 {
	n := c.Accepted
	for _, d := range c.Dropped[1:] {
		n += d
	}
	return n
}

// supply is what the checks remember of one supply.
type supply struct {
	ups   string
	topic string // its state topic
	pin   string // supplies[].bridge, "" when any bridge may publish it
	// known is true once an order is known for the supply (state file,
	// history or live news); order is the highest accepted.
	known bool
	order mqttwire.Order
	// bridge published the last accepted state; lastAt is when (agent's
	// clock), for telling two live bridges from a bridge that moved.
	bridge string
	lastAt time.Time
	// lastConflict rate-limits the verification of another bridge's
	// states and the conflict news.
	lastConflict time.Time
	conflicts    bool
	// lastResub rate-limits asking the broker for the retained state again
	// while a skewed first epoch is held.
	lastResub time.Time
}

// verdict is the outcome of checking one message.
type verdict struct {
	reason Reason
	why    func() error // why, for the log line (built only when logged)
	n      news.News
	// conflict, when set, is news of two bridges publishing one supply.
	conflict *news.News
	// resubscribe asks for the retained state of n.UPS again (a skewed
	// first epoch is held until history teaches the epoch).
	resubscribe bool
	// bridgesChanged: the set of bridges whose availability is read
	// changed.
	bridgesChanged bool
}

var (
	sigKey           = []byte(`"sig"`)
	errUnsignedAvail = errors.New("availability is unsigned by nature and require_signed is on")
)

// checker holds the checks' memory. It is not safe for concurrent use; the
// intake calls it under its lock.
type checker struct {
	topics   mqttwire.Topics
	verifier *signing.Verifier
	required bool
	maxAge   time.Duration
	// conflictWindow: a state from another bridge while the current one
	// published within this window is a conflict, not a move.
	conflictWindow time.Duration
	// every rate-limits conflict news, conflict verification and
	// resubscription per supply.
	every time.Duration

	supplies map[string]*supply
	// bridges are the bridges whose availability is read (pinned, or
	// publishing a supply) with the highest epoch accepted from each.
	bridges map[string]uint64
}

func newChecker(o *Options) *checker {
	c := &checker{
		topics: mqttwire.Topics{Prefix: o.TopicPrefix}, verifier: o.Verifier, required: o.RequireSigned,
		maxAge: o.MaxStateAge, conflictWindow: o.ConflictWindow, every: o.RateLimit,
		supplies: map[string]*supply{}, bridges: map[string]uint64{},
	}
	for _, s := range o.Supplies {
		sp := &supply{ups: s.UPS, pin: s.Bridge, topic: c.topics.State(s.UPS)}
		if ord, ok := o.Known[s.UPS]; ok {
			sp.known, sp.order = true, ord
		}
		c.supplies[s.UPS] = sp
		if s.Bridge != "" {
			c.bridges[s.Bridge] = 0
		}
	}
	return c
}

// check classifies one message read at now (the agent's clock); live is
// false for a delivery from the broker's retained store. Cheap checks come
// first: topic, size, the presence of a signature, JSON, fields, order, and
// only then the signature itself.
func (c *checker) check(topic string, payload []byte, live bool, now time.Time) verdict {
	t := c.topics.Parse(topic)
	switch t.Kind {
	case mqttwire.KindState:
		sp := c.supplies[t.ID]
		if sp == nil {
			return verdict{reason: ReasonMalformed, why: func() error { return fmt.Errorf("topic %s: not a supply of this agent", topic) }}
		}
		return c.state(sp, payload, live, now)
	case mqttwire.KindUPSAvailability:
		if c.supplies[t.ID] == nil {
			return verdict{reason: ReasonMalformed, why: func() error { return fmt.Errorf("topic %s: not a supply of this agent", topic) }}
		}
		return c.availability(news.KindUPSAvailability, t.ID, topic, payload, live, now)
	case mqttwire.KindBridgeAvailability:
		if _, ok := c.bridges[t.ID]; !ok {
			return verdict{reason: ReasonUnknownBridge, why: func() error { return fmt.Errorf("topic %s: bridge %q publishes none of the supplies", topic, t.ID) }}
		}
		return c.availability(news.KindBridgeAvailability, t.ID, topic, payload, live, now)
	}
	return verdict{reason: ReasonMalformed, why: func() error { return fmt.Errorf("topic %q: not one the agent reads", truncate(topic)) }}
}

func (c *checker) availability(kind news.Kind, id, topic string, payload []byte, live bool, now time.Time) verdict {
	if len(payload) > 64 {
		return verdict{reason: ReasonMalformed, why: func() error { return fmt.Errorf("%s: %d bytes is no availability word", topic, len(payload)) }}
	}
	online, ok := mqttwire.ParseAvailability(payload)
	if !ok {
		return verdict{reason: ReasonMalformed, why: func() error {
			return fmt.Errorf("%s: %q is neither %s nor %s", topic, payload, mqttwire.Online, mqttwire.Offline)
		}}
	}
	if c.required {
		return verdict{reason: ReasonUnsigned, why: func() error { return fmt.Errorf("%s: %w", topic, errUnsignedAvail) }}
	}
	n := news.News{Kind: kind, Live: live, At: now, Online: online}
	if kind == news.KindBridgeAvailability {
		n.Bridge = id
	} else {
		n.UPS = id
	}
	return verdict{n: n}
}

func (c *checker) state(sp *supply, payload []byte, live bool, now time.Time) verdict {
	topic := sp.topic
	if len(payload) > mqttwire.MaxPayload {
		return verdict{reason: ReasonMalformed, why: func() error {
			return fmt.Errorf("%s: %d bytes, more than %d", topic, len(payload), mqttwire.MaxPayload)
		}}
	}
	if len(payload) == 0 || payload[0] != '{' {
		return verdict{reason: ReasonMalformed, why: func() error { return fmt.Errorf("%s: %d bytes, not a JSON object", topic, len(payload)) }}
	}
	if c.required && !bytes.Contains(payload, sigKey) {
		return verdict{reason: ReasonUnsigned, why: func() error { return fmt.Errorf("%s: %w", topic, signing.ErrUnsigned) }}
	}
	// A replay of a state already seen (the commonest junk a hostile client
	// can make of real signed states) is recognised without decoding.
	if b, ord, ok := quickOrder(payload); ok && sp.known && string(b) == sp.bridge && !ord.After(sp.order) && (live || ord != sp.order) {
		return verdict{reason: ReasonReplay, why: func() error {
			return fmt.Errorf("%s: bridge %q epoch %d seq %d does not follow epoch %d seq %d", topic, b, ord.Epoch, ord.Seq, sp.order.Epoch, sp.order.Seq)
		}}
	}
	p, ts, err := mqttwire.DecodeState(payload)
	if err != nil {
		return verdict{reason: ReasonMalformed, why: func() error { return fmt.Errorf("%s: %w", topic, err) }}
	}
	if p.UPS != sp.ups {
		return verdict{reason: ReasonMalformed, why: func() error { return fmt.Errorf("%s: field ups: %q on the topic of %q", topic, p.UPS, sp.ups) }}
	}
	if p.Bridge == "" {
		return verdict{reason: ReasonMalformed, why: func() error {
			return fmt.Errorf("%s: field bridge: empty (a state names the bridge that publishes it)", topic)
		}}
	}
	if c.required && p.Sig == "" {
		return verdict{reason: ReasonUnsigned, why: func() error { return fmt.Errorf("%s: %w", topic, signing.ErrUnsigned) }}
	}
	ord := p.Order()

	// Another bridge than the pinned one: never accepted.
	if sp.pin != "" && p.Bridge != sp.pin {
		v := verdict{reason: ReasonConflict, why: func() error {
			return fmt.Errorf("%s: published by bridge %q, but the supply is pinned to %q", topic, p.Bridge, sp.pin)
		}}
		c.conflictNews(&v, sp, p, now)
		return v
	}
	// Another bridge than the current one, which is still publishing: two
	// bridges claim the UPS id. The order decides which one's states count.
	other := sp.bridge != "" && p.Bridge != sp.bridge && now.Sub(sp.lastAt) < c.conflictWindow

	if sp.known && !ord.After(sp.order) {
		if !live && ord == sp.order {
			// The retained copy of the state already accepted (after a
			// reconnect, or the one in the state file): history again.
			if err := c.verify(p); err != nil {
				return c.sigVerdict(topic, err)
			}
			r := news.ReadingFrom(p, ts)
			r.Signed = c.verifier != nil && p.Sig != ""
			return verdict{n: news.News{Kind: news.KindState, UPS: sp.ups, Bridge: p.Bridge, Live: false, At: now, Reading: r}}
		}
		v := verdict{reason: ReasonReplay, why: func() error {
			return fmt.Errorf("%s: bridge %q epoch %d seq %d does not follow epoch %d seq %d", topic, p.Bridge, ord.Epoch, ord.Seq, sp.order.Epoch, sp.order.Seq)
		}}
		if other {
			v.reason = ReasonConflict
			v.why = func() error {
				return fmt.Errorf("%s: bridge %q publishes it too (epoch %d seq %d), beside bridge %q", topic, p.Bridge, ord.Epoch, ord.Seq, sp.bridge)
			}
			c.conflictNews(&v, sp, p, now)
		}
		return v
	}
	if e, ok := c.bridges[p.Bridge]; ok && e > ord.Epoch {
		return verdict{reason: ReasonReplay, why: func() error {
			return fmt.Errorf("%s: bridge %q epoch %d is older than its epoch %d", topic, p.Bridge, ord.Epoch, e)
		}}
	}
	if live && !sp.known && c.bridges[p.Bridge] == 0 && c.maxAge > 0 {
		if d := absDur(now.Sub(ts)); d > c.maxAge {
			v := verdict{reason: ReasonSkew, n: news.News{UPS: sp.ups}, why: func() error {
				return fmt.Errorf("%s: the first epoch (%d) of bridge %q is dated %s, %s away from this host's clock (max_state_age %s): clock skew or a replay; held until the bridge's retained state teaches its epoch",
					topic, ord.Epoch, p.Bridge, mqttwire.FormatTime(ts), d.Round(time.Second), c.maxAge)
			}}
			if sp.lastResub.IsZero() || now.Sub(sp.lastResub) >= c.every {
				sp.lastResub = now
				v.resubscribe = true
			}
			return v
		}
	}
	if err := c.verify(p); err != nil {
		return c.sigVerdict(topic, err)
	}

	// Accepted.
	v := verdict{}
	if other {
		c.conflictNews(&v, sp, p, now)
	}
	if p.Bridge != sp.bridge {
		v.bridgesChanged = c.moveBridge(sp, p.Bridge)
	}
	sp.known, sp.order, sp.bridge, sp.lastAt = true, ord, p.Bridge, now
	if c.bridges[p.Bridge] < ord.Epoch {
		c.bridges[p.Bridge] = ord.Epoch
	}
	r := news.ReadingFrom(p, ts)
	r.Signed = c.verifier != nil && p.Sig != ""
	v.n = news.News{Kind: news.KindState, UPS: sp.ups, Bridge: p.Bridge, Live: live, At: now, Reading: r}
	return v
}

// verify checks the signature when a verifier is configured and the state
// is signed or signatures are required.
func (c *checker) verify(p mqttwire.StatePayload) error {
	if c.verifier == nil || (p.Sig == "" && !c.required) {
		return nil
	}
	return c.verifier.VerifyState(p)
}

func (c *checker) sigVerdict(topic string, err error) verdict {
	r := ReasonBadSignature
	if errors.Is(err, signing.ErrUnsigned) {
		r = ReasonUnsigned
	}
	return verdict{reason: r, why: func() error { return fmt.Errorf("%s: %w", topic, err) }}
}

// conflictNews adds news of a conflict to v, at most once per rate-limit
// interval per supply, and only for a state whose signature verifies (when
// signatures are checked), so forged states cannot raise the alarm.
func (c *checker) conflictNews(v *verdict, sp *supply, p mqttwire.StatePayload, now time.Time) {
	if !sp.lastConflict.IsZero() && now.Sub(sp.lastConflict) < c.every {
		return
	}
	sp.lastConflict = now
	if err := c.verify(p); err != nil {
		return
	}
	var d string
	if sp.pin != "" {
		d = fmt.Sprintf("ups %s is pinned to bridge %s, but bridge %s publishes it too", sp.ups, sp.pin, p.Bridge)
	} else {
		d = fmt.Sprintf("ups %s is published by two bridges: %s and %s", sp.ups, sp.bridge, p.Bridge)
	}
	sp.conflicts = true
	v.conflict = &news.News{Kind: news.KindConflict, UPS: sp.ups, Bridge: p.Bridge, Live: true, At: now, Detail: d}
}

// moveBridge records that sp is now published by b and keeps the bridge set
// to the pinned bridges and those publishing a supply, so it stays bounded.
func (c *checker) moveBridge(sp *supply, b string) (changed bool) {
	old := sp.bridge
	sp.bridge = b
	if _, ok := c.bridges[b]; !ok {
		c.bridges[b] = 0
		changed = true
	}
	if old == "" {
		return changed
	}
	for _, s := range c.supplies {
		if s.bridge == old || s.pin == old {
			return changed
		}
	}
	delete(c.bridges, old)
	return true
}

var (
	keyBridge = []byte(`"bridge":"`)
	keyEpoch  = []byte(`"epoch":`)
	keySeq    = []byte(`"seq":`)
)

// quickOrder reads bridge, epoch and seq from the head of a state payload
// without decoding it: from the keys that come before any nested object or
// array, as every encoding of a StatePayload by encoding/json (field order:
// ups, bridge, epoch, seq, ..., flags, vars) has them. It is only used to
// drop a replay early; ok is false when the head does not have that shape,
// and the payload then goes through the full decode.
func quickOrder(p []byte) (bridge []byte, o mqttwire.Order, ok bool) {
	if len(p) == 0 || p[0] != '{' {
		return nil, o, false
	}
	head := p[1:]
	if i := bytes.IndexAny(head, "{["); i >= 0 {
		head = head[:i]
	}
	i := bytes.Index(head, keyBridge)
	if i < 0 {
		return nil, o, false
	}
	rest := head[i+len(keyBridge):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 || j > mqttwire.MaxIDLen {
		return nil, o, false
	}
	b := rest[:j]
	if o.Epoch, ok = quickUint(head, keyEpoch); !ok {
		return nil, o, false
	}
	if o.Seq, ok = quickUint(head, keySeq); !ok {
		return nil, o, false
	}
	// Only the first occurrence counts; a second one makes the head
	// ambiguous.
	if bytes.Count(head, keyBridge) != 1 || bytes.Count(head, keyEpoch) != 1 || bytes.Count(head, keySeq) != 1 {
		return nil, o, false
	}
	return b, o, true
}

func quickUint(head, key []byte) (uint64, bool) {
	i := bytes.Index(head, key)
	if i < 0 {
		return 0, false
	}
	d := head[i+len(key):]
	var n uint64
	k := 0
	for ; k < len(d) && k < 20 && d[k] >= '0' && d[k] <= '9'; k++ {
		n = n*10 + uint64(d[k]-'0')
	}
	if k == 0 || k == 20 || k < len(d) && d[k] != ',' && d[k] != '}' {
		return 0, false
	}
	return n, true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// truncate keeps a hostile topic name short in logs.
func truncate(s string) string {
	if len(s) > 96 {
		return s[:96] + "…"
	}
	return s
}
