package hass_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/hass"
	"github.com/upsbridge/upsbridge/internal/datadir"
	"github.com/upsbridge/upsbridge/internal/hacheck"
	"github.com/upsbridge/upsbridge/mqttwire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// dumps are the real devices the golden files come from.
var dumps = []struct{ name, file string }{
	{"apc_back_ups", "APC/APC__Back-UPS_CS_500__usbhid-ups__2.6.0__01.dev"},
	{"cyberpower", "Cyber_Power_Systems/Cyber_Power_Systems__CP1500EPFCLCD__usbhid-ups__2.7.3__01.dev"},
	{"eaton", "Eaton/Eaton__5PX_2000__usbhid-ups__2.7.4__01.dev"},
	{"three_phase", "Eaton/Eaton__93PM__snmp-ups__2.7.4__01.dev"},
	{"pdu", "Eaton/Eaton__ePDU_MA_1P__snmp-ups__2.7.4__01.dev"},
	{"range_rw", "PowerWalker/PowerWalker__VFI_1000_CG_PF1__nutdrv_qx__2.7.4__01.dev"},
}

// parseDev reads a NUT DDL .dev file: "name: value" lines (with end-of-line
// "#BAD"/"#COMMENT" flags after a tab), "#RW:var:TYPE:opts" and
// "#CMD:command" lines; other "#" lines are comments.
func parseDev(t testing.TB, path string) (bridge.Vars, *bridge.Info) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open dump: %v", err)
	}
	defer f.Close()
	vars := bridge.Vars{}
	info := &bridge.Info{}
	rw := map[string]*bridge.Writable{}
	var rwOrder []string
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(l, "#CMD:"):
			info.Commands = append(info.Commands, bridge.Command{Name: strings.TrimSpace(strings.TrimPrefix(l, "#CMD:"))})
		case strings.HasPrefix(l, "#RW:"):
			parts := strings.SplitN(strings.TrimPrefix(l, "#RW:"), ":", 3)
			if len(parts) < 2 {
				t.Fatalf("%s:%d: bad RW line %q", path, line, l)
			}
			name, typ := parts[0], strings.Fields(parts[1])[0]
			w := rw[name]
			if w == nil {
				w = &bridge.Writable{Name: name, Type: typ}
				rw[name] = w
				rwOrder = append(rwOrder, name)
			}
			opts := ""
			if len(parts) == 3 {
				opts, _, _ = strings.Cut(parts[2], "\t")
			}
			switch typ {
			case "ENUM":
				w.Enum = append(w.Enum, strings.Trim(strings.TrimSpace(opts), `"`))
			case "RANGE":
				f := strings.Fields(opts)
				if len(f) == 2 {
					lo, err1 := strconv.ParseFloat(strings.Trim(f[0], `"`), 64)
					hi, err2 := strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
					if err1 == nil && err2 == nil {
						w.Ranges = append(w.Ranges, [2]float64{lo, hi})
					}
				}
			}
		case strings.HasPrefix(l, "#"), strings.TrimSpace(l) == "":
		default:
			name, val, ok := strings.Cut(l, ":")
			if !ok {
				t.Fatalf("%s:%d: not a name: value line: %q", path, line, l)
			}
			val, _, _ = strings.Cut(val, "\t#")
			vars[strings.TrimSpace(name)] = strings.TrimSpace(val)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range rwOrder {
		info.Writable = append(info.Writable, *rw[n])
	}
	return vars, info
}

func stateFor(ups string, vars bridge.Vars, info *bridge.Info) *bridge.State {
	return &bridge.State{
		UPS: ups, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seq: 1,
		Status: bridge.ParseStatus(vars[bridge.VarStatus]), Vars: vars, Comm: true, Info: info,
	}
}

func testOptions(device bool) hass.Options {
	return hass.Options{
		DiscoveryPrefix: "homeassistant", TopicPrefix: "upsbridge", BridgeID: "home-srv",
		DeviceMode: device, Origin: hass.Origin{Name: "upsbridge", SWVersion: "1.0.0", SupportURL: "https://github.com/upsbridge/upsbridge"},
	}
}

// golden compares msgs with testdata/<name>.golden.json (or rewrites it).
func golden(t *testing.T, name string, msgs []hass.Message) {
	t.Helper()
	type entry struct {
		Topic   string          `json:"topic"`
		Payload json.RawMessage `json:"payload"`
	}
	entries := make([]entry, len(msgs))
	for i, m := range msgs {
		entries[i] = entry{m.Topic, m.Payload}
	}
	got, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test ./hass -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated messages; review and run go test ./hass -update\n%s", path, firstDiff(string(want), string(got)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, x, y)
		}
	}
	return ""
}

func toCheck(msgs []hass.Message) []hacheck.Message {
	out := make([]hacheck.Message, len(msgs))
	for i, m := range msgs {
		out[i] = hacheck.Message{Topic: m.Topic, Payload: m.Payload}
	}
	return out
}

func allMessages(t *testing.T, o hass.Options) (map[string][]hass.Message, []*bridge.State) {
	t.Helper()
	out := map[string][]hass.Message{}
	var states []*bridge.State
	for _, d := range dumps {
		vars, info := parseDev(t, datadir.DDL(d.file))
		st := stateFor(d.name, vars, info)
		states = append(states, st)
		out[d.name] = hass.Messages(o, hass.UPSDevice(o, st))
	}
	out["bridge"] = hass.Messages(o, hass.BridgeDevice(o))
	out["agent"] = hass.Messages(o, hass.AgentDevice(o, hass.Agent{ID: "nas-1", Host: "nas", SWVersion: "1.0.0", StateTopic: "upsbridge/agent/nas-1/state", EventTopic: "upsbridge/agent/nas-1/event"}))
	return out, states
}

func TestGoldenAndConformance(t *testing.T) {
	for _, mode := range []struct {
		name   string
		device bool
	}{{"entity", false}, {"device", true}} {
		t.Run(mode.name, func(t *testing.T) {
			o := testOptions(mode.device)
			all, _ := allMessages(t, o)
			var every []hass.Message
			names := make([]string, 0, len(all))
			for n := range all {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				every = append(every, all[n]...)
				golden(t, n+"."+mode.name, all[n])
			}
			for _, p := range hacheck.Check(o.DiscoveryPrefix, toCheck(every)) {
				t.Errorf("conformance: %s", p)
			}
			// The goldens show the closed default; every control a policy
			// can open must conform as well.
			_, states := allMessages(t, o)
			o.Policy = openPolicy(states)
			every = hass.Messages(o, hass.BridgeDevice(o))
			components := map[string]bool{}
			for _, st := range states {
				dev := hass.UPSDevice(o, st)
				for _, e := range dev.Entities {
					components[e.Component] = true
				}
				every = append(every, hass.Messages(o, dev)...)
			}
			if !components["select"] || !components["number"] {
				t.Fatal("an open policy gave no select or number: the dumps have no writable variables?")
			}
			for _, p := range hacheck.Check(o.DiscoveryPrefix, toCheck(every)) {
				t.Errorf("conformance with every control allowed: %s", p)
			}
		})
	}
}

// openPolicy allows every command and writable variable of the states.
func openPolicy(states []*bridge.State) bridge.CommandPolicy {
	p := bridge.CommandPolicy{DangerousCommands: true}
	for _, st := range states {
		for _, c := range st.Info.Commands {
			p.AllowDangerous = append(p.AllowDangerous, c.Name)
		}
		for _, w := range st.Info.Writable {
			p.AllowSet = append(p.AllowSet, w.Name)
			p.AllowDangerous = append(p.AllowDangerous, w.Name)
		}
	}
	return p
}

// TestStable: configs depend on identity and the variable set, not values.
func TestStable(t *testing.T) {
	o := testOptions(false)
	vars, info := parseDev(t, datadir.DDL(dumps[2].file))
	a := hass.Messages(o, hass.UPSDevice(o, stateFor("x", vars, info)))
	v2 := vars.Clone()
	for k := range v2 {
		if bridge.IsNumeric(k) {
			v2[k] = "12.5"
		}
	}
	v2["ups.status"] = "OB LB"
	b := hass.Messages(o, hass.UPSDevice(o, stateFor("x", v2, info)))
	if len(a) != len(b) {
		t.Fatalf("%d vs %d messages after values changed", len(a), len(b))
	}
	for i := range a {
		if a[i].Topic != b[i].Topic || !bytes.Equal(a[i].Payload, b[i].Payload) {
			t.Errorf("config %s changed with values", a[i].Topic)
		}
	}
}

// TestCommandsPolicy: Home Assistant gets controls only for what the
// policy allows: safe commands by default; other dangerous ones with
// DangerousCommands; those that cut the load or change shutdown timing only
// when named in AllowDangerous (and disabled by default); writable
// variables only from AllowSet.
func TestCommandsPolicy(t *testing.T) {
	info := &bridge.Info{
		Commands: []bridge.Command{{Name: "beeper.mute"}, {Name: "load.off"}, {Name: "shutdown.return"}, {Name: "test.battery.start.quick"}, {Name: "bypass.start"}},
		Writable: []bridge.Writable{
			{Name: "battery.charge.low", Type: "RANGE", Ranges: [][2]float64{{10, 100}}},
			{Name: "ups.delay.shutdown", Type: "RANGE", Ranges: [][2]float64{{0, 600}}},
			{Name: "input.sensitivity", Type: "ENUM", Enum: []string{"low", "high"}},
		},
	}
	st := stateFor("u", bridge.Vars{"ups.status": "OL", "battery.charge": "90"}, info)
	for _, tc := range []struct {
		name   string
		policy bridge.CommandPolicy
		want   map[string]any // key -> enabled_by_default (nil: default true)
	}{
		{"closed default", bridge.CommandPolicy{},
			map[string]any{"cmd_beeper_mute": nil, "cmd_test_battery_start_quick": nil}},
		{"hass.dangerous_commands", bridge.CommandPolicy{DangerousCommands: true},
			map[string]any{"cmd_beeper_mute": nil, "cmd_test_battery_start_quick": nil, "cmd_bypass_start": false}},
		{"named", bridge.CommandPolicy{AllowDangerous: []string{"load.off", "battery.charge.low"}, AllowSet: []string{"battery.charge.low", "ups.delay.shutdown", "input.sensitivity"}},
			map[string]any{"cmd_beeper_mute": nil, "cmd_test_battery_start_quick": nil, "cmd_load_off": false, "set_battery_charge_low": false, "set_input_sensitivity": false}},
	} {
		o := testOptions(false)
		o.Policy = tc.policy
		d := hass.UPSDevice(o, st)
		got := map[string]any{}
		for _, e := range d.Entities {
			switch e.Component {
			case "button", "select", "number":
				got[e.Key] = e.Config["enabled_by_default"]
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: controls %v, want %v", tc.name, got, tc.want)
		}
	}
	// Before the commands are known, control keys are pending (kept).
	d := hass.UPSDevice(testOptions(false), stateFor("u", bridge.Vars{"ups.status": "OL"}, nil))
	if !d.IsPending("cmd_beeper_mute") || d.IsPending("battery_charge") {
		t.Errorf("pending %v", d.Pending)
	}
}

// TestTemplates renders every value template with Jinja (as HA does) over
// the real dumps' state payloads and over broken ones: values conform, and
// a missing or unparsable variable is None, never 0.
func TestTemplates(t *testing.T) {
	// Debian's python3-jinja2 serves /usr/bin/python3; a python3 earlier on
	// PATH (pyenv) may lack it, so try both.
	var py string
	var err error
	for _, cand := range []string{"/usr/bin/python3", "python3"} {
		if py, err = exec.LookPath(cand); err == nil {
			if err = exec.Command(py, "-c", "import jinja2").Run(); err == nil {
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 with jinja2 (Debian python3-jinja2) is needed: %v", err)
		}
		t.Skipf("python3 with jinja2 not available: %v", err)
	}
	type job struct {
		Template string `json:"template"`
		Payload  string `json:"payload"`
	}
	type check struct {
		platform, what string
		cfg            map[string]any
		wantNone       bool
	}
	var jobs []job
	var checks []check
	o := testOptions(false)
	all, states := allMessages(t, o)
	_ = all
	addJobs := func(what string, d *hass.Device, payload []byte, broken map[string]bool) {
		for _, e := range d.Entities {
			tpl, ok := e.Config["value_template"].(string)
			if !ok || e.Component == "event" {
				continue
			}
			var cfg map[string]any
			data, _ := json.Marshal(e.Config)
			_ = json.Unmarshal(data, &cfg)
			wantNone := false
			for v := range broken {
				if strings.Contains(tpl, "'"+v+"'") && !strings.Contains(tpl, "'ups.load'") {
					wantNone = true
				}
			}
			jobs = append(jobs, job{tpl, string(payload)})
			checks = append(checks, check{e.Component, what + " " + e.Key, cfg, wantNone})
		}
	}
	for _, st := range states {
		d := hass.UPSDevice(o, st)
		p, _ := json.Marshal(mqttwire.NewStatePayload(st, "test", 1, time.Now()))
		addJobs(st.UPS, d, p, nil)
		// Broken: numeric values that do not parse, and missing ones.
		bad := st.Vars.Clone()
		broken := map[string]bool{}
		i := 0
		for k := range bad {
			if bridge.IsNumeric(k) {
				if i%2 == 0 {
					bad[k] = "N/A"
				} else {
					delete(bad, k)
				}
				broken[k] = true
				i++
			}
		}
		bst := *st
		bst.Vars = bad
		p, _ = json.Marshal(mqttwire.NewStatePayload(&bst, "test", 1, time.Now()))
		addJobs(st.UPS+" (broken)", hass.UPSDevice(o, st), p, broken)
	}
	// Agent: a full state, a partial one and the Will.
	ad := hass.AgentDevice(o, hass.Agent{ID: "nas", StateTopic: "upsbridge/agent/nas/state"})
	addJobs("agent", ad, []byte(`{"agent":"nas","ts":"2026-01-02T03:04:05.000Z","status":"staging","stage":"stop_vms","next_stage":"poweroff","next_stage_in_s":42,"supplies":["ups1"],"dry_run":false}`), nil)
	addJobs("agent partial", ad, []byte(`{"agent":"nas","status":"weird"}`), map[string]bool{"": true})
	addJobs("agent will", ad, []byte(`offline`), map[string]bool{"": true})

	in, _ := json.Marshal(jobs)
	cmd := exec.Command(py, filepath.Join("testdata", "render.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("render templates: %v\n%s", err, stderr.String())
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(jobs) {
		t.Fatalf("render output: %v (%d results for %d jobs)", err, len(got), len(jobs))
	}
	for i, c := range checks {
		v := got[i]
		if strings.HasPrefix(v, "ERROR") {
			t.Errorf("%s: %s", c.what, v)
			continue
		}
		if err := hacheck.CheckState(c.platform, c.cfg, v); err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
		if c.wantNone && v != "None" && (c.cfg["unit_of_measurement"] != nil || c.platform == "number") {
			t.Errorf("%s: a missing or unparsable value rendered %q, want None", c.what, v)
		}
	}
	// Spot checks on known values.
	find := func(what string) string {
		for i, c := range checks {
			if c.what == what {
				return got[i]
			}
		}
		t.Fatalf("no rendering for %q", what)
		return ""
	}
	for what, want := range map[string]string{
		"cyberpower battery_charge":    "100",
		"cyberpower status":            "Online",
		"cyberpower power_state":       "online",
		"cyberpower mains_power":       "ON",
		"cyberpower power":             "171.0",
		"cyberpower alarms":            "No alarm",
		"apc_back_ups battery_runtime": "3877",
		"agent status":                 "staging",
		"agent next_stage_in":          "42",
		"agent armed":                  "ON",
		"agent partial status":         "None",
		"agent will stage":             "None",
		"agent will armed":             "None",
	} {
		if v := find(what); v != want {
			t.Errorf("%s = %q, want %q", what, v, want)
		}
	}
}

func TestStatusAndPowerState(t *testing.T) {
	for _, tc := range []struct {
		flags       []string
		text, state string
	}{
		{[]string{"OL", "CHRG"}, "Online Battery Charging", "online"},
		{[]string{"OB", "DISCHRG"}, "On Battery Battery Discharging", "on_battery"},
		{[]string{"OB", "LB"}, "On Battery Low Battery", "low_battery"},
		{[]string{"OL", "FSD"}, "Online Forced Shutdown", "forced_shutdown"},
		{[]string{"OL", "WAIT"}, "Online WAIT", "online"},
		{[]string{"BYPASS"}, "Bypass Active", "bypass"},
		{nil, "", "unknown"},
	} {
		if got := hass.StatusText(tc.flags); got != tc.text {
			t.Errorf("StatusText(%v) = %q, want %q", tc.flags, got, tc.text)
		}
		if got := hass.PowerState(tc.flags); got != tc.state {
			t.Errorf("PowerState(%v) = %q, want %q", tc.flags, got, tc.state)
		}
	}
}

// TestEntityIDsWithoutStutter: a UPS whose id ends in the word a key starts
// with gets entity ids that say it once (sensor.nas_ups_load), unless the
// short form is another entity's; unique_ids keep the full key.
func TestEntityIDsWithoutStutter(t *testing.T) {
	o := testOptions(false)
	// ups.realpower makes the "power" sensor, which ups.power's short form
	// would collide with.
	vars := bridge.Vars{"ups.status": "OL", "ups.load": "20", "ups.power": "300", "ups.realpower": "250", "battery.charge": "90"}
	ids := map[string]string{} // default_entity_id -> unique_id
	for _, m := range hass.Messages(o, hass.UPSDevice(o, stateFor("nas-ups", vars, nil))) {
		var c struct {
			Default string `json:"default_entity_id"`
			Unique  string `json:"unique_id"`
		}
		if err := json.Unmarshal(m.Payload, &c); err != nil {
			t.Fatal(err)
		}
		if prev, dup := ids[c.Default]; dup {
			t.Errorf("%s suggested for %s and %s", c.Default, prev, c.Unique)
		}
		ids[c.Default] = c.Unique
	}
	for id, unique := range map[string]string{
		"sensor.nas_ups_load":           "upsbridge_home_srv_ups_nas_ups_ups_load",
		"sensor.nas_ups_battery_charge": "upsbridge_home_srv_ups_nas_ups_battery_charge",
		"sensor.nas_ups_status":         "upsbridge_home_srv_ups_nas_ups_status",
	} {
		if got, ok := ids[id]; !ok || got != unique {
			t.Errorf("%s: unique_id %q (present %v), want %q", id, got, ok, unique)
		}
	}
	for id := range ids {
		if strings.Contains(id, "_ups_ups_") && id != "sensor.nas_ups_ups_power" {
			t.Errorf("stutter in %s", id)
		}
	}
	// The "power" sensor and ups.power would both be sensor.nas_ups_power:
	// ups.power keeps its full form.
	if ids["sensor.nas_ups_power"] != "upsbridge_home_srv_ups_nas_ups_power" || ids["sensor.nas_ups_ups_power"] != "upsbridge_home_srv_ups_nas_ups_ups_power" {
		t.Errorf("power sensors: %q and %q", ids["sensor.nas_ups_power"], ids["sensor.nas_ups_ups_power"])
	}
}
