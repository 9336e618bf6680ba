package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// shutdownDev is a UPS whose shutdown thresholds and delays dummy-ups lets
// upsd write.
const shutdownDev = baseDev + `battery.charge.low: 20
ups.delay.shutdown: 20
input.transfer.low: 170
`

// TestSetClosedByDefault goes through the real binary, mosquitto, upsd and
// dummy-ups: `set` of battery.charge.low=100 (LB on every outage) and
// ups.delay.shutdown=0 (the load cut before the hosts are down) is
// REJECTED by default, and when only allow_set lists them; it reaches the
// UPS only when they are also named in mqtt.commands.allow_dangerous. Each
// refusal names the key to change and never reaches upsd.
func TestSetClosedByDefault(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: shutdownDev}}})
	broker := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/ups/guarded/#")
	pub := harness.Subscribe(t, broker.URL(), "none/#")
	setT, resT := "upsbridge/ups/guarded/set", "upsbridge/ups/guarded/command/result"

	// set publishes a request and returns the result for that variable.
	set := func(variable, value string) string {
		t.Helper()
		before := 0
		for _, m := range sub.On(resT) {
			if strings.Contains(m.Payload, `"var":"`+variable+`"`) {
				before++
			}
		}
		harness.Publish(t, pub, setT, fmt.Sprintf(`{"var":%q,"value":%q}`, variable, value))
		var got string
		sub.WaitFor("the result of setting "+variable, 20*time.Second, func(msgs []harness.Msg) bool {
			n := 0
			for _, m := range msgs {
				if m.Topic == resT && strings.Contains(m.Payload, `"var":"`+variable+`"`) {
					if n++; n > before {
						got = m.Payload
						return true
					}
				}
			}
			return false
		})
		return got
	}

	for _, tc := range []struct {
		name     string
		commands string // the mqtt.commands block
		accepted bool
		reason   string
	}{
		{"default", "{}", false, "mqtt.commands.allow_set"},
		{"allow_set only", "{allow_set: [battery.charge.low, ups.delay.shutdown, input.transfer.low]}", false, "mqtt.commands.allow_dangerous"},
		{"opted in by name", "{allow_set: [battery.charge.low, ups.delay.shutdown], allow_dangerous: [battery.charge.low, ups.delay.shutdown]}", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u.WriteDev("dummy", shutdownDev)
			u.WaitVar("dummy", "battery.charge.low", "20", 10*time.Second)
			u.WaitVar("dummy", "ups.delay.shutdown", "20", 10*time.Second)
			httpAddr := harness.Addr(harness.FreePort(t))
			p := harness.StartBridge(t, fmt.Sprintf(`
mqtt:
  url: %s
  commands: %s
bridge: {id: guard, state_dir: %s}
http: {listen: "%s"}
sources:
  - {id: guarded, type: nut, address: "%s", ups: dummy, username: %s, password: %s, poll_interval: 500ms}
`, broker.URL(), tc.commands, t.TempDir(), httpAddr, u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword))
			defer p.Stop(t, 10*time.Second)
			// The bridge subscribes on connect, before its first state.
			after := len(sub.On("upsbridge/ups/guarded/state"))
			sub.WaitFor("a fresh state", 30*time.Second, func([]harness.Msg) bool {
				return len(sub.On("upsbridge/ups/guarded/state")) > after
			})
			for _, v := range []struct{ variable, value string }{{"battery.charge.low", "100"}, {"ups.delay.shutdown", "0"}} {
				res := set(v.variable, v.value)
				if !tc.accepted {
					if !strings.Contains(res, `"status":"REJECTED"`) || !strings.Contains(res, tc.reason) {
						t.Errorf("set %s=%s: %s, want REJECTED naming %s", v.variable, v.value, res, tc.reason)
					}
					// The refusal came before upsd: the UPS still has its value.
					if got, err := u.GetVar("dummy", v.variable); err != nil || got != "20" {
						t.Errorf("%s on upsd = %q (%v) after a rejected set, want 20", v.variable, got, err)
					}
					continue
				}
				if strings.Contains(res, `"status":"REJECTED"`) || strings.Contains(res, `"status":"ERROR"`) {
					t.Errorf("set %s=%s opted in: %s", v.variable, v.value, res)
				}
				u.WaitVar("dummy", v.variable, v.value, 10*time.Second)
			}
			if tc.accepted {
				// A variable that controls nothing but is not in allow_set
				// stays closed.
				if res := set("input.transfer.low", "160"); !strings.Contains(res, `"status":"REJECTED"`) {
					t.Errorf("input.transfer.low outside allow_set: %s", res)
				}
			} else if !strings.Contains(p.Output.String(), "command rejected") {
				t.Error("the rejection is not logged")
			}
			want := `upsbridge_sink_commands_rejected_total{sink="mqtt"} 2`
			if tc.accepted {
				want = `upsbridge_sink_commands_rejected_total{sink="mqtt"} 1`
			}
			if _, body := httpGet(t, "http://"+httpAddr+"/metrics"); !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		})
	}
}
