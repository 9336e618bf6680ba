package hacheck

import (
	"strings"
	"testing"
)

// Each broken config must be caught by its rule.
func TestCheckCatches(t *testing.T) {
	dev := `"device":{"identifiers":["d1"],"name":"Office"}`
	for _, tc := range []struct {
		name, topic, payload string
		rule                 int
	}{
		{"bad topic", "homeassistant/sensor/a.b/config", `{}`, 1},
		{"unknown component", "homeassistant/gizmo/x/config", `{"unique_id":"x"}`, 2},
		{"object id differs", "homeassistant/sensor/x/config", `{"unique_id":"y","state_topic":"a/b"}`, 3},
		{"wildcard command topic", "homeassistant/button/x/config", `{"unique_id":"x","command_topic":"a/+"}`, 4},
		{"state under discovery prefix", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"homeassistant/x"}`, 5},
		{"not JSON", "homeassistant/sensor/x/config", `[1]`, 6},
		{"typo key", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","device_lass":"battery"}`, 7},
		{"origin without name", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","o":{"sw":"1"}}`, 8},
		{"device payload without origin", "homeassistant/device/x/config", `{"dev":{"ids":"x"},"cmps":{"a":{"p":"sensor","uniq_id":"a","stat_t":"s"}}}`, 9},
		{"device without ids", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","device":{"name":"n"}}`, 10},
		{"both availabilities", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","availability_topic":"b","availability":[{"topic":"c"}]}`, 11},
		{"select without options", "homeassistant/select/x/config", `{"unique_id":"x","command_topic":"a"}`, 12},
		{"bad unique id", "homeassistant/sensor/X-1/config", `{"unique_id":"X-1","state_topic":"a"}`, 13},
		{"default entity id platform", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","default_entity_id":"binary_sensor.x"}`, 16},
		{"object_id", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","object_id":"x"}`, 17},
		{"name starts with device", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","name":"Office load",` + dev + `}`, 18},
		{"config category sensor", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","entity_category":"config"}`, 23},
		{"bad icon", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","icon":"battery"}`, 24},
		{"string bool", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","enabled_by_default":"false"}`, 25},
		{"negative precision", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","suggested_display_precision":-1}`, 26},
		{"unknown class", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","device_class":"sulphure_dioxide"}`, 27},
		{"unit VAr", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","device_class":"reactive_power","unit_of_measurement":"VAr"}`, 29},
		{"numeric class no unit", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","device_class":"voltage"}`, 30},
		{"energy measurement", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","device_class":"energy","unit_of_measurement":"kWh","state_class":"measurement"}`, 31},
		{"options not enum", "homeassistant/sensor/x/config", `{"unique_id":"x","state_topic":"a","options":["a"]}`, 33},
		{"bad binary class", "homeassistant/binary_sensor/x/config", `{"unique_id":"x","state_topic":"a","device_class":"voltage"}`, 37},
		{"number min max", "homeassistant/number/x/config", `{"unique_id":"x","command_topic":"a","min":5,"max":5}`, 38},
		{"retained button", "homeassistant/button/x/config", `{"unique_id":"x","command_topic":"a","retain":true}`, 39},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probs := Check("homeassistant", []Message{{Topic: tc.topic, Payload: []byte(tc.payload)}})
			var rules []string
			for _, p := range probs {
				if p.Rule == tc.rule {
					return
				}
				rules = append(rules, p.String())
			}
			t.Errorf("rule %d not reported; got:\n%s", tc.rule, strings.Join(rules, "\n"))
		})
	}
}

func TestCheckDuplicatesAndDevices(t *testing.T) {
	a := `{"unique_id":"x","state_topic":"a","device":{"identifiers":["d"],"name":"A","via_device":"hub"}}`
	b := `{"unique_id":"x","state_topic":"a","device":{"identifiers":["d"],"name":"B"}}`
	probs := Check("homeassistant", []Message{
		{Topic: "homeassistant/sensor/x/config", Payload: []byte(a)},
		{Topic: "homeassistant/sensor/y/config", Payload: []byte(b)},
	})
	seen := map[int]bool{}
	for _, p := range probs {
		seen[p.Rule] = true
	}
	for _, r := range []int{14, 20, 21} {
		if !seen[r] {
			t.Errorf("rule %d not reported: %v", r, probs)
		}
	}
	// A removal and a migration marker are fine.
	if p := Check("homeassistant", []Message{{Topic: "homeassistant/sensor/x/config"}, {Topic: "homeassistant/sensor/z/config", Payload: []byte(`{"migrate_discovery":true}`)}}); len(p) != 0 {
		t.Errorf("removal flagged: %v", p)
	}
}

func TestCheckState(t *testing.T) {
	num := map[string]any{"unit_of_measurement": "V"}
	for _, tc := range []struct {
		platform string
		cfg      map[string]any
		value    string
		ok       bool
	}{
		{"sensor", num, "230.5", true},
		{"sensor", num, "None", true},
		{"sensor", num, "N/A", false},
		{"sensor", num, "230 V", false},
		{"binary_sensor", map[string]any{}, "ON", true},
		{"binary_sensor", map[string]any{}, "on", false},
		{"sensor", map[string]any{"device_class": "enum", "options": []any{"a"}}, "b", false},
		{"sensor", map[string]any{"device_class": "timestamp"}, "2026-01-02T03:04:05.000Z", true},
		{"sensor", map[string]any{"device_class": "timestamp"}, "2026-01-02 03:04", false},
		{"sensor", map[string]any{}, strings.Repeat("x", 256), false},
	} {
		if err := CheckState(tc.platform, tc.cfg, tc.value); (err == nil) != tc.ok {
			t.Errorf("CheckState(%s, %v, %.20q) = %v", tc.platform, tc.cfg, tc.value, err)
		}
	}
}
