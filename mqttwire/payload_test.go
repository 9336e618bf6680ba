package mqttwire

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run go test -update)", path, err)
	}
	if string(want) != string(got) {
		t.Fatalf("%s differs\n got %s\nwant %s", path, got, want)
	}
}

func TestStatePayloadGolden(t *testing.T) {
	st := &bridge.State{
		UPS: "nas-ups", Time: time.Date(2026, 3, 1, 12, 0, 0, 123e6, time.UTC), Seq: 7,
		Status: bridge.ParseStatus("OB DISCHRG LB"), Critical: true, Comm: true,
		Vars: bridge.Vars{"ups.status": "OB DISCHRG LB", "battery.charge": "0055.40", "battery.runtime": "n/a", "ups.model": "1500"},
	}
	pub := st.Time.Add(2 * time.Second)
	p := NewStatePayload(st, "rack", 1772366400000, pub)
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "state.golden.json", append(data, '\n'))
	got, ts, err := DecodeState(data)
	if err != nil || got.UPS != "nas-ups" || got.Bridge != "rack" || !ts.Equal(pub) || got.Order() != (Order{1772366400000, 7}) || !got.CommOK {
		t.Fatalf("DecodeState = %+v %v %v", got, ts, err)
	}
	// A state of a lost UPS says so, with the old reading's time.
	st.Comm = false
	if p := NewStatePayload(st, "rack", 1, pub); p.CommOK || p.ReadingTS != "2026-03-01T12:00:00.123Z" || p.TS != "2026-03-01T12:00:02.123Z" {
		t.Fatalf("lost UPS payload = %+v", p)
	}
}

func TestDecodeStateRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ``},
		{"array", `[]`},
		{"bad id", `{"ups":"../x","ts":"2026-03-01T12:00:00Z"}`},
		{"bad bridge", `{"ups":"a","bridge":"A B","ts":"2026-03-01T12:00:00Z"}`},
		{"bad ts", `{"ups":"a","ts":"yesterday"}`},
		{"trailing", `{"ups":"a","ts":"2026-03-01T12:00:00Z"} {}`},
		{"negative epoch", `{"ups":"a","epoch":-1,"ts":"2026-03-01T12:00:00Z"}`},
	} {
		if _, _, err := DecodeState([]byte(tc.in)); err == nil {
			t.Errorf("%s: accepted %s", tc.name, tc.in)
		}
	}
	big := make([]byte, MaxPayload+1)
	big[0] = '{'
	if _, _, err := DecodeState(big); err == nil {
		t.Error("accepted an oversized payload")
	}
}

func TestOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b Order
		want bool
	}{
		{Order{2, 0}, Order{1, 99}, true},
		{Order{1, 2}, Order{1, 1}, true},
		{Order{1, 1}, Order{1, 1}, false},
		{Order{1, 5}, Order{2, 0}, false},
	} {
		if got := tc.a.After(tc.b); got != tc.want {
			t.Errorf("%v.After(%v) = %v", tc.a, tc.b, got)
		}
	}
}

func TestTopicsRoundTrip(t *testing.T) {
	tp := Topics{Prefix: "upsbridge"}
	for _, tc := range []struct {
		name string
		kind Kind
		id   string
	}{
		{tp.BridgeAvailability("nas"), KindBridgeAvailability, "nas"},
		{tp.HASSScan("nas"), KindHASSScan, "nas"},
		{tp.UPSAvailability("u1"), KindUPSAvailability, "u1"},
		{tp.State("u1"), KindState, "u1"},
		{tp.Event("u1"), KindEvent, "u1"},
		{tp.Energy("u1"), KindEnergy, "u1"},
		{tp.Command("u1"), KindCommand, "u1"},
		{tp.Set("u1"), KindSet, "u1"},
		{tp.CommandResult("u1"), KindCommandResult, "u1"},
		{tp.AgentState("web01"), KindAgentState, "web01"},
		{tp.AgentEvent("web01"), KindAgentEvent, "web01"},
	} {
		got := tp.Parse(tc.name)
		if got.Kind != tc.kind || got.ID != tc.id {
			t.Errorf("Parse(%q) = %v %q, want %v %q", tc.name, got.Kind, got.ID, tc.kind, tc.id)
		}
	}
	for _, bad := range []string{"", "upsbridge", "upsbridgeX/ups/a/state", "upsbridge/ups/A/state", "upsbridge/ups/a/state/x",
		"upsbridge/ups//state", "other/ups/a/state", "upsbridge/agent/a/command", "upsbridge/ups/+/state"} {
		if got := tp.Parse(bad); got.Kind != KindNone {
			t.Errorf("Parse(%q) = %v, want none", bad, got.Kind)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"ups":"a","bridge":"b","epoch":1,"seq":1,"ts":"2026-03-01T12:00:00.123Z","comm_ok":true,"status":"OL","flags":["OL"],"vars":{}}`))
	f.Add([]byte(`{"ups":"../x","ts":"x"}`))
	f.Add([]byte(`[]`))
	if data, err := os.ReadFile(filepath.Join("testdata", "state.golden.json")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := DecodeState(data)
		if err == nil && (!ValidID(p.UPS) || !IDPattern.MatchString(p.UPS)) {
			t.Fatalf("accepted bad ups id %q", p.UPS)
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	tp := Topics{Prefix: "upsbridge"}
	for _, s := range []string{tp.State("a"), tp.AgentState("b"), tp.CommandResult("c"), tp.HASSScan("d"), "upsbridge/ups/a/b/c", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := tp.Parse(name)
		if got.Kind == KindNone {
			return
		}
		if !IDPattern.MatchString(got.ID) {
			t.Fatalf("Parse(%q) accepted id %q", name, got.ID)
		}
	})
}

func TestDecodeAgentState(t *testing.T) {
	if _, off, err := DecodeAgentState([]byte("offline")); !off || err != nil {
		t.Fatalf("offline: %v %v", off, err)
	}
	if _, off, err := DecodeAgentState(nil); !off || err != nil {
		t.Fatalf("empty: %v %v", off, err)
	}
	st, off, err := DecodeAgentState([]byte(`{"agent":"web01","status":"powering_off","supplies":[{"ups":"u","power_value":1}]}`))
	if off || err != nil || st.Status != AgentPoweringOff || len(st.Supplies) != 1 {
		t.Fatalf("state: %+v %v %v", st, off, err)
	}
	if _, _, err := DecodeAgentState([]byte(`{"agent":"Web 01"}`)); err == nil {
		t.Fatal("accepted a bad agent id")
	}
}
