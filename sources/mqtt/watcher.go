package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge/signing"
	mqttsink "github.com/upsbridge/upsbridge/sinks/mqtt"
)

// Options configure a [Watcher].
type Options struct {
	// Conn is the agent's own connection; its Will is the agent's offline.
	Conn        mqttsink.ConnOptions
	TopicPrefix string
	// Supplies are the UPS ids whose topics are read.
	Supplies []string
	// Verifier checks signatures; with RequireSigned, unsigned, forged and
	// replayed states are dropped.
	Verifier      *signing.Verifier
	RequireSigned bool
	// MaxStateAge bounds the replay guard (a signed state older than this
	// is rejected).
	MaxStateAge time.Duration
	// OnUp is called (from its own goroutine) after each (re)connect and
	// subscription, so the agent can publish its state again.
	OnUp func(ctx context.Context)
	// Now is the clock (tests); nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Watcher keeps the agent's broker connection and turns what arrives into
// [News].
type Watcher struct {
	opts  Options
	log   *slog.Logger
	guard *signing.Guard
	want  map[string]bool
	out   chan News

	mu sync.Mutex
	cm *autopaho.ConnectionManager
}

// NewWatcher returns a watcher; it connects in Run.
func NewWatcher(opts Options) (*Watcher, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RequireSigned && opts.Verifier == nil {
		return nil, errors.New("mqtt watcher: require_signed without a public key")
	}
	w := &Watcher{opts: opts, log: opts.Logger.With("source", "mqtt"), want: map[string]bool{},
		guard: &signing.Guard{MaxAge: opts.MaxStateAge}, out: make(chan News, 1024)}
	for _, s := range opts.Supplies {
		w.want[s] = true
	}
	return w, nil
}

// News returns the channel news arrives on. It is never closed.
func (w *Watcher) News() <-chan News { return w.out }

func (w *Watcher) send(n News) {
	select {
	case w.out <- n:
	default:
		// The agent loop is stuck; dropping is safer than blocking the
		// MQTT client (the next state replaces this one).
		w.log.Error("news dropped: agent busy", "kind", int(n.Kind), "ups", n.UPS)
	}
}

// Run connects and delivers news until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cm, err := mqttsink.Connect(ctx, w.opts.Conn, mqttsink.Handlers{
		OnUp: func(cm *autopaho.ConnectionManager) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.subscribe(ctx, cm)
			}()
		},
		OnDown: func() {
			w.send(News{Kind: KindConnection, At: w.opts.Now(), Online: false})
		},
		OnPublish: w.handle,
	})
	if err != nil {
		return fmt.Errorf("mqtt watcher: %w", err)
	}
	w.mu.Lock()
	w.cm = cm
	w.mu.Unlock()
	<-ctx.Done()
	<-cm.Done()
	return nil
}

func (w *Watcher) subscribe(ctx context.Context, cm *autopaho.ConnectionManager) {
	p := w.opts.TopicPrefix
	subs := []paho.SubscribeOptions{{Topic: p + "/bridge/+/availability", QoS: 1}}
	for _, s := range w.opts.Supplies {
		subs = append(subs,
			paho.SubscribeOptions{Topic: p + "/ups/" + s + "/availability", QoS: 1},
			paho.SubscribeOptions{Topic: p + "/ups/" + s + "/state", QoS: 1})
	}
	sctx, c := context.WithTimeout(ctx, 10*time.Second)
	defer c()
	if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		if ctx.Err() == nil {
			w.log.Error("mqtt subscribe failed; news of the supplies is not current", "err", err)
		}
		return
	}
	w.send(News{Kind: KindConnection, At: w.opts.Now(), Online: true})
	if w.opts.OnUp != nil {
		w.opts.OnUp(ctx)
	}
}

// Publish sends a message on the agent's connection.
func (w *Watcher) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	w.mu.Lock()
	cm := w.cm
	w.mu.Unlock()
	if cm == nil {
		return errors.New("mqtt: not connected yet")
	}
	pctx, c := context.WithTimeout(ctx, 10*time.Second)
	defer c()
	_, err := cm.Publish(pctx, &paho.Publish{Topic: topic, Payload: payload, Retain: retain, QoS: 1})
	if err != nil {
		return fmt.Errorf("mqtt publish %s: %w", topic, err)
	}
	return nil
}

// Disconnect closes the connection cleanly (the Will is not sent).
func (w *Watcher) Disconnect(ctx context.Context) {
	w.mu.Lock()
	cm := w.cm
	w.mu.Unlock()
	if cm != nil {
		_ = cm.Disconnect(ctx)
	}
}

// handle classifies one message; it runs on the client's goroutine and
// must not block.
func (w *Watcher) handle(topic string, payload []byte, _ bool) {
	now := w.opts.Now()
	rest, ok := strings.CutPrefix(topic, w.opts.TopicPrefix+"/")
	if !ok {
		return
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return
	}
	switch {
	case parts[0] == "bridge" && parts[2] == "availability":
		online, ok := availability(payload)
		if !ok {
			w.log.Warn("malformed bridge availability ignored", "topic", topic, "bytes", len(payload))
			return
		}
		w.send(News{Kind: KindBridgeAvailability, Bridge: parts[1], At: now, Online: online})
	case parts[0] == "ups" && w.want[parts[1]] && parts[2] == "availability":
		online, ok := availability(payload)
		if !ok {
			w.log.Warn("malformed UPS availability ignored", "topic", topic, "bytes", len(payload))
			return
		}
		w.send(News{Kind: KindUPSAvailability, UPS: parts[1], At: now, Online: online})
	case parts[0] == "ups" && w.want[parts[1]] && parts[2] == "state":
		ups := parts[1]
		p, ts, err := ParseState(ups, payload)
		if err != nil {
			w.log.Warn("malformed state ignored", "ups", ups, "bytes", len(payload), "err", err)
			return
		}
		r := ReadingFrom(p, ts)
		if w.opts.Verifier != nil && (p.Sig != "" || w.opts.RequireSigned) {
			if err := w.opts.Verifier.VerifyState(p); err != nil {
				w.log.Warn("state rejected: signature", "ups", ups, "err", err)
				if w.opts.RequireSigned {
					return
				}
			} else {
				if err := w.guard.Check(ups, ts, p.Seq, now); err != nil {
					w.log.Warn("state rejected: replay protection", "ups", ups, "err", err)
					return
				}
				r.Signed = true
			}
		}
		w.send(News{Kind: KindState, UPS: ups, At: now, Reading: r})
	}
}

func availability(p []byte) (online, ok bool) {
	switch strings.TrimSpace(string(p)) {
	case "online":
		return true, true
	case "offline", "":
		// An empty retained message clears the topic: nothing is known.
		return false, true
	}
	return false, false
}
