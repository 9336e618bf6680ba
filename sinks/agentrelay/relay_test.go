package agentrelay

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

type sink struct {
	mu  sync.Mutex
	evs []bridge.Event
}

func (s *sink) emit(e bridge.Event) { s.mu.Lock(); s.evs = append(s.evs, e); s.mu.Unlock() }

func (s *sink) events() []bridge.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bridge.Event(nil), s.evs...)
}

func payload(agent, typ, msg string) []byte {
	b, _ := json.Marshal(mqttwire.AgentEvent{Agent: agent, TS: "2026-01-01T00:00:00.000Z", Type: typ, UPS: "ups1", Message: msg})
	return b
}

func TestRelayPassesHostEvents(t *testing.T) {
	s := &sink{}
	r := New(Options{TopicPrefix: "ub", Emit: s.emit, Skip: []string{"local"}})
	for _, typ := range []string{"STAGE", "STAGE_FAILED", "UNDO", "SHUTDOWN", "POWERING_OFF", "POWEROFF_FAILED"} {
		r.OnReceive("ub/agent/web01/event", payload("web01", typ, "Host web01: "+typ), false)
	}
	// Not relayed: the agent's own business, history, a forged id, junk,
	// a local agent, other prefixes.
	r.OnReceive("ub/agent/web01/event", payload("web01", "OUTAGE_START", "x"), false)
	r.OnReceive("ub/agent/web01/event", payload("web01", "WARN", "x"), false)
	r.OnReceive("ub/agent/web01/event", payload("web01", "SHUTDOWN", "old"), true)
	r.OnReceive("ub/agent/web01/event", payload("db01", "SHUTDOWN", "forged"), false)
	r.OnReceive("ub/agent/web01/event", []byte(`{"agent":`), false)
	r.OnReceive("ub/agent/web01/event", []byte(strings.Repeat("x", mqttwire.MaxPayload+1)), false)
	r.OnReceive("ub/agent/local/event", payload("local", "SHUTDOWN", "twice"), false)
	r.OnReceive("other/agent/web01/event", payload("web01", "SHUTDOWN", "x"), false)
	r.OnReceive("ub/agent/web01/state", payload("web01", "SHUTDOWN", "x"), false)
	evs := s.events()
	want := []bridge.EventType{bridge.EventStage, bridge.EventStageFailed, bridge.EventUndo, bridge.EventShutdown, bridge.EventPoweringOff, bridge.EventPoweroffFailed}
	if len(evs) != len(want) {
		t.Fatalf("relayed %d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, e := range evs {
		if e.Type != want[i] || e.Host != "web01" || e.UPS != "ups1" || !strings.HasPrefix(e.Message, "Host web01") {
			t.Errorf("event %d = %+v", i, e)
		}
		if !bridge.HostEvent(e.Type) {
			t.Errorf("%s is not a host event: the MQTT sink would republish it", e.Type)
		}
	}
}

func TestRelayCleansText(t *testing.T) {
	s := &sink{}
	r := New(Options{TopicPrefix: "ub", Emit: s.emit})
	r.OnReceive("ub/agent/web01/event", payload("web01", "SHUTDOWN", "line1\nline2\x1b[31m"+strings.Repeat("长", 500)), false)
	r.OnReceive("ub/agent/web01/event", payload("web01", "POWERING_OFF", ""), false)
	evs := s.events()
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	if m := evs[0].Message; strings.ContainsAny(m, "\n\x1b") || len(m) > maxMessage+len("…") || !strings.HasPrefix(m, "line1 line2[31m") {
		t.Errorf("message not cleaned: %q", m)
	}
	if evs[1].Message != "Host web01 is powering off" {
		t.Errorf("empty message not replaced by the standard one: %q", evs[1].Message)
	}
}

// TestRelayRateLimits: a flood from one agent, or from many ids, reaches
// the notifiers only as far as the buckets allow.
func TestRelayRateLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		r := New(Options{TopicPrefix: "ub", Emit: s.emit, Burst: 5, Refill: 10 * time.Second, MaxAgents: 100})
		for range 100_000 {
			r.OnReceive("ub/agent/web01/event", payload("web01", "STAGE", "flood"), false)
		}
		if n := len(s.events()); n != 5 {
			t.Fatalf("flood from one agent: %d relayed, want the burst 5", n)
		}
		time.Sleep(10 * time.Second)
		r.OnReceive("ub/agent/web01/event", payload("web01", "STAGE", "later"), false)
		r.OnReceive("ub/agent/web01/event", payload("web01", "STAGE", "later"), false)
		if n := len(s.events()); n != 6 {
			t.Fatalf("after one refill: %d relayed, want 6", n)
		}
		// Many ids: the relay as a whole allows 10 bursts, minus what
		// web01 used since the global bucket refilled.
		time.Sleep(time.Hour)
		before := len(s.events())
		for i := range 10_000 {
			id := fmt.Sprintf("h%d", i)
			r.OnReceive("ub/agent/"+id+"/event", payload(id, "SHUTDOWN", "x"), false)
		}
		if n := len(s.events()) - before; n != 50 {
			t.Fatalf("flood from many ids: %d relayed, want the global bound 50", n)
		}
		if len(r.buckets) > 100 {
			t.Fatalf("%d buckets kept, want at most 100", len(r.buckets))
		}
		if r.dropped.Get() == 0 {
			t.Fatal("drops not counted")
		}
	})
}
