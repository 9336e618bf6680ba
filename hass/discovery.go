// Package hass turns what the bridge knows (its id, each UPS's variables,
// commands and writable variables, each shutdown agent's state) into Home
// Assistant MQTT discovery messages. It is pure: no MQTT, no clock, no I/O.
// sinks/mqtt publishes what it returns (retained, QoS 1).
//
// Identity: every id is derived from configuration only, never from values:
//
//	bridge device   upsbridge_<bridge>
//	UPS device      upsbridge_<bridge>_ups_<ups>           (via_device: the bridge)
//	agent device    upsbridge_agent_<agent>
//	entity          <device id>_<key>                      (unique_id and topic object_id)
//
// with '-' in ids written as '_' (HA's unique_id and object_id rules).
// Entities read the bridge's own topics (<prefix>/ups/<id>/state and
// /event) through value templates, so HA needs no extra topics; a variable
// that is missing or not a number renders "None" (unknown), never 0.
package hass

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"sort"
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Options say where discovery and data topics live.
type Options struct {
	// DiscoveryPrefix is HA's discovery prefix ("homeassistant").
	DiscoveryPrefix string
	// TopicPrefix is the bridge's own base topic ("upsbridge").
	TopicPrefix string
	// BridgeID is the bridge's id (bridge.id).
	BridgeID string
	// DeviceMode publishes one device-based config per device
	// (<prefix>/device/<id>/config, HA ≥ 2024.12) instead of one per entity.
	DeviceMode bool
	// Policy says which instant commands get buttons and which writable
	// variables get selects and numbers: only what MQTT would accept.
	// Buttons for commands that can cut power are disabled by default.
	Policy bridge.CommandPolicy
	// Origin is the origin block of every config.
	Origin Origin
}

// Origin names the software that publishes the configs.
type Origin struct {
	Name       string
	SWVersion  string
	SupportURL string
}

// Message is one discovery publication; it is always retained with QoS 1.
// An empty payload removes what the topic configured.
type Message struct {
	Topic   string
	Payload []byte
}

// Entity is one HA entity of a device.
type Entity struct {
	// Component is the MQTT platform: sensor, binary_sensor, button, ...
	Component string
	// Key identifies the entity within its device ("battery_charge").
	Key string
	// Config is the platform config without unique_id, default_entity_id,
	// device and origin, which Messages adds.
	Config map[string]any
}

// Device is one HA device and its entities.
type Device struct {
	// ID is the device identifier; entity unique_ids start with ID + "_".
	ID string
	// Slug prefixes suggested entity ids ("sensor.<slug>_battery_charge").
	Slug string
	// Info is the device block.
	Info map[string]any
	// Entities are sorted by component, then key.
	Entities []Entity
	// Pending lists entity key prefixes not derivable yet ("cmd_", "set_"
	// before the UPS's commands are known): an existing config with such a
	// key must be kept, not treated as stale.
	Pending []string
	// Removed are entities to remove: in device mode Messages lists each
	// as a bare {"platform": ...} component, which is how HA removes a
	// component from a device. In entity mode they are ignored (publish an
	// empty payload on their ConfigTopic).
	Removed []Entity
}

// UniqueID returns an entity's unique_id.
func (d *Device) UniqueID(e Entity) string { return d.ID + "_" + e.Key }

// IsPending reports whether a key is one the device cannot derive yet.
func (d *Device) IsPending(key string) bool {
	for _, p := range d.Pending {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// Slug turns an id into HA's [a-z0-9_] alphabet.
func Slug(id string) string {
	b := []byte(strings.ToLower(id))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// BridgeDeviceID is the bridge device's identifier.
func BridgeDeviceID(bridgeID string) string { return "upsbridge_" + Slug(bridgeID) }

// UPSDeviceID is a UPS device's identifier.
func UPSDeviceID(bridgeID, ups string) string { return BridgeDeviceID(bridgeID) + "_ups_" + Slug(ups) }

// Topics of the bridge's topic contract (mqttwire).
func (o Options) bridgeAvailability() string { return o.wire().BridgeAvailability(o.BridgeID) }

// wire is the contract's topics under the bridge's prefix.
func (o Options) wire() mqttwire.Topics { return mqttwire.Topics{Prefix: o.TopicPrefix} }

// EnergyTopic is where the MQTT sink publishes a UPS's energy counter:
// retained JSON {"ts": ..., "energy_kwh": 1.234, "estimated": false}.
func (o Options) EnergyTopic(ups string) string { return o.wire().Energy(ups) }

// BirthTopic is HA's status topic (<discovery_prefix>/status).
func (o Options) BirthTopic() string { return o.DiscoveryPrefix + "/status" }

// ConfigTopic is where an entity's config is published: its own topic in
// entity mode, the device's topic in device mode.
func ConfigTopic(o Options, d *Device, e Entity) string {
	if o.DeviceMode {
		return DeviceTopic(o, d)
	}
	return o.DiscoveryPrefix + "/" + e.Component + "/" + d.UniqueID(e) + "/config"
}

// DeviceTopic is a device's device-based discovery topic.
func DeviceTopic(o Options, d *Device) string {
	return o.DiscoveryPrefix + "/device/" + d.ID + "/config"
}

func (o Options) origin() map[string]any {
	m := map[string]any{"name": o.Origin.Name}
	if m["name"] == "" {
		m["name"] = "upsbridge"
	}
	if o.Origin.SWVersion != "" {
		m["sw_version"] = o.Origin.SWVersion
	}
	if o.Origin.SupportURL != "" {
		m["support_url"] = o.Origin.SupportURL
	}
	return m
}

// Messages returns the discovery messages of a device: one per entity, or
// one device-based config in device mode.
func Messages(o Options, d *Device) []Message {
	objectIDs := d.objectIDs()
	full := func(e Entity) map[string]any {
		c := make(map[string]any, len(e.Config)+4)
		for k, v := range e.Config {
			c[k] = v
		}
		c["unique_id"] = d.UniqueID(e)
		c["default_entity_id"] = e.Component + "." + objectIDs[e.Component+"."+e.Key]
		return c
	}
	if o.DeviceMode {
		cmps := map[string]any{}
		for _, e := range d.Removed {
			cmps[e.Key] = map[string]any{"platform": e.Component}
		}
		for _, e := range d.Entities {
			c := full(e)
			c["platform"] = e.Component
			cmps[e.Key] = c
		}
		payload := map[string]any{"device": d.Info, "origin": o.origin(), "components": cmps}
		return []Message{{Topic: DeviceTopic(o, d), Payload: mustJSON(payload)}}
	}
	out := make([]Message, 0, len(d.Entities))
	for _, e := range d.Entities {
		c := full(e)
		c["device"] = d.Info
		c["origin"] = o.origin()
		out = append(out, Message{Topic: ConfigTopic(o, d, e), Payload: mustJSON(c)})
	}
	return out
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings, numbers, bools and slices are built here.
		panic(fmt.Sprintf("hass: encode config: %v", err))
	}
	return data
}

// BridgeDevice returns the bridge's own device: its connection to the
// broker as a connectivity sensor (the Will makes it go off).
func BridgeDevice(o Options) *Device {
	d := &Device{
		ID:   BridgeDeviceID(o.BridgeID),
		Slug: "upsbridge_" + Slug(o.BridgeID),
		Info: map[string]any{
			"identifiers":  []string{BridgeDeviceID(o.BridgeID)},
			"name":         "upsbridge " + o.BridgeID,
			"manufacturer": "upsbridge",
			"model":        "UPS bridge",
		},
	}
	if o.Origin.SWVersion != "" {
		d.Info["sw_version"] = o.Origin.SWVersion
	}
	d.Entities = []Entity{{Component: "binary_sensor", Key: "connection", Config: map[string]any{
		"name":            "Broker connection",
		"state_topic":     o.bridgeAvailability(),
		"payload_on":      "online",
		"payload_off":     "offline",
		"device_class":    "connectivity",
		"entity_category": "diagnostic",
	}}}
	return d
}

// Template pieces. Every template guards against a missing or mistyped
// field and renders "None" (HA: unknown) rather than a made-up value.
const (
	varsExpr  = "(value_json.vars if value_json.vars is mapping else {})"
	flagsExpr = "(value_json.flags if value_json.flags is sequence and value_json.flags is not string else [])"
)

func numTemplate(v string) string {
	return "{% set v = " + varsExpr + ".get('" + v + "') %}{{ v if v is number else 'None' }}"
}

func textTemplate(v string) string {
	return "{% set v = " + varsExpr + ".get('" + v + "') %}{{ v[:255] if v is string and v | trim else 'None' }}"
}

func flagTemplate(cond string) string {
	return "{% set f = " + flagsExpr + " %}{{ 'None' if not f else ('ON' if " + cond + " else 'OFF') }}"
}

func statusTemplate() string {
	var m strings.Builder
	m.WriteString("{% set m = {")
	for i, st := range statusText {
		if i > 0 {
			m.WriteString(", ")
		}
		fmt.Fprintf(&m, "'%s': '%s'", st[0], st[1])
	}
	m.WriteString("} %}")
	return m.String() + "{% set ns = namespace(w=[]) %}{% for x in " + flagsExpr +
		" %}{% set ns.w = ns.w + [m.get(x, x)] %}{% endfor %}{{ (ns.w | join(' '))[:255] if ns.w else 'None' }}"
}

func powerStateTemplate() string {
	return "{% set f = " + flagsExpr + " %}" +
		"{% if 'FSD' in f %}forced_shutdown{% elif 'OB' in f and 'LB' in f %}low_battery" +
		"{% elif 'OB' in f %}on_battery{% elif 'OFF' in f %}offline{% elif 'BYPASS' in f %}bypass" +
		"{% elif 'CAL' in f %}calibrating{% elif 'OL' in f %}online{% else %}unknown{% endif %}"
}

// validVarName is what may appear inside a template's quotes.
func validVarName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// deviceInfoVars are the variables whose values UPSDevice reads (the
// device block); every other input is a variable's presence.
var deviceInfoVars = map[string][]string{
	"manufacturer":  {"device.mfr", "ups.mfr"},
	"model":         {"device.model", "ups.model"},
	"serial_number": {"device.serial", "ups.serial"},
	"sw_version":    {"ups.firmware", "device.firmware"},
}

var deviceInfoOrder = []string{"manufacturer", "model", "serial_number", "sw_version"}

var signatureSeed = maphash.MakeSeed()

// UPSDeviceSignature hashes what UPSDevice reads from a UPS's variables:
// the set of names and the device block's values. Equal signatures (with
// the same Info and options) give the same device, so a caller can skip
// deriving and encoding it again. It costs a hash per variable name, no
// allocation. Keep it in step with UPSDevice.
func UPSDeviceSignature(vars bridge.Vars) uint64 {
	var names uint64
	for n := range vars {
		// A sum is independent of map order.
		names += maphash.String(signatureSeed, n)
	}
	var h maphash.Hash
	h.SetSeed(signatureSeed)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], names)
	h.Write(b[:])
	for _, key := range deviceInfoOrder {
		for _, n := range deviceInfoVars[key] {
			h.WriteString(vars[n])
			h.WriteByte(0)
		}
	}
	return h.Sum64()
}

// UPSDevice returns a UPS's device and the entities for what it reports.
// Only variables present in st.Vars get entities; status entities need
// ups.status; buttons need st.Info (until it is known, "cmd_" and "set_"
// keys are Pending).
func UPSDevice(o Options, st *bridge.State) *Device {
	vars := st.Vars
	d := &Device{ID: UPSDeviceID(o.BridgeID, st.UPS), Slug: Slug(st.UPS)}
	info := map[string]any{
		"identifiers": []string{d.ID},
		"name":        st.UPS,
		"via_device":  BridgeDeviceID(o.BridgeID),
	}
	for key, names := range deviceInfoVars {
		for _, n := range names {
			if v := strings.TrimSpace(vars[n]); v != "" {
				info[key] = truncate(v, 128)
				break
			}
		}
	}
	d.Info = info

	avail := []any{
		map[string]any{"topic": o.bridgeAvailability()},
		map[string]any{"topic": o.wire().UPSAvailability(st.UPS)},
	}
	stateTopic := o.wire().State(st.UPS)
	add := func(component, key string, c map[string]any) {
		if n, ok := c["name"].(string); ok {
			c["name"] = fixName(n, st.UPS)
		}
		if _, ok := c["availability"]; !ok {
			c["availability"] = avail
			c["availability_mode"] = "all"
		}
		d.Entities = append(d.Entities, Entity{Component: component, Key: key, Config: c})
	}
	sensor := func(key, tpl string, s varSpec) map[string]any {
		c := map[string]any{"name": s.Name, "state_topic": stateTopic, "value_template": tpl}
		if s.Class != "" {
			c["device_class"] = s.Class
		}
		if s.Unit != "" {
			c["unit_of_measurement"] = s.Unit
		}
		if s.StateClass != "" {
			c["state_class"] = s.StateClass
		}
		if s.Precision >= 0 && (s.Unit != "" || s.StateClass != "") {
			c["suggested_display_precision"] = s.Precision
		}
		if s.Diagnostic {
			c["entity_category"] = "diagnostic"
		}
		if !s.Enabled {
			c["enabled_by_default"] = false
		}
		if s.Icon != "" {
			c["icon"] = s.Icon
		}
		add("sensor", key, c)
		return c
	}

	hasBattery := false
	for n := range vars {
		if strings.HasPrefix(n, "battery.") {
			hasBattery = true
		}
	}
	if _, ok := vars[bridge.VarStatus]; ok {
		sensor("status", statusTemplate(), varSpec{Name: "Status", Enabled: true, Precision: -1, Icon: "mdi:information-outline"})
		add("sensor", "power_state", map[string]any{
			"name": "Power state", "state_topic": stateTopic, "value_template": powerStateTemplate(),
			"device_class": "enum", "options": append([]string(nil), PowerStates...),
		})
		bin := func(key, name, class, cond string, enabled bool) {
			c := map[string]any{"name": name, "state_topic": stateTopic, "value_template": flagTemplate(cond),
				"payload_on": "ON", "payload_off": "OFF"}
			if class != "" {
				c["device_class"] = class
			}
			if !enabled {
				c["enabled_by_default"] = false
			}
			add("binary_sensor", key, c)
		}
		bin("mains_power", "Mains power", "power", "'OL' in f and 'OB' not in f", true)
		bin("on_battery", "On battery", "", "'OB' in f", true)
		bin("overload", "Overload", "problem", "'OVER' in f", true)
		if hasBattery {
			bin("battery_low", "Battery low", "battery", "'LB' in f", true)
			bin("replace_battery", "Replace battery", "problem", "'RB' in f", true)
			bin("charging", "Charging", "battery_charging", "'CHRG' in f", true)
		}
		add("sensor", "alarms", map[string]any{
			"name": "Alarms", "state_topic": stateTopic, "icon": "mdi:alert",
			"value_template": "{% set a = " + varsExpr + ".get('ups.alarm') %}{{ a[:255] if a is string and a | trim else ('Alarm' if 'ALARM' in " + flagsExpr + " else 'No alarm') }}",
		})
	}

	// Power: the UPS's real power, or an estimate from load and nominal
	// real power (marked estimated in the attributes).
	power := false
	if _, ok := vars["ups.realpower"]; ok {
		sensor("power", numTemplate("ups.realpower"), varSpec{Name: "Power", Class: "power", Unit: "W", StateClass: "measurement", Enabled: true, Precision: 0})
		power = true
	} else if _, ok := vars["ups.realpower.nominal"]; ok {
		if _, ok := vars[bridge.VarLoad]; ok {
			c := sensor("power", "{% set vs = "+varsExpr+" %}{% set l = vs.get('ups.load') %}{% set n = vs.get('ups.realpower.nominal') %}"+
				"{{ (l * n / 100) | round(1) if l is number and n is number else 'None' }}",
				varSpec{Name: "Power", Class: "power", Unit: "W", StateClass: "measurement", Enabled: true, Precision: 0})
			c["json_attributes_topic"] = stateTopic
			c["json_attributes_template"] = `{{ {"estimated": true, "source": "ups.load * ups.realpower.nominal"} | tojson }}`
			power = true
		}
	}
	if power {
		add("sensor", "energy", map[string]any{
			"name": "Energy", "state_topic": o.EnergyTopic(st.UPS),
			"value_template": "{{ value_json.energy_kwh if value_json.energy_kwh is number else 'None' }}",
			"device_class":   "energy", "unit_of_measurement": "kWh", "state_class": "total_increasing",
			"suggested_display_precision": 3, "entity_category": "diagnostic",
		})
	}

	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !validVarName(n) || (power && n == "ups.realpower") {
			continue
		}
		s, ok := specFor(n)
		if !ok {
			continue
		}
		tpl := numTemplate(n)
		if s.Unit == "" && s.StateClass == "" && s.Class == "" && !bridge.IsNumeric(n) {
			tpl = textTemplate(n)
		}
		sensor(Slug(n), tpl, s)
	}

	add("sensor", "last_update", map[string]any{
		"name": "Last update", "state_topic": stateTopic, "device_class": "timestamp", "entity_category": "diagnostic",
		"value_template": "{{ value_json.ts if value_json.ts is string and value_json.ts else 'None' }}",
	})
	add("binary_sensor", "connection", map[string]any{
		"name": "Connection", "state_topic": o.wire().UPSAvailability(st.UPS),
		"payload_on": "online", "payload_off": "offline", "device_class": "connectivity",
		"entity_category": "diagnostic",
		"availability":    []any{map[string]any{"topic": o.bridgeAvailability()}},
	})
	types := bridge.EventTypes()
	evTypes := make([]string, 0, len(types))
	for _, t := range types {
		if !bridge.HostEvent(t) { // published on the agent's topic only
			evTypes = append(evTypes, string(t))
		}
	}
	sort.Strings(evTypes)
	add("event", "events", map[string]any{
		"name": "Power events", "state_topic": o.wire().Event(st.UPS), "event_types": evTypes,
		"icon":           "mdi:flash-alert",
		"value_template": `{{ {"event_type": value_json.type, "message": value_json.message, "status": value_json.status, "ts": value_json.ts} | tojson }}`,
	})

	if st.Info == nil {
		d.Pending = []string{"cmd_", "set_"}
	} else {
		addControls(o, st, add)
	}
	sort.Slice(d.Entities, func(i, j int) bool {
		a, b := d.Entities[i], d.Entities[j]
		if a.Component != b.Component {
			return a.Component < b.Component
		}
		return a.Key < b.Key
	})
	return d
}

// addControls adds buttons for the instant commands the policy allows and
// select/number entities for the ENUM/RANGE writable variables it allows.
func addControls(o Options, st *bridge.State, add func(component, key string, c map[string]any)) {
	cmdTopic := o.wire().Command(st.UPS)
	for _, c := range st.Info.Commands {
		if !validVarName(c.Name) {
			continue
		}
		if o.Policy.CheckCommand(c.Name) != nil {
			continue
		}
		dangerous := bridge.IsDangerousCommand(c.Name) || bridge.ControlsShutdown(c.Name)
		cfg := map[string]any{
			"name":            commandName(c.Name),
			"command_topic":   cmdTopic,
			"payload_press":   `{"command":"` + c.Name + `"}`,
			"retain":          false,
			"qos":             1,
			"entity_category": "config",
			"icon":            commandIcon(c.Name),
		}
		if strings.HasPrefix(c.Name, "outlet.") && strings.HasSuffix(c.Name, ".load.cycle") {
			cfg["device_class"] = "restart"
			delete(cfg, "icon")
		}
		if dangerous {
			// Allowed by the policy, and still opt-in per entity.
			cfg["enabled_by_default"] = false
		}
		add("button", "cmd_"+Slug(c.Name), cfg)
	}
	setTopic := o.wire().Set(st.UPS)
	stateTopic := o.wire().State(st.UPS)
	for _, w := range st.Info.Writable {
		if !validVarName(w.Name) || o.Policy.CheckSet(w.Name) != nil {
			continue
		}
		name := varName(w.Name)
		base := map[string]any{
			"name":               name,
			"state_topic":        stateTopic,
			"command_topic":      setTopic,
			"retain":             false,
			"qos":                1,
			"entity_category":    "config",
			"enabled_by_default": false,
		}
		switch {
		case len(w.Enum) > 0:
			opts := make([]string, 0, len(w.Enum))
			for _, e := range w.Enum {
				if !Contains(opts, e) {
					opts = append(opts, e)
				}
			}
			base["options"] = opts
			base["value_template"] = "{% set v = " + varsExpr + ".get('" + w.Name + "') %}{{ v | string if v is defined and v is not none else 'None' }}"
			base["command_template"] = `{"var":"` + w.Name + `","value":{{ value | tojson }}}`
			add("select", "set_"+Slug(w.Name), base)
		case len(w.Ranges) > 0:
			lo, hi := w.Ranges[0][0], w.Ranges[0][1]
			for _, r := range w.Ranges[1:] {
				lo, hi = min(lo, r[0]), max(hi, r[1])
			}
			if !(lo < hi) {
				continue
			}
			base["min"], base["max"], base["step"], base["mode"] = lo, hi, 1, "box"
			if lo != float64(int64(lo)) || hi != float64(int64(hi)) {
				base["step"] = 0.1
			}
			if _, unit := classFor(w.Name); unit != "" {
				base["unit_of_measurement"] = unit
			}
			base["value_template"] = numTemplate(w.Name)
			base["command_template"] = `{"var":"` + w.Name + `","value":{{ value | string | tojson }}}`
			add("number", "set_"+Slug(w.Name), base)
		}
	}
}

// fixName keeps an entity name from starting with the device name (HA
// would strip it and warn).
// objectIDs returns the suggested object id of each entity (by
// "component.key"): the device's slug, then the key, without saying one
// word twice where they meet: a UPS "nas_ups" gets sensor.nas_ups_load for
// ups.load, not sensor.nas_ups_ups_load. A shortened id that another entity
// of the device already has keeps the full form. The unique_id is not
// affected, so entities HA already knows keep their identity.
func (d *Device) objectIDs() map[string]string {
	full := map[string]bool{}
	for _, e := range d.Entities {
		full[e.Component+"."+d.Slug+"_"+e.Key] = true
	}
	last := d.Slug[strings.LastIndexByte(d.Slug, '_')+1:]
	out := make(map[string]string, len(d.Entities))
	for _, e := range d.Entities {
		id := d.Slug + "_" + e.Key
		if first, rest, ok := strings.Cut(e.Key, "_"); ok && last != "" && first == last && rest != "" {
			if short := d.Slug + "_" + rest; !full[e.Component+"."+short] {
				id = short
			}
		}
		out[e.Component+"."+e.Key] = id
	}
	return out
}

func fixName(name, device string) string {
	if strings.HasPrefix(strings.ToLower(name), strings.ToLower(device)+" ") {
		// Device ids have no ':', so this cannot start with the name.
		return "Sensor: " + name
	}
	return name
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
