package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// agentRig is a real mosquitto, a scripted "bridge" publishing state
// payloads from the test, and recording scripts for stage, undo and
// poweroff commands (tests never power the machine off).
type agentRig struct {
	t      testing.TB
	mq     *harness.Mosquitto
	dir    string
	record string // file the scripts append "<name> <unix seconds>" to
	pub    *autopaho.ConnectionManager
	seq    uint64
	signer *signing.Signer
}

func newAgentRig(t testing.TB) *agentRig {
	t.Helper()
	r := &agentRig{t: t, mq: harness.StartMosquitto(t), dir: t.TempDir()}
	r.record = filepath.Join(r.dir, "record.txt")
	script := "#!/bin/sh\necho \"$1 $(date +%s.%N)\" >> " + r.record + "\n"
	if err := os.WriteFile(filepath.Join(r.dir, "rec.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r.connect()
	return r
}

func (r *agentRig) connect() {
	u, _ := url.Parse(r.mq.URL())
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 10, CleanStartOnInitialConnection: true,
		ReconnectBackoff: autopaho.NewConstantBackoff(100 * time.Millisecond),
		ClientConfig:     paho.ClientConfig{ClientID: fmt.Sprintf("fake-bridge-%d", time.Now().UnixNano())},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	actx, c := context.WithTimeout(ctx, 10*time.Second)
	defer c()
	if err := cm.AwaitConnection(actx); err != nil {
		r.t.Fatal(err)
	}
	r.pub = cm
}

func (r *agentRig) rec(name string) []string { return []string{filepath.Join(r.dir, "rec.sh"), name} }

func recJSON(v []string) string { b, _ := json.Marshal(v); return string(b) }

// agentYAML is an agent config with recording commands.
func (r *agentRig) agentYAML(extra string) string {
	return fmt.Sprintf(`log: {level: debug}
mqtt: {url: %q, topic_prefix: ub}
hass: {enabled: false}
agent:
  id: host1
  supplies: [{ups: ups1, power_value: 1}]
  poweroff: command
  shutdown_command: %s
  state_file: %s
%s`, r.mq.URL(), recJSON(r.rec("POWEROFF")), filepath.Join(r.dir, "agent.json"), extra)
}

// state publishes a retained state of ups1 with the given status and ts.
func (r *agentRig) state(status string, ts time.Time, charge int) {
	r.t.Helper()
	r.seq++
	st := &bridge.State{UPS: "ups1", Time: ts, Seq: r.seq, Status: bridge.ParseStatus(status),
		Vars: bridge.Vars{"ups.status": status, "battery.charge": strconv.Itoa(charge), "battery.runtime": "1200"}, Comm: true}
	st.Critical = st.Status.Has(bridge.FSD) || (st.OnBattery() && st.LowBattery())
	p := mqttwire.NewStatePayload(st, "test", 1, time.Now())
	if r.signer != nil {
		if err := r.signer.SignState(&p); err != nil {
			r.t.Fatal(err)
		}
	}
	data, _ := json.Marshal(p)
	r.raw(data)
}

func (r *agentRig) raw(data []byte) {
	r.t.Helper()
	ctx, c := context.WithTimeout(context.Background(), 5*time.Second)
	defer c()
	if _, err := r.pub.Publish(ctx, &paho.Publish{Topic: "ub/ups/ups1/state", Payload: data, Retain: true, QoS: 1}); err != nil {
		r.t.Logf("publish: %v", err)
	}
}

// feed publishes status every interval until stop is closed.
func (r *agentRig) feed(status string, interval time.Duration, stop <-chan struct{}) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		r.state(status, time.Now(), 90)
		select {
		case <-stop:
			return
		case <-tk.C:
		}
	}
}

type recLine struct {
	name string
	at   time.Time
}

func (r *agentRig) records() []recLine {
	data, _ := os.ReadFile(r.record)
	var out []recLine
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, ts, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(ts, 64)
		out = append(out, recLine{name, time.Unix(0, int64(f*1e9))})
	}
	return out
}

func names(rs []recLine) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.name)
	}
	return out
}

// waitRecords waits until the record file holds n lines.
func (r *agentRig) waitRecords(n int, timeout time.Duration) []recLine {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs := r.records()
		if len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %s waiting for %d recorded command(s); have %q", timeout, n, names(rs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func agentStatus(payload string) string {
	var st mqttwire.AgentState
	if json.Unmarshal([]byte(payload), &st) != nil {
		return payload
	}
	return st.Status
}

const stagesYAML = `  final_delay: 500ms
  dead_time: 3s
  stages:
    - {name: shed, on_battery_for: 1s, run: %s, undo: %s}
    - {name: shed2, on_battery_for: 2s, run: %s, undo: %s}
    - {name: off, on_battery_for: 30s, action: poweroff}
`

func (r *agentRig) stages() string {
	return fmt.Sprintf(stagesYAML, recJSON(r.rec("shed")), recJSON(r.rec("undo-shed")), recJSON(r.rec("shed2")), recJSON(r.rec("undo-shed2")))
}

func TestAgentMainsReturnCancelsAndUndoes(t *testing.T) {
	r := newAgentRig(t)
	sub := harness.Subscribe(t, r.mq.URL(), "ub/agent/#")
	harness.StartBridge(t, r.agentYAML(r.stages()))
	sub.WaitPayload("ub/agent/host1/state", 15*time.Second, func(p string) bool { return agentStatus(p) == "idle" })
	stop := make(chan struct{})
	go r.feed("OB DISCHRG", 200*time.Millisecond, stop)
	r.waitRecords(2, 10*time.Second)
	close(stop)
	time.Sleep(100 * time.Millisecond)
	r.state("OL CHRG", time.Now(), 80)
	rs := r.waitRecords(4, 10*time.Second)
	if got := names(rs); strings.Join(got, ",") != "shed,shed2,undo-shed2,undo-shed" {
		t.Fatalf("commands ran %q, want shed, shed2, then undo in reverse", got)
	}
	sub.WaitPayload("ub/agent/host1/state", 5*time.Second, func(p string) bool { return agentStatus(p) == "idle" })
	time.Sleep(500 * time.Millisecond)
	if n := len(r.records()); n != 4 {
		t.Fatalf("%d commands ran, want 4 (no poweroff): %q", n, names(r.records()))
	}
	sub.WaitPayload("ub/agent/host1/event", 2*time.Second, func(p string) bool { return strings.Contains(p, `"type":"UNDO"`) })
}

func TestAgentBrokerKilledMidOutage(t *testing.T) {
	r := newAgentRig(t)
	sub := harness.Subscribe(t, r.mq.URL(), "ub/agent/#")
	harness.StartBridge(t, r.agentYAML(`  final_delay: 0s
  dead_time: 3s
  stages: [{name: off, on_battery_for: 1h, action: poweroff}]
`))
	sub.WaitPayload("ub/agent/host1/state", 15*time.Second, func(p string) bool { return agentStatus(p) == "idle" })
	stop := make(chan struct{})
	go r.feed("OB DISCHRG", 200*time.Millisecond, stop)
	sub.WaitPayload("ub/agent/host1/state", 5*time.Second, func(p string) bool { return agentStatus(p) == "on_battery" })
	time.Sleep(time.Second)
	// The last state was published at most one interval (200 ms) before
	// the feed stopped.
	stopped := time.Now()
	close(stop)
	r.mq.Stop()
	rs := r.waitRecords(1, 10*time.Second)
	delay := rs[0].at.Sub(stopped)
	t.Logf("poweroff %s after the last state (dead_time 3s, states every 200ms)", delay.Round(time.Millisecond))
	// Dead time runs from the last live state: the lost connection
	// neither shortens nor lengthens it.
	if delay < 3*time.Second-200*time.Millisecond || delay > 5*time.Second {
		t.Fatalf("powered off %s after the last state: want dead_time (3s) after it", delay)
	}
	if names(rs)[0] != "POWEROFF" {
		t.Fatalf("ran %q", names(rs))
	}
}

func TestAgentStaleRetainedFSDDoesNothing(t *testing.T) {
	r := newAgentRig(t)
	r.state("OB LB FSD", time.Now().Add(-10*time.Minute), 5)
	sub := harness.Subscribe(t, r.mq.URL(), "ub/agent/#")
	p := harness.StartBridge(t, r.agentYAML(r.stages()))
	sub.WaitPayload("ub/agent/host1/state", 15*time.Second, func(p string) bool { return agentStatus(p) == "idle" })
	time.Sleep(4 * time.Second) // longer than dead_time: nothing may happen
	if rs := r.records(); len(rs) != 0 {
		t.Fatalf("a stale retained FSD ran %q", names(rs))
	}
	if !strings.Contains(p.Output.String(), "only retained history since start") {
		t.Fatalf("the stale state was not reported:\n%s", p.Output.String())
	}
}

func TestAgentRequireSignedRejectsForgedAndReplayed(t *testing.T) {
	r := newAgentRig(t)
	pub, priv, _ := signing.GenerateKey()
	pem, _ := signing.EncodePublicKey(pub)
	keyFile := filepath.Join(r.dir, "bridge.pub")
	if err := os.WriteFile(keyFile, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := harness.Subscribe(t, r.mq.URL(), "ub/agent/#")
	proc := harness.StartBridge(t, r.agentYAML(fmt.Sprintf("  final_delay: 0s\n  require_signed: true\n  public_key_file: %s\n  stages: [{name: off, on_battery_for: 1h, action: poweroff}]\n", keyFile)))
	sub.WaitPayload("ub/agent/host1/state", 15*time.Second, func(p string) bool { return agentStatus(p) == "idle" })
	// Each message below is published once: the agent must be reading
	// already (its state is published on its other connection).
	waitOutput(t, proc, "reading the supplies' news", 15*time.Second)

	// An older signed FSD, kept for the replay.
	r.signer = signing.NewSigner(priv)
	old := time.Now()
	oldFSD := signedPayload(t, r.signer, "OB LB FSD", old, 1)
	// Unsigned FSD.
	r.signer = nil
	r.state("OB LB FSD", time.Now(), 5)
	// Forged: signed OL, then changed to FSD.
	good := signedPayload(t, signing.NewSigner(priv), "OL", time.Now(), 2)
	r.raw([]byte(strings.Replace(string(good), `"status":"OL"`, `"status":"OB LB FSD"`, 1)))
	// Signed with another key.
	_, other, _ := signing.GenerateKey()
	r.raw(signedPayload(t, signing.NewSigner(other), "OB LB FSD", time.Now(), 3))
	// A newer genuine OL, then the replay of the older FSD.
	time.Sleep(10 * time.Millisecond)
	r.raw(signedPayload(t, signing.NewSigner(priv), "OL", time.Now(), 4))
	r.raw(oldFSD)
	waitOutput(t, proc, `"reason":"replay"`, 5*time.Second)
	time.Sleep(time.Second)
	if rs := r.records(); len(rs) != 0 {
		t.Fatalf("a forged or replayed FSD ran %q\n%s", names(rs), proc.Output.String())
	}
	for _, want := range []string{"payload is not signed", "signature does not verify"} {
		if !strings.Contains(proc.Output.String(), want) {
			t.Errorf("no %q rejection logged", want)
		}
	}
	// Positive control: a genuine, fresh FSD powers off.
	r.raw(signedPayload(t, signing.NewSigner(priv), "OB LB FSD", time.Now(), 5))
	if rs := r.waitRecords(1, 5*time.Second); names(rs)[0] != "POWEROFF" {
		t.Fatalf("ran %q", names(rs))
	}
}

func signedPayload(t *testing.T, s *signing.Signer, status string, ts time.Time, seq uint64) []byte {
	t.Helper()
	st := &bridge.State{UPS: "ups1", Time: ts, Seq: seq, Status: bridge.ParseStatus(status), Vars: bridge.Vars{"ups.status": status}, Comm: true}
	st.Critical = st.Status.Has(bridge.FSD)
	p := mqttwire.NewStatePayload(st, "test", 1, time.Now())
	if err := s.SignState(&p); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(p)
	return data
}

func waitOutput(t *testing.T, p *harness.Process, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in the output:\n%s", s, p.Output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentRestartMidOutageResumes(t *testing.T) {
	r := newAgentRig(t)
	sub := harness.Subscribe(t, r.mq.URL(), "ub/agent/#")
	cfg := r.agentYAML(r.stages())
	p := harness.StartBridge(t, cfg)
	sub.WaitPayload("ub/agent/host1/state", 15*time.Second, func(p string) bool { return agentStatus(p) == "idle" })
	stop := make(chan struct{})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	go r.feed("OB DISCHRG", 200*time.Millisecond, stop)
	r.waitRecords(1, 10*time.Second)
	p.Kill() // SIGKILL mid-outage, after stage shed
	harness.StartBridge(t, cfg)
	r.waitRecords(2, 10*time.Second)
	close(stop)
	time.Sleep(100 * time.Millisecond)
	r.state("OL", time.Now(), 90)
	rs := r.waitRecords(4, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if got := strings.Join(names(r.records()), ","); got != "shed,shed2,undo-shed2,undo-shed" {
		t.Fatalf("commands ran %q, want each stage once and the undos after the restart (%s)", got, names(rs))
	}
}

// TestAgentStagesInOrderWithSim runs a real bridge with the simulated UPS
// (outage at 1 simulated minute, time_scale 60) and an agent in another
// process: stages fire in order at their times.
//
// Every time is measured from the agent's own OUTAGE_START, as the agent
// counts on_battery_for from the moment it saw the outage on its clock (see
// docs/agent.md), never from when this test saw the bridge's state: the
// agent, the bridge and this test are three processes, and on a busy machine
// any of them can see a message late. Times come from what the processes
// published (event ts) and from the recording script's own clock, so the
// checks do not depend on when this test gets the CPU. Lower bounds are
// exact (a stage must never fire early); upper bounds allow scheduling and
// process-start latency per step.
func TestAgentStagesInOrderWithSim(t *testing.T) {
	r := newAgentRig(t)
	sub := harness.Subscribe(t, r.mq.URL(), "ub/ups/sim1/state", "ub/agent/#")
	// The agent starts first and is reading before the bridge starts, so
	// the bridge's first on-battery state is live news for it. Started the
	// other way round, an agent slower to start than the 1 s of mains the
	// simulation plays sees that state only as retained history and starts
	// the outage at a later state, which made every stage look late.
	agent := harness.StartBridge(t, strings.Replace(r.agentYAML(fmt.Sprintf(`  final_delay: 500ms
  stages:
    - {name: shed, on_battery_for: 2s, run: %s}
    - {name: shed2, on_battery_for: 4s, run: %s}
    - {name: off, on_battery_for: 6s, run: %s, action: poweroff}
`, recJSON(r.rec("shed")), recJSON(r.rec("shed2")), recJSON(r.rec("off")))), "ups: ups1", "ups: sim1", 1))
	waitOutput(t, agent, "reading the supplies' news", 30*time.Second)
	harness.StartBridge(t, fmt.Sprintf(`mqtt: {url: %q, topic_prefix: ub}
hass: {enabled: false}
bridge: {id: b1, state_dir: %s}
sources: [{id: sim1, type: sim, scenario: outage, time_scale: 60, poll_interval: 200ms}]
`, r.mq.URL(), filepath.Join(r.dir, "bridge")))
	ob := sub.WaitPayload("ub/ups/sim1/state", 30*time.Second, func(p string) bool { return strings.Contains(p, `"on_battery":true`) })
	_, obTS, err := mqttwire.DecodeState([]byte(ob.Payload))
	if err != nil {
		t.Fatal(err)
	}
	rs := r.waitRecords(4, 30*time.Second)
	if got := names(rs); strings.Join(got, " ") != "shed shed2 off POWEROFF" {
		t.Fatalf("commands ran as %q, want shed shed2 off POWEROFF", got)
	}
	wantEvents := []string{mqttwire.AgentEventOutageStart, mqttwire.AgentEventStage, mqttwire.AgentEventStage, mqttwire.AgentEventShutdown, mqttwire.AgentEventPoweringOff}
	var evs []mqttwire.AgentEvent
	var at []time.Time
	sub.WaitFor("the agent's events up to POWERING_OFF", 10*time.Second, func(msgs []harness.Msg) bool {
		evs, at = nil, nil
		for _, m := range msgs {
			if m.Topic != "ub/agent/host1/event" {
				continue
			}
			ev, err := mqttwire.DecodeAgentEvent([]byte(m.Payload))
			if err != nil {
				t.Fatalf("agent event %q: %v", m.Payload, err)
			}
			if ev.Type == mqttwire.AgentEventWarn {
				continue // the host is unprotected until the bridge's first state
			}
			ts, err := time.Parse(time.RFC3339Nano, ev.TS)
			if err != nil {
				t.Fatalf("agent event %q: ts: %v", m.Payload, err)
			}
			evs, at = append(evs, ev), append(at, ts)
		}
		return len(evs) >= len(wantEvents)
	})
	for i, typ := range wantEvents {
		if evs[i].Type != typ {
			t.Fatalf("agent events %+v, want types %q", evs, wantEvents)
		}
	}
	if evs[1].Stage != "shed" || evs[2].Stage != "shed2" || evs[3].Stage != "off" {
		t.Fatalf("stage events %+v, want shed, shed2, off", evs[1:4])
	}
	outage := at[0]
	t.Logf("bridge published on battery at %s; agent OUTAGE_START +%s later",
		obTS.Format(time.StampMilli), outage.Sub(obTS))
	// The outage starts when the agent gets the bridge's live on-battery
	// state: not before the bridge published it, and not long after
	// (delivery through the broker, two processes on a loaded machine).
	if d := outage.Sub(obTS); d < 0 || d > 2*time.Second {
		t.Errorf("agent OUTAGE_START %s after the bridge published on battery, want within [0, 2s]", d)
	}
	// Event ts are truncated to the millisecond: a difference of two may
	// read up to 1 ms short.
	const tsRes = time.Millisecond
	// The agent's decisions, on its own clock: a stage fires when its
	// on_battery_for has passed, from a timer, so only scheduling delays it.
	const decisionSlack = 500 * time.Millisecond
	// A command runs after its decision (and the final stage's command
	// first, then final_delay): starting a shell and the broker's
	// acknowledgement of powering_off are outside the agent's timing, so
	// these steps get a looser bound.
	const stepSlack = time.Second
	for i, w := range []struct {
		ev  int
		rec int
		at  time.Duration
	}{{1, 0, 2 * time.Second}, {2, 1, 4 * time.Second}, {3, 2, 6 * time.Second}} {
		dec := at[w.ev].Sub(outage)
		ran := rs[w.rec].at.Sub(at[w.ev])
		t.Logf("%s decided at +%s (want +%s), its command ran %s later", evs[w.ev].Stage, dec, w.at, ran.Round(time.Millisecond))
		if dec < w.at-tsRes || dec > w.at+decisionSlack {
			t.Errorf("stage %d (%s) decided at outage +%s, want +%s (+%s at most)", i, evs[w.ev].Stage, dec, w.at, decisionSlack)
		}
		if ran < 0 || ran > stepSlack {
			t.Errorf("stage %s: command ran %s after the decision, want within [0, %s]", evs[w.ev].Stage, ran, stepSlack)
		}
	}
	// Power off: final_delay after the final stage's command, announced
	// (POWERING_OFF) before the OS is asked.
	const finalDelay = 500 * time.Millisecond
	poweringOff, poweroff := at[4], rs[3].at
	t.Logf("POWERING_OFF %s after the off command, POWEROFF ran %s after it",
		poweringOff.Sub(rs[2].at).Round(time.Millisecond), poweroff.Sub(poweringOff).Round(time.Millisecond))
	if d := poweroff.Sub(rs[2].at); d < finalDelay {
		t.Errorf("POWEROFF %s after the final stage's command, want final_delay %s at least", d, finalDelay)
	}
	if d := poweringOff.Sub(rs[2].at); d < finalDelay-tsRes || d > finalDelay+stepSlack {
		t.Errorf("POWERING_OFF %s after the final stage's command, want final_delay %s (+%s at most)", d, finalDelay, stepSlack)
	}
	if d := poweroff.Sub(poweringOff); d < 0 || d > stepSlack {
		t.Errorf("POWEROFF ran %s after POWERING_OFF, want within [0, %s]", d, stepSlack)
	}
}
