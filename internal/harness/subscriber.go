package harness

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Msg is one received MQTT message.
type Msg struct {
	Topic    string
	Payload  string
	Retained bool
	At       time.Time
}

// Subscriber records every message on its topic filters.
type Subscriber struct {
	t      testing.TB
	mu     sync.Mutex
	msgs   []Msg
	wake   chan struct{}
	cm     *autopaho.ConnectionManager
	cancel context.CancelFunc
}

// Subscribe connects to the broker at brokerURL (tcp://user:password@...
// to log in) and subscribes to filters.
// It returns once the subscription is acknowledged; the connection is closed
// when the test ends. It reconnects (and re-subscribes) if the broker restarts.
func Subscribe(t testing.TB, brokerURL string, filters ...string) *Subscriber {
	t.Helper()
	return subscribe(t, brokerURL, "", filters)
}

// SubscribeSession is Subscribe with a persistent session under a fixed
// client id: a broker that keeps sessions queues QoS 1 messages for it while
// it is disconnected, so nothing published meanwhile is missed.
func SubscribeSession(t testing.TB, brokerURL, clientID string, filters ...string) *Subscriber {
	t.Helper()
	return subscribe(t, brokerURL, clientID, filters)
}

func subscribe(t testing.TB, brokerURL, clientID string, filters []string) *Subscriber {
	t.Helper()
	persistent := clientID != ""
	if !persistent {
		clientID = fmt.Sprintf("test-sub-%d", time.Now().UnixNano())
	}
	var expiry uint32
	if persistent {
		expiry = 3600
	}
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	// tcp://user:password@host:port logs in.
	var user string
	var pass []byte
	if u.User != nil {
		user = u.User.Username()
		p, _ := u.User.Password()
		pass = []byte(p)
		c := *u
		c.User = nil
		u = &c
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Subscriber{t: t, wake: make(chan struct{}, 1), cancel: cancel}
	subs := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		subs[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	subscribed := make(chan error, 1)
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     10,
		CleanStartOnInitialConnection: !persistent,
		SessionExpiryInterval:         expiry,
		ReconnectBackoff:              autopaho.NewConstantBackoff(100 * time.Millisecond),
		ConnectUsername:               user,
		ConnectPassword:               pass,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				sctx, c := context.WithTimeout(ctx, 5*time.Second)
				defer c()
				_, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs})
				select {
				case subscribed <- err:
				default:
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: clientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				s.mu.Lock()
				s.msgs = append(s.msgs, Msg{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload), Retained: pr.Packet.Retain, At: time.Now()})
				s.mu.Unlock()
				select {
				case s.wake <- struct{}{}:
				default:
				}
				return true, nil
			}},
		},
	})
	if err != nil {
		cancel()
		t.Fatalf("subscriber connect: %v", err)
	}
	s.cm = cm
	t.Cleanup(s.Close)
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("subscribe %v: %v", filters, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("subscribe %v: no connection within 10s", filters)
	}
	return s
}

// Close disconnects.
func (s *Subscriber) Close() {
	ctx, c := context.WithTimeout(context.Background(), time.Second)
	defer c()
	_ = s.cm.Disconnect(ctx)
	s.cancel()
}

// Messages returns a copy of everything received so far.
func (s *Subscriber) Messages() []Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Msg(nil), s.msgs...)
}

// On returns the messages received on a topic, in order.
func (s *Subscriber) On(topic string) []Msg {
	var out []Msg
	for _, m := range s.Messages() {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// Last returns the last message on a topic.
func (s *Subscriber) Last(topic string) (Msg, bool) {
	msgs := s.On(topic)
	if len(msgs) == 0 {
		return Msg{}, false
	}
	return msgs[len(msgs)-1], true
}

// WaitFor waits until cond holds over all messages received so far, or
// fails the test after timeout, describing what was waited for.
func (s *Subscriber) WaitFor(what string, timeout time.Duration, cond func(msgs []Msg) bool) []Msg {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		msgs := s.Messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-s.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			s.t.Fatalf("timed out after %s waiting for %s; received %d message(s):\n%s", timeout, what, len(msgs), Dump(msgs, 40))
		}
	}
}

// WaitPayload waits for a message on topic whose payload satisfies cond and
// returns it.
func (s *Subscriber) WaitPayload(topic string, timeout time.Duration, cond func(payload string) bool) Msg {
	s.t.Helper()
	var found Msg
	s.WaitFor("a matching message on "+topic, timeout, func(msgs []Msg) bool {
		for _, m := range msgs {
			if m.Topic == topic && cond(m.Payload) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// Dump formats the last n messages for a failure message.
func Dump(msgs []Msg, n int) string {
	if len(msgs) > n {
		msgs = msgs[len(msgs)-n:]
	}
	var b strings.Builder
	for _, m := range msgs {
		p := m.Payload
		if len(p) > 200 {
			p = p[:200] + "..."
		}
		fmt.Fprintf(&b, "  %s %s r=%v %s\n", m.At.Format("15:04:05.000"), m.Topic, m.Retained, p)
	}
	return b.String()
}

// Publish sends one QoS 1 message through the subscriber's connection.
func Publish(t testing.TB, s *Subscriber, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// PublishRetained sends one retained QoS 1 message through the
// subscriber's connection; an empty payload clears the topic's retained
// message.
func PublishRetained(t testing.TB, s *Subscriber, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: true}); err != nil {
		t.Fatalf("publish retained %s: %v", topic, err)
	}
}

// PublishBytes publishes a payload with the given QoS on s's connection
// and returns the error instead of failing the test (for floods, where the
// broker may refuse some).
func PublishBytes(s *Subscriber, topic string, payload []byte, qos byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: qos})
	return err
}
