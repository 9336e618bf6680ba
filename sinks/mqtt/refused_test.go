package mqtt

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/mqttconn"
)

// strictBroker is a real MQTT broker (mochi) that denies one topic and
// announces a maximum packet size, and records what it accepted.
type strictBroker struct {
	mochi.HookBase
	deny      string
	maxPacket uint32

	mu        sync.Mutex
	published map[string]int
}

func (*strictBroker) ID() string { return "strict" }
func (*strictBroker) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnPublished || b == mochi.OnPacketEncode
}

// OnPacketEncode announces the maximum packet size in the CONNACK, as
// mosquitto's max_packet_size does (mochi enforces its limit silently, by
// dropping the connection).
func (h *strictBroker) OnPacketEncode(_ *mochi.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && h.maxPacket > 0 {
		pk.Properties.MaximumPacketSize = h.maxPacket
	}
	return pk
}
func (*strictBroker) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *strictBroker) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	return !write || topic != h.deny
}
func (h *strictBroker) OnPublished(_ *mochi.Client, pk packets.Packet) {
	h.mu.Lock()
	h.published[pk.TopicName]++
	h.mu.Unlock()
}
func (h *strictBroker) count(topic string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.published[topic]
}

func startStrictBroker(t *testing.T, deny string, maxPacket uint32) (*strictBroker, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacket
	srv := mochi.New(&mochi.Options{Capabilities: caps, Logger: slog.New(slog.DiscardHandler)})
	h := &strictBroker{deny: deny, maxPacket: maxPacket, published: map[string]int{}}
	if err := srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return h, "tcp://" + addr
}

func testState(ups string, seq uint64, vars bridge.Vars) *bridge.State {
	return &bridge.State{UPS: ups, Time: time.Now(), Seq: seq, Status: bridge.ParseStatus(vars[bridge.VarStatus]), Vars: vars, Comm: true}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A state refused by the broker's ACL (PUBACK 0x87) and one larger than
// its CONNACK's maximum packet size (never sent: the broker would drop the
// connection) are retried a bounded number of times and set aside, while
// another UPS's states and events flow on the same, never-dropped
// connection.
func TestRefusedSetAside(t *testing.T) {
	h, url := startStrictBroker(t, "upsbridge/ups/denied/state", 4096)
	dir := t.TempDir()
	s, err := New(Options{
		Conn: mqttconn.ConnOptions{URL: url, ClientID: "refused-test"}, TopicPrefix: "upsbridge", BridgeID: "b",
		SpoolDir: dir, RefusedAttempts: 3, RefusedBackoff: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	q := bridge.NewQueue("mqtt", 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, q) }()
	defer func() { q.Close(); <-done; cancel() }()

	big := bridge.Vars{"ups.status": "OL", "ups.alarm": strings.Repeat("x", 6000)}
	q.PutState(testState("denied", 1, bridge.Vars{"ups.status": "OL"}))
	q.PutState(testState("huge", 1, big))
	q.PutState(testState("good", 1, bridge.Vars{"ups.status": "OL"}))
	q.PutEvent(&bridge.Event{UPS: "good", Time: time.Now(), Type: bridge.EventOnBatt, Status: "OB"})
	waitUntil(t, "the good UPS's state and event", 10*time.Second, func() bool {
		return h.count("upsbridge/ups/good/state") == 1 && h.count("upsbridge/ups/good/event") == 1
	})
	waitUntil(t, "two dead letters", 10*time.Second, func() bool { n, _ := s.DeadLetters(); return n == 2 })
	// Later states of the good UPS still flow.
	q.PutState(testState("good", 2, bridge.Vars{"ups.status": "OB"}))
	waitUntil(t, "the next good state", 10*time.Second, func() bool { return h.count("upsbridge/ups/good/state") == 2 })

	_, recent := s.DeadLetters()
	reasons := map[string]string{}
	for _, dl := range recent {
		reasons[dl.Topic] = dl.Reason
		if dl.Attempts != 3 {
			t.Errorf("%s set aside after %d attempts, want 3", dl.Topic, dl.Attempts)
		}
	}
	if !strings.Contains(reasons["upsbridge/ups/denied/state"], "not authorized") {
		t.Errorf("denied reason %q", reasons["upsbridge/ups/denied/state"])
	}
	if !strings.Contains(reasons["upsbridge/ups/huge/state"], "maximum is 4096") {
		t.Errorf("huge reason %q", reasons["upsbridge/ups/huge/state"])
	}
	if h.count("upsbridge/ups/huge/state") != 0 || h.count("upsbridge/ups/denied/state") != 0 {
		t.Error("the broker delivered a refused state")
	}
	st := s.Stats()
	if st["publish_failures_total"].(uint64) != 0 {
		t.Errorf("refusals counted as connection failures: %v", st)
	}
	if st["publish_refused_total"].(uint64) != 6 || st["dead_letters_total"].(uint64) != 2 {
		t.Errorf("stats %v", st)
	}
	b, err := os.ReadFile(filepath.Join(dir, DeadLetterFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("dead-letter file has %d lines:\n%s", len(lines), b)
	}
	for _, l := range lines {
		var dl DeadLetter
		if err := json.Unmarshal([]byte(l), &dl); err != nil {
			t.Fatalf("dead letter %q: %v", l, err)
		}
		if dl.Topic == "upsbridge/ups/huge/state" && (dl.Size < 6000 || len(dl.Payload) == 0) {
			t.Errorf("huge state not kept: size %d, payload %d bytes", dl.Size, len(dl.Payload))
		}
	}
}

// A newer state that gets through clears the retry of an older refused
// one, and the dead-letter file rotates at its bound.
func TestRefusedBook(t *testing.T) {
	dir := t.TempDir()
	b := newRefusedBook(dir, 2, time.Millisecond, 300, metrics.NewSet().NewCounter("test_dead_letters_total"))
	now := time.Now()
	m := Message{Topic: "p/ups/u/state", Payload: []byte(`{"a":1}`), Retain: true, QoS: 1}
	re := &RefusedError{Code: 0x87, Reason: "not authorized"}
	if dl := b.refused(m, b.key(m), 0, re, now); dl != nil {
		t.Fatal("set aside at the first refusal")
	}
	b.delivered(m)
	if len(b.retry) != 0 {
		t.Error("a delivered retained topic is still retried")
	}
	ev := Message{Topic: "p/ups/u/event", Payload: []byte(`{}`), QoS: 1}
	k1, k2 := b.key(ev), b.key(ev)
	if k1 == k2 {
		t.Error("two events share a retry slot")
	}
	for i := range 10 {
		dl := b.refused(ev, b.key(ev), 1, re, now)
		if dl == nil {
			t.Fatalf("event %d not set aside at its last attempt", i)
		}
		if err := b.write(dl); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{DeadLetterFile, DeadLetterFile + ".1"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 300 {
			t.Errorf("%s is %d bytes, over the 300-byte bound", f, st.Size())
		}
	}
	if n, recent := b.stats(); n != 10 || len(recent) != 10 {
		t.Errorf("stats %d, %d recent", n, len(recent))
	}
}
