package policy

import (
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/mqttwire"
)

func cfg() Config {
	return Config{Supplies: []Supply{{UPS: "ups1", Power: 1}}, MinSupplies: 1, DeadTime: 15 * time.Second, MaxStateAge: 90 * time.Second,
		OffDuration: 30 * time.Second, Stages: []Stage{
			{Name: "shed", OnBatteryFor: 2 * time.Minute, Run: []string{"x"}},
			{Name: "off", OnBatteryFor: 15 * time.Minute, Final: true},
		}}
}

func state(status string, live bool) news.News {
	return news.News{Kind: news.KindState, UPS: "ups1", Live: live,
		Reading: news.Reading{Bridge: "nas", CommOK: true, Status: status, Flags: bridge.ParseStatus(status).Flags}}
}

func at(d time.Duration) Now {
	return Now{Mono: d, Wall: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(d)}
}

// TestSnapshotAndDeadlines: the status, the countdown and the next instant
// the policy must be evaluated at follow one outage.
func TestSnapshotAndDeadlines(t *testing.T) {
	p := New(cfg(), at(time.Hour), Progress{})
	if sn := p.Snapshot(time.Hour); sn.Status != mqttwire.AgentIdle || sn.Protected {
		t.Fatalf("at start: %+v", sn)
	}
	p.Observe(state("OB DISCHRG", true), time.Hour)
	if acts := p.Evaluate(at(time.Hour)); len(acts) != 1 || acts[0].Kind != ActOutageStart {
		t.Fatalf("OB: %+v", acts)
	}
	sn := p.Snapshot(time.Hour + 10*time.Second)
	if sn.Status != mqttwire.AgentOnBattery || sn.NextStage != "shed" || sn.NextStageIn == nil || *sn.NextStageIn != 110*time.Second || !sn.Protected {
		t.Fatalf("snapshot %+v", sn)
	}
	if len(sn.Supplies) != 1 || !sn.Supplies[0].OnBattery || sn.Supplies[0].Critical || !sn.Supplies[0].Current || sn.Supplies[0].Bridge != "nas" {
		t.Fatalf("supplies %+v", sn.Supplies)
	}
	// Next: dead time just after the last state (15 s), before the stage.
	if d, ok := p.NextDeadline(time.Hour); !ok || d != time.Hour+15*time.Second+1 {
		t.Fatalf("next deadline %s %v, want dead time", d-time.Hour, ok)
	}
	if acts := p.Evaluate(at(time.Hour + 15*time.Second + 1)); len(acts) != 1 || acts[0].Kind != ActPoweroff {
		t.Fatalf("after dead time: %+v", acts)
	}
	if sn := p.Snapshot(time.Hour + 16*time.Second); sn.Status != mqttwire.AgentShuttingDown {
		t.Fatalf("status %q", sn.Status)
	}
	p.PoweringOff(at(time.Hour + 21*time.Second))
	if pr, changed := p.TakeProgress(); !changed || !pr.PoweringOff || p.Snapshot(time.Hour+22*time.Second).Status != mqttwire.AgentPoweringOff {
		t.Fatalf("powering off: %+v %v", pr, changed)
	}
}

// TestHistoryOnly: retained history is shown, leaves the host unprotected
// and starts nothing.
func TestHistoryOnly(t *testing.T) {
	p := New(cfg(), at(0), Progress{})
	p.Observe(state("OB LB FSD", false), 0)
	for _, d := range []time.Duration{0, time.Minute, time.Hour} {
		for _, a := range p.Evaluate(at(d)) {
			if a.Kind != ActWarn {
				t.Fatalf("history acted on at %s: %+v", d, a)
			}
		}
	}
	sn := p.Snapshot(time.Hour)
	if sn.Status != mqttwire.AgentIdle || sn.Protected || sn.Supplies[0].Status != "OB LB FSD" || sn.Supplies[0].Critical {
		t.Fatalf("snapshot %+v", sn)
	}
}

// TestProtectedReasons: each way of being unprotected says why.
func TestProtectedReasons(t *testing.T) {
	lost := func(n news.News) news.News { n.Reading.CommOK = false; return n }
	tests := []struct {
		name string
		feed []news.News
		at   time.Duration
		want string
	}{
		{"nothing", nil, time.Minute, "ups ups1: no live state since start"},
		{"history only", []news.News{state("OL", false)}, time.Minute, "ups ups1: no live state since start"},
		{"bridge never reached the UPS", []news.News{lost(state("OL", true))}, time.Minute, "ups ups1: bridge nas has not reached the UPS since start (comm_ok false)"},
		{"fresh", []news.News{state("OL", true)}, 90 * time.Second, ""},
		{"silent", []news.News{state("OL", true)}, 91 * time.Second, "ups ups1: no live state for more than max_state_age 1m30s"},
		{"bridge lost the UPS", []news.News{state("OL", true), lost(state("OL", true))}, 91 * time.Second, "ups ups1: bridge nas has lost the UPS (comm_ok false) for more than max_state_age 1m30s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(cfg(), at(0), Progress{})
			for _, n := range tc.feed {
				p.Observe(n, 0)
			}
			ok, why := p.Protected(tc.at)
			if ok != (tc.want == "") || why != tc.want {
				t.Fatalf("protected %v %q, want %q", ok, why, tc.want)
			}
		})
	}
}
