package mqtt

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/hass"
)

// FuzzDiscoveryOwned feeds retained configs (anyone can publish them) to
// the scan's parser, seeded from the golden configs: it must never panic,
// and it claims only configs of this bridge's devices.
func FuzzDiscoveryOwned(f *testing.F) {
	for _, name := range []string{"cyberpower.entity", "eaton.device", "bridge.entity"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "hass", "testdata", name+".golden.json"))
		if err != nil {
			f.Fatal(err)
		}
		var entries []struct {
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(data, &entries); err != nil {
			f.Fatal(err)
		}
		for i, e := range entries {
			if i < 5 {
				f.Add([]byte(e.Payload))
			}
		}
	}
	f.Add([]byte(`{"dev":{"ids":"upsbridge_home_srv"}}`))
	f.Add([]byte(`{"device":{"identifiers":[1,2]},"cmps":{"a":null}}`))
	f.Add([]byte(`null`))
	d := NewDiscovery(DiscoveryOptions{HASS: hass.Options{DiscoveryPrefix: "homeassistant", TopicPrefix: "upsbridge", BridgeID: "home-srv"}})
	f.Fuzz(func(t *testing.T, payload []byte) {
		rc, ok := d.owned(payload)
		if ok && rc.device == "" {
			t.Fatalf("claimed a config without a device: %q", payload)
		}
	})
}

// BenchmarkDiscoveryOnConnect measures building and encoding the discovery
// of a PDU-sized device (24 outlets x 8 numeric variables: ~200 entities),
// as after every (re)connect and HA birth.
func BenchmarkDiscoveryOnConnect(b *testing.B) {
	d, clk := testDiscovery(false)
	vars := map[string]string{"ups.status": "OL"}
	for o := 1; o <= 24; o++ {
		for _, q := range []string{"current", "voltage", "realpower", "power", "current.high.warning", "current.high.critical", "voltage.low.warning", "voltage.high.warning"} {
			vars["outlet."+itoa(o)+"."+q] = "1.5"
		}
	}
	st := upsState("pdu", clk.t, vars, simInfo)
	b.ReportAllocs()
	for b.Loop() {
		if len(d.OnConnect([]*bridge.State{st})) < 190 {
			b.Fatal("too few configs")
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// fleetStates returns n UPS states with ~40 variables each, as a NUT
// source sends them.
func fleetStates(n int, at time.Time) []*bridge.State {
	out := make([]*bridge.State, n)
	for i := range out {
		vars := bridge.Vars{"ups.status": "OL", "ups.mfr": "APC", "ups.model": "Smart-UPS 1500", "ups.serial": "AS" + itoa(i)}
		for _, q := range []string{"battery.charge", "battery.runtime", "battery.voltage", "battery.voltage.nominal", "battery.charge.low",
			"battery.charge.warning", "battery.runtime.low", "battery.temperature", "battery.date", "battery.mfr.date", "battery.type",
			"input.voltage", "input.voltage.nominal", "input.frequency", "input.transfer.high", "input.transfer.low", "input.sensitivity",
			"output.voltage", "output.voltage.nominal", "output.frequency", "output.current", "ups.load", "ups.realpower.nominal",
			"ups.power.nominal", "ups.temperature", "ups.beeper.status", "ups.delay.shutdown", "ups.delay.start", "ups.timer.shutdown",
			"ups.timer.start", "ups.test.result", "ups.firmware", "device.type", "driver.name", "driver.version"} {
			vars[q] = "12"
		}
		out[i] = upsState("u"+itoa(i), at, vars, simInfo)
	}
	return out
}

// BenchmarkDiscoveryFleet derives the discovery of 1,000 UPSes once (as on
// connect), then measures a steady state of each (the per-poll work) and
// reports the live heap discovery keeps per UPS.
func BenchmarkDiscoveryFleet(b *testing.B) {
	d, clk := testDiscovery(false)
	states := fleetStates(1000, clk.t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if n := len(d.OnConnect(states)); n < 1000*40 {
		b.Fatalf("%d configs for 1000 UPSes", n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(d)
	live := float64(after.HeapAlloc-before.HeapAlloc) / 1000
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		st := *states[i%len(states)]
		st.Seq++
		clk.t = clk.t.Add(time.Millisecond)
		st.Time = clk.t
		if len(d.OnState(&st)) > 1 { // the energy counter at most
			b.Fatal("steady state re-published configs")
		}
		i++
	}
	b.ReportMetric(live, "live-B/ups")
}

// A steady state costs no derivation: a handful of allocations (the
// energy counter's JSON), not the hundreds a derivation takes.
func TestDiscoverySteadyStateIsCheap(t *testing.T) {
	d, clk := testDiscovery(false)
	states := fleetStates(1, clk.t)
	d.OnConnect(states)
	st := *states[0]
	allocs := testing.AllocsPerRun(100, func() {
		clk.t = clk.t.Add(time.Second)
		st.Time = clk.t
		d.OnState(&st)
	})
	if allocs > 30 {
		t.Errorf("steady OnState: %.0f allocations, want a handful (no derivation)", allocs)
	}
	// A new variable is noticed at once.
	st.Vars = maps.Clone(st.Vars)
	st.Vars["ambient.temperature"] = "21"
	got := topics(d.OnState(&st))
	if got["homeassistant/sensor/upsbridge_b1_ups_u0_ambient_temperature/config"] == "" {
		t.Errorf("new variable: no config published: %v", got)
	}
}
