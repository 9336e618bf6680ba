// Package agentrelay passes shutdown agents' events from MQTT to the
// bridge's notifiers, so a chat group learns "web01 is powering off" from
// the bridge even though the host itself is going down. It reads
// <prefix>/agent/+/event over the bridge's MQTT connection (it is a
// listener of the MQTT sink) and hands STAGE, STAGE_FAILED, UNDO,
// SHUTDOWN, POWERING_OFF and POWEROFF_FAILED to the bridge's sinks as host
// events (the MQTT sink never republishes those).
//
// Anyone who can publish on the broker can publish there, so payloads are
// hostile input: bounded by mqttwire's decoder, the agent id must match the
// topic, texts are cut and cleaned, retained messages (history) are
// ignored, and each agent has a token bucket, as does the relay as a whole,
// so no client can flood the notifiers.
package agentrelay

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/metricname"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// kinds maps the agent events that are relayed to the bridge's types.
var kinds = map[string]bridge.EventType{
	mqttwire.AgentEventStage:          bridge.EventStage,
	mqttwire.AgentEventStageFailed:    bridge.EventStageFailed,
	mqttwire.AgentEventUndo:           bridge.EventUndo,
	mqttwire.AgentEventShutdown:       bridge.EventShutdown,
	mqttwire.AgentEventPoweringOff:    bridge.EventPoweringOff,
	mqttwire.AgentEventPoweroffFailed: bridge.EventPoweroffFailed,
}

// Defaults of the limits.
const (
	DefaultBurst     = 10               // events an agent may send at once
	DefaultRefill    = 10 * time.Second // one more event per agent this often
	DefaultMaxAgents = 1024
	// maxMessage bounds a relayed message's text.
	maxMessage = 300
)

// Options configure a [Relay].
type Options struct {
	TopicPrefix string
	// Emit hands an event to the bridge's sinks (bridge.Bridge.Emit).
	Emit func(bridge.Event)
	// Skip lists agents whose events are not relayed (ones whose events
	// reach the notifiers by another way, so they are not sent twice).
	Skip []string
	// Burst and Refill are each agent's token bucket; the relay as a whole
	// allows 10 times as much.
	Burst     int
	Refill    time.Duration
	MaxAgents int
	Logger    *slog.Logger
	// Metrics is the process's metrics set, where the relay registers
	// upsbridge_agent_events_relayed_total and
	// upsbridge_agent_events_dropped_total (nil: a set of its own).
	Metrics *metrics.Set
}

// Relay is the listener. It is safe for concurrent use.
type Relay struct {
	opts   Options
	log    *slog.Logger
	topics mqttwire.Topics
	skip   map[string]bool

	mu       sync.Mutex
	buckets  map[string]*bucket
	global   bucket
	lastWarn time.Time

	relayed, dropped *metrics.Counter
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a relay.
func New(opts Options) *Relay {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Refill <= 0 {
		opts.Refill = DefaultRefill
	}
	if opts.MaxAgents <= 0 {
		opts.MaxAgents = DefaultMaxAgents
	}
	r := &Relay{opts: opts, log: opts.Logger.With("component", "agent-events"), topics: mqttwire.Topics{Prefix: opts.TopicPrefix},
		skip: map[string]bool{}, buckets: map[string]*bucket{}}
	set := metricname.Set(opts.Metrics)
	r.relayed = set.GetOrCreateCounter("upsbridge_agent_events_relayed_total")
	r.dropped = set.GetOrCreateCounter("upsbridge_agent_events_dropped_total")
	for _, id := range opts.Skip {
		r.skip[id] = true
	}
	r.global = bucket{tokens: float64(10 * opts.Burst)}
	return r
}

// Subscriptions lists every agent's event topic.
func (r *Relay) Subscriptions() []string { return []string{r.topics.AllAgentEvents()} }

// Stats reports relayed and dropped events (bridge.StatsReporter).
func (r *Relay) Stats() map[string]any {
	return map[string]any{"relayed_total": r.relayed.Get(), "dropped_total": r.dropped.Get()}
}

// OnReceive takes one message from the MQTT connection; it never blocks.
func (r *Relay) OnReceive(topic string, payload []byte, retained bool) {
	t := r.topics.Parse(topic)
	if t.Kind != mqttwire.KindAgentEvent || retained || r.skip[t.ID] {
		return
	}
	now := time.Now()
	ev, err := mqttwire.DecodeAgentEvent(payload)
	if err == nil && ev.Agent != t.ID {
		err = fmt.Errorf("agent %q on the topic of agent %q", ev.Agent, t.ID)
	}
	if err != nil {
		r.drop(now, "agent event ignored", "agent", t.ID, "err", err)
		return
	}
	typ, ok := kinds[ev.Type]
	if !ok {
		return // OUTAGE_START, WARN...: the agent's own business
	}
	if !r.allow(t.ID, now) {
		r.drop(now, "agent events dropped: more than the rate limit allows", "agent", t.ID, "burst", r.opts.Burst, "refill", r.opts.Refill)
		return
	}
	msg := clean(ev.Message)
	if msg == "" {
		msg = bridge.NewEvent(ev.Agent, now, typ, "").Message
	}
	if ev.DryRun {
		msg = "[dry run] " + msg
	}
	out := bridge.Event{Host: ev.Agent, Time: now, Type: typ, Message: msg}
	if mqttwire.ValidID(ev.UPS) {
		out.UPS = ev.UPS
	}
	r.relayed.Inc()
	r.opts.Emit(out)
}

// allow takes a token from the agent's bucket and the global one.
func (r *Relay) allow(agent string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[agent]
	if b == nil {
		if len(r.buckets) >= r.opts.MaxAgents {
			// Forget agents whose buckets are full again: they lose
			// nothing, and the map stays bounded.
			for id, o := range r.buckets {
				r.refill(o, now, r.opts.Burst)
				if o.tokens >= float64(r.opts.Burst) {
					delete(r.buckets, id)
				}
			}
			if len(r.buckets) >= r.opts.MaxAgents {
				return false
			}
		}
		b = &bucket{tokens: float64(r.opts.Burst), at: now}
		r.buckets[agent] = b
	}
	r.refill(b, now, r.opts.Burst)
	r.refill(&r.global, now, 10*r.opts.Burst)
	if b.tokens < 1 || r.global.tokens < 1 {
		return false
	}
	b.tokens--
	r.global.tokens--
	return true
}

func (r *Relay) refill(b *bucket, now time.Time, capacity int) {
	if !b.at.IsZero() {
		b.tokens += float64(now.Sub(b.at)) / float64(r.opts.Refill)
		if b.tokens > float64(capacity) {
			b.tokens = float64(capacity)
		}
	}
	b.at = now
}

// drop counts a dropped message and logs at most once a minute.
func (r *Relay) drop(now time.Time, msg string, args ...any) {
	r.dropped.Inc()
	r.mu.Lock()
	warn := r.lastWarn.IsZero() || now.Sub(r.lastWarn) >= time.Minute
	if warn {
		r.lastWarn = now
	}
	r.mu.Unlock()
	if warn {
		r.log.Warn(msg+" (further such warnings suppressed for a minute)", args...)
	}
}

// clean cuts a text from the network to one short line of printable
// characters.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case !unicode.IsPrint(r):
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
