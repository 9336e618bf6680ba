package hidmap

import (
	"strings"

	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
)

// conv says how a field's value becomes a NUT value.
type conv int

const (
	convNumber  conv = iota // engineering value (range, unit exponent), formatted
	convPlain               // physical value without unit exponent (percent, counts, seconds)
	convString              // the value is a string descriptor index
	convDate                // packed (year-1980)*512 + month*32 + day
	convLookup              // raw value through a table
	convCelsius             // kelvin to degrees Celsius
	convAbsent              // a server-side default, published when the path exists
)

// entry maps one NUT variable to alternative HID paths, first present wins.
type entry struct {
	name   string
	paths  []string
	conv   conv
	format string // for numbers, "%.0f" when empty
	lookup map[int64]string
	def    string // for convAbsent
}

var (
	beeperLookup = map[int64]string{1: "disabled", 2: "enabled", 3: "muted"}
	testLookup   = map[int64]string{
		1: "Done and passed", 2: "Done and warning", 3: "Done and error",
		4: "Aborted", 5: "In progress", 6: "No test initiated",
	}
)

// genericTable is the Power Device Class mapping common to most UPSes,
// paraphrasing the paths NUT's usbhid-ups reads (see hid.md §2.5). Paths of
// the indexed MGE/Eaton style are listed as alternatives.
var genericTable = []entry{
	{name: "battery.charge", paths: []string{"UPS.PowerSummary.RemainingCapacity", "UPS.BatterySystem.Battery.RemainingCapacity", "UPS.Battery.RemainingCapacity"}, conv: convPlain},
	{name: "battery.charge.low", paths: []string{"UPS.PowerSummary.RemainingCapacityLimit", "UPS.Battery.RemainingCapacityLimit"}, conv: convPlain},
	{name: "battery.charge.warning", paths: []string{"UPS.PowerSummary.WarningCapacityLimit", "UPS.Battery.WarningCapacityLimit"}, conv: convPlain},
	{name: "battery.runtime", paths: []string{"UPS.PowerSummary.RunTimeToEmpty", "UPS.Battery.RunTimeToEmpty", "UPS.BatterySystem.Battery.RunTimeToEmpty"}, conv: convPlain},
	{name: "battery.runtime.low", paths: []string{"UPS.PowerSummary.RemainingTimeLimit", "UPS.Battery.RemainingTimeLimit"}, conv: convPlain},
	{name: "battery.voltage", paths: []string{"UPS.PowerSummary.Voltage", "UPS.Battery.Voltage", "UPS.BatterySystem.Battery.Voltage"}, conv: convNumber, format: "%.1f"},
	{name: "battery.voltage.nominal", paths: []string{"UPS.PowerSummary.ConfigVoltage", "UPS.Battery.ConfigVoltage", "UPS.BatterySystem.Battery.ConfigVoltage"}, conv: convNumber, format: "%.1f"},
	{name: "battery.temperature", paths: []string{"UPS.Battery.Temperature", "UPS.BatterySystem.Battery.Temperature"}, conv: convCelsius, format: "%.1f"},
	{name: "battery.type", paths: []string{"UPS.PowerSummary.iDeviceChemistry", "UPS.Battery.iDeviceChemistry"}, conv: convString},
	{name: "battery.mfr.date", paths: []string{"UPS.Battery.ManufacturerDate", "UPS.PowerSummary.ManufacturerDate", "UPS.BatterySystem.Battery.ManufacturerDate"}, conv: convDate},
	{name: "input.voltage", paths: []string{"UPS.Input.Voltage", "UPS.PowerConverter.Input.[1].Voltage", "UPS.PowerConverter.Input.Voltage"}, conv: convNumber, format: "%.1f"},
	{name: "input.voltage.nominal", paths: []string{"UPS.Input.ConfigVoltage", "UPS.Flow.[1].ConfigVoltage", "UPS.PowerConverter.Input.ConfigVoltage"}, conv: convNumber},
	{name: "input.frequency", paths: []string{"UPS.Input.Frequency", "UPS.PowerConverter.Input.[1].Frequency", "UPS.PowerConverter.Input.Frequency"}, conv: convNumber, format: "%.1f"},
	{name: "input.transfer.low", paths: []string{"UPS.Input.LowVoltageTransfer", "UPS.Output.LowVoltageTransfer", "UPS.PowerConverter.Output.LowVoltageTransfer"}, conv: convNumber},
	{name: "input.transfer.high", paths: []string{"UPS.Input.HighVoltageTransfer", "UPS.Output.HighVoltageTransfer", "UPS.PowerConverter.Output.HighVoltageTransfer"}, conv: convNumber},
	{name: "output.voltage", paths: []string{"UPS.Output.Voltage", "UPS.PowerConverter.Output.Voltage"}, conv: convNumber, format: "%.1f"},
	{name: "output.voltage.nominal", paths: []string{"UPS.Output.ConfigVoltage", "UPS.Flow.[4].ConfigVoltage"}, conv: convNumber},
	{name: "output.frequency", paths: []string{"UPS.Output.Frequency", "UPS.PowerConverter.Output.Frequency"}, conv: convNumber, format: "%.1f"},
	{name: "output.current", paths: []string{"UPS.Output.Current", "UPS.PowerConverter.Output.Current"}, conv: convNumber, format: "%.2f"},
	{name: "ups.load", paths: []string{"UPS.Output.PercentLoad", "UPS.PowerSummary.PercentLoad", "UPS.PowerConverter.PercentLoad", "UPS.PowerConverter.Output.PercentLoad"}, conv: convPlain},
	{name: "ups.power", paths: []string{"UPS.Output.ApparentPower", "UPS.PowerConverter.Output.ApparentPower"}, conv: convNumber},
	{name: "ups.power.nominal", paths: []string{"UPS.Output.ConfigApparentPower", "UPS.PowerSummary.ConfigApparentPower", "UPS.Flow.[4].ConfigApparentPower"}, conv: convNumber},
	{name: "ups.realpower", paths: []string{"UPS.Output.ActivePower", "UPS.PowerConverter.Output.ActivePower"}, conv: convNumber},
	{name: "ups.realpower.nominal", paths: []string{"UPS.Output.ConfigActivePower", "UPS.PowerConverter.ConfigActivePower", "UPS.PowerSummary.ConfigActivePower", "UPS.Flow.[4].ConfigActivePower"}, conv: convNumber},
	{name: "ups.temperature", paths: []string{"UPS.PowerSummary.Temperature", "UPS.Temperature"}, conv: convCelsius, format: "%.1f"},
	{name: "ups.beeper.status", paths: []string{"UPS.PowerSummary.AudibleAlarmControl", "UPS.AudibleAlarmControl"}, conv: convLookup, lookup: beeperLookup},
	{name: "ups.test.result", paths: []string{"UPS.Battery.Test", "UPS.Output.Test", "UPS.BatterySystem.Battery.Test", "UPS.PowerSummary.Test"}, conv: convLookup, lookup: testLookup},
	{name: "ups.timer.shutdown", paths: []string{"UPS.PowerSummary.DelayBeforeShutdown", "UPS.Output.DelayBeforeShutdown"}, conv: convPlain},
	{name: "ups.timer.start", paths: []string{"UPS.PowerSummary.DelayBeforeStartup", "UPS.Output.DelayBeforeStartup"}, conv: convPlain},
	{name: "ups.timer.reboot", paths: []string{"UPS.PowerSummary.DelayBeforeReboot", "UPS.Output.DelayBeforeReboot"}, conv: convPlain},
	{name: "ups.delay.shutdown", paths: []string{"UPS.PowerSummary.DelayBeforeShutdown", "UPS.Output.DelayBeforeShutdown"}, conv: convAbsent, def: "20"},
	{name: "ups.delay.start", paths: []string{"UPS.PowerSummary.DelayBeforeStartup", "UPS.Output.DelayBeforeStartup"}, conv: convAbsent, def: "30"},
	{name: "ups.mfr.date", paths: []string{"UPS.ManufacturerDate", "UPS.PowerSummary.ManufacturerDate"}, conv: convDate},
}

// Status groups: flags coming from several reports are kept apart, and in
// each group the most recently received value wins.
type statusGroup int

const (
	grpAC statusGroup = iota // online / offline
	grpDischarging
	grpCharging
	grpLowBatt
	grpTimeLimit
	grpShutdownImm
	grpOverload
	grpReplace
	grpNoBattery
	grpBoost
	grpTrim
	grpFullyCharged
	grpDepleted
	grpOff
	grpCal
	grpBypass
	numGroups
)

// statusRule maps a field to a status group. A field matches when its own
// usage equals usage and its parent path is one of parents (nil: any).
// invert flips the value (BatteryPresent=0 means "no battery").
type statusRule struct {
	usage   hidparse.Usage
	parents []string
	group   statusGroup
	invert  bool
	// active turns a raw value into the group's state when set (vendor
	// codes such as APCStatusFlag); otherwise nonzero is true.
	active func(v int64) bool
}

var statusParents = []string{
	"UPS.PowerSummary.PresentStatus", "UPS.PresentStatus", "UPS.PowerSummary",
	"UPS.Output.PresentStatus", "UPS.Output", "UPS.Battery.PresentStatus",
	"UPS.BatterySystem.Battery.PresentStatus", "UPS.PowerConverter.PresentStatus",
	"UPS.BatterySystem.Charger.PresentStatus",
}

var genericStatus = []statusRule{
	{usage: 0x8500D0, group: grpAC},
	{usage: 0x850045, group: grpDischarging},
	{usage: 0x850044, group: grpCharging},
	{usage: 0x850042, group: grpLowBatt},
	{usage: 0x850043, group: grpTimeLimit},
	{usage: 0x840069, group: grpShutdownImm},
	{usage: 0x840065, group: grpOverload},
	{usage: 0x85004B, group: grpReplace},
	{usage: 0x8500D1, group: grpNoBattery, invert: true},
	{usage: 0x84006E, group: grpBoost},
	{usage: 0x84006F, group: grpTrim},
	{usage: 0x850046, group: grpFullyCharged},
	{usage: 0x850047, group: grpDepleted},
}

// vendor is a subdriver: names for vendor usages, extra entries and status
// rules, a descriptor fix-up and value quirks.
type vendor struct {
	name     string
	vendorID uint16
	products []uint16 // nil: every product of the vendor
	names    map[hidparse.Usage]string
	entries  []entry
	status   []statusRule
	// fixup corrects known descriptor mistakes after parsing.
	fixup func(pid uint16, d *hidparse.Descriptor, path func(int) string)
	// model splits a product string into model and firmware variables.
	model func(product string, vars map[string]string) string
	// postVars adjusts decoded variables (scaling fixes).
	postVars func(pid uint16, nums map[string]float64)
	// noInterrupt is true for products whose interrupt pipe is unusable.
	noInterrupt               func(pid uint16) bool
	delayShutdown, delayStart string
}

func apcModel(product string, vars map[string]string) string {
	model, fw, ok := strings.Cut(product, "FW:")
	if !ok {
		return strings.TrimSpace(product)
	}
	model = strings.TrimSuffix(model, " ")
	if main, aux, ok := strings.Cut(fw, "USB FW:"); ok {
		vars["ups.firmware.aux"] = aux
		fw = strings.TrimSuffix(main, " ")
	}
	vars["ups.firmware"] = fw
	return model
}

// apcStatusNormal: APCStatusFlag 8 or 16 is "normal"; anything else is off.
func apcStatusOff(v int64) bool { return v != 8 && v != 16 }

var vendors = []vendor{
	{
		name: "apc", vendorID: 0x051d,
		names: map[hidparse.Usage]string{
			0xFF860005: "APCGeneralCollection", 0xFF860016: "APCFirmwareRevision",
			0xFF860052: "APCLineFailCause", 0xFF860060: "APCStatusFlag",
			0xFF860061: "APCSensitivity", 0xFF860072: "APCPanelTest",
			0xFF86007C: "APCForceShutdown", 0xFF86007D: "APCDelayBeforeShutdown",
			0xFF860042: "APC_UPS_FirmwareRevision",
		},
		entries: []entry{
			{name: "input.sensitivity", paths: []string{"UPS.Input.APCSensitivity"}, conv: convLookup, lookup: map[int64]string{0: "low", 1: "medium", 2: "high"}},
			{name: "ups.timer.reboot", paths: []string{"UPS.APCGeneralCollection.APCForceShutdown"}, conv: convPlain},
		},
		status: []statusRule{
			{usage: 0xFF860060, parents: []string{"UPS.PowerSummary"}, group: grpOff, active: apcStatusOff},
		},
		fixup:       apcFixup,
		model:       apcModel,
		noInterrupt: func(pid uint16) bool { return pid == 0x0003 || pid == 0x0004 },
	},
	{
		name: "cyberpower", vendorID: 0x0764,
		names:    map[hidparse.Usage]string{0xFF0100D0: "CPSFirmwareVersion"},
		fixup:    cpsFixup,
		postVars: cpsPostVars,
		// CyberPower's own defaults for the shutdown and start delays.
		delayShutdown: "60", delayStart: "120",
	},
	{name: "cyberenergy", vendorID: 0x0483, products: []uint16{0xa430}, postVars: cpsPostVars, delayShutdown: "60", delayStart: "120"},
	{
		name: "mge", vendorID: 0x0463,
		status: []statusRule{
			{usage: 0x84006D, parents: []string{"UPS.PowerConverter.Input.[1].PresentStatus"}, group: grpAC},
			{usage: 0x84006D, parents: []string{"UPS.PowerConverter.Input.[2].PresentStatus"}, group: grpBypass},
		},
	},
	{name: "dell", vendorID: 0x047c},
	{name: "powerware", vendorID: 0x0592},
	{name: "hp", vendorID: 0x03f0},
	{name: "aeg", vendorID: 0x2b2d},
	{name: "ibm", vendorID: 0x04b3},
	{name: "kstar", vendorID: 0x09d6},
	{
		name: "tripplite", vendorID: 0x09ae,
		// Some Tripp Lite firmware puts the Battery System status flags on
		// the Power Device page inside PresentStatus (84:44 is officially
		// ConfigActivePower, hence the parent restriction).
		status: []statusRule{
			{usage: 0x8400D0, parents: []string{"UPS.PowerSummary.PresentStatus"}, group: grpAC},
			{usage: 0x840044, parents: []string{"UPS.PowerSummary.PresentStatus"}, group: grpCharging},
			{usage: 0x840045, parents: []string{"UPS.PowerSummary.PresentStatus"}, group: grpDischarging},
			{usage: 0x84004B, parents: []string{"UPS.PowerSummary.PresentStatus"}, group: grpReplace},
		},
		postVars: tripplitePostVars,
	},
	{name: "delta-tripplite", vendorID: 0x05dd},
	{name: "belkin", vendorID: 0x050d, postVars: exponentPostVars},
	{
		name: "liebert", vendorID: 0x10af, postVars: exponentPostVars,
		status: []statusRule{{usage: 0x840061, group: grpOff, invert: true}},
	},
	{name: "phoenixtec", vendorID: 0x06da, postVars: exponentPostVars},
	{name: "powercom", vendorID: 0x0d9f},
	{name: "salicru", vendorID: 0x2e66},
	{name: "powervar", vendorID: 0x4234},
	{name: "openups", vendorID: 0x04d8},
	{name: "legrand", vendorID: 0x1cb0, noInterrupt: func(uint16) bool { return true }},
	{name: "idowell", vendorID: 0x075d},
	{name: "ever", vendorID: 0x2e51},
	{name: "ecoflow", vendorID: 0x3746},
	{name: "arduino", vendorID: 0x2341},
	{name: "arduino-org", vendorID: 0x2a03},
}

// vendorFor returns the subdriver for a vendor/product id (generic when none).
func vendorFor(vid, pid uint16) *vendor {
	for i := range vendors {
		v := &vendors[i]
		if v.vendorID != vid {
			continue
		}
		if v.products == nil {
			return v
		}
		for _, p := range v.products {
			if p == pid {
				return v
			}
		}
	}
	return &vendor{name: "generic"}
}

// KnownVendor returns the vendor table a UPS of this vendor/product id
// would use, and whether upsbridge knows the vendor as a UPS maker.
func KnownVendor(vid, pid uint16) (string, bool) {
	v := vendorFor(vid, pid)
	return v.name, v.name != "generic"
}
