package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// The live fault matrix of #13: real mosquitto, real upsd with dummy-ups,
// the upsbridge binary as bridge (signing on) and as agents whose commands
// only append to a record file (tests never power anything off). Each cell
// asserts the outcome and its time: a power-off at T ± 1 s, or none.
//
// T is the time the bridge published the state the agent acts on (the
// state's ts, on this machine's clock), plus the configured delays. The
// agent cannot get a state before it is published, so a correct agent is
// never early against T, however busy the machine; the arrival at this
// test's own subscriber is no reference, as this process may get the CPU
// late. Each agent is reading (subscribed) before a cell changes anything,
// so every state that follows is live news to it.

const (
	mxDeadTime   = 3 * time.Second
	mxFinalDelay = time.Second
	mxTolerance  = time.Second
	// mxPublishWait is how long the agent waits at most for the broker to
	// acknowledge powering_off before it powers off anyway (publishWait
	// in package agent).
	mxPublishWait = 2 * time.Second
)

const mxDev = `ups.mfr: Example
ups.model: Sim 1500
ups.status: OL
battery.charge: 100
battery.runtime: 3000
ups.load: 20
ups.delay.shutdown: 20
`

func mxDevWith(status string, runtime int) string {
	d := strings.Replace(mxDev, "ups.status: OL", "ups.status: "+status, 1)
	return strings.Replace(d, "battery.runtime: 3000", "battery.runtime: "+strconv.Itoa(runtime), 1)
}

// mxRig is one cell's world: a broker, upsd with its UPSes, keys, and a
// subscriber that sees everything under ub/.
type mxRig struct {
	t       *testing.T
	mq      *harness.Mosquitto
	u       *harness.UPSD
	dir     string
	pubFile string
	keyFile string
	signer  *signing.Signer
	sub     *harness.Subscriber
}

func newMx(t *testing.T, upses ...string) *mxRig {
	t.Helper()
	r := &mxRig{t: t, mq: harness.StartMosquitto(t), dir: t.TempDir()}
	if len(upses) == 0 {
		upses = []string{"dummy"}
	}
	var devs []harness.NUTDevice
	for _, n := range upses {
		devs = append(devs, harness.NUTDevice{Name: n, Dev: mxDev})
	}
	r.u = harness.StartUPSD(t, harness.UPSDOptions{Devices: devs})
	pub, priv, err := signing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := signing.EncodePublicKey(pub)
	privPEM, _ := signing.EncodePrivateKey(priv)
	r.pubFile, r.keyFile = filepath.Join(r.dir, "bridge.pub"), filepath.Join(r.dir, "bridge.key")
	if err := os.WriteFile(r.pubFile, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.keyFile, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r.signer = signing.NewSigner(priv)
	r.sub = harness.Subscribe(t, r.mq.URL(), "ub/#")
	return r
}

// mxSource is a NUT source of the bridge: ups (the id on MQTT) reads the
// upsd UPS name; primary logs in with upsmon primary rights.
type mxSource struct {
	ups, name string
	primary   bool
}

// bridge starts the binary as bridge id with the sources (default: nut1
// reading dummy as a secondary) and waits for its first state.
func (r *mxRig) bridge(id, primaryYAML string, sources ...mxSource) *harness.Process {
	r.t.Helper()
	if len(sources) == 0 {
		sources = []mxSource{{ups: "nut1", name: "dummy"}}
	}
	var src strings.Builder
	for _, s := range sources {
		user, pw, extra := harness.NUTMonUser, harness.NUTMonPassword, "login: true"
		if s.primary {
			user, pw, extra = harness.NUTAdminUser, harness.NUTAdminPassword, "primary: true"
		}
		fmt.Fprintf(&src, "  - {id: %s, type: nut, address: %q, ups: %s, username: %s, password: %s, %s, poll_interval: 200ms}\n",
			s.ups, r.u.Addr(), s.name, user, pw, extra)
	}
	since := time.Now()
	p := harness.StartBridge(r.t, fmt.Sprintf(`mqtt: {url: %q, topic_prefix: ub}
hass: {enabled: false}
bridge: {id: %s, state_dir: %s, state_interval: 1s, signing_key_file: %s, primary: {%s}}
sources:
%s`, r.mq.URL(), id, filepath.Join(r.dir, "bridge-"+id), r.keyFile, primaryYAML, src.String()))
	for _, s := range sources {
		r.waitState(s.ups, since, 30*time.Second, func(p *mqttwire.StatePayload) bool { return p.Bridge == id })
	}
	return p
}

// waitState waits for a state of ups published after since (by its ts)
// that satisfies cond, and returns its ts and the payload.
func (r *mxRig) waitState(ups string, since time.Time, timeout time.Duration, cond func(*mqttwire.StatePayload) bool) (time.Time, *mqttwire.StatePayload) {
	r.t.Helper()
	var at time.Time
	var got *mqttwire.StatePayload
	topic := "ub/ups/" + ups + "/state"
	r.sub.WaitFor("a state of "+ups, timeout, func(msgs []harness.Msg) bool {
		for _, m := range msgs {
			if m.Topic != topic || m.Retained {
				continue
			}
			if p := prState(m.Payload); p != nil && !stateTS(r.t, p).Before(since.Truncate(time.Millisecond)) && cond(p) {
				at, got = stateTS(r.t, p), p
				return true
			}
		}
		return false
	})
	return at, got
}

// setStatus rewrites a UPS's .dev and returns when the bridge's state with
// that status arrived.
func (r *mxRig) setStatus(name, ups, status string, runtime int) (time.Time, *mqttwire.StatePayload) {
	r.t.Helper()
	since := time.Now()
	r.u.WriteDev(name, mxDevWith(status, runtime))
	return r.waitState(ups, since, 15*time.Second, func(p *mqttwire.StatePayload) bool {
		return p.Status == status && p.CommOK && (runtime == 0 || fmt.Sprint(p.Vars["battery.runtime"]) == strconv.Itoa(runtime))
	})
}

// stateTS is when the bridge published the state p.
func stateTS(t testing.TB, p *mqttwire.StatePayload) time.Time {
	ts, err := time.Parse(time.RFC3339Nano, p.TS)
	if err != nil {
		t.Fatalf("state ts %q: %v", p.TS, err)
	}
	return ts
}

// lastState is the publication time (ts) of the last live state of ups
// published before the given time, among those this test received. Call
// it once the agent has acted, so that no such state is still on its way
// to this test. The broker may have delivered the very last one to only
// one of this test and the agent when it stopped: T is then off by one
// publication interval (500 ms on battery), inside mxTolerance.
func (r *mxRig) lastState(ups string, before time.Time) time.Time {
	var last time.Time
	for _, m := range r.sub.On("ub/ups/" + ups + "/state") {
		if m.Retained {
			continue
		}
		if p := prState(m.Payload); p != nil {
			if ts := stateTS(r.t, p); ts.Before(before) && ts.After(last) {
				last = ts
			}
		}
	}
	return last
}

// mxAgent is the binary as an agent with recording commands.
type mxAgent struct {
	r    *mxRig
	id   string
	dir  string
	rec  string
	cfg  string
	proc *harness.Process
}

// agent writes the config of agent id; body is the YAML under agent:
// after the common keys. It is not started.
func (r *mxRig) agent(id, body string) *mxAgent {
	r.t.Helper()
	a := &mxAgent{r: r, id: id, dir: filepath.Join(r.dir, "agent-"+id)}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	a.rec = filepath.Join(a.dir, "record.txt")
	script := "#!/bin/sh\necho \"$1 $(date +%s.%N)\" >> " + a.rec + "\n"
	if err := os.WriteFile(filepath.Join(a.dir, "rec.sh"), []byte(script), 0o755); err != nil {
		r.t.Fatal(err)
	}
	a.cfg = fmt.Sprintf(`log: {level: debug}
mqtt: {url: %q, topic_prefix: ub}
hass: {enabled: false}
agent:
  id: %s
  poweroff: command
  shutdown_command: [%s, POWEROFF]
  state_file: %s
%s`, r.mq.URL(), id, filepath.Join(a.dir, "rec.sh"), filepath.Join(a.dir, "agent.json"), body)
	return a
}

// rec is a recording command: the script called with name.
func (a *mxAgent) recCmd(name string) string {
	return fmt.Sprintf("[%s, %s]", filepath.Join(a.dir, "rec.sh"), name)
}

// start runs the agent and waits for its first published state and until
// it reads the supplies' news. The agent publishes its state as soon as
// its writing connection is up, possibly before its reading connection
// has subscribed; a state published in between would reach it later as
// retained history, which never moves a host toward power-off, and the
// agent would act one state late.
func (a *mxAgent) start() *mxAgent {
	a.r.t.Helper()
	since := time.Now()
	a.proc = harness.StartBridge(a.r.t, a.cfg)
	a.waitStatus(since, 30*time.Second, func(st mqttwire.AgentState) bool { return true })
	waitOutput(a.r.t, a.proc, "reading the supplies' news", 30*time.Second)
	return a
}

// waitStatus waits for a state of the agent published after since that
// satisfies cond.
func (a *mxAgent) waitStatus(since time.Time, timeout time.Duration, cond func(mqttwire.AgentState) bool) (time.Time, mqttwire.AgentState) {
	a.r.t.Helper()
	var at time.Time
	var got mqttwire.AgentState
	topic := "ub/agent/" + a.id + "/state"
	a.r.sub.WaitFor("a state of agent "+a.id, timeout, func(msgs []harness.Msg) bool {
		for _, m := range msgs {
			if m.Topic != topic || m.At.Before(since) {
				continue
			}
			if st, offline, err := mqttwire.DecodeAgentState([]byte(m.Payload)); err == nil && !offline && cond(st) {
				at, got = m.At, st
				return true
			}
		}
		return false
	})
	return at, got
}

type mxRec struct {
	name string
	at   time.Time
}

func (a *mxAgent) records() []mxRec {
	f, err := os.Open(a.rec)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mxRec
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, ts, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		fl, _ := strconv.ParseFloat(ts, 64)
		out = append(out, mxRec{name, time.Unix(0, int64(fl*1e9))})
	}
	return out
}

func (a *mxAgent) count(name string) int {
	n := 0
	for _, r := range a.records() {
		if r.name == name {
			n++
		}
	}
	return n
}

// waitRecord waits for the n-th record of name and returns its time.
func (a *mxAgent) waitRecord(name string, n int, timeout time.Duration) time.Time {
	a.r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		k := 0
		for _, r := range a.records() {
			if r.name == name {
				if k++; k == n {
					return r.at
				}
			}
		}
		if time.Now().After(deadline) {
			a.r.t.Fatalf("agent %s: no %s (#%d) within %s; records %v\nagent output:\n%s", a.id, name, n, timeout, a.records(), a.out())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// never asserts that no record of name appears for d.
func (a *mxAgent) never(name string, d time.Duration) {
	a.r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if a.count(name) > 0 {
			a.r.t.Fatalf("agent %s ran %s; records %v\nagent output:\n%s", a.id, name, a.records(), a.out())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *mxAgent) out() string {
	if a.proc == nil {
		return ""
	}
	return a.proc.Output.String()
}

// poweroffAt asserts that the agent powers off at want ± mxTolerance.
func (a *mxAgent) poweroffAt(want time.Time, why string) time.Time {
	a.r.t.Helper()
	return a.poweroffCheck(want, why, false)
}

// poweroffAtBrokerGone is poweroffAt for an agent whose broker is gone: it
// may wait up to mxPublishWait for the acknowledgement of powering_off
// before it powers off. Whether it waits depends on whether the connection
// was already known to be down when it published (an error at once) or a
// publication was in flight when the broker died (no answer), so the
// agent's log says which: want moves by mxPublishWait only when the agent
// logged that powering_off was not confirmed.
func (a *mxAgent) poweroffAtBrokerGone(want time.Time, why string) time.Time {
	a.r.t.Helper()
	return a.poweroffCheck(want, why, true)
}

func (a *mxAgent) poweroffCheck(want time.Time, why string, brokerGone bool) time.Time {
	a.r.t.Helper()
	got := a.waitRecord("POWEROFF", 1, time.Until(want)+mxPublishWait+10*time.Second)
	if brokerGone {
		// Logged after the command ran: the lines before it are in.
		waitOutput(a.r.t, a.proc, "the OS accepted the power off", 10*time.Second)
		if strings.Contains(a.out(), "powering_off not confirmed by the broker") {
			want = want.Add(mxPublishWait)
			why += ", + the wait for the broker's acknowledgement of powering_off"
		}
	}
	d := got.Sub(want)
	a.r.t.Logf("outcome: power-off %s; at T%+.2fs of the expected time (%s)", a.id, d.Seconds(), why)
	mxResult(a.r.t, fmt.Sprintf("power-off at T%+.2fs (%s)", d.Seconds(), why))
	if d < -mxTolerance || d > mxTolerance {
		var b strings.Builder
		for _, m := range a.r.sub.Messages() {
			if strings.HasPrefix(m.Topic, "ub/ups/") && strings.HasSuffix(m.Topic, "/state") {
				if p := prState(m.Payload); p != nil {
					fmt.Fprintf(&b, "  %s %s seq %d status %q critical %v comm_ok %v retained %v\n", m.At.Format("15:04:05.000"), m.Topic, p.Seq, p.Status, p.Critical, p.CommOK, m.Retained)
				}
			}
		}
		a.r.t.Logf("states seen:\n%s", b.String())
		a.r.t.Fatalf("power-off at %s, want %s ± %s (%s)\nagent output:\n%s", got.Format("15:04:05.000"), want.Format("15:04:05.000"), mxTolerance, why, a.out())
	}
	return got
}

// noPoweroff asserts that the agent does not power off for d.
func (a *mxAgent) noPoweroff(d time.Duration, why string) {
	a.r.t.Helper()
	a.never("POWEROFF", d)
	a.r.t.Logf("outcome: no power-off of %s for %s (%s)", a.id, d, why)
	mxResult(a.r.t, fmt.Sprintf("no power-off for %s (%s)", d, why))
}

var (
	mxMu      sync.Mutex
	mxResults = map[string]string{}
)

// mxResult records a cell's outcome for the summary logged at the end.
func mxResult(t *testing.T, s string) {
	mxMu.Lock()
	defer mxMu.Unlock()
	if prev := mxResults[t.Name()]; prev != "" {
		s = prev + "; " + s
	}
	mxResults[t.Name()] = s
}

// signedState is a state of ups as bridge b1 would sign it.
func (r *mxRig) signedState(ups, status string, epoch, seq uint64, ts time.Time, sign bool) []byte {
	st := &bridge.State{UPS: ups, Seq: seq, Status: bridge.ParseStatus(status), Time: ts, Comm: true,
		Vars: bridge.Vars{"ups.status": status, "battery.charge": "50", "battery.runtime": "1200"}}
	st.Critical = st.Status.Has(bridge.FSD) || (st.OnBattery() && st.LowBattery())
	p := mqttwire.NewStatePayload(st, "b1", epoch, ts)
	if sign {
		if err := r.signer.SignState(&p); err != nil {
			r.t.Fatal(err)
		}
	}
	data, _ := json.Marshal(p)
	return data
}

const mxSigned = "  require_signed: true\n  public_key_file: %s\n"

// mxBase is the agent body most cells use: one supply, signed, short
// dead time, a final stage far away (so only critical news or dead time
// power off).
func (r *mxRig) mxBase(extra string) string {
	return fmt.Sprintf(`  supplies: [{ups: nut1, power_value: 1}]
  dead_time: %s
  max_state_age: 30s
  final_delay: %s
`+mxSigned+"%s", mxDeadTime, mxFinalDelay, r.pubFile, extra)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

const mxFarStage = "  stages: [{name: off, on_battery_for: 1h, action: poweroff}]\n"

func TestAgentMatrix(t *testing.T) {
	harness.NeedBinary(t, "mosquitto", "/usr/sbin/mosquitto")
	harness.NUTBinDir(t)
	harness.Binary(t) // build once before the cells start in parallel
	t.Cleanup(func() {
		mxMu.Lock()
		defer mxMu.Unlock()
		keys := make([]string, 0, len(mxResults))
		for k := range mxResults {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "\n  %-60s %s", strings.TrimPrefix(k, "TestAgentMatrix/"), mxResults[k])
		}
		t.Logf("fault matrix outcomes:%s", b.String())
	})

	t.Run("blip_shorter_than_dead_time", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		// dead_time 8 s: the blip (2 s) plus both clients' reconnect
		// backoff stay well inside it.
		const deadTime = 8 * time.Second
		a := r.agent("a1", strings.Replace(r.mxBase(mxFarStage), "dead_time: "+mxDeadTime.String(), "dead_time: "+deadTime.String(), 1)).start()
		r.setStatus("dummy", "nut1", "OB DISCHRG", 3000)
		a.waitStatus(time.Now().Add(-2*time.Second), 10*time.Second, func(st mqttwire.AgentState) bool { return st.Status == mqttwire.AgentOnBattery })
		// The broker goes away for 2 s, then comes back (empty: no
		// persistence); the bridge reconnects and publishes.
		r.mq.Stop()
		time.Sleep(2 * time.Second)
		r.mq.Start()
		a.noPoweroff(deadTime+3*time.Second, "a comm blip of 2 s on battery, dead_time 8 s")
	})

	t.Run("ob_lb", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase(mxFarStage)).start()
		at, _ := r.setStatus("dummy", "nut1", "OB DISCHRG LB", 300)
		a.poweroffAt(at.Add(mxFinalDelay), "critical state + final_delay")
	})

	t.Run("fsd_from_upsd_primary_bridge_secondary", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		br := r.bridge("b1", "host_sync: 1s, final_delay: 0s")
		a := r.agent("a1", r.mxBase(mxFarStage)).start()
		r.setStatus("dummy", "nut1", "OB DISCHRG", 2000)
		since := time.Now()
		if got, err := prUpsdScript(r.u.Addr(), "USERNAME "+harness.NUTAdminUser, "PASSWORD "+harness.NUTAdminPassword,
			"LOGIN dummy", "PRIMARY dummy", "FSD dummy"); err != nil || got != "OK FSD-SET" {
			t.Fatalf("FSD on upsd: %q, %v", got, err)
		}
		at, _ := r.waitState("nut1", since, 10*time.Second, func(p *mqttwire.StatePayload) bool { return prHasFlag(p, "FSD") })
		a.poweroffAt(at.Add(mxFinalDelay), "relayed FSD + final_delay")
		if strings.Contains(br.Output.String(), `"level":"ERROR"`) {
			t.Fatalf("the secondary bridge logged an error:\n%s", br.Output.String())
		}
	})

	t.Run("broker_down_on_mains", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase(mxFarStage)).start()
		r.waitState("nut1", time.Now(), 5*time.Second, func(p *mqttwire.StatePayload) bool { return p.Status == "OL" })
		r.mq.Stop()
		a.noPoweroff(mxDeadTime+4*time.Second, "broker dead on mains")
	})

	t.Run("broker_down_on_battery", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase(mxFarStage)).start()
		r.setStatus("dummy", "nut1", "OB DISCHRG", 2000)
		time.Sleep(500 * time.Millisecond)
		killed := time.Now()
		r.mq.Stop()
		a.waitRecord("POWEROFF", 1, mxDeadTime+mxFinalDelay+mxPublishWait+10*time.Second)
		last := r.lastState("nut1", killed)
		a.poweroffAtBrokerGone(last.Add(mxDeadTime+mxFinalDelay), "last live state + dead_time + final_delay")
	})

	t.Run("bridge_killed_on_battery", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		br := r.bridge("b1", "")
		a := r.agent("a1", r.mxBase(mxFarStage)).start()
		r.setStatus("dummy", "nut1", "OB DISCHRG", 2000)
		time.Sleep(500 * time.Millisecond)
		killed := time.Now()
		br.Kill()
		a.waitRecord("POWEROFF", 1, mxDeadTime+mxFinalDelay+10*time.Second)
		last := r.lastState("nut1", killed)
		a.poweroffAt(last.Add(mxDeadTime+mxFinalDelay), "last live state + dead_time + final_delay")
	})

	t.Run("bridge_killed_on_mains_then_outage", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		br := r.bridge("b1", "")
		a := r.agent("a1", strings.Replace(r.mxBase(mxFarStage), "max_state_age: 30s", "max_state_age: 4s", 1)).start()
		a.waitStatus(time.Now().Add(-5*time.Second), 10*time.Second, func(st mqttwire.AgentState) bool { return st.Protected })
		br.Kill()
		killed := time.Now()
		a.noPoweroff(mxDeadTime+2*time.Second, "bridge dead on mains")
		// Unprotected, and it says so.
		a.waitStatus(killed, 10*time.Second, func(st mqttwire.AgentState) bool { return !st.Protected })
		// The outage comes while the bridge is down; the bridge comes back
		// (a new epoch) and reports it.
		r.u.WriteDev("dummy", mxDevWith("OB DISCHRG LB", 300))
		r.bridge("b1", "")
		at, _ := r.waitState("nut1", killed, 15*time.Second, func(p *mqttwire.StatePayload) bool { return p.Critical })
		a.poweroffAt(at.Add(mxFinalDelay), "the restarted bridge's critical state + final_delay")
	})

	t.Run("agent_restarted_while_staging", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase(""))
		a.cfg += fmt.Sprintf("  stages:\n    - {name: shed, on_battery_for: 1s, run: %s}\n    - {name: off, on_battery_for: 7s, action: poweroff}\n", a.recCmd("shed"))
		a.start()
		t0, _ := r.setStatus("dummy", "nut1", "OB DISCHRG", 2000)
		a.waitRecord("shed", 1, 10*time.Second)
		a.proc.Kill()
		a.start()
		a.poweroffAt(t0.Add(7*time.Second+mxFinalDelay), "outage start + 7 s stage + final_delay, across the restart")
		if n := a.count("shed"); n != 1 {
			t.Fatalf("stage shed ran %d times", n)
		}
	})

	for _, mainsBack := range []bool{false, true} {
		name := "agent_restarted_during_final_stage_still_critical"
		if mainsBack {
			name = "agent_restarted_during_final_stage_mains_back"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newMx(t)
			r.bridge("b1", "")
			a := r.agent("a1", r.mxBase(""))
			slow := filepath.Join(a.dir, "final.sh")
			if err := os.WriteFile(slow, []byte(fmt.Sprintf("#!/bin/sh\n%s final-start\nsleep 3\n%s final-end\n", filepath.Join(a.dir, "rec.sh"), filepath.Join(a.dir, "rec.sh"))), 0o755); err != nil {
				t.Fatal(err)
			}
			a.cfg += fmt.Sprintf("  stages: [{name: off, on_battery_for: 1h, run: [%s], action: poweroff}]\n", slow)
			a.start()
			r.setStatus("dummy", "nut1", "OB DISCHRG LB", 300)
			a.waitRecord("final-start", 1, 10*time.Second)
			a.proc.Kill()
			if mainsBack {
				r.setStatus("dummy", "nut1", "OL", 3000)
			}
			a.start()
			// The agent subscribed (on its clock): states published from
			// then on are live news to it, those before are history.
			started := prLogTime(a.proc, "reading the supplies' news")
			if mainsBack {
				a.noPoweroff(mxDeadTime+5*time.Second, "final stage resumed, live news says on line: cancelled")
				if !strings.Contains(a.out(), "cancel") {
					t.Errorf("the cancelled final stage was not logged:\n%s", a.out())
				}
				return
			}
			// Continues on the first live news, critical: the final stage's
			// command again (3 s), then final_delay.
			live, _ := r.waitState("nut1", started, 10*time.Second, func(p *mqttwire.StatePayload) bool { return p.Critical })
			a.poweroffAt(live.Add(3*time.Second+mxFinalDelay), "first live critical state after the restart + the final stage's command (3 s) + final_delay")
			if n := a.count("POWEROFF"); n != 1 {
				t.Fatalf("%d power-offs", n)
			}
		})
	}

	t.Run("retained_fsd_from_dead_bridge_after_mains_returned", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		br := r.bridge("b1", "")
		since := time.Now()
		r.u.WriteDev("dummy", mxDevWith("OB DISCHRG LB", 300))
		if got, err := prUpsdScript(r.u.Addr(), "USERNAME "+harness.NUTAdminUser, "PASSWORD "+harness.NUTAdminPassword,
			"LOGIN dummy", "PRIMARY dummy", "FSD dummy"); err != nil || got != "OK FSD-SET" {
			t.Fatalf("FSD on upsd: %q, %v", got, err)
		}
		r.waitState("nut1", since, 10*time.Second, func(p *mqttwire.StatePayload) bool { return prHasFlag(p, "FSD") })
		br.Kill()
		r.u.WriteDev("dummy", mxDev) // mains is back; nobody says so
		a := r.agent("a1", r.mxBase(mxFarStage)).start()
		a.noPoweroff(mxDeadTime+4*time.Second, "retained FSD is history, the bridge that said it is gone")
	})

	t.Run("dry_run_to_final_then_real_start", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase(mxFarStage))
		real := a.cfg
		a.cfg += "  dry_run: true\n"
		a.start()
		r.setStatus("dummy", "nut1", "OB DISCHRG LB", 300)
		a.waitStatus(time.Now().Add(-5*time.Second), 15*time.Second, func(st mqttwire.AgentState) bool {
			return st.Status == mqttwire.AgentPoweringOff || st.Status == mqttwire.AgentShuttingDown
		})
		time.Sleep(2 * mxFinalDelay)
		if n := a.count("POWEROFF"); n != 0 {
			t.Fatalf("the dry run powered off")
		}
		a.proc.Stop(t, 10*time.Second)
		r.setStatus("dummy", "nut1", "OL", 3000)
		a.cfg = real
		a.start()
		a.noPoweroff(mxDeadTime+3*time.Second, "a real start after a dry run's final stage, on mains")
	})

	t.Run("forged_unsigned_availability", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase("  stages: [{name: off, on_battery_for: 4s, action: poweroff}]\n")).start()
		evil := harness.NewPublisher(t, r.mq.URL(), "evil")
		evil.MustPublish("ub/ups/nut1/availability", []byte("offline"), true)
		evil.MustPublish("ub/bridge/b1/availability", []byte("offline"), true)
		t0, _ := r.setStatus("dummy", "nut1", "OB DISCHRG", 2000)
		a.poweroffAt(t0.Add(4*time.Second+mxFinalDelay), "the stage's on_battery_for + final_delay, not earlier")
	})

	t.Run("replayed_signed_states", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		br := r.bridge("b1", "")
		// A genuine critical state, recorded by an eavesdropper.
		_, crit := r.setStatus("dummy", "nut1", "OB DISCHRG LB", 300)
		recorded, _ := json.Marshal(crit)
		r.setStatus("dummy", "nut1", "OL", 3000)
		a := r.agent("a1", r.mxBase(mxFarStage)).start()
		evil := harness.NewPublisher(t, r.mq.URL(), "evil")
		evil.MustPublish("ub/ups/nut1/state", recorded, false) // older seq
		a.noPoweroff(mxDeadTime, "replayed older seq")
		br.Stop(t, 10*time.Second)
		r.bridge("b1", "")                                     // a new epoch
		evil.MustPublish("ub/ups/nut1/state", recorded, false) // older epoch
		a.noPoweroff(mxDeadTime, "replayed older epoch")
		if !strings.Contains(a.out(), "replay") {
			t.Fatalf("no replay logged:\n%s", a.out())
		}
	})

	for _, c := range []struct {
		off  time.Duration
		sign bool
	}{{10 * time.Minute, true}, {-10 * time.Minute, true}, {10 * time.Minute, false}, {-10 * time.Minute, false}} {
		t.Run(fmt.Sprintf("states_dated_%+dm_signed_%v", int(c.off.Minutes()), c.sign), func(t *testing.T) {
			t.Parallel()
			r := newMx(t)
			body := r.mxBase(mxFarStage)
			if !c.sign {
				body = strings.Replace(body, fmt.Sprintf(mxSigned, r.pubFile), "", 1)
			}
			// A bridge whose clock is ten minutes off (the binary's clock
			// cannot be moved, so a signing publisher plays the bridge).
			b := harness.NewPublisher(t, r.mq.URL(), "skewed-bridge")
			epoch := uint64(time.Now().Add(c.off).UnixMilli())
			b.MustPublish("ub/ups/nut1/state", r.signedState("nut1", "OL", epoch, 1, time.Now().Add(c.off), c.sign), true)
			a := r.agent("a1", body).start()
			stop := make(chan struct{})
			done := make(chan struct{})
			var mu sync.Mutex
			seq := uint64(1)
			go func() {
				defer close(done)
				tk := time.NewTicker(300 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
					}
					mu.Lock()
					seq++
					s := seq
					mu.Unlock()
					_ = b.Publish("ub/ups/nut1/state", r.signedState("nut1", "OL", epoch, s, time.Now().Add(c.off), c.sign), true)
				}
			}()
			a.waitStatus(time.Now(), 10*time.Second, func(st mqttwire.AgentState) bool { return st.Protected })
			a.noPoweroff(mxDeadTime+time.Second, "skewed states on mains")
			close(stop)
			<-done
			mu.Lock()
			seq++
			s := seq
			mu.Unlock()
			sent := time.Now()
			b.MustPublish("ub/ups/nut1/state", r.signedState("nut1", "OB LB", epoch, s, time.Now().Add(c.off), c.sign), true)
			a.poweroffAt(sent.Add(mxFinalDelay), "a skewed critical state in the known epoch + final_delay")
		})
	}

	for _, pin := range []string{"", "b1"} {
		t.Run("two_bridges_one_ups_id_pin_"+cmpOr(pin, "none"), func(t *testing.T) {
			t.Parallel()
			r := newMx(t)
			b1 := r.bridge("b1", "")
			body := r.mxBase(mxFarStage)
			if pin != "" {
				body = strings.Replace(body, "[{ups: nut1, power_value: 1}]", "[{ups: nut1, power_value: 1, bridge: "+pin+"}]", 1)
			}
			a := r.agent("a1", body).start()
			b2 := r.bridge("b2", "")
			deadline := time.Now().Add(15 * time.Second)
			for !strings.Contains(a.out(), "two bridges publish one UPS id") ||
				!strings.Contains(b1.Output.String()+b2.Output.String(), "ANOTHER BRIDGE") {
				if time.Now().After(deadline) {
					t.Fatalf("two bridges not warned of on both sides:\nagent:\n%s\nb1:\n%s\nb2:\n%s", a.out(), b1.Output.String(), b2.Output.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			mxResult(t, "conflict logged by the agent and a bridge")
			at, _ := r.setStatus("dummy", "nut1", "OB DISCHRG LB", 300)
			a.poweroffAt(at.Add(mxFinalDelay), "critical state + final_delay")
		})
	}

	t.Run("primary_kill_power_after_10s_final_stage", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		br := r.bridge("b1", "host_sync: 6s, max_wait: 1m, final_delay: 1s, kill_power: true, kill_power_delay: 45s", mxSource{ups: "nut1", name: "dummy", primary: true})
		a := r.agent("a1", r.mxBase(""))
		slow := filepath.Join(a.dir, "final.sh")
		if err := os.WriteFile(slow, []byte(fmt.Sprintf("#!/bin/sh\n%s final-start\nsleep 10\n%s final-end\n", filepath.Join(a.dir, "rec.sh"), filepath.Join(a.dir, "rec.sh"))), 0o755); err != nil {
			t.Fatal(err)
		}
		a.cfg += fmt.Sprintf("  stages: [{name: off, on_battery_for: 1h, run: [%s], action: poweroff}]\n", slow)
		a.start()
		since := time.Now()
		r.u.WriteDev("dummy", mxDevWith("OB DISCHRG LB", 300))
		r.waitState("nut1", since, 15*time.Second, func(p *mqttwire.StatePayload) bool { return prHasFlag(p, "FSD") })
		// When the agent published powering_off (its ts), not when this
		// test received it: the bridge may rightly act on it first.
		_, po := a.waitStatus(since, 30*time.Second, func(st mqttwire.AgentState) bool { return st.Status == mqttwire.AgentPoweringOff })
		poweringOff, err := time.Parse(time.RFC3339Nano, po.TS)
		if err != nil {
			t.Fatalf("agent state ts %q: %v", po.TS, err)
		}
		finalEnd := a.waitRecord("final-end", 1, 5*time.Second)
		killAt := prWaitLog(t, br, 30*time.Second, "kill power: sending shutdown.return")
		mxResult(t, fmt.Sprintf("final stage ended %s, powering_off %s, shutdown.return %s (+%.2fs after powering_off)",
			finalEnd.Format("15:04:05.000"), poweringOff.Format("15:04:05.000"), killAt.Format("15:04:05.000"), killAt.Sub(poweringOff).Seconds()))
		if !killAt.After(poweringOff) || !killAt.After(finalEnd) {
			t.Fatalf("shutdown.return at %s, before the agent was powering_off (%s) or its final stage ended (%s)", killAt, poweringOff, finalEnd)
		}
	})

	t.Run("poweroff_failing_twice_then_succeeding", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase(mxFarStage))
		flaky := filepath.Join(a.dir, "flaky.sh")
		rec := filepath.Join(a.dir, "rec.sh")
		if err := os.WriteFile(flaky, []byte(fmt.Sprintf("#!/bin/sh\n%s ATTEMPT\nn=$(grep -c ATTEMPT %s)\nif [ \"$n\" -lt 3 ]; then %s FAILED; exit 1; fi\n%s POWEROFF\n",
			rec, a.rec, rec, rec)), 0o755); err != nil {
			t.Fatal(err)
		}
		a.cfg = strings.Replace(a.cfg, fmt.Sprintf("shutdown_command: [%s, POWEROFF]", rec), "shutdown_command: ["+flaky+"]", 1)
		a.start()
		at, _ := r.setStatus("dummy", "nut1", "OB DISCHRG LB", 300)
		// Attempts at T+final_delay, then 5 s and 10 s after each failure
		// (timed from the command's start and end as it records them: a
		// command's own run time is not the agent's).
		want := at.Add(mxFinalDelay)
		for i, backoff := range []time.Duration{0, 5 * time.Second, 10 * time.Second} {
			if i > 0 {
				want = a.waitRecord("FAILED", i, 20*time.Second).Add(backoff)
			}
			got := a.waitRecord("ATTEMPT", i+1, time.Until(want)+10*time.Second)
			d := got.Sub(want)
			mxResult(t, fmt.Sprintf("attempt %d at T%+.2fs", i+1, d.Seconds()))
			if d < -mxTolerance || d > mxTolerance {
				t.Fatalf("power-off attempt %d at %s, want %s ± %s\nagent output:\n%s", i+1, got.Format("15:04:05.000"), want.Format("15:04:05.000"), mxTolerance, a.out())
			}
		}
		a.waitRecord("POWEROFF", 1, 10*time.Second)
		if n := a.count("ATTEMPT"); n != 3 {
			t.Fatalf("%d attempts, want 3", n)
		}
		failed := 0
		for _, m := range r.sub.On("ub/agent/a1/event") {
			if strings.Contains(m.Payload, `"type":"POWEROFF_FAILED"`) {
				failed++
			}
		}
		if failed != 2 {
			t.Fatalf("%d POWEROFF_FAILED events, want 2", failed)
		}
	})

	t.Run("ups_never_reports_lb_runtime_stage", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		r.bridge("b1", "")
		a := r.agent("a1", r.mxBase("  stages: [{name: off, runtime_below: 5m, action: poweroff}]\n")).start()
		r.setStatus("dummy", "nut1", "OB DISCHRG", 2000)
		a.noPoweroff(2*time.Second, "runtime 2000 s above runtime_below 5m")
		at, _ := r.setStatus("dummy", "nut1", "OB DISCHRG", 200)
		a.poweroffAt(at.Add(mxFinalDelay), "runtime 200 s below runtime_below + final_delay")
	})

	t.Run("two_supplies_min_supplies_1_and_2", func(t *testing.T) {
		t.Parallel()
		r := newMx(t, "dummy1", "dummy2")
		r.bridge("b1", "", mxSource{ups: "nut1", name: "dummy1"}, mxSource{ups: "nut2", name: "dummy2"})
		body := func(min int) string {
			return strings.Replace(r.mxBase(mxFarStage), "[{ups: nut1, power_value: 1}]",
				fmt.Sprintf("[{ups: nut1, power_value: 1}, {ups: nut2, power_value: 1}]\n  min_supplies: %d", min), 1)
		}
		a1 := r.agent("min1", body(1)).start()
		a2 := r.agent("min2", body(2)).start()
		at, _ := r.setStatus("dummy1", "nut1", "OB DISCHRG LB", 300)
		a2.poweroffAt(at.Add(mxFinalDelay), "min_supplies 2, one supply critical")
		a1.noPoweroff(mxDeadTime, "min_supplies 1, one supply left")
		at2, _ := r.setStatus("dummy2", "nut2", "OB DISCHRG LB", 300)
		a1.poweroffAt(at2.Add(mxFinalDelay), "min_supplies 1, both critical")
	})

	t.Run("critical_to_poweroff_latency_20_runs", func(t *testing.T) {
		t.Parallel()
		r := newMx(t)
		const n = 20
		b := harness.NewPublisher(t, r.mq.URL(), "bridge")
		epoch := uint64(time.Now().UnixMilli())
		agents := make([]*mxAgent, n)
		since := time.Now()
		for i := range agents {
			ups := fmt.Sprintf("u%02d", i)
			b.MustPublish("ub/ups/"+ups+"/state", r.signedState(ups, "OL", epoch, 1, time.Now(), true), true)
			body := strings.Replace(r.mxBase(mxFarStage), "[{ups: nut1,", "[{ups: "+ups+",", 1)
			body = strings.Replace(body, "final_delay: "+mxFinalDelay.String(), "final_delay: 0s", 1)
			agents[i] = r.agent(fmt.Sprintf("lat%02d", i), body)
			agents[i].proc = harness.StartBridge(t, agents[i].cfg)
		}
		for _, a := range agents {
			a.waitStatus(since, 60*time.Second, func(mqttwire.AgentState) bool { return true })
		}
		var delays []time.Duration
		for i, a := range agents {
			ups := fmt.Sprintf("u%02d", i)
			sent := time.Now()
			b.MustPublish("ub/ups/"+ups+"/state", r.signedState(ups, "OB LB", epoch, 2, time.Now(), true), true)
			got := a.waitRecord("POWEROFF", 1, 10*time.Second)
			delays = append(delays, got.Sub(sent))
		}
		slices.Sort(delays)
		mxResult(t, fmt.Sprintf("live critical state to power-off command over %d runs: median %s, worst %s", n,
			delays[n/2].Round(time.Millisecond), delays[n-1].Round(time.Millisecond)))
		t.Logf("critical to power-off: median %s, worst %s, all %v", delays[n/2], delays[n-1], delays)
	})
}

// TestAgentMatrixFlood is the flood cell, alone (it takes both cores): a
// hostile client floods for 10 s at full speed while the UPS is on battery
// and the agent's dead_time is 5 s. The agent must not power off: that
// needs a real state through the broker at least every 5 s. Two floods:
// the agent's availability topics only (the agent alone reads them), and
// the state topic (garbage, unsigned states, a replayed signed state),
// which the bridge reads too.
func TestAgentMatrixFlood(t *testing.T) {
	for _, c := range []struct {
		name  string
		state bool
	}{{"availability_topics", false}, {"state_topic", true}} {
		t.Run(c.name, func(t *testing.T) {
			r := newMx(t)
			br := r.bridge("b1", "")
			// The default dead_time (15 s): a flood of 10 s must not be
			// taken for a dead bridge. The broker may drop some real states
			// for a reader it cannot keep up with (max_queued_messages;
			// TestAgentFlood measures how many), but the bridge keeps
			// publishing (its subscriptions are on a connection of their
			// own) and the agent keeps what reaches it.
			a := r.agent("a1", strings.Replace(r.mxBase(mxFarStage), "dead_time: "+mxDeadTime.String(), "dead_time: 15s", 1)).start()
			_, ob := r.setStatus("dummy", "nut1", "OB DISCHRG", 2000)
			replay, _ := json.Marshal(ob)
			a.waitStatus(time.Now().Add(-2*time.Second), 10*time.Second, func(st mqttwire.AgentState) bool { return st.Status == mqttwire.AgentOnBattery })
			msgs := []harness.FloodMsg{
				{Topic: "ub/ups/nut1/availability", Payload: []byte("offline")},
				{Topic: "ub/bridge/b1/availability", Payload: []byte("offline")},
				{Topic: "ub/bridge/other/availability", Payload: []byte("offline")},
			}
			if c.state {
				msgs = []harness.FloodMsg{
					{Topic: "ub/ups/nut1/state", Payload: []byte("\x00garbage\x00garbage")},
					{Topic: "ub/ups/nut1/state", Payload: r.signedState("nut1", "OB LB", 1<<62, 1<<40, time.Now(), false)},
					{Topic: "ub/ups/nut1/state", Payload: replay},
				}
			}
			// The test's own subscriber (ub/#) would be flooded too: it goes.
			r.sub.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			var sent atomic.Uint64
			start := time.Now()
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := harness.Flood(ctx, harness.Addr(r.mq.Port), fmt.Sprintf("evil-%d", i), msgs, 0)
					if err != nil {
						t.Errorf("flood: %v", err)
					}
					sent.Add(n)
				}()
			}
			wg.Wait()
			rate := float64(sent.Load()) / time.Since(start).Seconds()
			t.Logf("flood %.0f messages/s", rate)
			if a.count("POWEROFF") > 0 {
				at := a.records()[0].at
				// A bridge whose publish of a state is stuck logs it when the
				// publish times out (10 s).
				for end := time.Now().Add(12 * time.Second); time.Now().Before(end) && !strings.Contains(br.Output.String(), "mqtt publish failed"); {
					time.Sleep(100 * time.Millisecond)
				}
				stalled := ""
				if strings.Contains(br.Output.String(), "mqtt publish failed") {
					stalled = " (the bridge's own publishing stalled: its publish of a state timed out, see its output)"
				}
				mxResult(t, fmt.Sprintf("FALSE power-off %.1fs into a flood of %.0f messages/s%s", at.Sub(start).Seconds(), rate, stalled))
				t.Fatalf("false power-off %.1fs into the flood: no real state reached the agent for dead_time%s\nagent output:\n%s\nbridge output:\n%s",
					at.Sub(start).Seconds(), stalled, a.out(), br.Output.String())
			}
			a.noPoweroff(6*time.Second, fmt.Sprintf("flood of %.0f messages/s for 10 s on battery, dead_time 15 s", rate))
		})
	}
}
