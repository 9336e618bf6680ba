package hass

import (
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
)

// varSpec says how one NUT variable becomes a sensor.
type varSpec struct {
	Name       string
	Class      string // sensor device class
	Unit       string
	StateClass string
	Diagnostic bool
	Enabled    bool
	Precision  int // suggested_display_precision; -1 for none
	Icon       string
}

// Tiers of the recommended entity set (hass.md §3.3).
var (
	primaryVars = map[string]varSpec{
		"battery.charge":  {Name: "Battery charge", Class: "battery", Unit: "%", StateClass: "measurement", Enabled: true, Precision: 0},
		"battery.runtime": {Name: "Battery runtime", Class: "duration", Unit: "s", StateClass: "measurement", Enabled: true, Precision: 0},
		"ups.load":        {Name: "Load", Unit: "%", StateClass: "measurement", Enabled: true, Precision: 0, Icon: "mdi:gauge"},
		"input.voltage":   {Name: "Input voltage", Class: "voltage", Unit: "V", StateClass: "measurement", Enabled: true, Precision: 1},
		"output.voltage":  {Name: "Output voltage", Class: "voltage", Unit: "V", StateClass: "measurement", Enabled: true, Precision: 1},
	}
	diagnosticVars = map[string]varSpec{
		"input.frequency":        {Name: "Input frequency", Class: "frequency", Unit: "Hz", StateClass: "measurement", Precision: 1},
		"output.frequency":       {Name: "Output frequency", Class: "frequency", Unit: "Hz", StateClass: "measurement", Precision: 1},
		"battery.voltage":        {Name: "Battery voltage", Class: "voltage", Unit: "V", StateClass: "measurement", Precision: 1},
		"ups.temperature":        {Name: "Internal temperature", Class: "temperature", Unit: "°C", StateClass: "measurement", Precision: 1},
		"battery.temperature":    {Name: "Battery temperature", Class: "temperature", Unit: "°C", StateClass: "measurement", Precision: 1},
		"ambient.temperature":    {Name: "Ambient temperature", Class: "temperature", Unit: "°C", StateClass: "measurement", Precision: 1},
		"ambient.humidity":       {Name: "Ambient humidity", Class: "humidity", Unit: "%", StateClass: "measurement", Precision: 0},
		"ups.power":              {Name: "Apparent power", Class: "apparent_power", Unit: "VA", StateClass: "measurement", Precision: 0},
		"output.current":         {Name: "Output current", Class: "current", Unit: "A", StateClass: "measurement", Precision: 2},
		"input.current":          {Name: "Input current", Class: "current", Unit: "A", StateClass: "measurement", Precision: 2},
		"battery.charger.status": {Name: "Charging status", Icon: "mdi:battery-charging"},
	}
	// namedVars give HA's own names (components/nut/strings.json) to
	// variables that otherwise get a generated name.
	namedVars = map[string]string{
		"ups.load.high":              "Overload setting",
		"ups.delay.start":            "Load restart delay",
		"ups.delay.reboot":           "Reboot delay",
		"ups.delay.shutdown":         "Shutdown delay",
		"ups.timer.start":            "Load start timer",
		"ups.timer.reboot":           "Load reboot timer",
		"ups.timer.shutdown":         "Load shutdown timer",
		"ups.test.interval":          "Self-test interval",
		"ups.test.result":            "Self-test result",
		"ups.efficiency":             "Efficiency",
		"ups.power.nominal":          "Nominal power",
		"ups.realpower":              "Real power",
		"ups.realpower.nominal":      "Nominal real power",
		"ups.beeper.status":          "Beeper status",
		"battery.charge.low":         "Low battery setpoint",
		"battery.charge.restart":     "Minimum battery to start",
		"battery.charge.warning":     "Warning battery setpoint",
		"battery.voltage.nominal":    "Nominal battery voltage",
		"battery.voltage.low":        "Low battery voltage",
		"battery.voltage.high":       "High battery voltage",
		"battery.capacity":           "Battery capacity",
		"battery.current":            "Battery current",
		"battery.runtime.low":        "Low battery runtime",
		"battery.runtime.restart":    "Minimum battery runtime to start",
		"battery.packs":              "Number of batteries",
		"battery.packs.bad":          "Number of bad batteries",
		"input.transfer.low":         "Low voltage transfer",
		"input.transfer.high":        "High voltage transfer",
		"input.transfer.reason":      "Voltage transfer reason",
		"input.sensitivity":          "Input power sensitivity",
		"input.voltage.nominal":      "Nominal input voltage",
		"input.frequency.nominal":    "Input nominal frequency",
		"output.voltage.nominal":     "Nominal output voltage",
		"output.frequency.nominal":   "Nominal output frequency",
		"output.current.nominal":     "Nominal output current",
		"output.power":               "Output apparent power",
		"output.power.nominal":       "Nominal output power",
		"output.realpower":           "Output real power",
		"output.realpower.nominal":   "Nominal output real power",
		"ups.start.auto":             "Start on AC",
		"ups.start.battery":          "Start on battery",
		"ups.start.reboot":           "Reboot on battery",
		"battery.type":               "Battery chemistry",
		"ambient.humidity.status":    "Ambient humidity status",
		"ambient.temperature.status": "Ambient temperature status",
	}
	// textVars are the non-numeric variables worth an entity (diagnostic,
	// disabled unless listed in diagnosticVars).
	textVars = []string{
		"battery.charger.status", "ups.test.result", "input.transfer.reason", "input.sensitivity",
		"ups.beeper.status", "battery.type", "ups.test.date", "battery.date", "battery.mfr.date",
		"ambient.humidity.status", "ambient.temperature.status",
	}
	// skipVars are numeric-looking variables that carry identity, not a
	// measurement, or are published elsewhere.
	skipVars = map[string]bool{"ups.status": true, "ups.alarm": true}
)

// settingWords mark thresholds, nominal values and settings: no state class,
// so they stay out of long-term statistics, as HA's NUT integration does.
var settingWords = map[string]bool{
	"nominal": true, "low": true, "high": true, "warning": true, "critical": true,
	"restart": true, "delay": true, "timer": true, "transfer": true, "packs": true,
	"count": true, "phases": true, "capacity": true, "interval": true, "start": true,
	"extended": true, "boost": true, "trim": true, "fuse": true, "threshold": true,
}

// specFor returns the sensor spec for a variable, and false when the
// variable gets no sensor.
func specFor(name string) (varSpec, bool) {
	if skipVars[name] {
		return varSpec{}, false
	}
	if s, ok := primaryVars[name]; ok {
		return s, true
	}
	if s, ok := diagnosticVars[name]; ok {
		s.Diagnostic, s.Enabled = true, true
		return s, true
	}
	if !bridge.IsNumeric(name) {
		if Contains(textVars, name) {
			return varSpec{Name: varName(name), Diagnostic: true, Precision: -1}, true
		}
		return varSpec{}, false
	}
	s := varSpec{Name: varName(name), Diagnostic: true, Precision: -1}
	s.Class, s.Unit = classFor(name)
	setting := false
	for _, p := range strings.Split(strings.ToLower(name), ".")[1:] {
		if settingWords[p] {
			setting = true
		}
	}
	if !setting {
		s.StateClass = "measurement"
	}
	switch s.Class {
	case "voltage", "frequency", "temperature":
		s.Precision = 1
	}
	return s, true
}

// classFor derives a device class and unit from a numeric NUT name
// (docs/nut-names.txt units): the last quantity word decides.
func classFor(name string) (class, unit string) {
	parts := strings.Split(strings.ToLower(name), ".")
	if parts[len(parts)-1] == "percent" {
		return "", "%"
	}
	for i := len(parts) - 1; i >= 1; i-- {
		switch parts[i] {
		case "voltage", "transfer":
			return "voltage", "V"
		case "current":
			return "current", "A"
		case "frequency":
			return "frequency", "Hz"
		case "realpower":
			return "power", "W"
		case "power":
			return "apparent_power", "VA"
		case "temperature":
			return "temperature", "°C"
		case "humidity":
			return "humidity", "%"
		case "charge":
			// Setpoints (battery.charge.low) are percentages, not batteries.
			return "", "%"
		case "runtime", "delay", "timer", "uptime", "interval":
			return "duration", "s"
		case "load", "efficiency":
			return "", "%"
		case "capacity":
			if parts[0] == "battery" {
				return "", "Ah"
			}
			return "", ""
		case "powerfactor":
			return "power_factor", ""
		case "packs", "count", "phases", "crestfactor", "fanspeed", "energy":
			return "", ""
		}
	}
	return "", ""
}

// varName makes a readable name from a NUT variable: HA's own name when it
// has one, else the dotted name in words ("outlet.1.current" is "Outlet 1
// current"), without a leading "ups".
func varName(name string) string {
	if n, ok := namedVars[name]; ok {
		return n
	}
	parts := strings.Split(name, ".")
	if len(parts) > 1 && parts[0] == "ups" {
		parts = parts[1:]
	}
	s := strings.Join(parts, " ")
	return strings.ToUpper(s[:1]) + s[1:]
}
