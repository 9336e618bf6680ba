package primary

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/mqttwire"
)

// FuzzAgentState feeds anything published on an agent's state topic to
// the primary, seeded from real agent states: it never panics, tracks at
// most MaxAgents agents, and only ones whose payload names the topic's id.
func FuzzAgentState(f *testing.F) {
	for _, st := range []string{mqttwire.AgentIdle, mqttwire.AgentShuttingDown, mqttwire.AgentPoweringOff} {
		b, _ := json.Marshal(mqttwire.AgentState{Agent: "web01", TS: "2026-03-01T12:00:02.123Z", Status: st, Protected: true,
			Supplies: []mqttwire.SupplyStatus{{UPS: "ups1", Bridge: "b1", PowerValue: 1, Status: "OB LB", OnBattery: true, Critical: true, Current: true}}})
		f.Add("web01", b)
	}
	f.Add("web01", []byte(mqttwire.Offline))
	f.Add("web01", []byte(`{"agent":"web01","supplies":[{"ups":"ups1","power_value":-9}]}`))
	f.Add("x/y", []byte(`{}`))
	f.Fuzz(func(t *testing.T, id string, payload []byte) {
		p := New(Options{Bridge: &fakeBridge{}, TopicPrefix: "ub", MaxAgents: 2})
		p.OnReceive("ub/agent/"+id+"/state", payload, false)
		p.OnReceive("ub/agent/other/state", payload, true)
		if len(p.agents) > 2 {
			t.Fatalf("%d agents tracked", len(p.agents))
		}
		for tracked, a := range p.agents {
			if !mqttwire.ValidID(tracked) {
				t.Fatalf("agent %q tracked under a bad id", tracked)
			}
			v := judge(a, time.Now(), time.Now(), time.Second)
			_ = p.feeds(a, "ups1")
			_ = v
		}
	})
}
