package mqtt

import (
	"context"
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/paho"
)

// runScans runs the Scanners one after the other over the sink's
// connections, once, after both first connected.
func (s *Sink) runScans(ctx context.Context) {
	for _, sc := range s.scanners {
		if err := sc.Scan(ctx, session{s}); err != nil && ctx.Err() == nil {
			s.log.Warn("scan of the broker failed", "err", err)
		}
	}
}

// session is the sink's connections as a Scanner sees them: it subscribes
// on the listening connection (where received messages arrive) and
// publishes on the publishing one; the broker delivers a message published
// after a subscription was acknowledged after that subscription's retained
// messages, whatever the connection.
type session struct{ s *Sink }

func (ss session) Subscribe(ctx context.Context, filters ...string) error {
	if len(filters) == 0 {
		return nil
	}
	subs := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		subs[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	if _, err := ss.s.lm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		return fmt.Errorf("subscribe %v: %w", filters, err)
	}
	return nil
}

func (ss session) Unsubscribe(ctx context.Context, filters ...string) error {
	if len(filters) == 0 {
		return nil
	}
	if _, err := ss.s.lm.Unsubscribe(ctx, &paho.Unsubscribe{Topics: filters}); err != nil {
		return fmt.Errorf("unsubscribe %v: %w", filters, err)
	}
	return nil
}

func (ss session) Publish(ctx context.Context, topic string, payload []byte) error {
	if ss.s.cm == nil {
		return errors.New("not connected")
	}
	if _, err := ss.s.cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: 1}); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}
