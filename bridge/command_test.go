package bridge

import (
	"strings"
	"testing"
)

func TestControlsShutdown(t *testing.T) {
	for name, want := range map[string]bool{
		"load.off": true, "load.off.delay": true, "shutdown.return": true, "shutdown.stayoff": true,
		"shutdown.stop": true, "shutdown.reboot": true, "ups.delay.shutdown": true, "ups.delay.start": true,
		"battery.charge.low": true, "battery.runtime.low": true,
		"load.on": false, "load.offx": false, "beeper.mute": false, "battery.charge": false,
		"battery.charge.low.x": false, "ups.delay": false, "test.battery.start": false, "input.transfer.low": false,
	} {
		if got := ControlsShutdown(name); got != want {
			t.Errorf("ControlsShutdown(%q) = %v", name, got)
		}
	}
}

// The policy is closed by default and opens only what is named.
func TestCommandPolicy(t *testing.T) {
	type check struct {
		set  bool // a variable write; else an instant command
		name string
		ok   bool
		why  string // part of the refusal
	}
	for _, tc := range []struct {
		name   string
		p      CommandPolicy
		checks []check
	}{
		{"zero value", CommandPolicy{}, []check{
			{false, "beeper.mute", true, ""},
			{false, "test.battery.start.quick", true, ""},
			{false, "load.off", false, "mqtt.commands.allow_dangerous"},
			{false, "shutdown.return", false, "mqtt.commands.allow_dangerous"},
			{false, "shutdown.stop", false, "mqtt.commands.allow_dangerous"},
			{false, "bypass.start", false, "hass.dangerous_commands"},
			{true, "battery.charge.low", false, "allow_set"},
			{true, "ups.delay.shutdown", false, "allow_set"},
			{true, "input.transfer.low", false, "allow_set"},
		}},
		{"hass.dangerous_commands does not open shutdown", CommandPolicy{DangerousCommands: true}, []check{
			{false, "bypass.start", true, ""},
			{false, "load.off", false, "mqtt.commands.allow_dangerous"},
		}},
		{"allow_set without allow_dangerous", CommandPolicy{AllowSet: []string{"input.transfer.low", "battery.charge.low"}}, []check{
			{true, "input.transfer.low", true, ""},
			{true, "battery.charge.low", false, "mqtt.commands.allow_dangerous"},
			{true, "ups.delay.shutdown", false, "allow_set"},
		}},
		{"opted in by name", CommandPolicy{AllowSet: []string{"battery.charge.low", "ups.delay.shutdown"}, AllowDangerous: []string{"battery.charge.low", "ups.delay.shutdown", "load.off"}}, []check{
			{true, "battery.charge.low", true, ""},
			{true, "ups.delay.shutdown", true, ""},
			{true, "ups.delay.start", false, "allow_set"},
			{false, "load.off", true, ""},
			{false, "load.off.delay", false, "mqtt.commands.allow_dangerous"},
		}},
	} {
		for _, c := range tc.checks {
			var err error
			if c.set {
				err = tc.p.CheckSet(c.name)
			} else {
				err = tc.p.CheckCommand(c.name)
			}
			if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), c.why)) {
				t.Errorf("%s: %s (set=%v) = %v, want ok=%v naming %q", tc.name, c.name, c.set, err, c.ok, c.why)
			}
		}
	}
}
