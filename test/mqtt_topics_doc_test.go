package test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// documentedTopics reads the table of docs/mqtt-topics.md: the kinds of
// the contract it lists, and whether it lists Home Assistant's topics.
func documentedTopics(t *testing.T) (map[mqttwire.Kind]string, bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(harness.RepoRoot(t), "docs", "mqtt-topics.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	ids := strings.NewReplacer("<prefix>", "upsbridge", "<bridge_id>", "b", "<ups_id>", "u", "<agent_id>", "a")
	topics := mqttwire.Topics{Prefix: "upsbridge"}
	kinds := map[mqttwire.Kind]string{}
	hass := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if strings.HasPrefix(m[1], "homeassistant/") {
			hass = true
			continue
		}
		k := topics.Parse(ids.Replace(m[1])).Kind
		if k == mqttwire.KindNone {
			t.Errorf("docs/mqtt-topics.md lists %s, which is not a topic of the contract (package mqttwire)", m[1])
			continue
		}
		kinds[k] = m[1]
	}
	return kinds, hass
}

// TestDocsMQTTTopics: docs/mqtt-topics.md lists every topic of the contract
// (package mqttwire), and every topic a real run publishes (bridge with Home
// Assistant discovery, an agent, a command answered) is a documented one.
func TestDocsMQTTTopics(t *testing.T) {
	docs, hassDoc := documentedTopics(t)
	for k := mqttwire.KindNone + 1; k.String() != "unknown"; k++ {
		if _, ok := docs[k]; !ok {
			t.Errorf("docs/mqtt-topics.md does not list the %s topic", k)
		}
	}
	if !hassDoc {
		t.Error("docs/mqtt-topics.md does not list Home Assistant's discovery topics")
	}

	broker := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, broker.URL(), "#")
	dir := t.TempDir()
	record := filepath.Join(dir, "record.txt")
	script := filepath.Join(dir, "rec.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1\" >> "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// outage at 300x: mains fails at 0.2 s, LB at 4.2 s, mains back at 4.4 s.
	harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: topics, state_dir: %s}
hass: {enabled: true}
sources:
  - {id: sim-ups, type: sim, scenario: outage, time_scale: 300, poll_interval: 50ms}
agent:
  id: host1
  supplies: [{ups: sim-ups, power_value: 1}]
  poweroff: command
  shutdown_command: [%s, POWEROFF]
  stages:
    - {name: shed, on_battery_for: 1s, run: [%s, SHED]}
`, broker.URL(), dir, script, script))

	sub.WaitFor("the UPS's state", 30*time.Second, func(msgs []harness.Msg) bool {
		for _, m := range msgs {
			if m.Topic == "upsbridge/ups/sim-ups/state" {
				return true
			}
		}
		return false
	})
	harness.Publish(t, sub, "upsbridge/ups/sim-ups/command", "beeper.mute")

	topics := mqttwire.Topics{Prefix: "upsbridge"}
	want := []mqttwire.Kind{
		mqttwire.KindBridgeAvailability, mqttwire.KindHASSScan, mqttwire.KindUPSAvailability,
		mqttwire.KindState, mqttwire.KindEvent, mqttwire.KindEnergy, mqttwire.KindCommand,
		mqttwire.KindCommandResult, mqttwire.KindAgentState, mqttwire.KindAgentEvent,
	}
	seenKinds := func(msgs []harness.Msg) map[mqttwire.Kind]bool {
		seen := map[mqttwire.Kind]bool{}
		for _, m := range msgs {
			seen[topics.Parse(m.Topic).Kind] = true
		}
		return seen
	}
	msgs := sub.WaitFor("a topic of every kind but set", 60*time.Second, func(msgs []harness.Msg) bool {
		seen := seenKinds(msgs)
		for _, k := range want {
			if !seen[k] {
				return false
			}
		}
		return true
	})
	var undocumented []string
	for _, m := range msgs {
		k := topics.Parse(m.Topic).Kind
		switch {
		case strings.HasPrefix(m.Topic, "homeassistant/"):
		case k == mqttwire.KindNone:
			undocumented = append(undocumented, m.Topic)
		default:
			if _, ok := docs[k]; !ok {
				undocumented = append(undocumented, m.Topic)
			}
		}
	}
	sort.Strings(undocumented)
	if len(undocumented) > 0 {
		t.Errorf("topics published but not in docs/mqtt-topics.md: %v", slicesCompact(undocumented))
	}
}

func slicesCompact(s []string) []string {
	var out []string
	for _, v := range s {
		if len(out) == 0 || out[len(out)-1] != v {
			out = append(out, v)
		}
	}
	return out
}
