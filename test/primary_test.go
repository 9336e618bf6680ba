package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// The bridge's side of #13 with real peers: mosquitto, upsd + dummy-ups,
// NUT's upsc, and the upsbridge binary. Agents are simulated by the test
// publishing their states and events.

const prDev = `ups.mfr: Example
ups.model: Sim 1500
ups.status: OL
battery.charge: 100
battery.runtime: 3000
ups.load: 20
ups.delay.shutdown: 20
`

func prDevWith(status string) string {
	return strings.Replace(prDev, "ups.status: OL", "ups.status: "+status, 1)
}

// prState decodes a state payload (nil when it is not one).
func prState(payload string) *mqttwire.StatePayload {
	p, _, err := mqttwire.DecodeState([]byte(payload))
	if err != nil {
		return nil
	}
	return &p
}

func prHasFlag(p *mqttwire.StatePayload, flag string) bool {
	for _, f := range p.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

func prEvents(msgs []harness.Msg, topic string) []string {
	var out []string
	for _, m := range msgs {
		if m.Topic != topic {
			continue
		}
		if p, err := mqttwire.DecodeEvent([]byte(m.Payload)); err == nil {
			out = append(out, p.Type)
		}
	}
	return out
}

func prCount(evs []string, typ string) int {
	n := 0
	for _, e := range evs {
		if e == typ {
			n++
		}
	}
	return n
}

// prUpsc returns one variable as upsc reads it from upsd.
func prUpsc(t *testing.T, u *harness.UPSD, name, variable string) string {
	t.Helper()
	out, err := exec.Command(harness.NeedUpsc(t), name+"@"+u.Addr(), variable).Output()
	if err != nil {
		t.Fatalf("upsc %s %s: %v", name, variable, err)
	}
	return strings.TrimSpace(string(out))
}

// prWaitUpsc polls upsc until cond holds on the variable's value.
func prWaitUpsc(t *testing.T, u *harness.UPSD, name, variable string, timeout time.Duration, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := prUpsc(t, u, name, variable)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("upsc %s %s = %q after %s", name, variable, v, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// prLogTime returns the time of the first JSON log line of p containing
// every one of subs (zero if none).
func prLogTime(p *harness.Process, subs ...string) time.Time {
	sc := bufio.NewScanner(strings.NewReader(p.Output.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if !ok {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(l), &rec) == nil {
			return rec.Time
		}
	}
	return time.Time{}
}

func prWaitLog(t *testing.T, p *harness.Process, timeout time.Duration, subs ...string) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if at := prLogTime(p, subs...); !at.IsZero() {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %s:\n%s", subs, timeout, p.Output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// prAgentState is an agent's state fed by ups.
func prAgentState(agent, status, ups string) string {
	b, _ := json.Marshal(mqttwire.AgentState{Agent: agent, TS: mqttwire.FormatTime(time.Now()), Status: status, Protected: true,
		Supplies: []mqttwire.SupplyStatus{{UPS: ups, PowerValue: 1}}})
	return string(b)
}

// prHeartbeat publishes the agent's status every 500 ms until stop closes.
func prHeartbeat(t *testing.T, s *harness.Subscriber, agent, status, ups string, stop <-chan struct{}) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			harness.PublishRetained(t, s, "ub/agent/"+agent+"/state", prAgentState(agent, status, ups))
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return done
}

func prBridgeYAML(mqURL, stateDir, primary, sources string) string {
	return fmt.Sprintf(`mqtt: {url: %q, topic_prefix: ub}
hass: {enabled: false}
bridge: {id: b1, state_dir: %s, state_interval: 2s, primary: {%s}}
sources:
%s`, mqURL, stateDir, primary, sources)
}

// TestBridgeNUTSecondaryNeverInventsFSD: a bridge that is only a NUT
// secondary (the Synology case) sees OB LB: it publishes critical, but no
// FSD in its states, no FSD event, no handshake, no error; when upsd's
// primary sets FSD the bridge relays it.
func TestBridgeNUTSecondaryNeverInventsFSD(t *testing.T) {
	mq := harness.StartMosquitto(t)
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: prDevWith("OB DISCHRG LB")}}})
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/nut1/#")
	br := harness.StartBridge(t, prBridgeYAML(mq.URL(), t.TempDir(), "host_sync: 1s, final_delay: 0s, kill_power: true",
		fmt.Sprintf("  - {id: nut1, type: nut, address: %q, ups: dummy, username: %s, password: %s, login: true, poll_interval: 200ms}\n",
			u.Addr(), harness.NUTMonUser, harness.NUTMonPassword)))
	first := sub.WaitPayload("ub/ups/nut1/state", 20*time.Second, func(p string) bool {
		s := prState(p)
		return s != nil && s.Critical
	})
	// Longer than host_sync + final_delay: a primary would have set FSD,
	// run its handshake and cut the power by now.
	sub.WaitFor("states for 4 s after the first critical one", 20*time.Second, func(msgs []harness.Msg) bool {
		for _, m := range msgs {
			if m.Topic == "ub/ups/nut1/state" && m.At.Sub(first.At) > 4*time.Second {
				return true
			}
		}
		return false
	})
	for _, m := range sub.On("ub/ups/nut1/state") {
		if s := prState(m.Payload); s != nil && (prHasFlag(s, "FSD") || strings.Contains(s.Status, "FSD")) {
			t.Fatalf("a secondary invented FSD: %s", m.Payload)
		}
	}
	evs := prEvents(sub.Messages(), "ub/ups/nut1/event")
	for _, bad := range []string{"FSD", "HOSTSYNC", "KILLPOWER", "KILLPOWER_FAILED"} {
		if prCount(evs, bad) != 0 {
			t.Fatalf("a secondary emitted %s: %v", bad, evs)
		}
	}
	if prCount(evs, "LOWBATT") != 1 {
		t.Fatalf("events %v: want LOWBATT once", evs)
	}
	if st := prUpsc(t, u, "dummy", "ups.status"); strings.Contains(st, "FSD") {
		t.Fatalf("upsd has FSD (%q): the secondary set it", st)
	}
	if strings.Contains(br.Output.String(), `"level":"ERROR"`) {
		t.Fatalf("a secondary logged an error on an ordinary outage:\n%s", br.Output.String())
	}

	// upsd's primary (here: the test, logged in with upsmon primary
	// rights) sets FSD: the bridge relays it.
	if got, err := prUpsdScript(u.Addr(), "USERNAME "+harness.NUTAdminUser, "PASSWORD "+harness.NUTAdminPassword,
		"LOGIN dummy", "PRIMARY dummy", "FSD dummy"); err != nil || got != "OK FSD-SET" {
		t.Fatalf("FSD on upsd: %q, %v", got, err)
	}
	sub.WaitPayload("ub/ups/nut1/state", 10*time.Second, func(p string) bool {
		s := prState(p)
		return s != nil && s.Critical && prHasFlag(s, "FSD")
	})
	sub.WaitPayload("ub/ups/nut1/event", 10*time.Second, func(p string) bool { return strings.Contains(p, `"type":"FSD"`) })
	if n := prCount(prEvents(sub.Messages(), "ub/ups/nut1/event"), "FSD"); n != 1 {
		t.Fatalf("%d FSD events for upsd's FSD, want 1", n)
	}
	if strings.Contains(br.Output.String(), "kill power") {
		t.Fatalf("a secondary tried to cut the power:\n%s", br.Output.String())
	}
}

// prUpsdScript sends requests in order on one connection to upsd and
// returns the answer to the last.
func prUpsdScript(addr string, reqs ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var l string
	for _, r := range reqs {
		if _, err := fmt.Fprintf(c, "%s\n", r); err != nil {
			return "", err
		}
		if l, err = br.ReadString('\n'); err != nil {
			return "", err
		}
	}
	return strings.TrimRight(l, "\r\n"), nil
}

// TestBridgeNUTPrimarySetsFSDUpstream: with primary: true the bridge sets
// FSD on upsd when the UPS turns critical (upsc sees it, so classic upsmon
// secondaries shut down too), publishes it and starts the handshake.
func TestBridgeNUTPrimarySetsFSDUpstream(t *testing.T) {
	mq := harness.StartMosquitto(t)
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: prDev}}})
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/nut1/#")
	harness.StartBridge(t, prBridgeYAML(mq.URL(), t.TempDir(), "host_sync: 1s",
		fmt.Sprintf("  - {id: nut1, type: nut, address: %q, ups: dummy, username: %s, password: %s, primary: true, poll_interval: 200ms}\n",
			u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword)))
	sub.WaitPayload("ub/ups/nut1/state", 20*time.Second, func(p string) bool { s := prState(p); return s != nil && s.Status == "OL" })
	if st := prUpsc(t, u, "dummy", "ups.status"); strings.Contains(st, "FSD") {
		t.Fatalf("FSD on mains: %q", st)
	}
	u.WriteDev("dummy", prDevWith("OB DISCHRG LB"))
	prWaitUpsc(t, u, "dummy", "ups.status", 15*time.Second, func(v string) bool { return strings.Contains(v, "FSD") })
	sub.WaitPayload("ub/ups/nut1/state", 10*time.Second, func(p string) bool {
		s := prState(p)
		return s != nil && s.Critical && prHasFlag(s, "FSD")
	})
	sub.WaitFor("FSD and HOSTSYNC events", 10*time.Second, func(msgs []harness.Msg) bool {
		evs := prEvents(msgs, "ub/ups/nut1/event")
		return prCount(evs, "FSD") >= 1 && prCount(evs, "HOSTSYNC") == 1
	})
}

// TestBridgePrimaryKillPowerAfterAgents: as the NUT primary with
// kill_power, the bridge sends shutdown.return strictly after the agent fed
// by the UPS has been powering_off for host_sync (plus final_delay), having
// set ups.delay.shutdown to kill_power_delay first (dummy-ups lets it; it
// has no shutdown.return, so the kill is reported as failed).
func TestBridgePrimaryKillPowerAfterAgents(t *testing.T) {
	const hostSync, finalDelay = 2 * time.Second, time.Second
	mq := harness.StartMosquitto(t)
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: prDev}}})
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/nut1/#", "ub/agent/#")
	// The agent is known before the outage (its retained idle state).
	harness.PublishRetained(t, sub, "ub/agent/web01/state", prAgentState("web01", mqttwire.AgentIdle, "nut1"))
	t.Cleanup(func() { harness.PublishRetained(t, sub, "ub/agent/web01/state", "") })
	br := harness.StartBridge(t, prBridgeYAML(mq.URL(), t.TempDir(),
		fmt.Sprintf("host_sync: %s, max_wait: 1m, final_delay: %s, kill_power: true, kill_power_delay: 45s", hostSync, finalDelay),
		fmt.Sprintf("  - {id: nut1, type: nut, address: %q, ups: dummy, username: %s, password: %s, primary: true, poll_interval: 200ms}\n",
			u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword)))
	sub.WaitPayload("ub/ups/nut1/state", 20*time.Second, func(p string) bool { s := prState(p); return s != nil && s.Status == "OL" })
	u.WriteDev("dummy", prDevWith("OB DISCHRG LB"))
	sub.WaitPayload("ub/ups/nut1/state", 15*time.Second, func(p string) bool { s := prState(p); return s != nil && prHasFlag(s, "FSD") })
	// The agent runs its final stage for 4 s (heartbeats), then powers off.
	stop := make(chan struct{})
	<-prHeartbeat(t, sub, "web01", mqttwire.AgentShuttingDown, "nut1", closeAfter(stop, 4*time.Second))
	poweringOff := time.Now()
	stop2 := make(chan struct{})
	hb := prHeartbeat(t, sub, "web01", mqttwire.AgentPoweringOff, "nut1", stop2)
	t.Cleanup(func() { close(stop2); <-hb })
	if at := prLogTime(br, "kill power: sending shutdown.return"); !at.IsZero() {
		t.Fatalf("kill while the agent was still shutting down (at %s, powering_off at %s)", at, poweringOff)
	}
	killAt := prWaitLog(t, br, 20*time.Second, "kill power: sending shutdown.return")
	t.Logf("powering_off published at %s, shutdown.return sent at %s (+%s; host_sync %s, final_delay %s)",
		poweringOff.Format("15:04:05.000"), killAt.Format("15:04:05.000"), killAt.Sub(poweringOff).Round(time.Millisecond), hostSync, finalDelay)
	if !killAt.After(poweringOff.Add(hostSync + finalDelay)) {
		t.Fatalf("kill at %s: not after powering_off (%s) + host_sync + final_delay", killAt, poweringOff)
	}
	// The slack covers setting ups.delay.shutdown (upsd's tracking answer).
	if killAt.After(poweringOff.Add(hostSync + finalDelay + 5*time.Second)) {
		t.Fatalf("kill at %s: the primary kept waiting after host_sync + final_delay", killAt)
	}
	if v := prUpsc(t, u, "dummy", "ups.delay.shutdown"); v != "45" {
		t.Fatalf("ups.delay.shutdown = %q, want kill_power_delay 45", v)
	}
	sub.WaitFor("HOST_DOWN, HOSTS_DOWN and KILLPOWER_FAILED events", 30*time.Second, func(msgs []harness.Msg) bool {
		evs := prEvents(msgs, "ub/ups/nut1/event")
		return prCount(evs, "HOST_DOWN") == 1 && prCount(evs, "HOSTS_DOWN") == 1 && prCount(evs, "KILLPOWER_FAILED") == 1
	})
}

func closeAfter(c chan struct{}, d time.Duration) chan struct{} {
	time.AfterFunc(d, func() { close(c) })
	return c
}

// TestBridgePrimaryKillPowerAfterAgentOffline: the same with an agent
// whose host goes down (offline, as its Will says) after its final stage:
// the kill follows offline plus final_delay.
func TestBridgePrimaryKillPowerAfterAgentOffline(t *testing.T) {
	const finalDelay = 2 * time.Second
	mq := harness.StartMosquitto(t)
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: prDev}}})
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/nut1/#", "ub/agent/#")
	harness.PublishRetained(t, sub, "ub/agent/db01/state", prAgentState("db01", mqttwire.AgentIdle, "nut1"))
	t.Cleanup(func() { harness.PublishRetained(t, sub, "ub/agent/db01/state", "") })
	br := harness.StartBridge(t, prBridgeYAML(mq.URL(), t.TempDir(),
		fmt.Sprintf("host_sync: 10s, final_delay: %s, kill_power: true", finalDelay),
		fmt.Sprintf("  - {id: nut1, type: nut, address: %q, ups: dummy, username: %s, password: %s, primary: true, poll_interval: 200ms}\n",
			u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword)))
	sub.WaitPayload("ub/ups/nut1/state", 20*time.Second, func(p string) bool { s := prState(p); return s != nil && s.Status == "OL" })
	u.WriteDev("dummy", prDevWith("OB DISCHRG LB"))
	sub.WaitPayload("ub/ups/nut1/state", 15*time.Second, func(p string) bool { s := prState(p); return s != nil && prHasFlag(s, "FSD") })
	stop := make(chan struct{})
	<-prHeartbeat(t, sub, "db01", mqttwire.AgentShuttingDown, "nut1", closeAfter(stop, 3*time.Second))
	offline := time.Now()
	harness.PublishRetained(t, sub, "ub/agent/db01/state", mqttwire.Offline)
	killAt := prWaitLog(t, br, 15*time.Second, "kill power: sending shutdown.return")
	t.Logf("offline at %s, shutdown.return sent at %s (+%s; final_delay %s)", offline.Format("15:04:05.000"), killAt.Format("15:04:05.000"),
		killAt.Sub(offline).Round(time.Millisecond), finalDelay)
	// The slack covers setting ups.delay.shutdown (upsd's tracking answer).
	if !killAt.After(offline.Add(finalDelay)) || killAt.After(offline.Add(finalDelay+5*time.Second)) {
		t.Fatalf("kill at %s, want within 5 s after offline (%s) + final_delay", killAt, offline)
	}
}

// TestBridgeEpochGrows: the epoch comes from the retained states when the
// state dir is lost, and from the state dir when the retained states are
// gone, even while the clock is behind both (a retained state from the
// "future" stands for a clock that was stepped back).
func TestBridgeEpochGrows(t *testing.T) {
	mq := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/sim1/state")
	future := uint64(time.Now().Add(24 * time.Hour).UnixMilli())
	harness.PublishRetained(t, sub, "ub/ups/sim1/state", fmt.Sprintf(`{"ups":"sim1","bridge":"b1","epoch":%d,"seq":7,"ts":"2026-01-01T00:00:00.000Z","comm_ok":true,"status":"OL","flags":["OL"],"vars":{}}`, future))
	t.Cleanup(func() { harness.PublishRetained(t, sub, "ub/ups/sim1/state", "") })
	src := "  - {id: sim1, type: sim, scenario: steady, poll_interval: 200ms}\n"
	run := func(stateDir string, after uint64) uint64 {
		t.Helper()
		n := len(sub.On("ub/ups/sim1/state"))
		br := harness.StartBridge(t, prBridgeYAML(mq.URL(), stateDir, "", src))
		var got uint64
		sub.WaitFor("a state of this run", 20*time.Second, func(msgs []harness.Msg) bool {
			ms := sub.On("ub/ups/sim1/state")
			for _, m := range ms[min(n, len(ms)):] {
				if s := prState(m.Payload); s != nil && !m.Retained && s.Epoch != after {
					got = s.Epoch
					return true
				}
			}
			return false
		})
		if code := br.Stop(t, 10*time.Second); code != 0 {
			t.Fatalf("bridge exit %d", code)
		}
		return got
	}
	dir1 := filepath.Join(t.TempDir(), "state")
	e1 := run(dir1, future)
	if e1 != future+1 {
		t.Fatalf("first run: epoch %d, want the retained %d + 1", e1, future)
	}
	// The state dir is lost: the retained state of the last run gives it.
	if err := os.RemoveAll(dir1); err != nil {
		t.Fatal(err)
	}
	e2 := run(dir1, e1)
	if e2 != e1+1 {
		t.Fatalf("state dir lost: epoch %d, want the retained %d + 1", e2, e1)
	}
	// The retained state is cleared: the state dir gives it.
	harness.PublishRetained(t, sub, "ub/ups/sim1/state", "")
	e3 := run(dir1, e2)
	if e3 != e2+1 {
		t.Fatalf("retained state cleared: epoch %d, want the stored %d + 1", e3, e2)
	}
	t.Logf("epochs: retained future %d -> %d -> %d -> %d", future, e1, e2, e3)
}

// TestBridgeWarnsAboutDuplicatePublisher: another bridge's state on this
// bridge's UPS id, retained or live, is warned about loudly.
func TestBridgeWarnsAboutDuplicatePublisher(t *testing.T) {
	mq := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/sim1/state")
	other := `{"ups":"sim1","bridge":"b2","epoch":5,"seq":1,"ts":"2026-01-01T00:00:00.000Z","comm_ok":true,"status":"OL","flags":["OL"],"vars":{}}`
	harness.PublishRetained(t, sub, "ub/ups/sim1/state", other)
	br := harness.StartBridge(t, prBridgeYAML(mq.URL(), t.TempDir(), "", "  - {id: sim1, type: sim, scenario: steady, poll_interval: 200ms}\n"))
	prWaitLog(t, br, 20*time.Second, "A RETAINED STATE OF ANOTHER BRIDGE", `"other_bridge":"b2"`)
	sub.WaitPayload("ub/ups/sim1/state", 20*time.Second, func(p string) bool { s := prState(p); return s != nil && s.Bridge == "b1" })
	harness.Publish(t, sub, "ub/ups/sim1/state", strings.Replace(other, `"b2"`, `"b3"`, 1))
	prWaitLog(t, br, 10*time.Second, "ANOTHER BRIDGE PUBLISHES ONE OF THIS BRIDGE'S UPS IDS", `"other_bridge":"b3"`)
	// Its own states, echoed by the broker, are not duplicates.
	out := br.Output.String()
	if n, m := strings.Count(out, "ANOTHER BRIDGE PUBLISHES"), strings.Count(out, "A RETAINED STATE OF ANOTHER BRIDGE"); n != 1 || m != 1 {
		t.Fatalf("%d live and %d retained duplicate warnings, want 1 each:\n%s", n, m, out)
	}
}

// TestBridgeRelaysAgentEventsToNotifiers: an agent's POWERING_OFF reaches
// the bridge's notifier (a real exec notifier recording its calls) through
// the bridge's own MQTT connection; a flood from one client reaches it only
// up to the per-agent burst; the bridge never republishes these on a UPS's
// event topic.
func TestBridgeRelaysAgentEventsToNotifiers(t *testing.T) {
	mq := harness.StartMosquitto(t)
	dir := t.TempDir()
	record := filepath.Join(dir, "notified.txt")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$NOTIFYTYPE $UPSBRIDGE_HOST $1\" >> "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/sim1/event", "ub/bridge/#")
	harness.StartBridge(t, prBridgeYAML(mq.URL(), filepath.Join(dir, "state"), "",
		"  - {id: sim1, type: sim, scenario: steady, poll_interval: 200ms}\n")+fmt.Sprintf(`notify:
  - name: ops
    type: exec
    command: [%q]
    events: [all]
    flap_window: 0s
    rate_limit: 1000
`, script))
	sub.WaitPayload("ub/bridge/b1/availability", 20*time.Second, func(p string) bool { return p == "online" })
	ev := func(agent, typ, msg string) string {
		b, _ := json.Marshal(mqttwire.AgentEvent{Agent: agent, TS: mqttwire.FormatTime(time.Now()), Type: typ, UPS: "sim1", Message: msg})
		return string(b)
	}
	for i := range 200 {
		harness.Publish(t, sub, "ub/agent/spam/event", ev("spam", "STAGE", fmt.Sprintf("spam-%d", i)))
	}
	harness.Publish(t, sub, "ub/agent/web01/event", ev("web01", "POWERING_OFF", "Host web01 is powering off"))
	deadline := time.Now().Add(20 * time.Second)
	var got string
	for !strings.Contains(got, "POWERING_OFF web01 Host web01 is powering off") {
		if time.Now().After(deadline) {
			t.Fatalf("web01's POWERING_OFF did not reach the notifier; it got:\n%s", got)
		}
		time.Sleep(50 * time.Millisecond)
		b, _ := os.ReadFile(record)
		got = string(b)
	}
	n := strings.Count(got, "spam-")
	t.Logf("%d of 200 flooded events reached the notifier", n)
	if n == 0 || n > 10 {
		t.Fatalf("%d of 200 flooded events reached the notifier, want 1..10 (the burst):\n%s", n, got)
	}
	for _, typ := range prEvents(sub.Messages(), "ub/ups/sim1/event") {
		if typ == "POWERING_OFF" || typ == "STAGE" {
			t.Fatalf("the bridge republished an agent's %s on the UPS's event topic", typ)
		}
	}
}

// TestBridgeStatesAfterCommLost: after the UPS is lost the bridge keeps
// publishing (dead time, then every state_interval) states with comm_ok
// false, the old reading's reading_ts, and each its own fresh ts and a new
// seq in the same epoch, so agents take them as news.
func TestBridgeStatesAfterCommLost(t *testing.T) {
	mq := harness.StartMosquitto(t)
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: prDevWith("OB DISCHRG")}}})
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/nut1/state")
	harness.StartBridge(t, strings.Replace(prBridgeYAML(mq.URL(), t.TempDir(), "",
		fmt.Sprintf("  - {id: nut1, type: nut, address: %q, ups: dummy, poll_interval: 200ms}\n", u.Addr())),
		"state_interval: 2s,", "state_interval: 2s, dead_time: 2s,", 1))
	sub.WaitPayload("ub/ups/nut1/state", 20*time.Second, func(p string) bool { s := prState(p); return s != nil && s.CommOK && s.OnBattery })
	u.StopDriver("dummy")
	var lost []*mqttwire.StatePayload
	sub.WaitFor("three states after communication was lost, one critical", 30*time.Second, func(msgs []harness.Msg) bool {
		lost = lost[:0]
		critical := false
		for _, m := range msgs {
			if s := prState(m.Payload); s != nil && !s.CommOK {
				lost = append(lost, s)
				critical = critical || s.Critical
			}
		}
		return len(lost) >= 3 && critical
	})
	for i := 1; i < len(lost); i++ {
		a, b := lost[i-1], lost[i]
		if b.Epoch != a.Epoch || b.Seq <= a.Seq {
			t.Fatalf("state %d: (epoch %d, seq %d) after (%d, %d)", i, b.Epoch, b.Seq, a.Epoch, a.Seq)
		}
		if b.TS <= a.TS {
			t.Fatalf("state %d: ts %s not after %s", i, b.TS, a.TS)
		}
		if b.ReadingTS != a.ReadingTS || b.ReadingTS >= b.TS {
			t.Fatalf("state %d: reading_ts %s (previous %s) is not the old reading before ts %s", i, b.ReadingTS, a.ReadingTS, b.TS)
		}
	}
}
