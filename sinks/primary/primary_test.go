package primary

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// fakeBridge records what the primary asks of the bridge, with the time
// since the test began (synctest's clock).
type fakeBridge struct {
	start    time.Time
	primary  bool
	writable bool

	mu     sync.Mutex
	calls  []call
	events []bridge.Event
}

type call struct {
	at   time.Duration
	what string
}

func (f *fakeBridge) record(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{time.Since(f.start), what})
}

func (f *fakeBridge) IsPrimary(string) bool { return f.primary }

func (f *fakeBridge) SetFSD(_ context.Context, ups string) error {
	f.record("FSD " + ups)
	return nil
}

func (f *fakeBridge) InstCmd(_ context.Context, ups, cmd, _ string) (bridge.CommandResult, error) {
	f.record("INSTCMD " + ups + " " + cmd)
	return bridge.CommandResult{Status: "SUCCESS"}, nil
}

func (f *fakeBridge) SetVar(_ context.Context, ups, name, value string) (bridge.CommandResult, error) {
	f.record("SET " + ups + " " + name + "=" + value)
	return bridge.CommandResult{Status: "SUCCESS"}, nil
}

func (f *fakeBridge) Emit(ev bridge.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	f.calls = append(f.calls, call{time.Since(f.start), "EVENT " + string(ev.Type)})
}

func (f *fakeBridge) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// at returns when what first happened, or -1.
func at(calls []call, what string) time.Duration {
	for _, c := range calls {
		if c.what == what {
			return c.at
		}
	}
	return -1
}

func upsState(status string, writable bool) *bridge.State {
	st := &bridge.State{UPS: "ups1", Time: time.Now(), Status: bridge.ParseStatus(status), Comm: true,
		Vars: bridge.Vars{"ups.status": status, "ups.delay.shutdown": "20"}}
	st.Critical = st.Status.Has(bridge.FSD) || (st.OnBattery() && st.LowBattery())
	st.Info = &bridge.Info{Commands: []bridge.Command{{Name: "shutdown.return"}}}
	if writable {
		st.Info.Writable = []bridge.Writable{{Name: "ups.delay.shutdown", Type: "STRING:10"}}
	}
	return st
}

// rig runs a primary in a synctest bubble.
type rig struct {
	t   *testing.T
	ctx context.Context // ends with the test
	fb  *fakeBridge
	p   *Primary
	q   *bridge.Queue
}

func newRig(t *testing.T, fb *fakeBridge, opts Options) *rig {
	fb.start = time.Now()
	opts.Bridge = fb
	opts.TopicPrefix = "ub"
	opts.BridgeID = "b1"
	r := &rig{t: t, fb: fb, p: New(opts), q: bridge.NewQueue("primary", 0, nil)}
	ctx, cancel := context.WithCancel(t.Context())
	r.ctx = ctx
	done := make(chan struct{})
	go func() { _ = r.p.Run(ctx, r.q); close(done) }()
	t.Cleanup(func() { cancel(); <-done; synctest.Wait() })
	return r
}

func (r *rig) ups(status string) {
	r.q.PutState(upsState(status, r.fb.writable))
	synctest.Wait()
}

// agent publishes one state of an agent fed by ups1 ("offline" for the Will).
func (r *rig) agent(id, status string, supplies ...mqttwire.SupplyStatus) {
	if len(supplies) == 0 {
		supplies = []mqttwire.SupplyStatus{{UPS: "ups1", PowerValue: 1}}
	}
	payload := []byte(mqttwire.Offline)
	if status != mqttwire.Offline {
		payload, _ = json.Marshal(mqttwire.AgentState{Agent: id, TS: mqttwire.FormatTime(time.Now()), Status: status, Supplies: supplies, Protected: true})
	}
	r.p.OnReceive("ub/agent/"+id+"/state", payload, false)
}

// every publishes the agent's status every 5 s (the agents' heartbeat)
// from now until the bubble's time reaches until.
func (r *rig) every(id, status string, until time.Duration, supplies ...mqttwire.SupplyStatus) {
	go func() {
		for time.Since(r.fb.start) < until {
			r.agent(id, status, supplies...)
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(mqttwire.AgentHeartbeatActive):
			}
		}
	}()
}

func (r *rig) sleepUntil(d time.Duration) {
	time.Sleep(d - time.Since(r.fb.start))
	synctest.Wait()
}

// TestHandshakeTimeline: each rule of the handshake, with the time of the
// kill (shutdown.return) it leads to, or none.
func TestHandshakeTimeline(t *testing.T) {
	const (
		hostSync   = 15 * time.Second
		maxWait    = 2 * time.Minute
		finalDelay = 5 * time.Second
	)
	kill := "INSTCMD ups1 shutdown.return"
	for _, tc := range []struct {
		name   string
		opts   func(*Options)
		script func(r *rig)
		// wantKill is when shutdown.return is sent after the UPS turns
		// critical at 0; -1: never.
		wantKill time.Duration
		wantEvs  []bridge.EventType
		notEvs   []bridge.EventType
	}{
		{
			name: "offline agent is done",
			script: func(r *rig) {
				r.agent("web01", mqttwire.AgentIdle)
				r.ups("OB LB")
				r.every("web01", mqttwire.AgentShuttingDown, 3*time.Second)
				r.sleepUntil(3 * time.Second)
				r.agent("web01", mqttwire.Offline)
			},
			wantKill: 3*time.Second + finalDelay,
			wantEvs:  []bridge.EventType{bridge.EventHostSync, bridge.EventHostDown, bridge.EventHostsDown, bridge.EventKillPower},
		},
		{
			name: "powering_off for host_sync is done",
			script: func(r *rig) {
				r.agent("web01", mqttwire.AgentIdle)
				r.ups("OB LB")
				r.every("web01", mqttwire.AgentShuttingDown, 10*time.Second)
				r.sleepUntil(12 * time.Second)
				r.every("web01", mqttwire.AgentPoweringOff, time.Hour)
			},
			wantKill: 12*time.Second + hostSync + finalDelay,
			wantEvs:  []bridge.EventType{bridge.EventHostSync, bridge.EventHostDown, bridge.EventHostsDown, bridge.EventKillPower},
		},
		{
			name: "shutting_down waited while it publishes, up to max_wait",
			script: func(r *rig) {
				r.agent("web01", mqttwire.AgentIdle)
				r.ups("OB LB")
				r.every("web01", mqttwire.AgentShuttingDown, time.Hour)
			},
			wantKill: maxWait + finalDelay,
			wantEvs:  []bridge.EventType{bridge.EventHostSync, bridge.EventHostSyncTimeout, bridge.EventKillPower},
			notEvs:   []bridge.EventType{bridge.EventHostsDown},
		},
		{
			name: "shutting_down then silent for host_sync counts as gone",
			script: func(r *rig) {
				r.agent("web01", mqttwire.AgentIdle)
				r.ups("OB LB")
				r.every("web01", mqttwire.AgentShuttingDown, 41*time.Second) // last at 40 s
			},
			wantKill: 40*time.Second + hostSync + finalDelay,
			wantEvs:  []bridge.EventType{bridge.EventHostDown, bridge.EventHostsDown, bridge.EventKillPower},
		},
		{
			name: "an agent that never speaks after FSD is gone after host_sync",
			script: func(r *rig) {
				r.agent("old", mqttwire.AgentIdle) // retained, from long ago
				r.sleepUntil(time.Hour)
				r.fb.start = time.Now() // the outage's clock starts here
				r.ups("OB LB")
			},
			wantKill: hostSync + finalDelay,
			wantEvs:  []bridge.EventType{bridge.EventHostDown, bridge.EventHostsDown, bridge.EventKillPower},
		},
		{
			name: "the slowest agent decides; agents of other UPSes and bridges are not waited for",
			script: func(r *rig) {
				r.agent("other-ups", mqttwire.AgentShuttingDown, mqttwire.SupplyStatus{UPS: "ups2", PowerValue: 1})
				r.agent("other-bridge", mqttwire.AgentShuttingDown, mqttwire.SupplyStatus{UPS: "ups1", Bridge: "b2", PowerValue: 1})
				r.agent("fast", mqttwire.AgentIdle)
				r.agent("slow", mqttwire.AgentIdle)
				r.ups("OB LB")
				r.every("other-ups", mqttwire.AgentShuttingDown, time.Hour, mqttwire.SupplyStatus{UPS: "ups2", PowerValue: 1})
				r.every("other-bridge", mqttwire.AgentShuttingDown, time.Hour, mqttwire.SupplyStatus{UPS: "ups1", Bridge: "b2", PowerValue: 1})
				r.every("fast", mqttwire.AgentShuttingDown, 2*time.Second)
				r.every("slow", mqttwire.AgentShuttingDown, 30*time.Second)
				r.sleepUntil(2 * time.Second)
				r.agent("fast", mqttwire.Offline)
				r.sleepUntil(30 * time.Second)
				r.agent("slow", mqttwire.Offline)
			},
			wantKill: 30*time.Second + finalDelay,
		},
		{
			name: "dry-run agents are not waited for",
			script: func(r *rig) {
				payload, _ := json.Marshal(mqttwire.AgentState{Agent: "rehearsal", TS: "x", Status: mqttwire.AgentShuttingDown, DryRun: true,
					Supplies: []mqttwire.SupplyStatus{{UPS: "ups1", PowerValue: 1}}})
				r.p.OnReceive("ub/agent/rehearsal/state", payload, false)
				r.ups("OB LB")
			},
			wantKill: finalDelay,
		},
		{
			name: "no kill when mains returns during the wait",
			script: func(r *rig) {
				r.agent("web01", mqttwire.AgentIdle)
				r.ups("OB LB")
				r.every("web01", mqttwire.AgentShuttingDown, time.Hour)
				r.sleepUntil(20 * time.Second)
				r.ups("OL CHRG")
			},
			wantKill: -1,
			wantEvs:  []bridge.EventType{bridge.EventHostSync, bridge.EventKillPowerSkipped},
		},
		{
			name: "no kill when mains returns during final_delay",
			script: func(r *rig) {
				r.agent("web01", mqttwire.AgentIdle)
				r.ups("OB LB")
				r.sleepUntil(3 * time.Second)
				r.agent("web01", mqttwire.Offline)
				r.sleepUntil(5 * time.Second)
				r.ups("OL")
			},
			wantKill: -1,
			wantEvs:  []bridge.EventType{bridge.EventHostsDown, bridge.EventKillPowerSkipped},
		},
		{
			name: "no kill without kill_power",
			opts: func(o *Options) { o.KillPower = false },
			script: func(r *rig) {
				r.ups("OB LB")
			},
			wantKill: -1,
			wantEvs:  []bridge.EventType{bridge.EventHostSync, bridge.EventHostsDown},
			notEvs:   []bridge.EventType{bridge.EventKillPower, bridge.EventKillPowerSkipped},
		},
		{
			name: "NUT secondaries are waited for while logged in",
			opts: func(o *Options) { o.Hosts = []HostCounter{&counter{until: 10 * time.Second}} },
			script: func(r *rig) {
				r.opts().Hosts[0].(*counter).start = r.fb.start
				r.ups("OB LB")
			},
			wantKill: 10*time.Second + finalDelay,
		},
		{
			name: "NUT secondaries still logged in at host_sync are not waited for longer",
			opts: func(o *Options) { o.Hosts = []HostCounter{&counter{until: time.Hour}} },
			script: func(r *rig) {
				r.opts().Hosts[0].(*counter).start = r.fb.start
				r.ups("OB LB")
			},
			wantKill: hostSync + finalDelay,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fb := &fakeBridge{primary: true}
				o := Options{HostSync: hostSync, MaxWait: maxWait, FinalDelay: finalDelay, KillPower: true}
				if tc.opts != nil {
					tc.opts(&o)
				}
				r := newRig(t, fb, o)
				tc.script(r)
				r.sleepUntil(time.Since(fb.start) + maxWait + time.Minute)
				calls := fb.snapshot()
				got := at(calls, kill)
				if got != tc.wantKill {
					t.Errorf("kill at %v, want %v\n%s", got, tc.wantKill, dump(calls))
				}
				if at(calls, "FSD ups1") != 0 {
					t.Errorf("FSD not set at once\n%s", dump(calls))
				}
				for _, ev := range tc.wantEvs {
					if at(calls, "EVENT "+string(ev)) < 0 {
						t.Errorf("no %s event\n%s", ev, dump(calls))
					}
				}
				for _, ev := range tc.notEvs {
					if at(calls, "EVENT "+string(ev)) >= 0 {
						t.Errorf("unexpected %s event\n%s", ev, dump(calls))
					}
				}
				if got >= 0 && at(calls, "EVENT "+string(bridge.EventKillPower)) != got {
					t.Errorf("the kill is not an event at its time\n%s", dump(calls))
				}
				st := r.p.Stats()
				if st["handshakes_total"] != uint64(1) || st["handshakes_running"] != int64(0) || (got >= 0) != (st["kills_total"] == uint64(1)) {
					t.Errorf("stats %v", st)
				}
			})
		})
	}
}

func (r *rig) opts() Options { return r.p.opts }

// counter is a HostCounter whose hosts log out at until.
type counter struct {
	start time.Time
	until time.Duration
}

func (c *counter) Hosts(ups string) int {
	if ups == "ups1" && time.Since(c.start) < c.until {
		return 2
	}
	return 0
}

func dump(calls []call) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "  %8v %s\n", c.at, c.what)
	}
	return b.String()
}

// TestKillPowerDelay: ups.delay.shutdown is set to kill_power_delay before
// shutdown.return where it is writable, and left alone where it is not.
func TestKillPowerDelay(t *testing.T) {
	for _, writable := range []bool{true, false} {
		t.Run(fmt.Sprint("writable=", writable), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fb := &fakeBridge{primary: true, writable: writable}
				r := newRig(t, fb, Options{HostSync: time.Second, FinalDelay: time.Second, KillPower: true, KillPowerDelay: 45 * time.Second})
				r.ups("OB LB")
				r.sleepUntil(time.Minute)
				calls := fb.snapshot()
				set, kill := at(calls, "SET ups1 ups.delay.shutdown=45"), at(calls, "INSTCMD ups1 shutdown.return")
				if kill < 0 {
					t.Fatalf("no kill\n%s", dump(calls))
				}
				if writable && (set < 0 || !slices.ContainsFunc(calls, func(c call) bool { return c.what == "SET ups1 ups.delay.shutdown=45" })) {
					t.Fatalf("ups.delay.shutdown not set before the kill\n%s", dump(calls))
				}
				if writable && slices.IndexFunc(calls, func(c call) bool { return strings.HasPrefix(c.what, "SET") }) >
					slices.IndexFunc(calls, func(c call) bool { return strings.HasPrefix(c.what, "INSTCMD") }) {
					t.Fatalf("ups.delay.shutdown set after the kill\n%s", dump(calls))
				}
				if !writable && set >= 0 {
					t.Fatalf("set a variable the UPS does not allow\n%s", dump(calls))
				}
			})
		})
	}
}

// TestSecondaryNeverInventsFSD: as a secondary the primary sink does
// nothing on a critical UPS: no FSD, no event, no kill.
func TestSecondaryNeverInventsFSD(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fb := &fakeBridge{primary: false}
		r := newRig(t, fb, Options{KillPower: true})
		r.agent("web01", mqttwire.AgentShuttingDown)
		r.ups("OB LB")
		r.ups("OB LB FSD") // upsd's primary set FSD: relayed by the bridge, not acted on here
		r.sleepUntil(time.Hour)
		if calls := fb.snapshot(); len(calls) != 0 {
			t.Fatalf("a secondary acted:\n%s", dump(calls))
		}
	})
}

// TestAgentStatesAreBounded: hostile agent states (bad JSON, ids that do
// not match the topic, endless new ids) change nothing beyond the bound.
func TestAgentStatesAreBounded(t *testing.T) {
	p := New(Options{Bridge: &fakeBridge{}, TopicPrefix: "ub", MaxAgents: 10})
	for i := range 1000 {
		p.OnReceive(fmt.Sprintf("ub/agent/a%d/state", i), []byte(`{"agent":"a`+fmt.Sprint(i)+`","status":"idle","supplies":[]}`), false)
	}
	p.OnReceive("ub/agent/x/state", []byte(`{"agent":"y","status":"offline"}`), false)
	p.OnReceive("ub/agent/z/state", []byte(`{not json`), false)
	p.OnReceive("ub/agent/Bad!/state", []byte(`offline`), false)
	p.OnReceive("ub/agent/big/state", []byte(`{"agent":"big","status":"`+strings.Repeat("x", mqttwire.MaxPayload)+`"}`), false)
	if n := len(p.agents); n != 10 {
		t.Fatalf("%d agents tracked, want the bound 10", n)
	}
	for _, id := range []string{"x", "y", "z", "big"} {
		if p.agents[id] != nil {
			t.Fatalf("agent %q tracked from a bad state", id)
		}
	}
}
