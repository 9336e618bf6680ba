// Package intake is the shutdown agent's news intake: it keeps the agent's
// own broker connection, reads only the topics the agent needs (its
// supplies' state and availability, and the availability of the bridges
// that publish them), checks every message as it is read (topic, size,
// JSON, fields, order, signature) and keeps only accepted ones, in per-key
// latest-wins slots that the runner drains with [Intake.Take].
//
// Junk never enters a slot, so whatever arrives, a real state can neither
// be pushed out nor overwritten by it, and memory stays bounded: one slot per
// supply and kind, one per bridge, one for the connection.
//
// A message delivered from the broker's retained store (MQTT v5 sets RETAIN
// on those, as the subscription does not ask for retain-as-published) is
// history: its news has Live false. Only live news may move the host
// toward power-off; that is the policy's rule, the intake only says which is
// which.
package intake

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/metricname"
	"github.com/upsbridge/upsbridge/internal/mqttconn"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Supply is one UPS the agent reads, optionally pinned to the bridge that
// must publish it.
type Supply struct {
	UPS    string
	Bridge string
}

// Options configure an [Intake].
type Options struct {
	// Conn is the agent's own connection. Its Will should be Offline,
	// retained, on the agent's state topic. The intake opens it twice: for
	// what the agent publishes (with the Will) and, with the client id
	// suffixed "-news" and no Will, for reading.
	Conn        mqttconn.ConnOptions
	TopicPrefix string
	Supplies    []Supply
	// Verifier checks signatures; with RequireSigned, unsigned messages of
	// any kind (availability is never signed) change nothing but a
	// counter.
	Verifier      *signing.Verifier
	RequireSigned bool
	// MaxStateAge bounds how far from this host's clock the first live
	// epoch of an unknown bridge may be dated (0: no bound).
	MaxStateAge time.Duration
	// Known are the highest orders accepted per UPS in an earlier run (the
	// agent's state file): anything not after them is a replay.
	Known map[string]mqttwire.Order
	// QoS of the subscriptions (default 0). mosquitto drops messages for a
	// client whose outgoing queue is full whatever their QoS, so QoS 1
	// does not keep a real state from being dropped under a flood (see
	// docs/security.md); it only adds acknowledgements.
	QoS byte
	// ConflictWindow: a state from a second bridge while the first
	// published within this window is a conflict (default 1 min).
	ConflictWindow time.Duration
	// RateLimit is the shortest interval between two log lines of one
	// kind, two conflict news of one supply, and two requests for the
	// retained state of a supply held for skew (default 10 s).
	RateLimit time.Duration
	// OnUp is called (on the intake's own goroutine) after the reading
	// connection has (re)subscribed and after the writing one has
	// (re)connected, so the agent can publish its state again.
	OnUp func(ctx context.Context)
	// Now is the agent's clock; nil is time.Now. News is stamped with it.
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics is the process's metrics set, where the intake registers
	// upsbridge_agent_news_accepted_total{agent} and
	// upsbridge_agent_news_dropped_total{agent,reason} for Agent (nil: a
	// set of its own).
	Metrics *metrics.Set
	Agent   string
}

// MaxPacket is the largest packet the intake accepts from the broker: a
// state of MaxPayload bytes and its topic. The broker drops larger ones for
// this client instead of sending them (MQTT v5 Maximum Packet Size).
const MaxPacket = mqttwire.MaxPayload + 1024

// ReceiveMaximum bounds the messages read from the broker and waiting for
// the checks: at most ReceiveMaximum × MaxPacket bytes (16 MiB), whatever
// arrives. A backlog stays in the socket and the broker.
const ReceiveMaximum = 64

// Intake reads and checks the news of an agent's supplies.
type Intake struct {
	opts Options
	log  *slog.Logger

	notify chan struct{}
	wake   chan struct{} // asks the subscriber to reconcile subscriptions

	// accepted and dropped are the intake's typed metrics (one dropped
	// counter per reason; the "accepted" slot is unused).
	accepted *metrics.Counter
	dropped  [numReasons]*metrics.Counter

	mu    sync.Mutex
	chk   *checker
	slots map[slotKey]*slot
	dirty []*slot
	seq   uint64
	// resub are state topics whose retained copy is asked for again.
	resub   map[string]bool
	logLast map[logKey]time.Time
	logMiss map[logKey]int

	cmMu sync.Mutex
	cm   *autopaho.ConnectionManager
}

type slotKey struct {
	kind news.Kind
	id   string
}

type slot struct {
	n     news.News
	seq   uint64
	dirty bool
}

// New checks the options and returns an intake; it connects in Run.
func New(opts Options) (*Intake, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ConflictWindow <= 0 {
		opts.ConflictWindow = time.Minute
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = 10 * time.Second
	}
	if opts.RequireSigned && opts.Verifier == nil {
		return nil, errors.New("agent intake: require_signed without a public key")
	}
	if opts.QoS > 1 {
		return nil, fmt.Errorf("agent intake: qos %d: want 0 or 1", opts.QoS)
	}
	if len(opts.Supplies) == 0 {
		return nil, errors.New("agent intake: no supplies")
	}
	for _, s := range opts.Supplies {
		if !mqttwire.ValidID(s.UPS) {
			return nil, fmt.Errorf("agent intake: supply %q: not a valid UPS id", s.UPS)
		}
		if s.Bridge != "" && !mqttwire.ValidID(s.Bridge) {
			return nil, fmt.Errorf("agent intake: supply %s: bridge %q: not a valid bridge id", s.UPS, s.Bridge)
		}
	}
	if opts.Conn.MaxPacket == 0 {
		opts.Conn.MaxPacket = MaxPacket
	}
	if opts.Conn.ReceiveMaximum == 0 {
		opts.Conn.ReceiveMaximum = ReceiveMaximum
	}
	opts.Conn.BufferedRead = true
	in := &Intake{
		opts: opts, log: opts.Logger.With("component", "intake"),
		notify: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		slots: map[slotKey]*slot{}, resub: map[string]bool{},
		logLast: map[logKey]time.Time{}, logMiss: map[logKey]int{},
	}
	in.chk = newChecker(&in.opts)
	set := metricname.Set(opts.Metrics)
	in.accepted = set.GetOrCreateCounter(metricname.Series("upsbridge_agent_news_accepted_total", "agent", opts.Agent))
	for r := ReasonMalformed; r < numReasons; r++ {
		in.dropped[r] = set.GetOrCreateCounter(metricname.Series("upsbridge_agent_news_dropped_total", "agent", opts.Agent, "reason", r.String()))
	}
	return in, nil
}

// Notify is signalled (capacity 1, never blocking the reader) whenever news
// waits in a slot.
func (in *Intake) Notify() <-chan struct{} { return in.notify }

// Take appends the waiting news to buf, oldest first, empties the slots and
// returns buf.
func (in *Intake) Take(buf []news.News) []news.News {
	in.mu.Lock()
	defer in.mu.Unlock()
	slices.SortFunc(in.dirty, func(a, b *slot) int { return cmp.Compare(a.seq, b.seq) })
	for _, s := range in.dirty {
		buf = append(buf, s.n)
		s.dirty = false
	}
	in.dirty = in.dirty[:0]
	return buf
}

// Orders returns the highest order accepted per UPS (including those given
// in Options.Known), for the agent's state file. A nil intake (not built
// yet) has none.
func (in *Intake) Orders() map[string]mqttwire.Order {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]mqttwire.Order, len(in.chk.supplies))
	for id, s := range in.chk.supplies {
		if s.known {
			out[id] = s.order
		}
	}
	return out
}

// Counts returns the counters.
func (in *Intake) Counts() Counts {
	var c Counts
	c.Accepted = in.accepted.Get()
	for r := ReasonMalformed; r < numReasons; r++ {
		c.Dropped[r] = in.dropped[r].Get()
	}
	return c
}

// Stats reports the counters for /api/state (bridge.StatsReporter):
// intake_accepted_total and intake_dropped_<reason>_total for every reason
// (malformed, unsigned, bad_signature, replay, skew, unknown_bridge,
// conflict).
func (in *Intake) Stats() map[string]any {
	c := in.Counts()
	out := map[string]any{"intake_accepted_total": c.Accepted}
	for r := ReasonMalformed; r < numReasons; r++ {
		out["intake_dropped_"+r.String()+"_total"] = c.Dropped[r]
	}
	return out
}

// put stores n in its slot; called with mu held.
func (in *Intake) put(n news.News) {
	var id string
	switch n.Kind {
	case news.KindBridgeAvailability:
		id = n.Bridge
	case news.KindConnection:
	default:
		id = n.UPS
	}
	k := slotKey{n.Kind, id}
	s := in.slots[k]
	if s == nil {
		s = &slot{}
		in.slots[k] = s
	}
	in.seq++
	s.n, s.seq = n, in.seq
	if !s.dirty {
		s.dirty = true
		in.dirty = append(in.dirty, s)
	}
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

// Handle checks one message as read from the broker: retained is the
// RETAIN flag of the delivery. It runs on the client's goroutine, in order,
// and never blocks on the consumer. A dropped message costs a counter and,
// at most once per RateLimit per reason and topic, a log line.
func (in *Intake) Handle(topic string, payload []byte, retained bool) {
	now := in.opts.Now()
	in.mu.Lock()
	v := in.chk.check(topic, payload, !retained, now)
	if v.reason == ReasonNone {
		in.put(v.n)
	}
	if v.conflict != nil {
		in.put(*v.conflict)
	}
	if v.bridgesChanged {
		in.dropStaleBridgeSlots()
	}
	if v.resubscribe {
		in.resub[in.chk.topics.State(v.n.UPS)] = true
	}
	log, missed := false, 0
	if v.reason != ReasonNone {
		log, missed = in.shouldLog(v.reason, topic, now)
	}
	in.mu.Unlock()
	if v.bridgesChanged || v.resubscribe {
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
	if v.reason == ReasonNone {
		in.accepted.Inc()
	} else {
		in.dropped[v.reason].Inc()
	}
	if v.conflict != nil {
		in.log.Error("two bridges publish one UPS id: check bridge ids and pin supplies[].bridge", "ups", v.conflict.UPS, "detail", v.conflict.Detail)
	}
	if log {
		level := slog.LevelWarn
		switch {
		case v.reason == ReasonSkew || v.reason == ReasonConflict:
			level = slog.LevelError
		case v.reason == ReasonUnsigned && in.chk.topics.Parse(topic).Kind != mqttwire.KindState:
			level = slog.LevelInfo
		}
		in.log.Log(context.Background(), level, "message dropped", "reason", v.reason.String(), "err", v.why(), "similar_dropped_since", missed)
	}
}

// dropStaleBridgeSlots forgets the availability of bridges no longer read;
// called with mu held.
func (in *Intake) dropStaleBridgeSlots() {
	for k, s := range in.slots {
		if _, ok := in.chk.bridges[k.id]; k.kind == news.KindBridgeAvailability && !ok {
			if s.dirty {
				in.dirty = slices.DeleteFunc(in.dirty, func(d *slot) bool { return d == s })
			}
			delete(in.slots, k)
		}
	}
}

// logKey rate-limits the log lines of dropped messages: per reason, topic
// kind and id (the ids come from subscribed topics, so the keys are few).
type logKey struct {
	reason Reason
	kind   mqttwire.Kind
	id     string
}

// shouldLog says whether a dropped message is logged and how many like it
// were not since; called with mu held. It does not allocate for a message
// that is not logged.
func (in *Intake) shouldLog(r Reason, topic string, now time.Time) (bool, int) {
	t := in.chk.topics.Parse(topic)
	k := logKey{r, t.Kind, t.ID}
	if last, ok := in.logLast[k]; ok && now.Sub(last) < in.opts.RateLimit {
		in.logMiss[k]++
		return false, 0
	}
	if len(in.logLast) > 4096 { // a backstop only
		clear(in.logLast)
		clear(in.logMiss)
	}
	missed := in.logMiss[k]
	in.logLast[k] = now
	delete(in.logMiss, k)
	return true, missed
}

// subscriptions is what the intake subscribes to now; called with mu held.
func (in *Intake) subscriptions() map[string]bool {
	t := in.chk.topics
	out := map[string]bool{}
	for _, s := range in.opts.Supplies {
		out[t.State(s.UPS)] = true
		out[t.UPSAvailability(s.UPS)] = true
	}
	for b := range in.chk.bridges {
		out[t.BridgeAvailability(b)] = true
	}
	return out
}

// Run connects and reads until ctx ends. The intake keeps two connections:
// one reads the news (no Will; its queue of received messages bounded), the
// other carries the agent's Will and what the agent publishes. A flood on
// the topics the agent reads can hold up the reading connection (its client
// reads acknowledgements behind the flood); it never holds up the agent's
// own state, which a primary waits for before it cuts the power.
func (in *Intake) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	up := make(chan *autopaho.ConnectionManager, 1)
	writerUp := make(chan struct{}, 1)
	writer, err := mqttconn.Connect(ctx, in.opts.Conn, mqttconn.Handlers{
		OnUp: func(*autopaho.ConnectionManager) {
			select {
			case writerUp <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("agent intake: %w", err)
	}
	rc := in.opts.Conn
	rc.Will = nil
	if rc.ClientID != "" {
		rc.ClientID += "-news"
	}
	reader, err := mqttconn.Connect(ctx, rc, mqttconn.Handlers{
		OnUp: func(cm *autopaho.ConnectionManager) {
			select {
			case up <- cm:
			default:
			}
			select {
			case in.wake <- struct{}{}:
			default:
			}
		},
		OnDown: func() {
			in.mu.Lock()
			in.put(news.News{Kind: news.KindConnection, Live: true, At: in.opts.Now(), Online: false})
			in.mu.Unlock()
		},
		OnPublish: in.Handle,
	})
	if err != nil {
		cancel()
		<-writer.Done()
		return fmt.Errorf("agent intake: %w", err)
	}
	in.cmMu.Lock()
	in.cm = writer
	in.cmMu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		in.subscriber(ctx, up, writerUp)
	}()
	<-ctx.Done()
	<-reader.Done()
	<-writer.Done()
	return nil
}

// subscriber owns the subscriptions: after every connect it subscribes to
// everything; later it adds bridges as they are learnt, drops those no
// longer read, and asks again for retained states held for skew.
func (in *Intake) subscriber(ctx context.Context, up <-chan *autopaho.ConnectionManager, writerUp <-chan struct{}) {
	var cm *autopaho.ConnectionManager
	have := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-up:
			cm = c
			clear(have) // the session ended with the connection
			if !in.reconcile(ctx, cm, have, true) {
				continue
			}
			in.log.Info("reading the supplies' news", "topics", len(have))
			in.mu.Lock()
			in.put(news.News{Kind: news.KindConnection, Live: true, At: in.opts.Now(), Online: true})
			in.mu.Unlock()
			if in.opts.OnUp != nil {
				in.opts.OnUp(ctx)
			}
		case <-in.wake:
			if cm != nil {
				in.reconcile(ctx, cm, have, false)
			}
		case <-writerUp:
			// The agent publishes its state again on the (re)connected
			// writing connection.
			if in.opts.OnUp != nil {
				in.opts.OnUp(ctx)
			}
		}
	}
}

// reconcile makes the broker's subscriptions what they should be.
func (in *Intake) reconcile(ctx context.Context, cm *autopaho.ConnectionManager, have map[string]bool, first bool) bool {
	in.mu.Lock()
	want := in.subscriptions()
	resub := in.resub
	in.resub = map[string]bool{}
	in.mu.Unlock()
	var add []paho.SubscribeOptions
	for _, tp := range slices.Sorted(maps.Keys(want)) {
		if !have[tp] || resub[tp] {
			add = append(add, paho.SubscribeOptions{Topic: tp, QoS: in.opts.QoS})
		}
	}
	var drop []string
	for tp := range have {
		if !want[tp] {
			drop = append(drop, tp)
		}
	}
	sctx, c := context.WithTimeout(ctx, 10*time.Second)
	defer c()
	if len(add) > 0 {
		if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: add}); err != nil {
			if ctx.Err() == nil {
				in.log.Error("mqtt subscribe failed; the supplies' news is not read", "err", err, "first", first)
			}
			return false
		}
		for _, s := range add {
			have[s.Topic] = true
		}
	}
	if len(drop) > 0 {
		if _, err := cm.Unsubscribe(sctx, &paho.Unsubscribe{Topics: drop}); err == nil {
			for _, tp := range drop {
				delete(have, tp)
			}
		}
	}
	return true
}

// Publish sends a message on the agent's connection (QoS 1).
func (in *Intake) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	in.cmMu.Lock()
	cm := in.cm
	in.cmMu.Unlock()
	if cm == nil {
		return errors.New("agent intake: publish: not connected yet")
	}
	pctx, c := context.WithTimeout(ctx, 10*time.Second)
	defer c()
	if _, err := cm.Publish(pctx, &paho.Publish{Topic: topic, Payload: payload, Retain: retain, QoS: 1}); err != nil {
		return fmt.Errorf("agent intake: publish %s: %w", topic, err)
	}
	return nil
}

// Disconnect closes the connection cleanly (the broker does not send the
// Will).
func (in *Intake) Disconnect(ctx context.Context) {
	in.cmMu.Lock()
	cm := in.cm
	in.cmMu.Unlock()
	if cm != nil {
		_ = cm.Disconnect(ctx)
	}
}
