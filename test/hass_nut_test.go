package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// TestHASSButtonOnRealUPSD presses Home Assistant buttons of a real upsd
// with dummy-ups (which offers load.off and load.on, both dangerous):
// with load.off named in mqtt.commands.allow_dangerous the button exists,
// disabled by default, and
// its press reaches the driver (dummy-ups answers UNKNOWN through command
// tracking); a command the UPS does not offer is rejected before upsd.
func TestHASSButtonOnRealUPSD(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	broker := harness.StartMosquitto(t)
	ha := hassPublisher(t, broker.URL())
	sub := harness.Subscribe(t, broker.URL(), "homeassistant/#", "upsbridge/#")
	harness.StartBridge(t, fmt.Sprintf(`
mqtt:
  url: %s
  commands: {allow_dangerous: [load.off]}
bridge:
  id: hanut
  state_dir: %s
hass:
  dangerous_commands: true
sources:
  - id: nut1
    type: nut
    address: %s
    ups: dummy
    username: %s
    password: %s
    poll_interval: 200ms
`, broker.URL(), t.TempDir(), u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword))

	cfgTopic := "homeassistant/button/upsbridge_hanut_ups_nut1_cmd_load_off/config"
	msg := sub.WaitPayload(cfgTopic, 30*time.Second, func(p string) bool { return p != "" })
	var button struct {
		CommandTopic string `json:"command_topic"`
		PayloadPress string `json:"payload_press"`
		Enabled      *bool  `json:"enabled_by_default"`
	}
	if err := json.Unmarshal([]byte(msg.Payload), &button); err != nil {
		t.Fatal(err)
	}
	if button.Enabled == nil || *button.Enabled {
		t.Errorf("a dangerous button must be disabled by default: %s", msg.Payload)
	}
	result := "upsbridge/ups/nut1/command/result"
	publish(t, ha, button.CommandTopic, button.PayloadPress, false)
	sub.WaitPayload(result, 30*time.Second, func(p string) bool {
		return strings.Contains(p, `"command":"load.off"`) && strings.Contains(p, `"status":"UNKNOWN"`)
	})
	publish(t, ha, button.CommandTopic, `{"command":"beeper.mute"}`, false)
	sub.WaitPayload(result, 10*time.Second, func(p string) bool {
		return strings.Contains(p, `"command":"beeper.mute"`) && strings.Contains(p, `"status":"REJECTED"`)
	})
}
