package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// std is the executor's log of a full outage under stdStages: each stage
// at its on_battery_for, the power off after final_delay.
var std = []string{"run:stop-plex@2m0s", "run:stop-vm@5m0s", "run:sync-disks@15m0s", "POWEROFF(logind)@15m5s"}

// TestPolicyRules checks the staged policy itself: order, undo, once per
// outage, conditions.
func TestPolicyRules(t *testing.T) {
	onBatt := func(charge string) func(time.Duration) news.News { return const_(ob("ups1", "charge="+charge)) }
	mains := const_(ol("ups1"))
	for _, sc := range []script{
		{name: "steady mains: nothing", steps: every(0, 5*time.Minute, 30*time.Second, mains), until: 5 * time.Minute},
		{name: "stages fire in order at their times, power off after final_delay",
			steps: every(0, 20*time.Minute, 5*time.Second, onBatt("90")), until: 20 * time.Minute, want: std},
		{name: "mains returns: pending cancelled, undo in reverse",
			steps: cat(every(0, 6*time.Minute, 5*time.Second, onBatt("90")), every(6*time.Minute, 30*time.Minute, 5*time.Second, mains)),
			until: 30 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:stop-vm@5m0s", "run:start-vm@6m0s", "run:start-plex@6m0s"}},
		{name: "each stage once per outage, again in the next outage",
			steps: cat(every(0, 3*time.Minute, 5*time.Second, onBatt("90")),
				every(3*time.Minute, 4*time.Minute, 5*time.Second, mains),
				every(4*time.Minute, 6*time.Minute+30*time.Second, 5*time.Second, onBatt("90")),
				every(6*time.Minute+30*time.Second, 8*time.Minute, 5*time.Second, mains)),
			until: 8 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:start-plex@3m0s", "run:stop-plex@6m0s", "run:start-plex@6m30s"}},
		{name: "charge condition fires earlier stages first, in order",
			steps: cat(every(0, time.Minute, 5*time.Second, onBatt("90")), every(time.Minute, 3*time.Minute, 5*time.Second, onBatt("40"))),
			until: 90 * time.Second, want: []string{"run:stop-plex@1m0s", "run:stop-vm@1m0s"}},
		{name: "OB LB while calibrating is not critical",
			steps: every(0, time.Minute, 5*time.Second, const_(ob("ups1", "LB", "CAL", "charge=90"))), until: time.Minute},
		{name: "the final stage is not cancelled by mains returning",
			steps: cat([]step{at(0, ob("ups1", "LB"))}, every(2*time.Second, time.Minute, 2*time.Second, mains)),
			until: time.Minute, want: []string{"run:sync-disks@0s", "POWEROFF(logind)@5s"}},
		{name: "power value 0 monitors only",
			cfg:   policyCfg(policy.Supply{UPS: "ups1", Power: 1}, policy.Supply{UPS: "mon", Power: 0}),
			steps: every(0, time.Minute, 5*time.Second, func(time.Duration) news.News { return ob("mon", "LB", "FSD") }),
			until: time.Minute},
		{name: "a failing stage command does not block the final stage",
			cfg: func() policy.Config {
				c := policyCfg()
				c.Stages = []policy.Stage{{Name: "bad", OnBatteryFor: time.Minute, Run: []string{"failing"}}, {Name: "off", OnBatteryFor: 2 * time.Minute, Final: true}}
				return c
			}(),
			steps: every(0, 3*time.Minute, 5*time.Second, onBatt("90")), until: 3 * time.Minute,
			want: []string{"run:failing@1m0s", "POWEROFF(logind)@2m5s"}},
	} {
		t.Run(sc.name, sc.run)
	}
}

// TestFaultMatrix is one case per cell of the fault matrix that the policy
// decides. Each asserts what ran and when: the power off at T exactly, or
// never.
func TestFaultMatrix(t *testing.T) {
	mains := const_(ol("ups1"))
	onBatt := const_(ob("ups1", "charge=90"))
	for _, sc := range []script{
		{name: "blip shorter than dead time",
			steps: cat(every(0, time.Minute, 5*time.Second, mains), every(time.Minute, 70*time.Second, 2*time.Second, onBatt),
				every(70*time.Second, 10*time.Minute, 5*time.Second, mains)),
			until: 10 * time.Minute,
			after: func(t *testing.T, r *run) {
				if got := r.pub.eventTypes(); strings.Join(got, ",") != "OUTAGE_START,OUTAGE_END" {
					t.Errorf("events %v, want OUTAGE_START,OUTAGE_END", got)
				}
			}},
		{name: "broker blip on battery shorter than dead time",
			steps: cat(every(0, 30*time.Second, 5*time.Second, onBatt),
				[]step{at(27*time.Second, conn(false)), at(38*time.Second, conn(true))},
				every(39*time.Second, 100*time.Second, 5*time.Second, onBatt)),
			until: 100 * time.Second},
		{name: "OB LB: final stage at once, power off after final_delay",
			steps: cat(every(0, 30*time.Second, 5*time.Second, onBatt), []step{at(30*time.Second, ob("ups1", "LB"))}),
			until: time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(logind)@35s"}},
		{name: "FSD relayed from the primary, on mains",
			steps: []step{at(time.Second, ol("ups1", "FSD"))}, until: time.Minute,
			want: []string{"run:sync-disks@1s", "POWEROFF(logind)@6s"}},
		{name: "FSD latch published after the bridge lost the UPS (comm_ok false)",
			steps: cat(every(0, 20*time.Second, 5*time.Second, onBatt), []step{at(20*time.Second, commLost(ob("ups1", "LB", "FSD")))}),
			until: time.Minute, want: []string{"run:sync-disks@20s", "POWEROFF(logind)@25s"}},
		{name: "the bridge's critical verdict counts",
			steps: []step{at(3*time.Second, func() news.News { n := ob("ups1"); n.Reading.Critical = true; return n }())},
			until: time.Minute, want: []string{"run:sync-disks@3s", "POWEROFF(logind)@8s"}},
		{name: "broker down on mains: warn only, never power off",
			steps: cat(every(0, time.Minute, 5*time.Second, mains), []step{at(time.Minute, conn(false))}),
			until: 30 * time.Minute},
		{name: "broker down on battery: dead time from the last live good state",
			// The last state arrives at 15 s; the loss is seen at 18 s and
			// does not lengthen dead time: critical just after 30 s.
			steps: cat(every(0, 20*time.Second, 5*time.Second, onBatt), []step{at(18*time.Second, conn(false))}),
			until: time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(logind)@35s"}},
		{name: "bridge killed on battery: its Will neither shortens nor lengthens dead time",
			steps: cat(every(0, 20*time.Second, 5*time.Second, onBatt),
				[]step{at(16*time.Second, bridgeAvail("nas", false, true), upsAvail("ups1", false, true))}),
			until: time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(logind)@35s"}},
		{name: "bridge killed on mains, then an outage nobody reports: hold, never power off",
			steps: cat(every(0, time.Minute, 5*time.Second, mains), []step{at(62*time.Second, bridgeAvail("nas", false, true), upsAvail("ups1", false, true))}),
			until: 2 * time.Hour},
		{name: "comm_ok false starts dead time, although states keep arriving",
			steps: cat(every(0, 20*time.Second, 5*time.Second, onBatt), every(20*time.Second, 2*time.Minute, 5*time.Second, const_(commLost(ob("ups1", "charge=90"))))),
			until: 2 * time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(logind)@35s"}},
		{name: "comm_ok false on mains: warn only",
			steps: cat(every(0, 20*time.Second, 5*time.Second, mains), every(20*time.Second, 10*time.Minute, 5*time.Second, const_(commLost(ol("ups1"))))),
			until: 10 * time.Minute},
		{name: "retained FSD from a dead bridge after mains returned: history never powers off",
			steps: []step{at(0, history(ol("ups1", "FSD")), history(commLost(ob("ups1", "LB", "FSD"))), bridgeAvail("nas", false, false))},
			until: 30 * time.Minute,
			after: func(t *testing.T, r *run) {
				st := r.pub.last()
				if st.Status != mqttwire.AgentIdle || st.Protected || len(st.Supplies) != 1 || st.Supplies[0].Status == "" || st.Supplies[0].Current {
					t.Errorf("history must be shown, not acted on: %+v", st)
				}
			}},
		{name: "forged unsigned availability changes nothing",
			// Availability is informational: a retained offline at start
			// and a live one mid-outage change no stage's time.
			steps: cat([]step{at(0, upsAvail("ups1", false, false), bridgeAvail("nas", false, false))},
				every(0, time.Minute, 5*time.Second, mains),
				[]step{at(90*time.Second, upsAvail("ups1", false, true), bridgeAvail("nas", false, true))},
				every(time.Minute, 20*time.Minute, 5*time.Second, onBatt)),
			until: 20 * time.Minute,
			want:  []string{"run:stop-plex@3m0s", "run:stop-vm@6m0s", "run:sync-disks@16m0s", "POWEROFF(logind)@16m5s"}},
		{name: "states dated ten minutes ahead and behind: ts is ignored",
			steps: cat(every(0, 10*time.Minute, 5*time.Second, func(at time.Duration) news.News {
				if (at/(5*time.Second))%2 == 0 {
					return dated(ob("ups1", "charge=90"), 10*time.Minute)
				}
				return dated(ob("ups1", "charge=90"), -10*time.Minute)
			}), every(10*time.Minute, 11*time.Minute, 5*time.Second, const_(dated(ol("ups1"), 10*time.Minute)))),
			until: 11 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:stop-vm@5m0s", "run:start-vm@10m0s", "run:start-plex@10m0s"}},
		{name: "agent wall clock stepped ten minutes forward and back mid-outage",
			steps: cat(every(0, 20*time.Minute, 5*time.Second, onBatt),
				[]step{{at: 61 * time.Second, stepWall: 10 * time.Minute}, {at: 4 * time.Minute, stepWall: -20 * time.Minute}}),
			until: 20 * time.Minute, want: std},
		{name: "power off failing twice, then succeeding",
			poweroffFail: 2,
			steps:        cat(every(0, 30*time.Second, 5*time.Second, onBatt), []step{at(30*time.Second, ob("ups1", "LB"))}),
			until:        2 * time.Minute,
			want:         []string{"run:sync-disks@30s", "POWEROFF_FAILED(logind)@35s", "POWEROFF_FAILED(command)@40s", "POWEROFF(logind)@50s"},
			after: func(t *testing.T, r *run) {
				n := 0
				for _, e := range r.pub.eventTypes() {
					if e == mqttwire.AgentEventPoweroffFailed {
						n++
					}
				}
				if st := r.agent.Stats(); n != 2 || st["poweroff_failed_total"] != uint64(2) {
					t.Errorf("POWEROFF_FAILED events %d, metric %v; want 2 and 2", n, st["poweroff_failed_total"])
				}
			}},
		{name: "the OS accepts the power off but the host stays up: asked again, by the other method",
			recheck: 2 * time.Minute,
			steps:   []step{at(0, ob("ups1", "LB"))},
			until:   5 * time.Minute,
			want:    []string{"run:sync-disks@0s", "POWEROFF(logind)@5s", "POWEROFF(command)@2m5s", "POWEROFF(logind)@4m5s"}},
		{name: "a UPS that never reports LB: the runtime stage powers off",
			cfg: func() policy.Config {
				c := policyCfg()
				c.Stages = []policy.Stage{{Name: "off", RuntimeBelow: 5 * time.Minute, Final: true}}
				return c
			}(),
			// Runtime falls by a second a second from 15 min: below 5 min
			// at the state of 605 s.
			steps: every(0, 20*time.Minute, 5*time.Second, func(at time.Duration) news.News {
				return ob("ups1", "charge=50", fmt.Sprintf("runtime=%d", int((15*time.Minute-at).Seconds())))
			}),
			until: 20 * time.Minute, want: []string{"POWEROFF(logind)@10m10s"}},
		{name: "two supplies, min_supplies 1: one critical supply is not enough",
			cfg: policyCfg(policy.Supply{UPS: "ups1", Power: 1}, policy.Supply{UPS: "ups2", Power: 1}),
			steps: cat(every(0, 5*time.Minute, 5*time.Second, const_(ob("ups1", "charge=80"))),
				every(0, 10*time.Minute, 5*time.Second, const_(ol("ups2"))),
				every(5*time.Minute, 10*time.Minute, 5*time.Second, const_(ob("ups1", "LB")))),
			until: 10 * time.Minute},
		{name: "two supplies, min_supplies 2: one critical supply powers off",
			cfg: func() policy.Config {
				c := policyCfg(policy.Supply{UPS: "ups1", Power: 1}, policy.Supply{UPS: "ups2", Power: 1})
				c.MinSupplies = 2
				return c
			}(),
			steps: cat(every(0, time.Minute, 5*time.Second, const_(ol("ups2"))), every(0, time.Minute, 5*time.Second, const_(ol("ups1"))),
				[]step{at(32*time.Second, ob("ups1", "LB"))}),
			until: time.Minute, want: []string{"run:sync-disks@32s", "POWEROFF(logind)@37s"}},
		{name: "two supplies, min_supplies 2: one on battery is an outage",
			cfg: func() policy.Config {
				c := policyCfg(policy.Supply{UPS: "ups1", Power: 1}, policy.Supply{UPS: "ups2", Power: 1})
				c.MinSupplies = 2
				return c
			}(),
			steps: cat(every(0, 3*time.Minute, 5*time.Second, const_(ol("ups2"))), every(0, 3*time.Minute, 5*time.Second, const_(ob("ups1", "charge=90")))),
			until: 3 * time.Minute, want: []string{"run:stop-plex@2m0s"}},
		{name: "low_battery_grace: OB LB must hold for it",
			cfg:   func() policy.Config { c := policyCfg(); c.LowBatteryGrace = 20 * time.Second; return c }(),
			steps: cat(every(0, 30*time.Second, 5*time.Second, onBatt), every(30*time.Second, 2*time.Minute, 5*time.Second, const_(ob("ups1", "LB")))),
			until: 2 * time.Minute, want: []string{"run:sync-disks@50s", "POWEROFF(logind)@55s"}},
		{name: "low_battery_grace: LB that clears in time is no shutdown",
			cfg: func() policy.Config { c := policyCfg(); c.LowBatteryGrace = 20 * time.Second; return c }(),
			steps: cat(every(0, 30*time.Second, 5*time.Second, onBatt), every(30*time.Second, 45*time.Second, 5*time.Second, const_(ob("ups1", "LB"))),
				every(45*time.Second, 2*time.Minute, 5*time.Second, mains)),
			until: 2 * time.Minute},
		{name: "off_duration: OFF for 30 s is critical",
			steps: every(0, time.Minute, 5*time.Second, const_(ol("ups1", "OFF"))),
			until: time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(logind)@35s"}},
		{name: "off_duration 10s",
			cfg:   func() policy.Config { c := policyCfg(); c.OffDuration = 10 * time.Second; return c }(),
			steps: every(0, time.Minute, 5*time.Second, const_(ol("ups1", "OFF"))),
			until: time.Minute, want: []string{"run:sync-disks@10s", "POWEROFF(logind)@15s"}},
		{name: "off_duration negative disables the rule",
			cfg:   func() policy.Config { c := policyCfg(); c.OffDuration = -1; return c }(),
			steps: every(0, 5*time.Minute, 5*time.Second, const_(ol("ups1", "OFF"))),
			until: 5 * time.Minute},
		{name: "no state since start: hold",
			until: 30 * time.Minute},
		{name: "two bridges publishing one UPS id: warned once, nothing acted on",
			steps: cat(every(0, time.Minute, 5*time.Second, mains),
				[]step{at(20*time.Second, news.News{Kind: news.KindConflict, UPS: "ups1", Live: true, Detail: "ups ups1 published by bridges nas and nas2"}),
					at(40*time.Second, news.News{Kind: news.KindConflict, UPS: "ups1", Live: true, Detail: "ups ups1 published by bridges nas and nas2"})}),
			until: 2 * time.Minute,
			after: func(t *testing.T, r *run) {
				n := 0
				for _, e := range r.pub.events {
					if e.Type == mqttwire.AgentEventWarn && strings.Contains(e.Message, "published by bridges nas and nas2") {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d WARN events about the conflict, want 1", n)
				}
			}},
		{name: "a state from another bridge than the pinned one is ignored",
			cfg:   policyCfg(policy.Supply{UPS: "ups1", Power: 1, Bridge: "other"}),
			steps: cat(every(0, time.Minute, 5*time.Second, mains), []step{at(time.Minute, ob("ups1", "LB"))}),
			until: 2 * time.Minute},
	} {
		t.Run(sc.name, sc.run)
	}
}

// TestResume covers an agent restarted mid-outage: while staging, and
// during the final stage (continue on live critical or on silence for
// dead_time; cancel on live on-line news).
func TestResume(t *testing.T) {
	onBatt := const_(ob("ups1", "charge=90"))
	mains := const_(ol("ups1"))
	lbAt30 := cat(every(0, 30*time.Second, 5*time.Second, onBatt), []step{at(30*time.Second, ob("ups1", "LB"))})
	for _, sc := range []script{
		{name: "restarted while staging: no stage runs twice, undo still runs",
			steps: cat(every(0, 3*time.Minute, 5*time.Second, onBatt), []step{{at: 3 * time.Minute, restart: true}},
				every(3*time.Minute, 6*time.Minute, 5*time.Second, onBatt), every(6*time.Minute, 7*time.Minute, 5*time.Second, mains)),
			until: 7 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:stop-vm@5m0s", "run:start-vm@6m0s", "run:start-plex@6m0s"}},
		{name: "restarted while staging, no live news: hold, no stage, no undo on silence",
			steps: cat(every(0, 3*time.Minute, 5*time.Second, onBatt), []step{{at: 3 * time.Minute, restart: true}},
				[]step{at(3*time.Minute+time.Second, history(ob("ups1", "charge=90")))}),
			until: 30 * time.Minute, want: []string{"run:stop-plex@2m0s"}},
		{name: "restarted during the final stage, live news says critical: continue",
			steps: cat(lbAt30, []step{{at: 32 * time.Second, restart: true}, at(34*time.Second, ob("ups1", "LB"))}),
			until: 2 * time.Minute, want: []string{"run:sync-disks@30s", "run:sync-disks@34s", "POWEROFF(logind)@39s"}},
		{name: "restarted during the final stage, no live news: continue after dead_time",
			steps: cat(lbAt30, []step{{at: 32 * time.Second, restart: true}, at(33*time.Second, history(ol("ups1")))}),
			until: 2 * time.Minute, want: []string{"run:sync-disks@30s", "run:sync-disks@47s", "POWEROFF(logind)@52s"}},
		{name: "restarted during the final stage, live news says on line: cancel loudly",
			steps: cat(lbAt30, []step{{at: 32 * time.Second, restart: true}}, every(34*time.Second, 5*time.Minute, 5*time.Second, mains)),
			until: 5 * time.Minute, want: []string{"run:sync-disks@30s"},
			after: func(t *testing.T, r *run) {
				if st := r.pub.last(); st.Status != mqttwire.AgentIdle {
					t.Errorf("status %q after the cancel, want idle", st.Status)
				}
				if got := strings.Join(r.pub.eventTypes(), ","); !strings.Contains(got, "WARN,OUTAGE_END") {
					t.Errorf("events %s: want the cancel (WARN) and OUTAGE_END", got)
				}
			}},
		{name: "restarted after powering_off was published: the same re-check",
			steps: cat(lbAt30, []step{{at: 36 * time.Second, restart: true}, at(38*time.Second, ol("ups1"))}),
			until: time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(logind)@35s"}},
	} {
		t.Run(sc.name, sc.run)
	}
}

// TestDryRun: a dry run is a rehearsal: its final stage ends when mains
// returns, and its progress never leaks into a real run.
func TestDryRun(t *testing.T) {
	onBatt := const_(ob("ups1", "charge=90"))
	lbAt30 := cat(every(0, 30*time.Second, 5*time.Second, onBatt), []step{at(30*time.Second, ob("ups1", "LB"))})
	for _, sc := range []script{
		{name: "dry run to final, mains returns: idle, would have powered off at T",
			dryRun: true,
			steps:  cat(lbAt30, every(time.Minute, 2*time.Minute, 5*time.Second, const_(ol("ups1")))),
			until:  2 * time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(dry)@35s"},
			after: func(t *testing.T, r *run) {
				st := r.pub.last()
				if st.Status != mqttwire.AgentIdle || !st.DryRun {
					t.Errorf("state %+v: want idle, dry_run", st)
				}
				var end string
				for _, e := range r.pub.events {
					if e.Type == mqttwire.AgentEventOutageEnd {
						end = e.Message
					}
				}
				if !strings.Contains(end, "would have powered off at ") {
					t.Errorf("OUTAGE_END %q does not say when it would have powered off", end)
				}
			}},
		{name: "dry run to final, then a real start on battery: progress discarded, nothing on silence",
			dryRun: true,
			steps:  cat(lbAt30, []step{{at: 40 * time.Second, restart: true, dryRun: false}}),
			until:  30 * time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(dry)@35s"}},
		{name: "dry run to final, then a real start on mains: never powers off",
			dryRun: true,
			steps:  cat(lbAt30, []step{{at: 40 * time.Second, restart: true, dryRun: false}}, every(41*time.Second, 10*time.Minute, 5*time.Second, const_(ol("ups1")))),
			until:  10 * time.Minute, want: []string{"run:sync-disks@30s", "POWEROFF(dry)@35s"}},
	} {
		t.Run(sc.name, sc.run)
	}
}
