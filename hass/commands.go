package hass

import "strings"

// commandNames are button names for NUT's instant commands
// (docs/nut-names.txt "Instant commands").
var commandNames = map[string]string{
	"test.battery.start":       "Battery test",
	"test.battery.start.quick": "Quick battery test",
	"test.battery.start.deep":  "Deep battery test",
	"test.battery.stop":        "Stop battery test",
	"test.panel.start":         "Panel test",
	"test.panel.stop":          "Stop panel test",
	"test.failure.start":       "Power failure test",
	"test.failure.stop":        "Stop power failure test",
	"beeper.mute":              "Mute beeper",
	"beeper.enable":            "Enable beeper",
	"beeper.disable":           "Disable beeper",
	"beeper.on":                "Beeper on",
	"beeper.off":               "Beeper off",
	"beeper.toggle":            "Toggle beeper",
	"calibrate.start":          "Start runtime calibration",
	"calibrate.stop":           "Stop runtime calibration",
	"load.off":                 "Load off",
	"load.on":                  "Load on",
	"load.off.delay":           "Load off with delay",
	"load.on.delay":            "Load on with delay",
	"shutdown.return":          "Shutdown and return",
	"shutdown.stayoff":         "Shutdown and stay off",
	"shutdown.stop":            "Cancel shutdown",
	"shutdown.reboot":          "Reboot load",
	"shutdown.reboot.graceful": "Reboot load gracefully",
	"bypass.start":             "Bypass start",
	"bypass.stop":              "Bypass stop",
	"reset.input.minmax":       "Reset input min/max",
	"reset.watchdog":           "Reset watchdog",
}

// commandName names a button: the table's name, else the command in words.
func commandName(cmd string) string {
	if n, ok := commandNames[cmd]; ok {
		return n
	}
	s := strings.ReplaceAll(cmd, ".", " ")
	return strings.ToUpper(s[:1]) + s[1:]
}

// commandIcon picks an icon by command family.
func commandIcon(cmd string) string {
	switch {
	case strings.HasPrefix(cmd, "beeper."):
		return "mdi:volume-off"
	case strings.HasPrefix(cmd, "test."):
		return "mdi:battery-heart-variant"
	case strings.HasPrefix(cmd, "calibrate."):
		return "mdi:battery-sync"
	}
	return "mdi:power"
}

// statusText maps ups.status flags to HA's NUT integration wording
// (components/nut/const.py STATE_TYPES); unknown flags pass through.
var statusText = [][2]string{
	{"OL", "Online"}, {"OB", "On Battery"}, {"LB", "Low Battery"}, {"HB", "High Battery"},
	{"RB", "Battery Needs Replacement"}, {"CHRG", "Battery Charging"},
	{"DISCHRG", "Battery Discharging"}, {"BYPASS", "Bypass Active"}, {"CAL", "Runtime Calibration"},
	{"OFF", "Offline"}, {"OVER", "Overloaded"}, {"TRIM", "Trimming Voltage"},
	{"BOOST", "Boosting Voltage"}, {"FSD", "Forced Shutdown"}, {"ALARM", "Alarm"},
	{"ECO", "ECO Mode"}, {"HE", "ECO Mode"}, {"TEST", "Battery Testing"},
}

// StatusText renders status flags as the Status sensor's template does: the
// readable words joined by spaces, unknown flags as they are.
func StatusText(flags []string) string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		w := f
		for _, st := range statusText {
			if st[0] == f {
				w = st[1]
			}
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

// PowerStates are the options of the Power state enum sensor.
var PowerStates = []string{"online", "on_battery", "low_battery", "bypass", "offline", "forced_shutdown", "calibrating", "unknown"}

// PowerState derives the Power state sensor's value from status flags, as
// its template does: the most urgent condition wins.
func PowerState(flags []string) string {
	has := map[string]bool{}
	for _, f := range flags {
		has[f] = true
	}
	switch {
	case has["FSD"]:
		return "forced_shutdown"
	case has["OB"] && has["LB"]:
		return "low_battery"
	case has["OB"]:
		return "on_battery"
	case has["OFF"]:
		return "offline"
	case has["BYPASS"]:
		return "bypass"
	case has["CAL"]:
		return "calibrating"
	case has["OL"]:
		return "online"
	}
	return "unknown"
}
