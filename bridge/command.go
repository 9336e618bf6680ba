package bridge

import (
	"fmt"
	"slices"
	"strings"
)

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

// ControlsShutdown reports whether an instant command cuts the load or a
// variable changes when and why the UPS shuts down: load.off*, shutdown.*,
// ups.delay.*, battery.charge.low and battery.runtime.low. Writing
// battery.charge.low=100 raises LB on every outage; ups.delay.shutdown=0
// cuts the load before the hosts are down. Such names are refused from MQTT
// unless each is listed by name (mqtt.commands.allow_dangerous), whatever
// else allows them.
func ControlsShutdown(name string) bool {
	switch {
	case name == "load.off", strings.HasPrefix(name, "load.off."),
		strings.HasPrefix(name, "shutdown."),
		strings.HasPrefix(name, "ups.delay."),
		name == "battery.charge.low", name == "battery.runtime.low":
		return true
	}
	return false
}

// CommandPolicy decides which instant commands and variable writes may come
// from MQTT (and so which controls Home Assistant is offered). The zero
// value is closed: safe instant commands only, no variable writes.
type CommandPolicy struct {
	// DangerousCommands allows the instant commands IsDangerousCommand
	// flags (hass.dangerous_commands), except those ControlsShutdown flags.
	DangerousCommands bool
	// AllowSet lists the variables that may be written
	// (mqtt.commands.allow_set).
	AllowSet []string
	// AllowDangerous lists by name the commands and variables
	// ControlsShutdown flags that are allowed (mqtt.commands.allow_dangerous).
	AllowDangerous []string
}

// CheckCommand returns why an instant command may not run from MQTT, or nil.
func (p *CommandPolicy) CheckCommand(name string) error {
	if ControlsShutdown(name) {
		if !slices.Contains(p.AllowDangerous, name) {
			return fmt.Errorf("command %q cuts the load or changes shutdown timing; it is allowed only when listed in mqtt.commands.allow_dangerous", name)
		}
		return nil
	}
	if IsDangerousCommand(name) && !p.DangerousCommands {
		return fmt.Errorf("command %q is not allowed from MQTT (hass.dangerous_commands)", name)
	}
	return nil
}

// CheckSet returns why a variable may not be written from MQTT, or nil.
func (p *CommandPolicy) CheckSet(name string) error {
	if !slices.Contains(p.AllowSet, name) {
		return fmt.Errorf("variable %q may not be written from MQTT (not in mqtt.commands.allow_set)", name)
	}
	if ControlsShutdown(name) && !slices.Contains(p.AllowDangerous, name) {
		return fmt.Errorf("variable %q changes shutdown timing; it is writable only when also listed in mqtt.commands.allow_dangerous", name)
	}
	return nil
}
