package agentrelay

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// FuzzRelay feeds anything published on an agent's event topic to the
// relay, seeded from real agent events: it never panics, and what it hands
// to the notifiers is a host event of the topic's agent with one short line
// of printable text.
func FuzzRelay(f *testing.F) {
	for _, typ := range []string{"STAGE", "SHUTDOWN", "POWERING_OFF", "OUTAGE_START"} {
		f.Add("web01", payload("web01", typ, "Host web01 started stage shed-load: on battery for 2m0s"))
	}
	f.Add("web01", []byte(`{"agent":"web01","type":"UNDO","message":"\u0000\n\u202e","dry_run":true,"ups":"Bad UPS"}`))
	f.Add("web01", []byte(`{"agent":"db01","type":"SHUTDOWN"}`))
	f.Fuzz(func(t *testing.T, id string, data []byte) {
		var got []bridge.Event
		r := New(Options{TopicPrefix: "ub", Emit: func(e bridge.Event) { got = append(got, e) }})
		r.OnReceive("ub/agent/"+id+"/event", data, false)
		for _, e := range got {
			if e.Host != id || !mqttwire.ValidID(e.Host) || !bridge.HostEvent(e.Type) {
				t.Fatalf("relayed %+v from topic id %q", e, id)
			}
			if e.UPS != "" && !mqttwire.ValidID(e.UPS) {
				t.Fatalf("bad UPS id relayed: %q", e.UPS)
			}
			if len(e.Message) > maxMessage+len("[dry run] ")+len("…") || strings.ContainsFunc(e.Message, func(r rune) bool { return !unicode.IsPrint(r) }) {
				t.Fatalf("message not cleaned: %q", e.Message)
			}
			if !utf8.ValidString(e.Message) && utf8.ValidString(string(data)) {
				t.Fatalf("message cut inside a character: %q", e.Message)
			}
		}
	})
}
