package test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/sinks/mqtt"
)

// nutBridgeConfig is a bridge reading one NUT source and publishing to the
// broker.
func nutBridgeConfig(brokerURL, stateDir, extra string, sources ...string) string {
	return fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: nute2e, state_dir: %s}
%s
sources:
%s
`, brokerURL, stateDir, extra, strings.Join(sources, "\n"))
}

// waitEvent waits for the next event of type typ on the UPS's event topic
// after the first `after` messages, and returns it.
func waitEvent(t *testing.T, sub *harness.Subscriber, topic, typ string, after int, timeout time.Duration) (harness.Msg, int) {
	t.Helper()
	var found harness.Msg
	var idx int
	sub.WaitFor(typ+" on "+topic, timeout, func(msgs []harness.Msg) bool {
		n := 0
		for _, m := range msgs {
			if m.Topic != topic {
				continue
			}
			n++
			if n <= after {
				continue
			}
			if len(eventTypes([]harness.Msg{m}, topic)) == 1 && eventTypes([]harness.Msg{m}, topic)[0] == typ {
				found, idx = m, n
				return true
			}
		}
		return false
	})
	return found, idx
}

// servedAt rewrites the .dev with a new status and returns when upsd first
// serves it (polled every 2 ms): the start of the detection latency.
func servedAt(t *testing.T, u *harness.UPSD, name, status string) time.Time {
	t.Helper()
	u.WriteDev(name, devWith(status))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, err := u.GetVar(name, "ups.status"); err == nil && v == status {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("upsd did not serve %q within 10s", status)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// End to end through the real binary, upsd and mosquitto: OL -> OB -> OB LB
// -> OL gives ONBATT, LOWBATT, ONLINE, each within poll interval plus a
// little of upsd serving it; a stopped driver gives COMMBAD after MAXAGE
// and COMMOK after SIGCONT; a killed upsd gives COMMBAD, its restart
// COMMOK; an FSD set by another primary is seen; an instant command from
// MQTT returns the driver's answer.
func TestNUTEndToEnd(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{MaxAge: 3, Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	broker := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/#")
	cfg := nutBridgeConfig(broker.URL(), t.TempDir(), "", fmt.Sprintf(
		`  - {id: nas, type: nut, address: "%s", ups: dummy, username: %s, password: %s, poll_interval: 1s, poll_interval_on_battery: 500ms}`,
		u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword))
	harness.StartBridge(t, strings.Replace(cfg, "mqtt: {url: "+broker.URL()+"}", "mqtt: {url: "+broker.URL()+", commands: {allow_dangerous: [load.off]}}", 1))
	ev := "upsbridge/ups/nas/event"
	sub.WaitPayload("upsbridge/ups/nas/availability", 30*time.Second, func(s string) bool { return s == "online" })
	sub.WaitPayload("upsbridge/ups/nas/state", 10*time.Second, func(s string) bool { return strings.Contains(s, `"OL"`) })

	n := 0
	for _, step := range []struct {
		status, event string
		limit         time.Duration // poll interval in force before the change, plus slack
	}{
		{"OB DISCHRG", "ONBATT", time.Second},
		{"OB LB", "LOWBATT", 500 * time.Millisecond},
		{"OL CHRG", "ONLINE", 500 * time.Millisecond},
	} {
		served := servedAt(t, u, "dummy", step.status)
		var m harness.Msg
		m, n = waitEvent(t, sub, ev, step.event, n, 10*time.Second)
		lat := m.At.Sub(served)
		t.Logf("%s: %s after upsd served %q", step.event, lat.Round(time.Millisecond), step.status)
		if lat > step.limit+300*time.Millisecond {
			t.Errorf("%s took %s, want within %s + a few ms", step.event, lat, step.limit)
		}
	}

	// Instant command through MQTT: dummy-ups does not implement load.off,
	// and tracking brings its answer back.
	pub := harness.Subscribe(t, broker.URL(), "none/#")
	harness.Publish(t, pub, "upsbridge/ups/nas/command", `{"command":"load.off"}`)
	msgs := sub.WaitFor("command result", 20*time.Second, func(m []harness.Msg) bool {
		for _, x := range m {
			if x.Topic == "upsbridge/ups/nas/command/result" {
				return true
			}
		}
		return false
	})
	for _, m := range msgs {
		if m.Topic == "upsbridge/ups/nas/command/result" {
			var r mqtt.CommandResponse
			if err := json.Unmarshal([]byte(m.Payload), &r); err != nil || r.Status != "UNKNOWN" {
				t.Errorf("load.off result = %s, want the driver's UNKNOWN", m.Payload)
			}
		}
	}

	// Driver stopped: COMMBAD after MAXAGE; SIGCONT: COMMOK.
	u.SignalDriver("dummy", syscall.SIGSTOP)
	stopped := time.Now()
	m, n := waitEvent(t, sub, ev, "COMMBAD", n, 20*time.Second)
	t.Logf("COMMBAD %s after SIGSTOP (MAXAGE 3)", m.At.Sub(stopped).Round(time.Millisecond))
	u.SignalDriver("dummy", syscall.SIGCONT)
	_, n = waitEvent(t, sub, ev, "COMMOK", n, 15*time.Second)

	// upsd killed: COMMBAD; restarted: COMMOK.
	u.Kill()
	_, n = waitEvent(t, sub, ev, "COMMBAD", n, 10*time.Second)
	u.Start()
	_, n = waitEvent(t, sub, ev, "COMMOK", n, 30*time.Second)

	// FSD set by another primary (as upsmon would) is seen.
	if out, err := upsdScript(u.Addr(), "USERNAME admin", "PASSWORD secret", "FSD dummy"); err != nil || !strings.HasPrefix(out, "OK FSD-SET") {
		t.Fatalf("FSD: %q, %v", out, err)
	}
	waitEvent(t, sub, ev, "FSD", n, 10*time.Second)
}

// TestNUTDetectionLatency measures, over 20 OL/OB flips, the time from
// upsd serving the change to the event on MQTT (median and worst). With a
// 1 s poll interval the bound is about 1 s (0.5 s on battery) plus a few ms.
func TestNUTDetectionLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	broker := harness.StartMosquitto(t)
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/ups/nas/event", "upsbridge/ups/nas/availability")
	harness.StartBridge(t, nutBridgeConfig(broker.URL(), t.TempDir(), "", fmt.Sprintf(
		`  - {id: nas, type: nut, address: "%s", ups: dummy}`, u.Addr())))
	sub.WaitPayload("upsbridge/ups/nas/availability", 30*time.Second, func(s string) bool { return s == "online" })
	time.Sleep(1500 * time.Millisecond) // a first reading exists, so the first OL is not an event
	ev := "upsbridge/ups/nas/event"
	var lats []time.Duration
	n := 0
	for i := 0; i < 20; i++ {
		status, event := "OB DISCHRG", "ONBATT"
		if i%2 == 1 {
			status, event = "OL", "ONLINE"
		}
		served := servedAt(t, u, "dummy", status)
		var m harness.Msg
		m, n = waitEvent(t, sub, ev, event, n, 10*time.Second)
		lats = append(lats, m.At.Sub(served))
	}
	sorted := append([]time.Duration(nil), lats...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	t.Logf("detection latency over %d flips: median %s, worst %s (ONBATT bounded by poll_interval 1s, ONLINE by poll_interval_on_battery 500ms)",
		len(sorted), sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
	for i, l := range lats {
		bound := time.Second
		if i%2 == 1 {
			bound = 500 * time.Millisecond
		}
		if l > bound+300*time.Millisecond {
			t.Errorf("flip %d: %s, over %s + slack", i, l, bound)
		}
	}
}
