package harness

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// Publisher is a plain MQTT v5 client for tests that play a bridge or an
// attacker: it publishes what the test gives it, nothing else.
type Publisher struct {
	t  testing.TB
	cm *autopaho.ConnectionManager
}

// NewPublisher connects to brokerURL and returns once connected; the
// connection is closed when the test ends.
func NewPublisher(t testing.TB, brokerURL, clientID string) *Publisher {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 10, CleanStartOnInitialConnection: true,
		ReconnectBackoff: autopaho.NewConstantBackoff(100 * time.Millisecond),
		ClientConfig:     paho.ClientConfig{ClientID: fmt.Sprintf("%s-%d", clientID, time.Now().UnixNano())},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = cm.Disconnect(dctx)
		cancel()
	})
	actx, c := context.WithTimeout(ctx, 10*time.Second)
	defer c()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("publisher %s: connect: %v", clientID, err)
	}
	return &Publisher{t: t, cm: cm}
}

// Publish sends one QoS 1 message and waits for the broker's PUBACK.
func (p *Publisher) Publish(topic string, payload []byte, retain bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, Retain: retain, QoS: 1}); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// MustPublish is Publish failing the test on error.
func (p *Publisher) MustPublish(topic string, payload []byte, retain bool) {
	p.t.Helper()
	if err := p.Publish(topic, payload, retain); err != nil {
		p.t.Fatal(err)
	}
}

// FloodMsg is one message a [Flood] repeats.
type FloodMsg struct {
	Topic   string
	Payload []byte
	QoS     byte // 0 or 1
}

// Flood connects to the broker at addr (host:port) with a raw MQTT 3.1.1
// connection and writes the messages round-robin, pre-encoded, at up to
// perSecond messages per second (0: as fast as the broker reads them),
// until ctx ends. QoS 1 messages are written without waiting for their
// PUBACK (the broker's acknowledgements are read and thrown away), as a
// hostile client would. It returns how many messages it wrote.
func Flood(ctx context.Context, addr, clientID string, msgs []FloodMsg, perSecond int) (uint64, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, fmt.Errorf("flood: dial %s: %w", addr, err)
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	// CONNECT, MQTT 3.1.1, clean session, keepalive 0.
	var vh []byte
	vh = appendString(vh, "MQTT")
	vh = append(vh, 4, 0x02, 0, 0)
	vh = appendString(vh, clientID)
	if _, err := conn.Write(appendPacket(nil, 0x10, vh)); err != nil {
		return 0, fmt.Errorf("flood: connect: %w", err)
	}
	r := bufio.NewReader(conn)
	var ack [4]byte
	if _, err := r.Read(ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		return 0, fmt.Errorf("flood: no CONNACK (%x): %v", ack, err)
	}
	go func() { _, _ = r.WriteTo(discard{}) }() // PUBACKs
	// One batch of packets, reused.
	const batch = 512
	var buf []byte
	id := uint16(1)
	encode := func() {
		buf = buf[:0]
		for i := 0; i < batch; i++ {
			m := msgs[i%len(msgs)]
			body := appendString(nil, m.Topic)
			hdr := byte(0x30)
			if m.QoS == 1 {
				hdr = 0x32
				body = binary.BigEndian.AppendUint16(body, id)
				if id++; id == 0 {
					id = 1
				}
			}
			body = append(body, m.Payload...)
			buf = appendPacket(buf, hdr, body)
		}
	}
	var sent uint64
	start := time.Now()
	for ctx.Err() == nil {
		encode()
		if _, err := conn.Write(buf); err != nil {
			if ctx.Err() != nil {
				break
			}
			return sent, fmt.Errorf("flood: write: %w", err)
		}
		sent += batch
		if perSecond > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(perSecond) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
	}
	return sent, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// appendPacket appends a packet with its fixed header and remaining length.
func appendPacket(b []byte, hdr byte, body []byte) []byte {
	b = append(b, hdr)
	n := len(body)
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}
