package mqtt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

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
