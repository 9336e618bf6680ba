package mqtt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
	"github.com/upsbridge/upsbridge/test/datadir"
)

// realStates builds state payloads from the real upsc dumps of the
// repository's test data (testdata/hid/*.upsc.txt).
func realStates(t testing.TB) [][]byte {
	files, _ := filepath.Glob(datadir.HID("*.upsc.txt"))
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		vars := bridge.Vars{}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
				vars[k] = v
			}
		}
		st := &bridge.State{UPS: "ups", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Seq: 3, Status: bridge.ParseStatus(vars["ups.status"]), Vars: vars, Comm: true}
		p, _ := json.Marshal(mqttwire.NewStatePayload(st, "test", 1, time.Now()))
		out = append(out, p)
	}
	return out
}

func FuzzParseState(f *testing.F) {
	for _, s := range realStates(f) {
		f.Add(s)
	}
	f.Add([]byte(`{"ups":"ups","ts":"2026-01-01T00:00:00Z","seq":1,"status":"OB LB FSD","flags":["OB","LB","FSD"],"vars":{"battery.charge":1e309,"battery.runtime":"-5"}}`))
	f.Add([]byte(`{"ups":"ups","ts":"2026-01-01T00:00:00Z","flags":[1,2]}`))
	f.Add([]byte(`{"ups":"UPS/../x","ts":"x"}`))
	f.Add([]byte(`{"ups":"ups","ts":"2026-01-01T00:00:00Z"} trailing`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, ts, err := ParseState("ups", data)
		if err != nil {
			return
		}
		if p.UPS != "ups" || ts.IsZero() {
			t.Fatalf("accepted a payload with ups %q ts %v", p.UPS, ts)
		}
		r := ReadingFrom(p, ts)
		if r.HasCharge && (r.Charge < 0 || r.Charge > 100) {
			t.Fatalf("charge %v accepted", r.Charge)
		}
		if r.HasRuntime && r.Runtime < 0 {
			t.Fatalf("runtime %v accepted", r.Runtime)
		}
	})
}

func TestParseStateReal(t *testing.T) {
	states := realStates(t)
	if len(states) == 0 {
		t.Fatalf("no upsc dumps found in %s", datadir.HID())
	}
	for _, s := range states {
		p, ts, err := ParseState("ups", s)
		if err != nil {
			t.Fatalf("real state rejected: %v\n%s", err, s)
		}
		if r := ReadingFrom(p, ts); !r.HasCharge {
			t.Errorf("no battery.charge from %s", s)
		}
	}
	if _, _, err := ParseState("other", states[0]); err == nil {
		t.Fatal("a state on another UPS's topic was accepted")
	}
}
