package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/mqttconn"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/internal/hacheck"
	"github.com/upsbridge/upsbridge/internal/harness"
)

// hassPublisher is a plain MQTT client for the tests: it plays Home
// Assistant (birth message, button presses) and seeds retained configs.
func hassPublisher(t *testing.T, url string) *autopaho.ConnectionManager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := mqttconn.Connect(ctx, mqttconn.ConnOptions{URL: url, ClientID: fmt.Sprintf("test-ha-%d", time.Now().UnixNano())}, mqttconn.Handlers{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, c := context.WithTimeout(context.Background(), time.Second)
		defer c()
		_ = cm.Disconnect(dctx)
		cancel()
	})
	actx, c := context.WithTimeout(ctx, 10*time.Second)
	defer c()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("test client connect: %v", err)
	}
	return cm
}

func publish(t *testing.T, cm *autopaho.ConnectionManager, topic, payload string, retain bool) {
	t.Helper()
	ctx, c := context.WithTimeout(context.Background(), 5*time.Second)
	defer c()
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), Retain: retain, QoS: 1}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// latestConfigs returns the last payload of every config topic (empty ones
// included: a removal).
func latestConfigs(msgs []harness.Msg, prefix string) map[string]string {
	out := map[string]string{}
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, prefix+"/") && strings.HasSuffix(m.Topic, "/config") {
			out[m.Topic] = m.Payload
		}
	}
	return out
}

func count(msgs []harness.Msg, topic string) int {
	n := 0
	for _, m := range msgs {
		if m.Topic == topic {
			n++
		}
	}
	return n
}

func bridgeConfig(brokerURL, state, mode string, extra string) string {
	return fmt.Sprintf(`
mqtt:
  url: %s
bridge:
  id: hat
  state_dir: %s
hass:
  mode: %s
%s
sources:
  - id: sim-ups
    type: sim
    scenario: steady
    poll_interval: 100ms
`, brokerURL, state, mode, extra)
}

const (
	simDevice  = "upsbridge_hat_ups_sim_ups"
	chargeCfg  = "homeassistant/sensor/" + simDevice + "_battery_charge/config"
	muteCfg    = "homeassistant/button/" + simDevice + "_cmd_beeper_mute/config"
	ghostCfg   = "homeassistant/sensor/" + simDevice + "_input_gone/config"
	otherCfg   = "homeassistant/sensor/upsbridge_hat_2_ups_x_load/config"
	foreignCfg = "homeassistant/sensor/0x00158d_temperature/config"
	resultT    = "upsbridge/ups/sim-ups/command/result"
)

// TestHASSDiscoveryEndToEnd runs the binary with a simulated UPS against a
// real mosquitto: configs appear and conform, a stale config under our
// UPS is removed while other bridges' and tools' configs stay, HA's birth
// message brings a re-publish (configs, then availability and state), a
// safe button press runs, a dangerous or unoffered command is rejected.
func TestHASSDiscoveryEndToEnd(t *testing.T) {
	broker := harness.StartMosquitto(t)
	ha := hassPublisher(t, broker.URL())
	dev := func(id, via string) string {
		return fmt.Sprintf(`"device":{"identifiers":["%s"],"via_device":"%s"}`, id, via)
	}
	// Left by an earlier run (a variable the UPS no longer reports), by
	// another bridge whose id starts like ours, and by another tool.
	publish(t, ha, ghostCfg, `{"name":"Gone","unique_id":"`+simDevice+`_input_gone","state_topic":"upsbridge/ups/sim-ups/state",`+dev(simDevice, "upsbridge_hat")+`}`, true)
	publish(t, ha, otherCfg, `{"name":"Load","unique_id":"upsbridge_hat_2_ups_x_load","state_topic":"upsbridge/ups/x/state",`+dev("upsbridge_hat_2_ups_x", "upsbridge_hat_2")+`}`, true)
	publish(t, ha, foreignCfg, `{"name":"Temperature","unique_id":"0x00158d_temperature","state_topic":"z2m/x",`+dev("zigbee2mqtt_0x00158d", "zigbee2mqtt_bridge")+`}`, true)

	sub := harness.Subscribe(t, broker.URL(), "homeassistant/#", "upsbridge/#")
	harness.StartBridge(t, bridgeConfig(broker.URL(), t.TempDir(), "entity", ""))

	msgs := sub.WaitFor("battery charge and mute button configs, and the ghost removed", 30*time.Second, func(msgs []harness.Msg) bool {
		c := latestConfigs(msgs, "homeassistant")
		return c[chargeCfg] != "" && c[muteCfg] != "" && c[ghostCfg] == "" && count(msgs, ghostCfg) >= 2
	})
	cfgs := latestConfigs(msgs, "homeassistant")
	if cfgs[otherCfg] == "" || cfgs[foreignCfg] == "" {
		t.Fatalf("configs of another bridge or tool were removed: %q %q", cfgs[otherCfg], cfgs[foreignCfg])
	}
	var ours []hacheck.Message
	for topic, p := range cfgs {
		if strings.Contains(topic, "upsbridge_hat_") && !strings.Contains(topic, "upsbridge_hat_2") {
			ours = append(ours, hacheck.Message{Topic: topic, Payload: []byte(p)})
		}
	}
	for _, p := range hacheck.Check("homeassistant", ours) {
		t.Errorf("conformance: %s", p)
	}
	// Configs are retained: a new subscriber gets them.
	fresh := harness.Subscribe(t, broker.URL(), chargeCfg)
	fresh.WaitFor("the charge config retained", 10*time.Second, func(msgs []harness.Msg) bool {
		return len(msgs) > 0 && msgs[0].Retained
	})

	// HA's birth: configs again, then availability and state.
	before := len(sub.Messages())
	publish(t, ha, "homeassistant/status", "online", false)
	sub.WaitFor("configs, availability and state re-published after HA's birth", 20*time.Second, func(msgs []harness.Msg) bool {
		cfgAt, availAt, stateAt := -1, -1, -1
		for i, m := range msgs[before:] {
			switch {
			case m.Topic == chargeCfg && cfgAt < 0:
				cfgAt = i
			case m.Topic == "upsbridge/ups/sim-ups/availability" && cfgAt >= 0 && availAt < 0:
				availAt = i
			case m.Topic == "upsbridge/ups/sim-ups/state" && cfgAt >= 0 && stateAt < 0:
				stateAt = i
			}
		}
		return cfgAt >= 0 && availAt > cfgAt && stateAt > cfgAt
	})

	// A button press as HA sends it: payload_press to command_topic.
	var button struct {
		CommandTopic string `json:"command_topic"`
		PayloadPress string `json:"payload_press"`
	}
	if err := json.Unmarshal([]byte(cfgs[muteCfg]), &button); err != nil {
		t.Fatal(err)
	}
	publish(t, ha, button.CommandTopic, button.PayloadPress, false)
	sub.WaitPayload(resultT, 10*time.Second, func(p string) bool {
		return strings.Contains(p, `"command":"beeper.mute"`) && strings.Contains(p, `"status":"SUCCESS"`)
	})
	// Dangerous (offered by the sim, no dangerous_commands), not offered,
	// unknown: rejected with a reason.
	for _, cmd := range []string{"shutdown.return", "beeper.enable", "self.destruct"} {
		publish(t, ha, button.CommandTopic, `{"command":"`+cmd+`"}`, false)
		sub.WaitPayload(resultT, 10*time.Second, func(p string) bool {
			return strings.Contains(p, `"command":"`+cmd+`"`) && strings.Contains(p, `"status":"REJECTED"`)
		})
	}
	if _, ok := cfgs["homeassistant/button/"+simDevice+"_cmd_shutdown_return/config"]; ok {
		t.Errorf("a dangerous command has a button without hass.dangerous_commands")
	}
}

// TestHASSDangerousAndDeviceMode: with shutdown.return named in
// mqtt.commands.allow_dangerous the command runs and has a (disabled)
// button; device mode
// publishes one conforming device config per device.
func TestHASSDangerousAndDeviceMode(t *testing.T) {
	broker := harness.StartMosquitto(t)
	ha := hassPublisher(t, broker.URL())
	sub := harness.Subscribe(t, broker.URL(), "homeassistant/#", "upsbridge/#")
	cfg := bridgeConfig(broker.URL(), t.TempDir(), "device", "  dangerous_commands: true")
	cfg = strings.Replace(cfg, "mqtt:\n", "mqtt:\n  commands: {allow_dangerous: [shutdown.return]}\n", 1)
	harness.StartBridge(t, cfg)
	devTopic := "homeassistant/device/" + simDevice + "/config"
	msgs := sub.WaitFor("the UPS and bridge device configs", 30*time.Second, func(msgs []harness.Msg) bool {
		c := latestConfigs(msgs, "homeassistant")
		return c[devTopic] != "" && c["homeassistant/device/upsbridge_hat/config"] != ""
	})
	cfgs := latestConfigs(msgs, "homeassistant")
	var all []hacheck.Message
	for topic, p := range cfgs {
		all = append(all, hacheck.Message{Topic: topic, Payload: []byte(p)})
	}
	for _, p := range hacheck.Check("homeassistant", all) {
		t.Errorf("conformance: %s", p)
	}
	var d struct {
		Components map[string]map[string]any `json:"components"`
	}
	if err := json.Unmarshal([]byte(cfgs[devTopic]), &d); err != nil {
		t.Fatal(err)
	}
	b := d.Components["cmd_shutdown_return"]
	if b == nil || b["enabled_by_default"] != false {
		t.Fatalf("dangerous button: %v", b)
	}
	publish(t, ha, "upsbridge/ups/sim-ups/command", `{"command":"shutdown.return"}`, false)
	sub.WaitPayload(resultT, 10*time.Second, func(p string) bool {
		return strings.Contains(p, `"command":"shutdown.return"`) && strings.Contains(p, `"status":"SUCCESS"`)
	})
}

// TestOneMQTTClientPerRole runs a bridge with Home Assistant discovery,
// the primary, the agents' relay and an agent of its own, and reads in
// mosquitto's log which clients connected: the bridge's pair (publisher,
// with its Will; listener for the discovery scan, primary, relay and
// commands) and the agent's pair (publisher with its Will; news reader),
// nothing else. Each role publishes and listens on connections of its own
// so that no flood on a topic it reads can hold back what it publishes.
func TestOneMQTTClientPerRole(t *testing.T) {
	dir := t.TempDir()
	// Run as root, mosquitto writes as its own user: its log lives in a
	// directory that user can reach (t.TempDir's are private).
	logDir, err := os.MkdirTemp("", "upsbridge-mosquitto-log-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(logDir) })
	if err := os.Chmod(logDir, 0o777); err != nil {
		t.Fatal(err)
	}
	brokerLog := filepath.Join(logDir, "mosquitto.log")
	broker := harness.StartMosquittoConf(t, "log_dest file "+brokerLog+"\nlog_type notice\n")
	// A stale config of this bridge: the scan must find and remove it.
	sub := harness.Subscribe(t, broker.URL(), "homeassistant/#", "upsbridge/#")
	harness.PublishRetained(t, sub, ghostCfg, `{"name":"Gone","unique_id":"`+simDevice+`_input_gone","state_topic":"upsbridge/ups/sim-ups/state","device":{"identifiers":["`+simDevice+`"],"via_device":"upsbridge_hat"}}`)
	rec := filepath.Join(dir, "rec.sh")
	if err := os.WriteFile(rec, []byte("#!/bin/sh\necho \"$@\" >> "+filepath.Join(dir, "record.txt")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	harness.StartBridge(t, bridgeConfig(broker.URL(), filepath.Join(dir, "state"), "entity", fmt.Sprintf(`notify:
  - {name: log, type: exec, command: [%q]}
agent:
  id: host1
  supplies: [{ups: sim-ups}]
  poweroff: command
  shutdown_command: [%q, poweroff]
  state_file: %s
`, rec, rec, filepath.Join(dir, "agent.json"))))
	sub.WaitFor("the ghost config removed by the scan, the bridge and the agent online", 30*time.Second, func(msgs []harness.Msg) bool {
		c := latestConfigs(msgs, "homeassistant")
		bridgeOnline, agentOnline := false, false
		for _, m := range msgs {
			switch m.Topic {
			case "upsbridge/bridge/hat/availability":
				bridgeOnline = m.Payload == "online"
			case "upsbridge/agent/host1/state":
				agentOnline = strings.HasPrefix(m.Payload, "{")
			}
		}
		return count(msgs, ghostCfg) >= 2 && c[ghostCfg] == "" && c[chargeCfg] != "" && bridgeOnline && agentOnline
	})
	b, err := os.ReadFile(brokerLog)
	if err != nil {
		t.Fatal(err)
	}
	// "New client connected from 127.0.0.1:40000 as upsbridge-hat (p5, c1, k30)."
	clients := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(line, "New client connected from ")
		if !ok {
			continue
		}
		if _, id, ok := strings.Cut(rest, " as "); ok {
			id, _, _ = strings.Cut(id, " ")
			if strings.HasPrefix(id, "upsbridge-") {
				clients[id] = true
			}
		}
	}
	want := []string{"upsbridge-hat", "upsbridge-hat-listen", "upsbridge-agent-host1", "upsbridge-agent-host1-news"}
	ok := len(clients) == len(want)
	for _, id := range want {
		ok = ok && clients[id]
	}
	if !ok {
		t.Errorf("the process connected as %v, want %v only; broker log:\n%s", clients, want, b)
	}
}
