package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// hugeDev is a UPS whose state payload is over the broker's
// message_size_limit below (n=200: about 14 KB) or even over its
// max_packet_size (n=400: about 28 KB).
func hugeDev(n int) string {
	var b strings.Builder
	b.WriteString(baseDev)
	for i := range n {
		fmt.Fprintf(&b, "experimental.filler.%03d: %s\n", i, strings.Repeat("x", 60))
	}
	return b.String()
}

// TestRefusedMessagesSetAside: a real mosquitto denies one UPS's state
// topic by ACL and refuses another's state by message_size_limit (PUBACK
// 0x87 and 0x95); a third state is over the max_packet_size of its
// CONNACK. The good UPS's states and events keep flowing, on a connection
// that never drops, while the refused ones are retried; after the retries
// the refused states are in the dead-letter file and in /api/state, with
// the broker's reason.
func TestRefusedMessagesSetAside(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{
		{Name: "good", Dev: baseDev}, {Name: "denied", Dev: baseDev}, {Name: "huge", Dev: hugeDev(200)}, {Name: "giant", Dev: hugeDev(400)},
	}})
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("topic deny upsbridge/ups/denied/state\ntopic readwrite #\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// user root: a root mosquitto would otherwise drop to its own user,
	// which cannot read the test's private directory (ignored when the
	// tests do not run as root).
	// max_packet_size is announced in the CONNACK: the bridge does not
	// even send what exceeds it (mosquitto would drop the connection).
	broker := harness.StartMosquittoConf(t, fmt.Sprintf("user root\nacl_file %s\nmessage_size_limit 8192\nmax_packet_size 20000\n", acl))
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/#")
	state := t.TempDir()
	httpAddr := harness.Addr(harness.FreePort(t))
	src := func(id string) string {
		return fmt.Sprintf(`  - {id: %s, type: nut, address: "%s", ups: %s, username: %s, password: %s, poll_interval: 300ms}`,
			id, u.Addr(), id, harness.NUTAdminUser, harness.NUTAdminPassword)
	}
	start := time.Now()
	p := harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: dl, state_dir: %s, state_interval: 1s}
hass: {enabled: false}
http: {listen: "%s"}
sources:
%s
%s
%s
%s
`, broker.URL(), state, httpAddr, src("good"), src("denied"), src("huge"), src("giant")))

	// The good UPS flows from the start, and keeps flowing while the
	// others are refused and retried.
	sub.WaitPayload("upsbridge/ups/good/state", 30*time.Second, func(s string) bool { return strings.Contains(s, `"OL"`) })
	served := servedAt(t, u, "good", "OB DISCHRG")
	ev, _ := waitEvent(t, sub, "upsbridge/ups/good/event", "ONBATT", 0, 15*time.Second)
	lat := ev.At.Sub(served)
	t.Logf("ONBATT of the good UPS published %s after upsd served OB (poll interval 300ms), %s after start, while the others were refused",
		lat.Round(time.Millisecond), ev.At.Sub(start).Round(time.Millisecond))
	if lat > 300*time.Millisecond+700*time.Millisecond {
		t.Errorf("the good UPS's ONBATT took %s: held up by the refused ones?", lat)
	}
	// The refused UPSes' availability and events are not refused: they flow.
	sub.WaitPayload("upsbridge/ups/denied/availability", 10*time.Second, func(s string) bool { return s == "online" })
	sub.WaitPayload("upsbridge/ups/huge/availability", 10*time.Second, func(s string) bool { return s == "online" })
	u.WriteDev("denied", devWith("OB DISCHRG"))
	waitEvent(t, sub, "upsbridge/ups/denied/event", "ONBATT", 0, 15*time.Second)

	// After the bounded retries (1+2+4+8 s with jitter) both refused
	// states are set aside.
	dlFile := filepath.Join(state, "bridge-dl", "mqtt-events", "deadletter.jsonl")
	deadline := time.Now().Add(60 * time.Second)
	var letters []map[string]any
	for {
		letters = readDeadLetters(t, dlFile)
		if hasLetter(letters, "upsbridge/ups/denied/state", "not authorized") && hasLetter(letters, "upsbridge/ups/huge/state", "packet too large") &&
			hasLetter(letters, "upsbridge/ups/giant/state", "the broker's maximum is 20000") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters after 60s: %v\n%s", letters, p.Output.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range letters {
		if strings.Contains(l["topic"].(string), "/good/") {
			t.Errorf("a message of the good UPS was set aside: %v", l)
		}
		if l["attempts"].(float64) != 5 {
			t.Errorf("set aside after %v attempts, want 5: %v", l["attempts"], l["topic"])
		}
	}
	// The denied state is kept whole (JSON) for a later look.
	for _, l := range letters {
		if l["topic"] == "upsbridge/ups/denied/state" {
			if pl, ok := l["payload"].(map[string]any); !ok || pl["ups"] != "denied" {
				t.Errorf("denied state's payload not kept: %v", l)
			}
		}
	}
	// Meanwhile the good UPS's state kept coming (state_interval 1s).
	before := len(sub.On("upsbridge/ups/good/state"))
	sub.WaitFor("more states of the good UPS", 10*time.Second, func([]harness.Msg) bool {
		return len(sub.On("upsbridge/ups/good/state")) >= before+2
	})

	// /api/state shows them, and /metrics counts them.
	_, body := waitHTTP(t, "http://"+httpAddr+"/api/state", 10*time.Second, "dead letters in /api/state", func(code int, body string) bool {
		return code == 200 && strings.Contains(body, "upsbridge/ups/denied/state") && strings.Contains(body, "upsbridge/ups/huge/state")
	})
	var doc struct {
		Sinks []struct {
			Name  string         `json:"name"`
			Stats map[string]any `json:"stats"`
		} `json:"sinks"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range doc.Sinks {
		if s.Name == "mqtt" {
			dl, _ := s.Stats["dead_letters"].([]any)
			found = len(dl) >= 2
		}
	}
	if !found {
		t.Errorf("/api/state has no dead_letters list on the mqtt sink: %s", body)
	}
	_, metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{`upsbridge_sink_dead_letters_total{sink="mqtt"}`, `upsbridge_sink_publish_refused_total{sink="mqtt"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, `upsbridge_sink_dead_letters_total{sink="mqtt"} 0`) {
		t.Error("dead letters not counted")
	}
	// Refusals are not connection failures: the connection never dropped.
	if !strings.Contains(metrics, `upsbridge_sink_publish_failures_total{sink="mqtt"} 0`) || strings.Contains(p.Output.String(), "mqtt connection lost") {
		t.Errorf("the connection failed during refusals:\n%s", p.Output.String())
	}
}

func readDeadLetters(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("dead-letter line is not JSON: %v: %.200s", err, line)
		}
		out = append(out, m)
	}
	return out
}

func hasLetter(letters []map[string]any, topic, reason string) bool {
	for _, l := range letters {
		if l["topic"] == topic && strings.Contains(fmt.Sprint(l["reason"]), reason) {
			return true
		}
	}
	return false
}
