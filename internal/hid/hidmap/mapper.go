// Package hidmap turns HID Power Device Class reports into NUT variables:
// a generic usage-path table plus vendor tables and quirks selected by USB
// vendor/product id, ups.status assembled from the status flags the way NUT's
// usbhid-ups does, and instant commands encoded as Feature report writes.
package hidmap

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
)

// DeviceInfo is what the USB device descriptor says about the UPS.
type DeviceInfo struct {
	VendorID, ProductID           uint16
	Manufacturer, Product, Serial string
}

type fieldValue struct {
	field *hidparse.Field
	raw   int64
	seq   uint64
}

type resolvedStatus struct {
	rule  statusRule
	paths []string
}

// Mapper decodes reports of one device and keeps the latest value of every
// mapped field. It is not safe for concurrent use.
type Mapper struct {
	desc    *hidparse.Descriptor
	dev     DeviceInfo
	vendor  *vendor
	paths   []string // by field index
	present map[string]bool
	entries []entry
	status  [numGroups][]resolvedStatus
	// byReport lists the mapped fields of each report (first of a path only).
	byReport map[hidparse.ReportKey][]int
	values   map[string]fieldValue
	seq      uint64
	strs     map[int]string
}

// Hidden entries: string-index usages used when the USB strings are empty.
var hiddenStrings = []entry{
	{name: "_mfr", paths: []string{"UPS.PowerSummary.iManufacturer", "UPS.iManufacturer"}, conv: convString},
	{name: "_model", paths: []string{"UPS.PowerSummary.iProduct", "UPS.iProduct"}, conv: convString},
	{name: "_serial", paths: []string{"UPS.PowerSummary.iSerialNumber", "UPS.iSerialNumber"}, conv: convString},
}

// Options change the mapping.
type Options struct {
	// DisableFixups skips the vendor descriptor fix-ups (NUT's
	// disable_fix_report_desc).
	DisableFixups bool
}

// New builds a mapper for a parsed descriptor. The descriptor is modified by
// the vendor fix-ups; pass a fresh parse.
func New(desc *hidparse.Descriptor, dev DeviceInfo, opts Options) *Mapper {
	v := vendorFor(dev.VendorID, dev.ProductID)
	m := &Mapper{
		desc: desc, dev: dev, vendor: v,
		present:  map[string]bool{},
		byReport: map[hidparse.ReportKey][]int{},
		values:   map[string]fieldValue{},
		strs:     map[int]string{},
	}
	names := func(u hidparse.Usage) (string, bool) {
		n, ok := v.names[u]
		return n, ok
	}
	m.paths = make([]string, len(desc.Fields))
	for i := range desc.Fields {
		m.paths[i] = hidparse.PathString(desc.Fields[i].Path, names)
		m.present[m.paths[i]] = true
	}
	if v.fixup != nil && !opts.DisableFixups {
		v.fixup(dev.ProductID, desc, func(i int) string { return m.paths[i] })
	}
	// Vendor entries come first so they win over generic ones for the
	// same variable.
	all := append(append(append([]entry{}, v.entries...), genericTable...), hiddenStrings...)
	seen := map[string]bool{}
	wanted := map[string]bool{}
	for _, e := range all {
		if seen[e.name] {
			continue
		}
		var ps []string
		for _, p := range e.paths {
			if m.present[p] {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			continue
		}
		seen[e.name] = true
		e.paths = ps
		m.entries = append(m.entries, e)
		for _, p := range ps {
			wanted[p] = true
		}
	}
	rules := append(append([]statusRule{}, v.status...), genericStatus...)
	rules = append(rules, statusRule{usage: 0x840061, group: grpOff, invert: true})
	for _, r := range rules {
		rs := resolvedStatus{rule: r}
		parents := r.parents
		if parents == nil {
			parents = statusParents
		}
		for i := range desc.Fields {
			f := &desc.Fields[i]
			if f.Usage() != r.usage || f.Size == 0 {
				continue
			}
			parent := m.paths[i]
			if j := strings.LastIndexByte(parent, '.'); j >= 0 {
				parent = parent[:j]
			}
			for _, p := range parents {
				if p == parent {
					if !contains(rs.paths, m.paths[i]) {
						rs.paths = append(rs.paths, m.paths[i])
					}
					wanted[m.paths[i]] = true
				}
			}
		}
		if len(rs.paths) > 0 {
			m.status[r.group] = append(m.status[r.group], rs)
		}
	}
	for i := range desc.Fields {
		f := &desc.Fields[i]
		if !wanted[m.paths[i]] {
			continue
		}
		k := hidparse.ReportKey{Type: f.Type, ID: f.ReportID}
		dup := false
		for _, j := range m.byReport[k] {
			if m.paths[j] == m.paths[i] {
				dup = true // an accidental array: trust the first field only
				break
			}
		}
		if !dup {
			m.byReport[k] = append(m.byReport[k], i)
		}
	}
	return m
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Vendor names the subdriver in use ("apc", "generic").
func (m *Mapper) Vendor() string { return m.vendor.name }

// Interrupts reports whether the device's interrupt pipe should be used.
func (m *Mapper) Interrupts() bool {
	return m.vendor.noInterrupt == nil || !m.vendor.noInterrupt(m.dev.ProductID)
}

// Descriptor returns the parsed (and fixed-up) descriptor.
func (m *Mapper) Descriptor() *hidparse.Descriptor { return m.desc }

// Path returns the NUT-style path of field i.
func (m *Mapper) Path(i int) string { return m.paths[i] }

// PollReports lists the reports to read with GET_REPORT: every Feature
// report holding a mapped field, plus Input reports for mapped paths that
// have no Feature field.
func (m *Mapper) PollReports() []hidparse.ReportKey {
	var out []hidparse.ReportKey
	feature := map[string]bool{}
	for k, fs := range m.byReport {
		if k.Type == hidparse.Feature {
			out = append(out, k)
			for _, i := range fs {
				feature[m.paths[i]] = true
			}
		}
	}
	for k, fs := range m.byReport {
		if k.Type != hidparse.Input {
			continue
		}
		for _, i := range fs {
			if !feature[m.paths[i]] {
				out = append(out, k)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Type < out[j].Type
	})
	return out
}

// Apply decodes a report (report id first when the descriptor uses ids) and
// records the value of every mapped field in it. It returns how many mapped
// fields it held; 0 for an unknown or empty report.
func (m *Mapper) Apply(t hidparse.ReportType, report []byte) int {
	if len(report) == 0 {
		return 0
	}
	var id uint8
	if m.desc.UsesIDs {
		id = report[0]
	}
	m.seq++
	n := 0
	for _, i := range m.byReport[hidparse.ReportKey{Type: t, ID: id}] {
		f := &m.desc.Fields[i]
		raw, ok := f.Raw(report, m.desc.UsesIDs)
		if !ok {
			continue
		}
		m.values[m.paths[i]] = fieldValue{field: f, raw: raw, seq: m.seq}
		n++
	}
	return n
}

// StringIndexes lists string descriptor indexes that mapped values refer to
// and that have not been supplied with SetString yet.
func (m *Mapper) StringIndexes() []int {
	var out []int
	for _, e := range m.entries {
		if e.conv != convString {
			continue
		}
		if fv, ok := m.first(e); ok && fv.raw > 0 && fv.raw < 256 {
			if _, have := m.strs[int(fv.raw)]; !have && !containsInt(out, int(fv.raw)) {
				out = append(out, int(fv.raw))
			}
		}
	}
	return out
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// SetString supplies the text of a string descriptor.
func (m *Mapper) SetString(index int, s string) { m.strs[index] = strings.TrimSpace(s) }

func (m *Mapper) first(e entry) (fieldValue, bool) {
	for _, p := range e.paths {
		if fv, ok := m.values[p]; ok {
			return fv, true
		}
	}
	return fieldValue{}, false
}

func formatNumber(format string, v float64) string {
	if format == "" {
		format = "%.0f"
	}
	s := fmt.Sprintf(format, v)
	if strings.HasPrefix(s, "-") && strings.Trim(s, "-0.") == "" {
		s = s[1:] // no "-0"
	}
	return s
}

// Vars returns the NUT variables from the values received so far.
func (m *Mapper) Vars() bridge.Vars {
	vars := bridge.Vars{
		"device.type":   "ups",
		"ups.vendorid":  fmt.Sprintf("%04x", m.dev.VendorID),
		"ups.productid": fmt.Sprintf("%04x", m.dev.ProductID),
	}
	nums := map[string]float64{}
	formats := map[string]string{}
	hidden := map[string]string{}
	for _, e := range m.entries {
		if e.conv == convAbsent {
			def := e.def
			if e.name == "ups.delay.shutdown" && m.vendor.delayShutdown != "" {
				def = m.vendor.delayShutdown
			}
			if e.name == "ups.delay.start" && m.vendor.delayStart != "" {
				def = m.vendor.delayStart
			}
			vars[e.name] = def
			continue
		}
		fv, ok := m.first(e)
		if !ok {
			continue
		}
		f := fv.field
		switch e.conv {
		case convNumber:
			nums[e.name], formats[e.name] = f.Value(fv.raw), e.format
		case convPlain:
			nums[e.name], formats[e.name] = f.Physical(fv.raw), e.format
		case convCelsius:
			nums[e.name], formats[e.name] = f.Value(fv.raw)-273.15, e.format
		case convLookup:
			if s, ok := e.lookup[fv.raw]; ok {
				vars[e.name] = s
			}
		case convDate:
			if s, ok := packedDate(fv.raw); ok {
				vars[e.name] = s
			}
		case convString:
			if s := m.strs[int(fv.raw)]; s != "" {
				if strings.HasPrefix(e.name, "_") {
					hidden[e.name] = s
				} else {
					vars[e.name] = s
				}
			}
		}
	}
	if m.vendor.postVars != nil {
		m.vendor.postVars(m.dev.ProductID, nums)
	}
	for k, v := range nums {
		vars[k] = formatNumber(formats[k], v)
	}
	mfr := firstNonEmpty(m.dev.Manufacturer, hidden["_mfr"])
	product := firstNonEmpty(m.dev.Product, hidden["_model"])
	serial := firstNonEmpty(m.dev.Serial, hidden["_serial"])
	model := strings.TrimSpace(product)
	if m.vendor.model != nil {
		model = m.vendor.model(product, vars)
	}
	for k, v := range map[string]string{"mfr": strings.TrimSpace(mfr), "model": model, "serial": strings.TrimSpace(serial)} {
		if v != "" {
			vars["device."+k] = v
			vars["ups."+k] = v
		}
	}
	status, alarms := m.status1(nums)
	if len(alarms) > 0 {
		vars[bridge.VarAlarm] = strings.Join(alarms, " ")
		status = append([]string{"ALARM"}, status...)
	}
	vars[bridge.VarStatus] = strings.Join(status, " ")
	return vars
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

// packedDate decodes (year-1980)*512 + month*32 + day.
func packedDate(v int64) (string, bool) {
	if v <= 0 || v > 0xffff {
		return "", false
	}
	y, mo, d := 1980+v/512, (v/32)%16, v%32
	if mo < 1 || mo > 12 || d < 1 {
		return "", false
	}
	return fmt.Sprintf("%04d/%02d/%02d", y, mo, d), true
}

// group returns a status group's state from its most recently received
// source: known is false when no source has a value yet.
func (m *Mapper) group(g statusGroup) (on, known bool) {
	var best fieldValue
	var rule statusRule
	for _, rs := range m.status[g] {
		for _, p := range rs.paths {
			if fv, ok := m.values[p]; ok && (!known || fv.seq > best.seq) {
				best, rule, known = fv, rs.rule, true
			}
		}
	}
	if !known {
		return false, false
	}
	if rule.active != nil {
		on = rule.active(best.raw)
	} else {
		on = best.raw != 0
	}
	if rule.invert {
		on = !on
	}
	return on, true
}

// status1 assembles ups.status tokens and alarms as NUT's usbhid-ups does.
func (m *Mapper) status1(nums map[string]float64) (tokens, alarms []string) {
	is := func(g statusGroup) bool { on, _ := m.group(g); return on }
	online, acKnown := m.group(grpAC)
	discharging := is(grpDischarging)
	if is(grpCal) {
		tokens = append(tokens, "CAL")
	}
	switch {
	case acKnown && !online:
		tokens = append(tokens, "OB")
	case !acKnown && discharging:
		tokens = append(tokens, "OB")
	case acKnown && online:
		tokens = append(tokens, "OL")
	}
	if discharging && !is(grpDepleted) {
		tokens = append(tokens, "DISCHRG")
	}
	if is(grpCharging) {
		full, fullKnown := m.group(grpFullyCharged)
		charge, haveCharge := nums["battery.charge"]
		if (fullKnown && !full) || (!fullKnown && haveCharge && charge > 0 && charge < 100) {
			tokens = append(tokens, "CHRG")
		}
	}
	if is(grpLowBatt) || is(grpTimeLimit) || is(grpShutdownImm) {
		tokens = append(tokens, "LB")
	}
	if is(grpOverload) {
		tokens = append(tokens, "OVER")
	}
	if is(grpReplace) || is(grpNoBattery) {
		tokens = append(tokens, "RB")
	}
	if is(grpTrim) {
		tokens = append(tokens, "TRIM")
	}
	if is(grpBoost) {
		tokens = append(tokens, "BOOST")
	}
	if is(grpBypass) {
		tokens = append(tokens, "BYPASS")
	}
	if is(grpOff) {
		tokens = append(tokens, "OFF")
	}
	if is(grpReplace) {
		alarms = append(alarms, "Replace battery!")
	}
	if is(grpShutdownImm) {
		alarms = append(alarms, "Shutdown imminent!")
	}
	if is(grpNoBattery) {
		alarms = append(alarms, "No battery installed!")
	}
	return tokens, alarms
}

// Write is one field to set with SET_REPORT (read-modify-write of its
// Feature report).
type Write struct {
	Field *hidparse.Field
	Raw   int64
}

type command struct {
	name, desc string
	paths      []string // the target field, first present wins
	value      int64
	delay      string // "shutdown" or "start": the value is a delay in seconds
}

var (
	beeperPaths   = []string{"UPS.PowerSummary.AudibleAlarmControl", "UPS.AudibleAlarmControl"}
	testPaths     = []string{"UPS.Battery.Test", "UPS.Output.Test", "UPS.BatterySystem.Battery.Test", "UPS.PowerSummary.Test"}
	shutdownPaths = []string{"UPS.PowerSummary.DelayBeforeShutdown", "UPS.Output.DelayBeforeShutdown"}
	startPaths    = []string{"UPS.PowerSummary.DelayBeforeStartup", "UPS.Output.DelayBeforeStartup"}
)

var commandTable = []command{
	{name: "beeper.enable", desc: "Enable the UPS beeper", paths: beeperPaths, value: 2},
	{name: "beeper.disable", desc: "Disable the UPS beeper", paths: beeperPaths, value: 1},
	{name: "beeper.mute", desc: "Temporarily mute the UPS beeper", paths: beeperPaths, value: 3},
	{name: "beeper.on", desc: "Enable the UPS beeper (old name)", paths: beeperPaths, value: 2},
	{name: "beeper.off", desc: "Disable the UPS beeper (old name)", paths: beeperPaths, value: 1},
	{name: "test.battery.start.quick", desc: "Start a quick battery test", paths: testPaths, value: 1},
	{name: "test.battery.start.deep", desc: "Start a deep battery test", paths: testPaths, value: 2},
	{name: "test.battery.stop", desc: "Stop the battery test", paths: testPaths, value: 3},
	{name: "load.off", desc: "Turn off the load immediately", paths: shutdownPaths, value: 0},
	{name: "load.off.delay", desc: "Turn off the load after ups.delay.shutdown (or the argument) seconds", paths: shutdownPaths, delay: "shutdown"},
	{name: "load.on.delay", desc: "Turn on the load after ups.delay.start (or the argument) seconds", paths: startPaths, delay: "start"},
	{name: "shutdown.return", desc: "Turn off the load after a delay and return when power is back", paths: shutdownPaths, delay: "shutdown"},
	{name: "shutdown.stop", desc: "Stop a shutdown in progress", paths: shutdownPaths, value: -1},
}

// ErrUnknownCommand is returned for a command the UPS does not offer.
var ErrUnknownCommand = errors.New("command not offered by this UPS")

func (m *Mapper) featureField(paths []string) *hidparse.Field {
	for _, p := range paths {
		for i := range m.desc.Fields {
			if m.desc.Fields[i].Type == hidparse.Feature && m.paths[i] == p {
				return &m.desc.Fields[i]
			}
		}
	}
	return nil
}

// Info lists the instant commands the UPS offers.
func (m *Mapper) Info() *bridge.Info {
	info := &bridge.Info{}
	for _, c := range commandTable {
		if m.featureField(c.paths) != nil {
			info.Commands = append(info.Commands, bridge.Command{Name: c.name, Description: c.desc})
		}
	}
	return info
}

// Command returns the writes that carry out an instant command. arg is an
// optional delay in seconds for the delayed commands.
func (m *Mapper) Command(name, arg string) ([]Write, error) {
	for _, c := range commandTable {
		if c.name != name {
			continue
		}
		f := m.featureField(c.paths)
		if f == nil {
			break
		}
		if c.delay == "" {
			return []Write{{Field: f, Raw: c.value}}, nil
		}
		delay, err := m.delay(c.delay, arg)
		if err != nil {
			return nil, fmt.Errorf("command %s: %w", name, err)
		}
		var ws []Write
		if name == "shutdown.return" {
			// Arm the restart first so the UPS comes back with the power.
			if sf := m.featureField(startPaths); sf != nil {
				sd, _ := m.delay("start", "")
				ws = append(ws, Write{Field: sf, Raw: sf.Logical(sd)})
			}
		}
		return append(ws, Write{Field: f, Raw: f.Logical(delay)}), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownCommand, name)
}

func (m *Mapper) delay(kind, arg string) (float64, error) {
	if arg != "" {
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1e6 || math.IsNaN(v) {
			return 0, fmt.Errorf("delay %q is not a number of seconds", arg)
		}
		return v, nil
	}
	def := "20"
	if kind == "start" {
		def = "30"
	}
	if kind == "shutdown" && m.vendor.delayShutdown != "" {
		def = m.vendor.delayShutdown
	}
	if kind == "start" && m.vendor.delayStart != "" {
		def = m.vendor.delayStart
	}
	v, _ := strconv.ParseFloat(def, 64)
	return v, nil
}
