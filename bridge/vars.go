package bridge

import (
	"math"
	"strconv"
	"strings"
)

// Vars holds a UPS's variables by NUT name ("battery.charge"), values as read.
type Vars map[string]string

// Well-known variable names.
const (
	VarStatus        = "ups.status"
	VarAlarm         = "ups.alarm"
	VarBatteryCharge = "battery.charge"
	VarRuntime       = "battery.runtime"
	VarLoad          = "ups.load"
	VarInputVoltage  = "input.voltage"
)

// Clone returns a copy that shares nothing with v.
func (v Vars) Clone() Vars {
	if v == nil {
		return nil
	}
	c := make(Vars, len(v))
	for k, val := range v {
		c[k] = val
	}
	return c
}

// Equal reports whether v and o hold the same names and values.
func (v Vars) Equal(o Vars) bool {
	if len(v) != len(o) {
		return false
	}
	for k, val := range v {
		if ov, ok := o[k]; !ok || ov != val {
			return false
		}
	}
	return true
}

// Number returns the value of a numeric variable. ok is false when the
// variable is absent, is not one NUT defines as numeric, or its value does not
// parse: a value that does not parse is "no number", never 0.
func (v Vars) Number(name string) (float64, bool) {
	raw, ok := v[name]
	if !ok || !IsNumeric(name) {
		return 0, false
	}
	return ParseNumber(raw)
}

// ParseNumber parses a NUT number defensively: a decimal with an optional sign,
// leading zeros allowed ("0055.40"), surrounding blanks ignored. Hex, "Inf",
// "NaN", digit separators and values out of float64's range are not numbers.
func ParseNumber(raw string) (float64, bool) {
	s := strings.TrimSpace(raw)
	if s == "" || len(s) > 400 {
		return 0, false
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' || c == 'e' || c == 'E':
		case c == '+' || c == '-':
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// quantityWords are name components that make a variable numeric
// (docs/nut-names.txt): "input.L1-N.voltage", "ups.delay.shutdown",
// "battery.charge.low" all contain one.
var quantityWords = map[string]bool{
	"charge": true, "runtime": true, "voltage": true, "current": true,
	"frequency": true, "load": true, "temperature": true, "power": true,
	"realpower": true, "humidity": true, "efficiency": true, "capacity": true,
	"packs": true, "uptime": true, "count": true, "phases": true,
	"powerfactor": true, "delay": true, "timer": true, "transfer": true,
	"crestfactor": true, "energy": true, "fanspeed": true,
}

// textWords end names that are text even under a quantity
// ("battery.charger.status", "input.transfer.reason", "battery.runtime.date").
var textWords = map[string]bool{
	"status": true, "reason": true, "date": true, "type": true, "mfr": true,
	"model": true, "serial": true, "name": true, "id": true, "desc": true,
	"description": true, "result": true, "mode": true, "sensitivity": true,
	"switchable": true, "buzzwords": true, "source": true, "range": true,
	"alarm": true, "state": true, "unit": true, "version": true, "format": true,
}

// IsNumeric reports whether NUT defines the variable as numeric.
func IsNumeric(name string) bool {
	parts := strings.Split(name, ".")
	if len(parts) < 2 || parts[0] == "driver" || parts[0] == "server" {
		return false
	}
	if textWords[strings.ToLower(parts[len(parts)-1])] {
		return false
	}
	for _, p := range parts[1:] {
		if quantityWords[strings.ToLower(p)] {
			return true
		}
	}
	return false
}
