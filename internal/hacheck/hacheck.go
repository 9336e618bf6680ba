// Package hacheck validates Home Assistant MQTT discovery messages against
// HA's rules: the 48 discovery rules that can be checked on configs (state
// samples are checked with CheckState). It is used by the test suites of hass, sinks/mqtt and
// test/, and can check what any tool published.
package hacheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/upsbridge/upsbridge/hass"
)

// Problem is one broken rule.
type Problem struct {
	Topic string
	Rule  int    // checklist number in hass.md §2.4
	Sev   string // R reject, E broken, W warning, S house style
	Msg   string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s: rule %d (%s): %s", p.Topic, p.Rule, p.Sev, p.Msg)
}

// Message is one retained discovery publication.
type Message struct {
	Topic   string
	Payload []byte
}

var (
	idRe        = regexp.MustCompile(`^[a-z0-9_]+$`)
	objRe       = `[A-Za-z0-9_-]+`
	iconRe      = regexp.MustCompile(`^[a-z0-9_-]+:[a-z0-9_-]+$`)
	entityIDRe  = regexp.MustCompile(`^([a-z_]+)\.([a-z0-9_]+)$`)
	numberState = regexp.MustCompile(`^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$`)
)

var commonKeys = []string{
	"name", "unique_id", "default_entity_id", "device", "origin", "availability", "availability_mode",
	"availability_topic", "availability_template", "payload_available", "payload_not_available",
	"entity_category", "enabled_by_default", "visible_by_default", "icon", "entity_picture",
	"json_attributes_topic", "json_attributes_template", "qos", "encoding", "platform", "~",
	"group", "message_expiry_interval", "object_id",
}

var platformKeys = map[string][]string{
	"sensor": {"state_topic", "value_template", "device_class", "unit_of_measurement", "state_class",
		"suggested_display_precision", "expire_after", "force_update", "options", "last_reset_value_template"},
	"binary_sensor": {"state_topic", "value_template", "payload_on", "payload_off", "device_class", "off_delay",
		"expire_after", "force_update"},
	"button": {"command_topic", "command_template", "payload_press", "device_class", "retain"},
	"select": {"command_topic", "command_template", "options", "state_topic", "value_template", "optimistic", "retain"},
	"number": {"command_topic", "command_template", "state_topic", "value_template", "min", "max", "step", "mode",
		"unit_of_measurement", "device_class", "optimistic", "retain", "payload_reset"},
	"event":  {"state_topic", "value_template", "event_types", "device_class"},
	"text":   {"command_topic", "command_template", "state_topic", "value_template", "min", "max", "mode", "pattern", "retain"},
	"switch": {"command_topic", "state_topic", "value_template", "payload_on", "payload_off", "state_on", "state_off", "optimistic", "retain", "device_class"},
}

var required = map[string][]string{
	"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "button": {"command_topic"},
	"switch": {"command_topic"}, "select": {"command_topic", "options"}, "number": {"command_topic"},
	"text": {"command_topic"}, "event": {"state_topic", "event_types"},
}

// abbreviations HA expands (mqtt/abbreviations.py), the ones in use.
var abbrev = map[string]string{
	"avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
	"avty_tpl": "availability_template", "cmd_t": "command_topic", "cmd_tpl": "command_template",
	"cmps": "components", "def_ent_id": "default_entity_id", "dev": "device", "dev_cla": "device_class",
	"dsp_prc": "display_precision", "e": "encoding", "en": "enabled_by_default",
	"ent_cat": "entity_category", "ent_pic": "entity_picture", "evt_typ": "event_types",
	"exp_aft": "expire_after", "frc_upd": "force_update", "ic": "icon",
	"json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template", "o": "origin",
	"ops": "options", "p": "platform", "pl_avail": "payload_available", "pl_not_avail": "payload_not_available",
	"pl_on": "payload_on", "pl_off": "payload_off", "pl_prs": "payload_press", "ret": "retain",
	"stat_cla": "state_class", "stat_t": "state_topic", "stat_val_tpl": "state_value_template",
	"sug_dsp_prc": "suggested_display_precision", "uniq_id": "unique_id",
	"unit_of_meas": "unit_of_measurement", "val_tpl": "value_template", "obj_id": "object_id",
	"migr_discvry": "migrate_discovery", "t": "topic",
	"ids": "identifiers", "cns": "connections", "mf": "manufacturer", "mdl": "model", "mdl_id": "model_id",
	"sn": "serial_number", "sw": "sw_version", "hw": "hw_version", "sa": "suggested_area",
	"cu": "configuration_url", "url": "support_url",
}

func expand(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if full, ok := abbrev[k]; ok {
			k = full
		}
		switch k {
		case "device", "origin":
			if mm, ok := v.(map[string]any); ok {
				v = expand(mm)
			}
		case "availability":
			if l, ok := v.([]any); ok {
				nl := make([]any, len(l))
				for i, it := range l {
					if mm, ok := it.(map[string]any); ok {
						nl[i] = expand(mm)
					} else {
						nl[i] = it
					}
				}
				v = nl
			}
		case "components":
			if mm, ok := v.(map[string]any); ok {
				nc := make(map[string]any, len(mm))
				for id, c := range mm {
					if cm, ok := c.(map[string]any); ok {
						nc[id] = expand(cm)
					} else {
						nc[id] = c
					}
				}
				v = nc
			}
		}
		out[k] = v
	}
	// Base topic substitution.
	if base, ok := out["~"].(string); ok {
		for k, v := range out {
			if s, ok := v.(string); ok && strings.HasSuffix(k, "_topic") {
				if strings.HasPrefix(s, "~") {
					out[k] = base + s[1:]
				} else if strings.HasSuffix(s, "~") {
					out[k] = s[:len(s)-1] + base
				}
			}
		}
	}
	return out
}

// Checker accumulates what it has seen across messages (unique ids, devices).
type Checker struct {
	Prefix   string
	Problems []Problem
	uids     map[string]string          // platform/unique_id -> topic
	devices  map[string]string          // identifier -> canonical device JSON
	devName  map[string]string          // identifier -> name
	nullName map[string]int             // identifier -> entities with name null
	vias     map[string]map[string]bool // via_device -> topics
}

// New returns a checker for configs under a discovery prefix.
func New(prefix string) *Checker {
	return &Checker{Prefix: prefix, uids: map[string]string{}, devices: map[string]string{}, devName: map[string]string{},
		nullName: map[string]int{}, vias: map[string]map[string]bool{}}
}

// Check validates messages and the set as a whole.
func Check(prefix string, msgs []Message) []Problem {
	c := New(prefix)
	for _, m := range msgs {
		c.Add(m.Topic, m.Payload)
	}
	return c.Finish()
}

func (c *Checker) fail(topic string, rule int, sev, format string, args ...any) {
	c.Problems = append(c.Problems, Problem{Topic: topic, Rule: rule, Sev: sev, Msg: fmt.Sprintf(format, args...)})
}

// Add checks one message.
func (c *Checker) Add(topic string, payload []byte) {
	rest, ok := strings.CutPrefix(topic, c.Prefix+"/")
	re := regexp.MustCompile(`^(\w+)/(?:(` + objRe + `)/)?(` + objRe + `)/config$`)
	sm := re.FindStringSubmatch(rest)
	if !ok || sm == nil {
		c.fail(topic, 1, "R", "topic does not match <prefix>/<component>/[<node_id>/]<object_id>/config")
		return
	}
	component, objectID := sm[1], sm[3]
	if len(payload) == 0 {
		return // a removal
	}
	if !utf8.Valid(payload) {
		c.fail(topic, 6, "R", "payload is not UTF-8")
		return
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		c.fail(topic, 6, "R", "payload is not a JSON object: %v", err)
		return
	}
	cfg := expand(raw)
	if v, ok := cfg["migrate_discovery"]; ok && len(cfg) == 1 && v == true {
		return
	}
	if component == "device" {
		c.checkDevicePayload(topic, objectID, cfg)
		return
	}
	if !slices.Contains(hass.Components, component) {
		c.fail(topic, 2, "R", "component %q is not an MQTT platform", component)
		return
	}
	c.checkOrigin(topic, cfg)
	if uid, _ := cfg["unique_id"].(string); uid != "" && uid != objectID {
		c.fail(topic, 3, "S", "object_id %q differs from unique_id %q", objectID, uid)
	}
	c.checkEntity(topic, component, cfg, cfg["device"])
}

func (c *Checker) checkDevicePayload(topic, objectID string, cfg map[string]any) {
	for _, k := range []string{"device", "origin", "components"} {
		if _, ok := cfg[k]; !ok {
			c.fail(topic, 9, "R", "device payload without %s", k)
		}
	}
	for k := range cfg {
		if !slices.Contains([]string{"device", "origin", "components", "availability", "availability_mode",
			"availability_template", "availability_topic", "command_topic", "encoding", "message_expiry_interval",
			"payload_available", "payload_not_available", "state_topic", "qos", "~"}, k) {
			c.fail(topic, 7, "W", "unknown device payload key %q", k)
		}
	}
	c.checkOrigin(topic, cfg)
	cmps, _ := cfg["components"].(map[string]any)
	if len(cmps) == 0 {
		c.fail(topic, 9, "R", "components is empty")
		return
	}
	ids := make([]string, 0, len(cmps))
	for id := range cmps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		cm, ok := cmps[id].(map[string]any)
		if !ok {
			c.fail(topic, 9, "R", "component %q is not an object", id)
			continue
		}
		p, _ := cm["platform"].(string)
		if !slices.Contains(hass.Components, p) {
			c.fail(topic, 9, "R", "component %q has platform %q", id, cm["platform"])
			continue
		}
		if len(cm) == 1 {
			continue // removal of the component
		}
		if !regexp.MustCompile(`^` + objRe + `$`).MatchString(id) {
			c.fail(topic, 1, "R", "component id %q is not a valid object_id", id)
		}
		merged := map[string]any{}
		for _, k := range []string{"availability", "availability_mode", "availability_topic", "state_topic", "command_topic", "qos"} {
			if v, ok := cfg[k]; ok {
				merged[k] = v
			}
		}
		for k, v := range cm {
			merged[k] = v
		}
		c.checkEntity(topic+"#"+id, p, merged, cfg["device"])
	}
}

func (c *Checker) checkOrigin(topic string, cfg map[string]any) {
	o, ok := cfg["origin"]
	if !ok {
		return
	}
	om, ok := o.(map[string]any)
	if !ok {
		c.fail(topic, 8, "R", "origin is not an object")
		return
	}
	if n, ok := om["name"].(string); !ok || n == "" {
		c.fail(topic, 8, "R", "origin without a name")
	}
	if u, ok := om["support_url"]; ok && !isURL(u, true) {
		c.fail(topic, 8, "R", "origin support_url %v is not an http(s) URL", u)
	}
}

func isURL(v any, haOK bool) bool {
	s, ok := v.(string)
	return ok && (strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || haOK && strings.HasPrefix(s, "homeassistant://"))
}

func str(v any) string { s, _ := v.(string); return s }

func (c *Checker) checkEntity(topic, platform string, cfg map[string]any, device any) {
	// 7: unknown keys.
	allowed := append(append([]string{}, commonKeys...), platformKeys[platform]...)
	for k := range cfg {
		if !slices.Contains(allowed, k) {
			c.fail(topic, 7, "W", "key %q is not known to %s (HA drops it silently)", k, platform)
		}
	}
	if _, ok := cfg["object_id"]; ok {
		c.fail(topic, 17, "W", "object_id is removed in HA 2026.4; use default_entity_id")
	}
	// 12: required keys.
	for _, k := range required[platform] {
		if _, ok := cfg[k]; !ok {
			c.fail(topic, 12, "R", "%s requires %s", platform, k)
		}
	}
	// 4, 5: topics.
	for k, v := range cfg {
		if !strings.HasSuffix(k, "_topic") {
			continue
		}
		c.checkTopic(topic, k, v)
	}
	// 11: availability.
	if _, a := cfg["availability"]; a {
		if _, t := cfg["availability_topic"]; t {
			c.fail(topic, 11, "R", "availability and availability_topic are both set")
		}
		list, ok := cfg["availability"].([]any)
		if !ok || len(list) == 0 {
			c.fail(topic, 11, "R", "availability is not a non-empty list")
		}
		for _, it := range list {
			m, ok := it.(map[string]any)
			if !ok || m["topic"] == nil {
				c.fail(topic, 11, "R", "availability item without topic")
				continue
			}
			c.checkTopic(topic, "availability.topic", m["topic"])
			for k := range m {
				if !slices.Contains([]string{"topic", "payload_available", "payload_not_available", "value_template"}, k) {
					c.fail(topic, 7, "W", "unknown availability key %q", k)
				}
			}
		}
	}
	if m, ok := cfg["availability_mode"]; ok && !slices.Contains([]string{"all", "any", "latest"}, str(m)) {
		c.fail(topic, 11, "R", "availability_mode %v", m)
	}
	// 13-16: identity.
	uid := str(cfg["unique_id"])
	if !idRe.MatchString(uid) {
		c.fail(topic, 13, "R", "unique_id %q must match %s", uid, idRe)
	} else {
		key := platform + "/" + uid
		if prev, dup := c.uids[key]; dup && prev != topic {
			c.fail(topic, 14, "R", "unique_id %q already used by %s", uid, prev)
		}
		c.uids[key] = topic
	}
	if de, ok := cfg["default_entity_id"]; ok {
		m := entityIDRe.FindStringSubmatch(str(de))
		if m == nil || m[1] != platform {
			c.fail(topic, 16, "W", "default_entity_id %v is not %s.<slug>", de, platform)
		}
	}
	// 10, 18-21: device.
	var devID string
	if device != nil {
		devID = c.checkDevice(topic, device)
	}
	if n, ok := cfg["name"]; ok {
		switch nv := n.(type) {
		case nil:
			c.nullName[devID]++
			if c.nullName[devID] == 2 {
				c.fail(topic, 19, "S", "more than one entity of device %q has name null", devID)
			}
		case string:
			if dn := c.devName[devID]; dn != "" && strings.HasPrefix(strings.ToLower(nv), strings.ToLower(dn)+" ") {
				c.fail(topic, 18, "W", "name %q starts with the device name %q", nv, dn)
			}
		default:
			c.fail(topic, 18, "W", "name is not a string or null")
		}
	}
	// 22-26: categories and flags.
	if ec, ok := cfg["entity_category"]; ok {
		if !slices.Contains(hass.EntityCategories, str(ec)) {
			c.fail(topic, 22, "R", "entity_category %v", ec)
		}
		if ec == "config" && (platform == "sensor" || platform == "binary_sensor") {
			c.fail(topic, 23, "E", "%s cannot use entity_category config", platform)
		}
	}
	if ic, ok := cfg["icon"]; ok && !iconRe.MatchString(str(ic)) {
		c.fail(topic, 24, "R", "icon %v is not prefix:name", ic)
	}
	if p, ok := cfg["entity_picture"]; ok && !isURL(p, false) {
		c.fail(topic, 24, "R", "entity_picture %v is not a URL", p)
	}
	for _, k := range []string{"enabled_by_default", "visible_by_default", "retain", "force_update", "optimistic"} {
		if v, ok := cfg[k]; ok {
			if _, b := v.(bool); !b {
				c.fail(topic, 25, "R", "%s is not a JSON boolean", k)
			}
		}
	}
	for _, k := range []string{"expire_after", "suggested_display_precision", "off_delay"} {
		if v, ok := cfg[k]; ok {
			if f, isNum := v.(float64); !isNum || f < 0 || f != float64(int64(f)) {
				c.fail(topic, 26, "R", "%s must be an integer >= 0, got %v", k, v)
			}
		}
	}
	if q, ok := cfg["qos"]; ok && q != 0.0 && q != 1.0 && q != 2.0 {
		c.fail(topic, 26, "R", "qos %v", q)
	}
	switch platform {
	case "sensor":
		c.checkSensor(topic, cfg)
	case "binary_sensor":
		if dc, ok := cfg["device_class"]; ok && !slices.Contains(hass.BinarySensorDeviceClasses, str(dc)) {
			c.fail(topic, 37, "R", "binary_sensor device_class %v", dc)
		}
	case "button":
		if dc, ok := cfg["device_class"]; ok && !slices.Contains(hass.ButtonDeviceClasses, str(dc)) {
			c.fail(topic, 37, "R", "button device_class %v", dc)
		}
		if cfg["retain"] == true {
			c.fail(topic, 39, "S", "a button must not retain its presses")
		}
	case "select":
		opts, ok := cfg["options"].([]any)
		if !ok || len(opts) == 0 {
			c.fail(topic, 38, "R", "select options must be a non-empty list")
		}
		for _, o := range opts {
			if _, s := o.(string); !s {
				c.fail(topic, 38, "R", "select option %v is not a string", o)
			}
		}
	case "number":
		lo, lok := numOr(cfg["min"], 1)
		hi, hok := numOr(cfg["max"], 100)
		if !lok || !hok || !(lo < hi) {
			c.fail(topic, 38, "R", "number needs min < max, got %v, %v", cfg["min"], cfg["max"])
		}
		if st, ok := numOr(cfg["step"], 1); !ok || st < 0.001 {
			c.fail(topic, 38, "R", "number step %v < 0.001", cfg["step"])
		}
		if m, ok := cfg["mode"]; ok && !slices.Contains([]string{"auto", "box", "slider"}, str(m)) {
			c.fail(topic, 38, "R", "number mode %v", m)
		}
	case "event":
		ev, ok := cfg["event_types"].([]any)
		if !ok || len(ev) == 0 {
			c.fail(topic, 38, "R", "event needs non-empty event_types")
		}
	}
}

func numOr(v any, def float64) (float64, bool) {
	if v == nil {
		return def, true
	}
	f, ok := v.(float64)
	return f, ok
}

func (c *Checker) checkTopic(topic, key string, v any) {
	s, ok := v.(string)
	if !ok || s == "" || len(s) > 65535 || strings.ContainsRune(s, 0) {
		c.fail(topic, 4, "R", "%s %v is not a valid MQTT topic", key, v)
		return
	}
	if strings.HasPrefix(key, "command") {
		if strings.ContainsAny(s, "+#") {
			c.fail(topic, 4, "R", "%s %q has a wildcard", key, s)
		}
	} else {
		for i, lvl := range strings.Split(s, "/") {
			if strings.ContainsAny(lvl, "+#") && lvl != "+" && !(lvl == "#" && i == len(strings.Split(s, "/"))-1) {
				c.fail(topic, 4, "R", "%s %q has a misplaced wildcard", key, s)
			}
		}
	}
	if strings.HasPrefix(s, c.Prefix+"/") {
		c.fail(topic, 5, "S", "%s %q lies under the discovery prefix", key, s)
	}
}

// checkDevice checks a device block and returns its first identifier.
func (c *Checker) checkDevice(topic string, v any) string {
	d, ok := v.(map[string]any)
	if !ok {
		c.fail(topic, 10, "R", "device is not an object")
		return ""
	}
	var ids []string
	switch x := d["identifiers"].(type) {
	case string:
		ids = []string{x}
	case []any:
		for _, i := range x {
			if s, ok := i.(string); ok && s != "" {
				ids = append(ids, s)
			}
		}
	}
	cns, _ := d["connections"].([]any)
	for _, cn := range cns {
		pair, ok := cn.([]any)
		if !ok || len(pair) != 2 || str(pair[0]) == "" || str(pair[1]) == "" {
			c.fail(topic, 10, "R", "connection %v is not a [type, value] pair", cn)
		}
	}
	if len(ids) == 0 && len(cns) == 0 {
		c.fail(topic, 10, "R", "device has no identifiers or connections")
		return ""
	}
	if u, ok := d["configuration_url"]; ok && !isURL(u, true) {
		c.fail(topic, 10, "R", "configuration_url %v", u)
	}
	for k := range d {
		if !slices.Contains([]string{"identifiers", "connections", "name", "manufacturer", "model", "model_id",
			"serial_number", "sw_version", "hw_version", "suggested_area", "configuration_url", "via_device"}, k) {
			c.fail(topic, 7, "W", "unknown device key %q", k)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	canon, _ := json.Marshal(d) // map keys are sorted
	if prev, ok := c.devices[ids[0]]; ok && prev != string(canon) {
		c.fail(topic, 20, "S", "device %q differs from another entity's device block", ids[0])
	}
	c.devices[ids[0]] = string(canon)
	c.devName[ids[0]] = str(d["name"])
	if via := str(d["via_device"]); via != "" {
		if c.vias[via] == nil {
			c.vias[via] = map[string]bool{}
		}
		c.vias[via][topic] = true
	}
	return ids[0]
}

func (c *Checker) checkSensor(topic string, cfg map[string]any) {
	dc, hasDC := cfg["device_class"]
	unit := str(cfg["unit_of_measurement"])
	sc, hasSC := cfg["state_class"]
	class := str(dc)
	if hasDC {
		if _, ok := hass.SensorDeviceClasses[class]; !ok {
			c.fail(topic, 27, "R", "sensor device_class %v", dc)
		} else if since := hass.SensorDeviceClasses[class]; since != "" && since > hass.MinHAVersion {
			c.fail(topic, 27, "W", "device_class %s needs HA %s", class, since)
		}
	}
	if hasSC && !slices.Contains(hass.StateClasses, str(sc)) {
		c.fail(topic, 28, "R", "state_class %v", sc)
	}
	if units, ok := hass.DeviceClassUnits[class]; hasDC && ok {
		if unit != "" && !slices.Contains(units, unit) {
			c.fail(topic, 29, "R", "unit %q is not valid with device class %s (want one of %q)", unit, class, units)
		}
		numeric := len(units) > 0
		if numeric && unit == "" && !slices.Contains(hass.UnitlessNumericClasses, class) {
			c.fail(topic, 30, "W", "device class %s without a unit", class)
		}
		if !numeric && unit != "" {
			c.fail(topic, 30, "W", "device class %s takes no unit", class)
		}
	}
	if scs, ok := hass.DeviceClassStateClasses[class]; hasDC && hasSC && ok && !slices.Contains(scs, str(sc)) {
		sev, rule := "W", 31
		if len(scs) == 0 {
			sev, rule = "E", 32
		}
		c.fail(topic, rule, sev, "state_class %v does not fit device class %s", sc, class)
	}
	if opts, ok := cfg["options"]; ok {
		l, isList := opts.([]any)
		if class != "enum" || !isList || len(l) == 0 || unit != "" || hasSC {
			c.fail(topic, 33, "R", "options need device_class enum, a non-empty list, no unit, no state_class")
		}
	}
	if sc == "measurement_angle" && unit != "°" {
		c.fail(topic, 34, "R", "measurement_angle needs unit °")
	}
	if _, ok := cfg["last_reset_value_template"]; ok && sc != "total" {
		c.fail(topic, 35, "R", "last_reset_value_template needs state_class total")
	}
}

// Finish runs the checks over the whole set and returns every problem.
func (c *Checker) Finish() []Problem {
	for via, topics := range c.vias {
		if _, ok := c.devices[via]; !ok {
			ts := make([]string, 0, len(topics))
			for t := range topics {
				ts = append(ts, t)
			}
			sort.Strings(ts)
			c.fail(ts[0], 21, "S", "via_device %q is not a published device", via)
		}
	}
	return c.Problems
}

// CheckState validates a rendered state value for an entity config (rules
// 44-47): numeric sensors get numbers or None, binary sensors their
// payloads, enums their options, timestamps RFC 3339 with an offset.
func CheckState(platform string, cfg map[string]any, value string) error {
	if value == "None" {
		return nil
	}
	switch platform {
	case "binary_sensor":
		on, off := "ON", "OFF"
		if s, ok := cfg["payload_on"].(string); ok {
			on = s
		}
		if s, ok := cfg["payload_off"].(string); ok {
			off = s
		}
		if value != on && value != off {
			return fmt.Errorf("binary state %q is neither %q nor %q", value, on, off)
		}
	case "sensor":
		dc := str(cfg["device_class"])
		switch {
		case dc == "enum":
			for _, o := range cfg["options"].([]any) {
				if o == value {
					return nil
				}
			}
			return fmt.Errorf("enum state %q not in options", value)
		case dc == "timestamp":
			if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`).MatchString(value) {
				return fmt.Errorf("timestamp %q is not RFC 3339 with an offset", value)
			}
		case cfg["unit_of_measurement"] != nil || cfg["state_class"] != nil || len(hass.DeviceClassUnits[dc]) > 0:
			if !numberState.MatchString(value) {
				return fmt.Errorf("numeric state %q is not a number", value)
			}
		default:
			if utf8.RuneCountInString(value) > 255 {
				return fmt.Errorf("text state is %d characters, more than 255", utf8.RuneCountInString(value))
			}
		}
	}
	return nil
}
