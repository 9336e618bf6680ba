// Package mqtt is the MQTT publisher sink: it owns the topic contract.
//
//	<prefix>/bridge/<bridge_id>/availability  retained online|offline (Will: offline)
//	<prefix>/ups/<ups_id>/availability        retained online|offline (communication with the UPS)
//	<prefix>/ups/<ups_id>/state               retained JSON, QoS 1
//	<prefix>/ups/<ups_id>/event               JSON, QoS 1, not retained
//	<prefix>/ups/<ups_id>/command             in: {"command":"beeper.mute","arg":""} or a bare name
//	<prefix>/ups/<ups_id>/set                 in: {"var":"ups.delay.shutdown","value":"60"}
//	<prefix>/ups/<ups_id>/command/result      out: JSON result of a command or set, QoS 1
//
// Events are written to an on-disk spool before they are published, so those
// produced while the broker is unreachable (or before a restart) are
// delivered in order after reconnect; states are re-published on reconnect.
//
// The sink also reads <prefix>/ups/+/state: on its first connection its own
// retained states give the epoch (see ChooseEpoch) before anything is
// published, and later another bridge's states on one of its UPS ids are
// warned about. Listeners (the primary, the agent-event relay) read their
// topics over the same connection.
package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/mqttconn"
	"github.com/upsbridge/upsbridge/internal/spool"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Options configure the sink.
type Options struct {
	Conn        mqttconn.ConnOptions
	TopicPrefix string
	BridgeID    string
	// Epoch orders this run's states after every earlier run's (see
	// mqttwire.StatePayload); it must only grow across restarts. Zero (the
	// usual) makes the sink choose it on its first connection (see
	// ChooseEpoch): from EpochFile, its own retained states on the broker
	// and the clock, before it publishes anything.
	Epoch uint64
	// EpochFile stores the epoch across restarts; empty keeps none.
	EpochFile string
	// EpochWindow bounds how long the first connection waits for the
	// bridge's own retained states before the epoch is chosen (default
	// 2 s); the wait ends early once every UPS the sink knows answered.
	EpochWindow time.Duration
	// Listeners read topics over the sink's connection (the primary's
	// agent states, agents' events for the notifiers).
	Listeners []Listener
	// SpoolDir holds events not yet acknowledged by the broker.
	SpoolDir string
	// Commands, when set, enables the command and set topics.
	Commands bridge.CommandRunner
	// Policy decides which instant commands and variable writes MQTT may
	// ask for (mqtt.commands, hass.dangerous_commands); its zero value
	// allows safe instant commands only.
	Policy bridge.CommandPolicy
	// AllowCommand, when set, further limits instant commands (to those
	// the UPS offers).
	AllowCommand func(ups, command string) bool
	// Extensions add publications (Home Assistant discovery).
	Extensions []Extension
	// Sign, when set, signs state and event payloads before publishing.
	Sign Signer
	// PublishTimeout bounds one publish (default 10 s).
	PublishTimeout time.Duration
	// RefusedAttempts is how often a message the broker refuses is tried
	// before it is set aside in the dead-letter file (default 5), with
	// RefusedBackoff doubling between tries (default 1 s). DeadLetterBytes
	// bounds the file (default 1 MiB; one older file is kept).
	RefusedAttempts int
	RefusedBackoff  time.Duration
	DeadLetterBytes int64
	Logger          *slog.Logger
	// Metrics is the process's metrics set, where the sink registers its
	// own (nil: a set of its own).
	Metrics *metrics.Set
}

// Signer signs payloads in place (sets their sig field).
type Signer interface {
	SignState(p *mqttwire.StatePayload) error
	SignEvent(p *mqttwire.EventPayload) error
}

// Message is one MQTT publication.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
	QoS     byte
}

// Extension adds publications to the sink (Home Assistant discovery). Its
// methods are called from the sink's single publishing goroutine.
type Extension interface {
	// OnConnect returns what to publish after each (re)connect, before the
	// states are re-published (discovery configs).
	OnConnect(states []*bridge.State) []Message
	// OnState returns what to publish before a changed state.
	OnState(st *bridge.State) []Message
	// Subscriptions lists topics the extension wants to receive.
	Subscriptions() []string
	// OnMessage handles a received message; returning true asks the sink to
	// publish everything again as after a reconnect (Home Assistant's birth).
	OnMessage(topic string, payload []byte) (republish bool)
}

// Scanner is an Extension that reads the broker once, over the sink's
// connection, after the sink's first connect (Home Assistant discovery
// reads the retained configs left by earlier runs).
type Scanner interface {
	// Tap sees every received message before the sink routes it, on the
	// connection's receiving goroutine; true consumes the message. It must
	// filter by topic, treat the payload as hostile, and never block.
	Tap(topic string, payload []byte, retained bool) (consumed bool)
	// Scan runs once in its own goroutine; ctx ends with the sink. Its
	// error is logged.
	Scan(ctx context.Context, s Session) error
}

// Session lends the sink's connection to a Scanner.
type Session interface {
	// Subscribe subscribes to topic filters (QoS 1); what arrives goes to
	// the Scanner's Tap first.
	Subscribe(ctx context.Context, filters ...string) error
	// Unsubscribe ends subscriptions made with Subscribe.
	Unsubscribe(ctx context.Context, filters ...string) error
	// Publish publishes a message (QoS 1, not retained).
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Listener reads messages over the sink's connection, so the bridge keeps a
// single connection to the broker. OnReceive is called on the connection's
// receiving goroutine for every message that is not the sink's own
// business (commands, states): it must filter by topic, treat the payload
// as hostile, and never block.
type Listener interface {
	// Subscriptions lists topic filters to subscribe to on each connect.
	Subscriptions() []string
	OnReceive(topic string, payload []byte, retained bool)
}

// Sink publishes states and events to MQTT.
type Sink struct {
	opts   Options
	log    *slog.Logger
	topics Topics

	cm    *autopaho.ConnectionManager
	spool *spool.Spool
	upCh  chan struct{} // a (re)connect happened
	// lm is the listening connection: every subscription is on it, so
	// no flood on a subscribed topic (commands, agents, states) can hold
	// back the acknowledgements of the publishing connection (cm),
	// which only publishes.
	lm       *autopaho.ConnectionManager
	listenUp chan struct{} // the listening connection subscribed
	inbox    chan inbound  // received messages, handled on the publishing goroutine
	// dropLogAt is when a dropped incoming message was last logged (ns).
	dropLogAt atomic.Int64
	cmdSem    chan struct{} // bounds concurrent commands

	wire mqttwire.Topics

	// Owned by the publishing goroutine:
	epoch     uint64            // 0 until chosen
	stored    uint64            // the epoch file's, read at start
	epochDue  time.Time         // end of the epoch window, once connected
	pubSeq    map[string]uint64 // ups -> seq of its last publication
	states    map[string]*bridge.State
	published map[string]uint64 // ups -> seq last published
	dirty     map[string]bool   // ups whose state may be unpublished
	avail     map[string]string // ups -> availability last published
	connected bool
	full      bool // everything must be published again
	refused   *refusedBook
	maxPacket atomic.Uint32 // the broker's maximum packet size (0: none said)

	stats sinkStats // read by Stats from other goroutines

	scanners []Scanner // the extensions that are Scanners

	// Shared with the connection's receiving goroutine (watch.go).
	watch watchState
}

type inbound struct {
	topic   string
	payload []byte
}

// Topics builds the contract's topic names for one bridge (mqttwire
// holds the contract; these only fix the bridge id).
type Topics struct {
	Prefix   string
	BridgeID string
}

func (t Topics) wire() mqttwire.Topics { return mqttwire.Topics{Prefix: t.Prefix} }

// BridgeAvailability is <prefix>/bridge/<id>/availability.
func (t Topics) BridgeAvailability() string { return t.wire().BridgeAvailability(t.BridgeID) }

// UPSAvailability is <prefix>/ups/<id>/availability.
func (t Topics) UPSAvailability(ups string) string { return t.wire().UPSAvailability(ups) }

// State is <prefix>/ups/<id>/state.
func (t Topics) State(ups string) string { return t.wire().State(ups) }

// Event is <prefix>/ups/<id>/event.
func (t Topics) Event(ups string) string { return t.wire().Event(ups) }

// Command is <prefix>/ups/<id>/command.
func (t Topics) Command(ups string) string { return t.wire().Command(ups) }

// Set is <prefix>/ups/<id>/set.
func (t Topics) Set(ups string) string { return t.wire().Set(ups) }

// CommandResult is <prefix>/ups/<id>/command/result.
func (t Topics) CommandResult(ups string) string { return t.wire().CommandResult(ups) }

// Availability payloads.
const (
	Online  = "online"
	Offline = "offline"
)

// New returns the sink; it connects in Run.
func New(opts Options) (*Sink, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 10 * time.Second
	}
	if opts.EpochWindow <= 0 {
		opts.EpochWindow = 2 * time.Second
	}
	if opts.SpoolDir == "" {
		return nil, errors.New("mqtt sink: no spool directory for queued events")
	}
	if !bridge.IDPattern.MatchString(opts.BridgeID) {
		return nil, fmt.Errorf("mqtt sink: bad bridge id %q", opts.BridgeID)
	}
	t := Topics{Prefix: opts.TopicPrefix, BridgeID: opts.BridgeID}
	if opts.Conn.MaxPacket == 0 {
		// The bridge receives only commands, Home Assistant's birth and
		// the scan notice: large messages are kept away by the broker, so
		// they never queue in front of the acknowledgements of its own
		// publications.
		opts.Conn.MaxPacket = SinkMaxPacket
	}
	opts.Conn.Will = &paho.WillMessage{Topic: t.BridgeAvailability(), Payload: []byte(Offline), Retain: true, QoS: 1}
	var scanners []Scanner
	for _, ext := range opts.Extensions {
		if sc, ok := ext.(Scanner); ok {
			scanners = append(scanners, sc)
		}
	}
	s := &Sink{
		scanners:  scanners,
		opts:      opts,
		log:       opts.Logger.With("sink", "mqtt"),
		topics:    t,
		upCh:      make(chan struct{}, 1),
		listenUp:  make(chan struct{}, 1),
		inbox:     make(chan inbound, 64),
		cmdSem:    make(chan struct{}, 4),
		states:    map[string]*bridge.State{},
		published: map[string]uint64{},
		dirty:     map[string]bool{},
		avail:     map[string]string{},
		pubSeq:    map[string]uint64{},
		wire:      mqttwire.Topics{Prefix: opts.TopicPrefix},
		watch:     newWatchState(),
	}
	s.stats.initMetrics(opts.Metrics)
	return s, nil
}

// Name implements bridge.Sink.
func (s *Sink) Name() string { return "mqtt" }

// Topics returns the sink's topic names.
func (s *Sink) Topics() Topics { return s.topics }

// Run implements bridge.Sink: it connects, publishes until the queue is
// closed and drained, then publishes its own offline and disconnects.
func (s *Sink) Run(ctx context.Context, q *bridge.Queue) error {
	sp, err := spool.Open(s.opts.SpoolDir, spool.Options{})
	if err != nil {
		return fmt.Errorf("mqtt sink: %w", err)
	}
	defer sp.Close()
	s.spool = sp
	s.refused = newRefusedBook(s.opts.SpoolDir, s.opts.RefusedAttempts, s.opts.RefusedBackoff, s.opts.DeadLetterBytes, s.stats.deadLetters)
	s.stats.refused.Store(s.refused)
	defer s.setAsideAll()
	if n := sp.Len(); n > 0 {
		s.log.Info("events from before the restart are queued for delivery", "count", n)
	}
	s.epoch = s.opts.Epoch
	if s.epoch == 0 {
		if s.opts.EpochFile != "" {
			if s.stored, err = LoadEpoch(s.opts.EpochFile); err != nil {
				// The retained states and the clock still order this
				// run after the last; refusing to run would protect
				// no one.
				s.log.Error("stored epoch unreadable; choosing one from the broker and the clock", "err", err)
			}
		}
	} else {
		s.watch.setEpoch(s.epoch, s.opts.BridgeID)
		s.stats.epoch.Store(s.epoch)
	}

	connCtx, cancelConn := context.WithCancel(ctx)
	defer cancelConn()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Scans end before the wait above, and before the connection.
	scanCtx, stopScans := context.WithCancel(ctx)
	defer stopScans()
	scansStarted, listening := false, false
	// The scans (Home Assistant's) read over the listening connection and
	// publish their marker over the publishing one: they start once both
	// are up, once.
	startScans := func() {
		if scansStarted || !listening || !s.connected || len(s.scanners) == 0 {
			return
		}
		scansStarted = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runScans(scanCtx)
		}()
	}
	s.cm, err = mqttconn.Connect(connCtx, s.opts.Conn, mqttconn.Handlers{
		OnUp: func(cm *autopaho.ConnectionManager) {
			s.stats.connected.Store(true)
			select {
			case s.upCh <- struct{}{}:
			default:
			}
		},
		OnDown: func() { s.stats.connected.Store(false) },
		OnConnack: func(ca *paho.Connack) {
			var mp uint32
			if ca.Properties != nil && ca.Properties.MaximumPacketSize != nil {
				mp = *ca.Properties.MaximumPacketSize
			}
			s.maxPacket.Store(mp)
		},
	})
	if err != nil {
		return fmt.Errorf("mqtt sink: %w", err)
	}
	lo := s.opts.Conn
	lo.ClientID, lo.Will = listenClientID(s.opts.Conn.ClientID), nil
	s.lm, err = mqttconn.Connect(connCtx, lo, mqttconn.Handlers{
		OnUp: func(cm *autopaho.ConnectionManager) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s.subscribe(connCtx, cm) {
					select {
					case s.listenUp <- struct{}{}:
					default:
					}
				}
			}()
		},
		OnPublish: s.receive,
	})
	if err != nil {
		return fmt.Errorf("mqtt sink: listening connection: %w", err)
	}

	// The bridge queue blocks in Next; a reader goroutine hands messages over
	// so the publishing loop can also wait on reconnects and commands.
	in := make(chan bridge.Message)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(in)
		for {
			m, ok := q.Next(ctx)
			if !ok {
				return
			}
			select {
			case in <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	var epochTimer <-chan time.Time
	for {
		select {
		case m, ok := <-in:
			if !ok {
				s.shutdown(ctx)
				return nil
			}
			s.accept(m)
		case <-s.upCh:
			s.connected = true
			s.full = true
			if s.epoch == 0 && s.epochDue.IsZero() && epochTimer == nil {
				// The window for retained states starts when the
				// listening connection has subscribed; should it not
				// come, the epoch is chosen from the stored one and the
				// clock after listenWait.
				epochTimer = time.After(listenWait)
			}
			startScans()
		case <-s.listenUp:
			listening = true
			startScans()
			if s.epoch == 0 && s.epochDue.IsZero() {
				// Retained states arrive right after the subscription;
				// nothing is published until the epoch is chosen.
				s.epochDue = time.Now().Add(s.opts.EpochWindow)
				epochTimer = time.After(s.opts.EpochWindow)
			}
		case <-s.watch.answered:
		case <-epochTimer:
			epochTimer = nil
			if s.epoch == 0 && s.epochDue.IsZero() {
				s.log.Warn("the listening connection has not subscribed; choosing the epoch without the broker's retained states", "waited", listenWait)
				s.epochDue = time.Now()
			}
		case msg := <-s.inbox:
			s.handleInbound(ctx, &wg, msg)
		case <-s.refused.wake():
			s.refused.disarm()
		case <-ctx.Done():
			return nil
		}
		if s.epoch == 0 && !s.epochDue.IsZero() {
			s.tryChooseEpoch()
		}
		ok := !s.connected || s.epoch == 0 || s.flush(ctx)
		s.stats.queued.Store(int64(s.spool.Len()))
		if !ok {
			// A publish failed: the connection is down or flaky. Wait for
			// the next connect, or retry after a pause.
			s.connected = false
			s.full = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Pause first so a broker that refuses publishes on a live
				// connection does not make this a hot loop.
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
					return
				}
				if err := s.cm.AwaitConnection(ctx); err == nil {
					select {
					case s.upCh <- struct{}{}:
					default:
					}
				}
			}()
		}
	}
}

// accept takes a message from the bridge: states replace the last one of
// their UPS; events go to the spool first, so none is lost.
func (s *Sink) accept(m bridge.Message) {
	switch m.Kind {
	case bridge.MessageState:
		if _, known := s.states[m.State.UPS]; !known {
			s.watch.addOwn(m.State.UPS, s)
		}
		s.states[m.State.UPS] = m.State
		s.dirty[m.State.UPS] = true
	case bridge.MessageEvent:
		if m.Event.Host != "" || bridge.HostEvent(m.Event.Type) {
			// A host's events are the agent's word, on the agent's own
			// topic; the bridge never republishes them under its name
			// (or its signature) on a UPS's topic.
			return
		}
		p := mqttwire.NewEventPayload(m.Event, s.opts.BridgeID)
		if s.opts.Sign != nil {
			if err := s.opts.Sign.SignEvent(&p); err != nil {
				s.log.Error("sign event", "ups", p.UPS, "event", p.Type, "err", err)
			}
		}
		data, err := json.Marshal(p)
		if err == nil {
			err = s.spool.Append(data)
		}
		if err != nil {
			// The disk failed: publish directly rather than lose the event.
			s.log.Error("event spool failed; publishing without it", "ups", p.UPS, "event", p.Type, "err", err)
			if s.connected {
				s.publish(context.Background(), Message{Topic: s.topics.Event(p.UPS), Payload: data, QoS: 1})
			}
		}
	}
}

// flush publishes what is due; false means a publish failed.
func (s *Sink) flush(ctx context.Context) bool {
	if s.full {
		if !s.publish(ctx, Message{Topic: s.topics.BridgeAvailability(), Payload: []byte(Online), Retain: true, QoS: 1}) {
			return false
		}
		states := s.sortedStates()
		for _, ext := range s.opts.Extensions {
			for _, m := range ext.OnConnect(states) {
				if !s.publish(ctx, m) {
					return false
				}
			}
		}
		clear(s.published)
		clear(s.avail)
		for ups := range s.states {
			s.dirty[ups] = true
		}
		s.full = false
	}
	if !s.retryRefused(ctx) {
		return false
	}
	if len(s.dirty) > 0 {
		// Only the UPSes whose state arrived since the last flush: with
		// 1,000 UPSes, walking (and sorting) all of them per message
		// would cost more than the publishing.
		ups := make([]string, 0, len(s.dirty))
		for u := range s.dirty {
			ups = append(ups, u)
		}
		sort.Strings(ups)
		for _, u := range ups {
			st := s.states[u]
			if st != nil && s.published[u] != st.Seq {
				if !s.publishState(ctx, st) {
					return false
				}
				s.published[u] = st.Seq
			}
			delete(s.dirty, u)
		}
	}
	for {
		data, err := s.spool.Peek()
		if errors.Is(err, spool.ErrEmpty) {
			return true
		}
		if err != nil {
			s.log.Error("read event spool", "err", err)
			return true
		}
		var p mqttwire.EventPayload
		if err := json.Unmarshal(data, &p); err != nil || !bridge.IDPattern.MatchString(p.UPS) {
			s.log.Error("unreadable event in spool dropped", "err", err)
			_ = s.spool.Ack()
			continue
		}
		if !s.publish(ctx, Message{Topic: s.topics.Event(p.UPS), Payload: data, QoS: 1}) {
			return false
		}
		if err := s.spool.Ack(); err != nil {
			s.log.Error("acknowledge event in spool", "err", err)
		}
	}
}

func (s *Sink) publishState(ctx context.Context, st *bridge.State) bool {
	for _, ext := range s.opts.Extensions {
		for _, m := range ext.OnState(st) {
			if !s.publish(ctx, m) {
				return false
			}
		}
	}
	avail := Offline
	if st.Comm && !st.Gone {
		avail = Online
	}
	if s.avail[st.UPS] != avail {
		if !s.publish(ctx, Message{Topic: s.topics.UPSAvailability(st.UPS), Payload: []byte(avail), Retain: true, QoS: 1}) {
			return false
		}
		s.avail[st.UPS] = avail
	}
	if st.Time.IsZero() {
		return true // never read: nothing to say but "offline"
	}
	// Every publication has its own seq and ts: one re-published after a
	// reconnect or on state_interval is news, never a replay.
	s.pubSeq[st.UPS]++
	p := mqttwire.NewStatePayload(st, s.opts.BridgeID, s.epoch, time.Now())
	p.Seq = s.pubSeq[st.UPS]
	if s.opts.Sign != nil {
		if err := s.opts.Sign.SignState(&p); err != nil {
			s.log.Error("sign state", "ups", st.UPS, "err", err)
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		s.log.Error("encode state", "ups", st.UPS, "err", err)
		return true
	}
	return s.publish(ctx, Message{Topic: s.topics.State(st.UPS), Payload: data, Retain: true, QoS: 1})
}

func (s *Sink) sortedStates() []*bridge.State {
	out := make([]*bridge.State, 0, len(s.states))
	for _, st := range s.states {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UPS < out[j].UPS })
	return out
}

// Publish sends one message now; it is for extensions' and tests' use from
// the publishing goroutine's callbacks only through Extension results.
func (s *Sink) publish(ctx context.Context, m Message) bool {
	return s.publishTry(ctx, m, "", 0)
}

// publishTry publishes m; key and prev name its retry slot and earlier
// attempts when it is a retry. A refusal (see deadletter.go) counts as
// done for the caller: m waits for its retry or is set aside, and the rest
// flows on. false means the connection failed.
func (s *Sink) publishTry(ctx context.Context, m Message, key string, prev int) bool {
	pctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	defer cancel()
	var resp *paho.PublishResponse
	var err error
	if mp := s.maxPacket.Load(); mp > 0 && packetSize(m) > int(mp) {
		err = &RefusedError{Code: 0x95, Reason: fmt.Sprintf("packet too large: %d bytes, the broker's maximum is %d", packetSize(m), mp)}
	} else {
		resp, err = s.cm.Publish(pctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, Retain: m.Retain, QoS: m.QoS})
	}
	if err == nil {
		if key != "" {
			delete(s.refused.retry, key)
		}
		s.refused.delivered(m)
		return true
	}
	if re := refusal(resp, err); re != nil {
		s.onRefused(m, key, prev, re)
		return true
	}
	if err != nil {
		s.stats.publishFailures.Inc()
		s.log.Warn("mqtt publish failed; will retry after reconnect", "topic", m.Topic, "err", err)
		return false
	}
	return true
}

// subscribe makes the listening connection's subscriptions; false when the
// broker did not take them.
func (s *Sink) subscribe(ctx context.Context, cm *autopaho.ConnectionManager) bool {
	var subs []paho.SubscribeOptions
	if s.opts.Commands != nil {
		subs = append(subs,
			paho.SubscribeOptions{Topic: s.topics.Prefix + "/ups/+/command", QoS: 1},
			paho.SubscribeOptions{Topic: s.topics.Prefix + "/ups/+/set", QoS: 1})
	}
	for _, ext := range s.opts.Extensions {
		for _, t := range ext.Subscriptions() {
			subs = append(subs, paho.SubscribeOptions{Topic: t, QoS: 1})
		}
	}
	for _, l := range s.opts.Listeners {
		for _, t := range l.Subscriptions() {
			subs = append(subs, paho.SubscribeOptions{Topic: t, QoS: 1})
		}
	}
	// Every UPS's state: the bridge's own retained ones give the epoch at
	// start; another bridge's on one of this bridge's UPS ids is a
	// duplicate publisher.
	subs = append(subs, paho.SubscribeOptions{Topic: s.wire.State("+"), QoS: 0})
	if len(subs) == 0 {
		return true
	}
	sctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	defer cancel()
	if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		if ctx.Err() == nil {
			s.log.Error("mqtt subscribe failed", "err", err)
		}
		return false
	}
	return true
}

// listenWait bounds how long the first publication waits for the listening
// connection (and with it the retained states that choose the epoch).
const listenWait = 10 * time.Second

// listenClientID is the listening connection's client id: the publishing
// one's with a suffix, stable across restarts like it.
func listenClientID(id string) string {
	if id == "" {
		return ""
	}
	return id + "-listen"
}

// shutdown publishes the bridge's offline (a clean disconnect does not fire
// the Will) and disconnects.
func (s *Sink) shutdown(ctx context.Context) {
	if s.connected {
		s.flush(ctx)
		s.publish(ctx, Message{Topic: s.topics.BridgeAvailability(), Payload: []byte(Offline), Retain: true, QoS: 1})
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = s.cm.Disconnect(dctx)
	if s.lm != nil {
		_ = s.lm.Disconnect(dctx)
	}
}

// handleInbound routes a received message to the command handler or an
// extension.
func (s *Sink) handleInbound(ctx context.Context, wg *sync.WaitGroup, m inbound) {
	if ups, kind, ok := s.parseCommandTopic(m.topic); ok {
		if len(m.payload) > MaxCommandPayload {
			s.stats.inboundRefused.Inc()
			s.log.Warn("command refused: payload larger than the limit", "ups", ups, "topic", m.topic, "bytes", len(m.payload), "limit", MaxCommandPayload)
			return
		}
		select {
		case s.cmdSem <- struct{}{}:
		default:
			s.log.Warn("command rejected: too many running", "ups", ups, "topic", m.topic)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.cmdSem }()
			s.runCommand(ctx, ups, kind, m.payload)
		}()
		return
	}
	for _, ext := range s.opts.Extensions {
		if ext.OnMessage(m.topic, m.payload) {
			s.full = true
		}
	}
}

// SinkMaxPacket is the largest MQTT packet the bridge's own connection
// accepts (see mqttconn.ConnOptions.MaxPacket).
const SinkMaxPacket = 64 << 10

// MaxCommandPayload bounds a command or set request before it is decoded:
// a real one is a few dozen bytes of JSON.
const MaxCommandPayload = 4 << 10

func (s *Sink) parseCommandTopic(topic string) (ups, kind string, ok bool) {
	if s.opts.Commands == nil {
		return "", "", false
	}
	switch t := s.wire.Parse(topic); t.Kind {
	case mqttwire.KindCommand:
		return t.ID, "command", true
	case mqttwire.KindSet:
		return t.ID, "set", true
	}
	return "", "", false
}

// The command payloads are the contract's (mqttwire).
type (
	// CommandRequest is the payload of <prefix>/ups/<id>/command.
	CommandRequest = mqttwire.CommandRequest
	// SetRequest is the payload of <prefix>/ups/<id>/set.
	SetRequest = mqttwire.SetRequest
	// CommandResponse is published on <prefix>/ups/<id>/command/result.
	CommandResponse = mqttwire.CommandResponse
)

// commandName is what a command or variable name may look like: NUT's
// dotted lower-case names.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// runCommand treats the payload as hostile: it must parse, name a command
// the policy allows, and is then routed through the bridge.
func (s *Sink) runCommand(ctx context.Context, ups, kind string, payload []byte) {
	resp := CommandResponse{UPS: ups, TS: bridge.FormatTime(time.Now())}
	reject := func(reason string) {
		s.stats.commandsRejected.Inc()
		s.log.Warn("command rejected", "ups", ups, "kind", kind, "reason", reason)
		resp.Status, resp.Detail = "REJECTED", reason
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch kind {
	case "command":
		var req CommandRequest
		if p := strings.TrimSpace(string(payload)); strings.HasPrefix(p, "{") {
			if err := json.Unmarshal(payload, &req); err != nil {
				reject("payload is not valid JSON: " + err.Error())
				break
			}
		} else {
			req.Command = p
		}
		resp.Command = req.Command
		switch {
		case !validName(req.Command):
			reject(fmt.Sprintf("bad command name %q", truncate(req.Command, 64)))
		case len(req.Arg) > 256:
			reject("argument longer than 256 bytes")
		case s.opts.Policy.CheckCommand(req.Command) != nil:
			reject(s.opts.Policy.CheckCommand(req.Command).Error())
		case s.opts.AllowCommand != nil && !s.opts.AllowCommand(ups, req.Command):
			reject(fmt.Sprintf("command %q is not offered by UPS %q", req.Command, ups))
		default:
			res, err := s.opts.Commands.InstCmd(cctx, ups, req.Command, req.Arg)
			resp.Status, resp.Detail = res.Status, res.Detail
			if err != nil {
				resp.Status, resp.Detail = "ERROR", err.Error()
			}
		}
	case "set":
		var req SetRequest
		if err := json.Unmarshal(payload, &req); err != nil {
			reject("payload is not valid JSON: " + err.Error())
			break
		}
		resp.Var = req.Var
		switch {
		case !validName(req.Var):
			reject(fmt.Sprintf("bad variable name %q", truncate(req.Var, 64)))
		case len(req.Value) > 256:
			reject("value longer than 256 bytes")
		case s.opts.Policy.CheckSet(req.Var) != nil:
			reject(s.opts.Policy.CheckSet(req.Var).Error())
		default:
			res, err := s.opts.Commands.SetVar(cctx, ups, req.Var, req.Value)
			resp.Status, resp.Detail = res.Status, res.Detail
			if err != nil {
				resp.Status, resp.Detail = "ERROR", err.Error()
			}
		}
	}
	data, _ := json.Marshal(resp)
	pctx, pcancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	defer pcancel()
	if _, err := s.cm.Publish(pctx, &paho.Publish{Topic: s.topics.CommandResult(ups), Payload: data, QoS: 1}); err != nil {
		s.log.Warn("publish command result", "ups", ups, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
