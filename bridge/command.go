package bridge

import "strings"

// IsDangerousCommand reports whether an instant command can cut power to the
// load or leave it unprotected: load off, shutdown, bypass and the like. Such
// commands are refused from MQTT and Home Assistant unless explicitly allowed
// (hass.dangerous_commands). Unknown commands count as dangerous: only
// what is known to be harmless is safe.
func IsDangerousCommand(name string) bool {
	for _, safe := range safeCommandPrefixes {
		if name == safe || strings.HasPrefix(name, safe+".") {
			return false
		}
	}
	return true
}

// safeCommandPrefixes are commands (and their sub-commands) that do not
// interrupt power: battery tests, the beeper, panel tests, calibration stop.
var safeCommandPrefixes = []string{
	"test.battery.start", "test.battery.stop", "test.panel.start", "test.panel.stop",
	"test.failure.stop", "beeper", "calibrate.stop", "reset.input.minmax",
	"reset.watchdog", "shutdown.stop",
}
