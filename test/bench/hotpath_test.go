package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// The per-message work of the fan-out (scenario 2): every agent decodes each
// state the bridge publishes and runs its policy on it, and every agent
// re-evaluates its policy once a second. With 500 agents in one process
// these costs are multiplied by 500.
//
//	go test -run '^$' -bench . -benchmem ./test/bench

// statePayload is a state as the bridge publishes it for a UPS on battery
// (the shape of a real usbhid-ups dump, trimmed).
func statePayload(seq int, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"ups":"ups1","ts":%q,"seq":%d,"status":"OB DISCHRG","flags":["OB","DISCHRG"],"on_battery":true,"low_battery":false,"critical":false,`+
		`"vars":{"battery.charge":90,"battery.charge.low":10,"battery.runtime":2500,"battery.type":"PbAc","device.mfr":"American Power Conversion","device.model":"Back-UPS ES 700G",`+
		`"device.serial":"5B1234A12345","device.type":"ups","input.voltage":230,"input.voltage.nominal":230,"ups.beeper.status":"enabled","ups.load":20,"ups.mfr":"American Power Conversion",`+
		`"ups.model":"Back-UPS ES 700G","ups.status":"OB DISCHRG","ups.timer.reboot":0,"ups.timer.shutdown":-1}}`, bridge.FormatTime(ts), seq)
}

func newBenchPolicy(now time.Time) *policy.Policy {
	return policy.New(policy.Config{
		Supplies:    []policy.Supply{{UPS: "ups1", Power: 1}},
		MinSupplies: 1, DeadTime: 15 * time.Second, MaxStateAge: 90 * time.Second, OffDuration: 30 * time.Second,
		Stages: []policy.Stage{{Name: "shed", OnBatteryFor: time.Hour, Run: []string{"true"}}, {Name: "poweroff", Final: true}},
	}, policy.Now{Wall: now}, policy.Progress{})
}

// parseState decodes a state payload as the intake does before its
// order and signature checks.
func parseState(data []byte) (mqttwire.StatePayload, time.Time, error) {
	return mqttwire.DecodeState(data)
}

// BenchmarkAgentStateMessage is one state message at one agent: decode,
// check, turn into a reading, observe, evaluate, snapshot (what the agent
// publishes when its status changes).
func BenchmarkAgentStateMessage(b *testing.B) {
	start := time.Now()
	pol := newBenchPolicy(start)
	payloads := make([][]byte, 64)
	for i := range payloads {
		payloads[i] = statePayload(i+1, start.Add(time.Duration(i)*time.Millisecond))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Seq and ts must advance, or the policy ignores the state as a
		// re-delivery; wrap with fresh timestamps.
		if i%len(payloads) == 0 && i > 0 {
			b.StopTimer()
			base := start.Add(time.Duration(i) * time.Millisecond)
			for j := range payloads {
				payloads[j] = statePayload(i+j+1, base.Add(time.Duration(j)*time.Millisecond))
			}
			b.StartTimer()
		}
		p, ts, err := parseState(payloads[i%len(payloads)])
		if err != nil {
			b.Fatal(err)
		}
		mono := ts.Sub(start) + time.Millisecond
		pol.Observe(news.News{Kind: news.KindState, UPS: "ups1", Live: true, At: ts, Reading: news.ReadingFrom(p, ts)}, mono)
		pol.Evaluate(policy.Now{Mono: mono, Wall: ts})
		_ = pol.Snapshot(mono)
	}
}

// BenchmarkAgentTick is an agent's once-a-second policy step with nothing
// new: evaluate and snapshot.
func BenchmarkAgentTick(b *testing.B) {
	start := time.Now()
	pol := newBenchPolicy(start)
	p, ts, err := parseState(statePayload(1, start))
	if err != nil {
		b.Fatal(err)
	}
	pol.Observe(news.News{Kind: news.KindState, UPS: "ups1", Live: true, At: start, Reading: news.ReadingFrom(p, ts)}, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		mono := time.Duration(i%1000) * time.Millisecond
		pol.Evaluate(policy.Now{Mono: mono, Wall: start.Add(mono)})
		_ = pol.Snapshot(mono)
	}
}
