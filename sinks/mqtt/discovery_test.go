package mqtt

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/hass"
	"github.com/upsbridge/upsbridge/internal/hacheck"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/internal/mqttconn"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func testDiscovery(device bool) (*Discovery, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	d := NewDiscovery(DiscoveryOptions{
		HASS: hass.Options{DiscoveryPrefix: "homeassistant", TopicPrefix: "upsbridge", BridgeID: "b1", DeviceMode: device,
			Origin: hass.Origin{Name: "upsbridge", SWVersion: "test"}},
		UnknownGrace: time.Minute, RemoveAfter: 2 * time.Minute, Now: clk.now,
	})
	return d, clk
}

var simInfo = &bridge.Info{Commands: []bridge.Command{{Name: "beeper.mute"}, {Name: "load.off"}}}

func upsState(ups string, at time.Time, vars bridge.Vars, info *bridge.Info) *bridge.State {
	return &bridge.State{UPS: ups, Time: at, Seq: 1, Status: bridge.ParseStatus(vars["ups.status"]), Vars: vars, Comm: true, Info: info}
}

func topics(msgs []Message) map[string]string {
	out := map[string]string{}
	for _, m := range msgs {
		out[m.Topic] = string(m.Payload)
	}
	return out
}

const cfgPrefix = "homeassistant/sensor/upsbridge_b1_ups_u1_"

func TestDiscoveryConfigsAndChanges(t *testing.T) {
	d, clk := testDiscovery(false)
	vars := bridge.Vars{"ups.status": "OL", "battery.charge": "100", "input.voltage": "230.1", "ups.load": "20"}
	msgs := d.OnConnect([]*bridge.State{upsState("u1", clk.t, vars, simInfo)})
	var check []hacheck.Message
	for _, m := range msgs {
		if !m.Retain || m.QoS != 1 {
			t.Errorf("%s: retain=%v qos=%d, want retained QoS 1", m.Topic, m.Retain, m.QoS)
		}
		check = append(check, hacheck.Message{Topic: m.Topic, Payload: m.Payload})
	}
	for _, p := range hacheck.Check("homeassistant", check) {
		t.Errorf("conformance: %s", p)
	}
	got := topics(msgs)
	for _, want := range []string{
		"homeassistant/binary_sensor/upsbridge_b1_connection/config",
		cfgPrefix + "battery_charge/config",
		"homeassistant/button/upsbridge_b1_ups_u1_cmd_beeper_mute/config",
	} {
		if got[want] == "" {
			t.Errorf("no config on %s", want)
		}
	}
	if _, ok := got["homeassistant/button/upsbridge_b1_ups_u1_cmd_load_off/config"]; ok {
		t.Error("dangerous command got a button")
	}

	// Same variable set, new values: nothing to publish.
	clk.t = clk.t.Add(time.Second)
	vars2 := bridge.Vars{"ups.status": "OB", "battery.charge": "97", "input.voltage": "0", "ups.load": "21"}
	if msgs := d.OnState(upsState("u1", clk.t, vars2, simInfo)); len(msgs) != 0 {
		t.Errorf("values changed, configs re-published: %v", topics(msgs))
	}
	// A new variable: its config. A vanished one: kept for RemoveAfter.
	vars3 := bridge.Vars{"ups.status": "OL", "battery.charge": "97", "ups.load": "21", "battery.runtime": "1200"}
	got = topics(d.OnState(upsState("u1", clk.t, vars3, simInfo)))
	if len(got) != 1 || got[cfgPrefix+"battery_runtime/config"] == "" {
		t.Errorf("after a new variable: %v", got)
	}
	clk.t = clk.t.Add(3 * time.Minute)
	got = topics(d.OnState(upsState("u1", clk.t, vars3, simInfo)))
	if p, ok := got[cfgPrefix+"input_voltage/config"]; !ok || p != "" || len(got) != 1 {
		t.Errorf("after RemoveAfter, want only the removal of input_voltage: %v", got)
	}
	// It came back: published again.
	got = topics(d.OnState(upsState("u1", clk.t, vars, simInfo)))
	if got[cfgPrefix+"input_voltage/config"] == "" {
		t.Errorf("variable back, config not re-published: %v", got)
	}
}

func TestDiscoveryDeviceModeRemoval(t *testing.T) {
	d, clk := testDiscovery(true)
	vars := bridge.Vars{"ups.status": "OL", "battery.charge": "100", "input.voltage": "230"}
	d.OnConnect([]*bridge.State{upsState("u1", clk.t, vars, simInfo)})
	clk.t = clk.t.Add(3 * time.Minute)
	vars = maps.Clone(vars) // a new map, as sources do: a sent map is never modified
	delete(vars, "input.voltage")
	got := topics(d.OnState(upsState("u1", clk.t, vars, simInfo)))
	p := got["homeassistant/device/upsbridge_b1_ups_u1/config"]
	var dev struct {
		Components map[string]map[string]any `json:"components"`
	}
	if err := json.Unmarshal([]byte(p), &dev); err != nil {
		t.Fatalf("device payload %q: %v", p, err)
	}
	if c := dev.Components["input_voltage"]; len(c) != 1 || c["platform"] != "sensor" {
		t.Errorf("removed component is %v, want {platform: sensor}", c)
	}
	for _, pr := range hacheck.Check("homeassistant", []hacheck.Message{{Topic: "homeassistant/device/upsbridge_b1_ups_u1/config", Payload: []byte(p)}}) {
		if pr.Rule != 21 { // the bridge device is not in this one-message set
			t.Errorf("conformance: %s", pr)
		}
	}
}

func TestDiscoveryStaleCleanup(t *testing.T) {
	d, clk := testDiscovery(false)
	known := hass.UPSDeviceID("b1", "u1")
	ghost := hass.UPSDeviceID("b1", "renamed")
	d.mu.Lock()
	d.scanned = true
	d.stale = map[string]retainedConfig{
		cfgPrefix + "input_gone/config":                                   {device: known, uniqueID: known + "_input_gone"},
		"homeassistant/button/upsbridge_b1_ups_u1_cmd_beeper_mute/config": {device: known, uniqueID: known + "_cmd_beeper_mute"},
		"homeassistant/sensor/upsbridge_b1_ups_renamed_load/config":       {device: ghost, uniqueID: ghost + "_load"},
		cfgPrefix + "battery_charge/config":                               {device: known, uniqueID: known + "_battery_charge"},
	}
	d.mu.Unlock()
	// Commands not known yet (Info nil): the button stays.
	got := topics(d.OnState(upsState("u1", clk.t, bridge.Vars{"ups.status": "OL", "battery.charge": "90"}, nil)))
	if p, ok := got[cfgPrefix+"input_gone/config"]; !ok || p != "" {
		t.Errorf("stale config of a known UPS not removed: %v", got)
	}
	for _, keep := range []string{"homeassistant/button/upsbridge_b1_ups_u1_cmd_beeper_mute/config", "homeassistant/sensor/upsbridge_b1_ups_renamed_load/config"} {
		if _, ok := got[keep]; ok {
			t.Errorf("%s removed too early", keep)
		}
	}
	if got[cfgPrefix+"battery_charge/config"] == "" {
		t.Errorf("a config we generate was removed or not published")
	}
	if !d.OnMessage(d.scanTopic(), []byte("done")) {
		t.Errorf("scan notice with work left did not ask for a pass")
	}
	// After the grace the renamed UPS's config goes; with commands known
	// the mute button is generated, so it stays.
	clk.t = clk.t.Add(2 * time.Minute)
	got = topics(d.OnState(upsState("u1", clk.t, bridge.Vars{"ups.status": "OL", "battery.charge": "90"}, simInfo)))
	if p, ok := got["homeassistant/sensor/upsbridge_b1_ups_renamed_load/config"]; !ok || p != "" {
		t.Errorf("ghost UPS config not removed after the grace: %v", got)
	}
	if p := got["homeassistant/button/upsbridge_b1_ups_u1_cmd_beeper_mute/config"]; p == "" {
		t.Errorf("button config not published: %v", got)
	}
	if d.OnMessage(d.scanTopic(), []byte("done")) {
		t.Errorf("nothing left, yet a pass was asked for")
	}
}

func TestDiscoveryMessagesAndPolicy(t *testing.T) {
	d, clk := testDiscovery(false)
	for _, tc := range []struct {
		topic, payload string
		want           bool
	}{
		{"homeassistant/status", "online", true},
		{"homeassistant/status", "offline", false},
		{"homeassistant/other", "online", false},
		{d.scanTopic(), "sync abc", false},
	} {
		if got := d.OnMessage(tc.topic, []byte(tc.payload)); got != tc.want {
			t.Errorf("OnMessage(%s, %s) = %v", tc.topic, tc.payload, got)
		}
	}
	d.OnState(upsState("u1", clk.t, bridge.Vars{"ups.status": "OL"}, simInfo))
	for _, tc := range []struct {
		ups, cmd string
		want     bool
	}{
		{"u1", "beeper.mute", true},
		{"u1", "load.off", false},      // dangerous
		{"u1", "beeper.enable", false}, // not offered
		{"u2", "beeper.mute", false},   // unknown UPS
		{"u1", "test.battery.start", false},
	} {
		if got := d.AllowCommand(tc.ups, tc.cmd); got != tc.want {
			t.Errorf("AllowCommand(%s, %s) = %v", tc.ups, tc.cmd, got)
		}
	}
	d.o.HASS.Policy.DangerousCommands = true
	if d.AllowCommand("u1", "load.off") {
		t.Error("load.off allowed by hass.dangerous_commands alone")
	}
	d.o.HASS.Policy.AllowDangerous = []string{"load.off"}
	if !d.AllowCommand("u1", "load.off") {
		t.Error("load.off refused when named in allow_dangerous")
	}
}

func TestDiscoveryEnergy(t *testing.T) {
	d, clk := testDiscovery(false)
	vars := bridge.Vars{"ups.status": "OL", "ups.load": "50", "ups.realpower.nominal": "200"} // 100 W estimated
	if m := d.OnState(upsState("u1", clk.t, vars, nil)); strings.Contains(topics(m)["upsbridge/ups/u1/energy"], "kwh") {
		t.Fatal("energy published before the scan read the previous counter")
	}
	d.mu.Lock()
	d.scanned = true
	d.baseline["u1"] = 2
	d.mu.Unlock()
	clk.t = clk.t.Add(36 * time.Second)
	got := topics(d.OnState(upsState("u1", clk.t, vars, nil)))
	var e struct {
		KWh       float64 `json:"energy_kwh"`
		Estimated bool    `json:"estimated"`
	}
	if err := json.Unmarshal([]byte(got["upsbridge/ups/u1/energy"]), &e); err != nil {
		t.Fatalf("energy payload: %v (%v)", err, got)
	}
	if e.KWh != 2.001 || !e.Estimated {
		t.Errorf("energy %+v, want 2.001 kWh estimated (100 W for 36 s on 2 kWh)", e)
	}
	// Unparsable power: no integration, no made-up zero.
	vars["ups.load"] = "N/A"
	clk.t = clk.t.Add(36 * time.Second)
	if _, ok := topics(d.OnState(upsState("u1", clk.t, vars, nil)))["upsbridge/ups/u1/energy"]; ok {
		t.Error("energy published without a power reading")
	}
}

// TestDiscoveryScan runs the scan against a real mosquitto holding retained
// configs of this bridge, of another bridge and of another tool.
func TestDiscoveryScan(t *testing.T) {
	broker := harness.StartMosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cm, err := mqttconn.Connect(ctx, mqttconn.ConnOptions{URL: broker.URL(), ClientID: "seed"}, mqttconn.Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	seed := map[string]string{
		"homeassistant/sensor/upsbridge_b1_ups_old_load/config":      `{"unique_id":"upsbridge_b1_ups_old_load","device":{"identifiers":["upsbridge_b1_ups_old"],"via_device":"upsbridge_b1"}}`,
		"homeassistant/device/upsbridge_b1_ups_u1/config":            `{"dev":{"ids":"upsbridge_b1_ups_u1","via_device":"upsbridge_b1"},"o":{"name":"x"},"cmps":{"load":{"p":"sensor","uniq_id":"a"},"gone":{"p":"sensor"}}}`,
		"homeassistant/binary_sensor/upsbridge_b1_connection/config": `{"unique_id":"upsbridge_b1_connection","device":{"identifiers":["upsbridge_b1"]}}`,
		"homeassistant/sensor/upsbridge_b1_2_ups_x_load/config":      `{"unique_id":"upsbridge_b1_2_ups_x_load","device":{"identifiers":["upsbridge_b1_2_ups_x"],"via_device":"upsbridge_b1_2"}}`,
		"homeassistant/sensor/z2m_temp/config":                       `{"unique_id":"z2m_temp","device":{"identifiers":["z"]}}`,
		"homeassistant/sensor/broken/config":                         `not json`,
		"upsbridge/ups/u1/energy":                                    `{"energy_kwh":12.5}`,
	}
	for topic, p := range seed {
		publishRetained(t, ctx, cm, topic, p)
	}
	d := NewDiscovery(DiscoveryOptions{
		HASS: hass.Options{DiscoveryPrefix: "homeassistant", TopicPrefix: "upsbridge", BridgeID: "b1"},
	})
	// The scan's messages reach it through Tap, as on the sink's
	// connection; the sink is subscribed to the scan topic.
	untapped := make(chan string, 100)
	scm, err := mqttconn.Connect(ctx, mqttconn.ConnOptions{URL: broker.URL(), ClientID: "scan-test"}, mqttconn.Handlers{OnPublish: func(topic string, payload []byte, retained bool) {
		if !d.Tap(topic, payload, retained) {
			untapped <- topic + " " + string(payload)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := scm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := scm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: d.scanTopic(), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Scan(ctx, session{&Sink{cm: scm, lm: scm}}); err != nil {
		t.Fatal(err)
	}
	// Only the "done" notice goes on to the sink's routing.
	select {
	case m := <-untapped:
		if m != d.scanTopic()+" done" {
			t.Errorf("message not kept from the sink: %s", m)
		}
	case <-ctx.Done():
		t.Fatal("the done notice did not reach the sink's routing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.scanned {
		t.Fatal("scan did not finish")
	}
	want := map[string]string{
		"homeassistant/sensor/upsbridge_b1_ups_old_load/config":      "upsbridge_b1_ups_old",
		"homeassistant/device/upsbridge_b1_ups_u1/config":            "upsbridge_b1_ups_u1",
		"homeassistant/binary_sensor/upsbridge_b1_connection/config": "upsbridge_b1",
	}
	if len(d.stale) != len(want) {
		t.Errorf("scan found %d configs, want %d: %v", len(d.stale), len(want), d.stale)
	}
	for topic, dev := range want {
		if d.stale[topic].device != dev {
			t.Errorf("%s: device %q, want %q", topic, d.stale[topic].device, dev)
		}
	}
	if c := d.stale["homeassistant/device/upsbridge_b1_ups_u1/config"].components; len(c) != 1 || c["load"] != "sensor" {
		t.Errorf("device payload components %v", c)
	}
	if d.baseline["u1"] != 12.5 {
		t.Errorf("energy baseline %v", d.baseline)
	}
}

func publishRetained(t *testing.T, ctx context.Context, cm *autopaho.ConnectionManager, topic, payload string) {
	t.Helper()
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), Retain: true, QoS: 1}); err != nil {
		t.Fatal(err)
	}
}
