package mqttwire

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeEvent: no event payload panics, and an accepted one has a
// valid UPS id and a type.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"ups":"nas_ups","bridge":"b","type":"ONBATT","severity":"warning","ts":"2026-03-01T12:00:00Z","message":"on battery"}`))
	f.Add([]byte(`{"ups":"../x","type":""}`))
	f.Add([]byte(`{"ups":"a","type":"X","extra":1}`))
	if data, err := os.ReadFile(filepath.Join("testdata", "event.golden.json")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeEvent(data)
		if err == nil && (!ValidID(p.UPS) || p.Type == "") {
			t.Fatalf("accepted ups %q type %q", p.UPS, p.Type)
		}
	})
}

// FuzzDecodeAgent: agent news (state and event payloads) never panic, and
// an accepted one names a valid agent.
func FuzzDecodeAgent(f *testing.F) {
	f.Add([]byte(`{"agent":"web1","host":"web1","stage":"idle","ts":"2026-03-01T12:00:00Z"}`))
	f.Add([]byte("offline"))
	f.Add([]byte(`{"agent":"web1","type":"STAGE","stage":"shutdown","message":"m","dry_run":true}`))
	f.Add([]byte(`{"agent":"Web 1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if st, off, err := DecodeAgentState(data); err == nil && !off && !ValidID(st.Agent) {
			t.Fatalf("accepted agent state of %q", st.Agent)
		}
		if ev, err := DecodeAgentEvent(data); err == nil && (!ValidID(ev.Agent) || ev.Type == "") {
			t.Fatalf("accepted agent event of %q type %q", ev.Agent, ev.Type)
		}
	})
}
