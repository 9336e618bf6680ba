package intake

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// realStates builds signed state payloads of ups1 from the real upsc dumps
// and some .dev files of NUT's DDL in the shared test data beside the
// repository (../shared/testdata),
// when it is there; the committed seed corpus (testdata/fuzz) holds some.
func realStates(t testing.TB) [][]byte {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared", "testdata", "hid")
	files, _ := filepath.Glob(filepath.Join(dir, "*.upsc.txt"))
	// A few devices of NUT's DDL (every 60th), for their variety.
	ddl, _ := filepath.Glob(filepath.Join(dir, "..", "nut-ddl", "*", "*.dev"))
	for i := 0; i < len(ddl); i += 60 {
		files = append(files, ddl[i])
	}
	var out [][]byte
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		vars := bridge.Vars{}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ": "); ok && !strings.HasPrefix(k, "#") {
				vars[k] = v
			}
		}
		s := &bridge.State{UPS: "ups1", Time: t0, Seq: uint64(i + 1), Status: bridge.ParseStatus(vars["ups.status"]), Vars: vars, Comm: true}
		out = append(out, enc(t, mqttwire.NewStatePayload(s, "b1", epoch1, t0), testPriv))
	}
	return out
}

var fuzzTopics = []string{stateTopic, "ub/ups/ups1/availability", "ub/bridge/b1/availability", "ub/ups/ups2/state", "ub/x"}

// FuzzHandle feeds arbitrary payloads on the intake's topics, to an intake
// that requires signatures and to one that does not: nothing panics, what
// is accepted is consistent with its topic, and with require_signed nothing
// unsigned is accepted.
func FuzzHandle(f *testing.F) {
	for _, s := range realStates(f) {
		f.Add(uint8(0), s, false)
		f.Add(uint8(0), s, true)
	}
	f.Add(uint8(0), []byte(`{"ups":"ups1","bridge":"b1","epoch":1,"seq":1,"ts":"2026-01-01T00:00:00Z","status":"OB LB FSD","flags":["OB","LB","FSD"],"vars":{"battery.charge":1e309,"battery.runtime":"-5"}}`), false)
	f.Add(uint8(0), []byte(`{"ups":"ups1","bridge":"b1","ts":"2026-01-01T00:00:00Z","flags":[1,2],"sig":"x"}`), false)
	f.Add(uint8(1), []byte("offline"), true)
	f.Add(uint8(2), []byte("online"), false)
	f.Add(uint8(4), []byte("{}"), false)
	f.Fuzz(func(t *testing.T, ti uint8, payload []byte, retained bool) {
		topic := fuzzTopics[int(ti)%len(fuzzTopics)]
		// The early replay check reads what the full decode reads from
		// any payload the encoder makes.
		if p, _, err := mqttwire.DecodeState(payload); err == nil {
			canon, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			b, o, ok := quickOrder(canon)
			if !ok || string(b) != p.Bridge && p.Bridge != "" || o != p.Order() {
				if p.Bridge != "" || ok {
					t.Fatalf("quickOrder(%s) = %q %+v %v, want %q %+v", canon, b, o, ok, p.Bridge, p.Order())
				}
			}
		}
		for _, required := range []bool{false, true} {
			o := Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1", Bridge: "b1"}}, RequireSigned: required,
				Verifier: signing.NewVerifier(testPub), MaxStateAge: time.Hour, Now: func() time.Time { return t0 }}
			in, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			in.Handle(topic, payload, retained)
			in.Handle(topic, payload, retained) // the same again: at most history, never a second live state
			ns := in.Take(nil)
			lives := 0
			for _, n := range ns {
				switch n.Kind {
				case news.KindState:
					if topic != stateTopic || n.UPS != "ups1" || n.Reading.Bridge != "b1" {
						t.Fatalf("state news %+v from topic %s", n, topic)
					}
					if required && !n.Reading.Signed {
						t.Fatalf("unsigned state accepted with require_signed: %+v", n)
					}
					if n.Live {
						lives++
					}
					r := n.Reading
					if r.HasCharge && (r.Charge < 0 || r.Charge > 100) || r.HasRuntime && r.Runtime < 0 {
						t.Fatalf("reading out of range: %+v", r)
					}
				case news.KindUPSAvailability, news.KindBridgeAvailability:
					if required {
						t.Fatalf("availability accepted with require_signed: %+v", n)
					}
				}
			}
			if lives > 1 {
				t.Fatalf("one payload made %d live states", lives)
			}
			c := in.Counts()
			if c.Total() != 2 {
				t.Fatalf("counted %d messages, want 2", c.Total())
			}
		}
	})
}
