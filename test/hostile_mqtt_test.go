package test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// TestHostileMQTTClient: a client on the broker floods every topic the
// bridge subscribes to (commands, set, Home Assistant's birth, the scan
// notice) with junk, then with payloads of 900 KB and 5 MB. The bridge
// (real binary, without the race detector) stays within bounded memory
// measured from the process, refuses what is too large, and the healthy
// UPS's states and events keep flowing.
func TestHostileMQTTClient(t *testing.T) {
	const poll = 500 * time.Millisecond
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	broker := harness.StartMosquitto(t)
	// Only what the bridge publishes: the attack's own messages on the
	// command topics would queue in front of the events at this client.
	sub := harness.Subscribe(t, broker.URL(), "upsbridge/ups/good/state", "upsbridge/ups/good/event")
	p := harness.StartBinary(t, harness.PlainBinary(t), nutBridgeConfig(broker.URL(), t.TempDir(), "", fmt.Sprintf(
		`  - {id: good, type: nut, address: "%s", ups: dummy, username: %s, password: %s, poll_interval: %s, poll_interval_on_battery: %s}`,
		u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword, poll, poll)))
	sub.WaitPayload("upsbridge/ups/good/state", 30*time.Second, func(s string) bool { return strings.Contains(s, `"OL"`) })

	topics := []string{
		"upsbridge/ups/good/command", "upsbridge/ups/good/set", "upsbridge/ups/ghost/command",
		"upsbridge/ups/../command", "homeassistant/status", "upsbridge/bridge/nute2e/hass/scan",
	}
	junk := [][]byte{
		[]byte(`{"command":"no.such.command"}`), []byte(`{"var":"battery.charge.low","value":"`), []byte("online"),
		[]byte("done"), []byte{0xff, 0x00, 0xfe}, []byte(`{"command":` + strings.Repeat("[", 3000) + `}`), nil,
	}
	attacker := harness.Subscribe(t, broker.URL(), "none/#")

	var sent, refused atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	attack := func(payloads func(i int) []byte, n int) {
		defer wg.Done()
		for i := 0; i < n; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := harness.PublishBytes(attacker, topics[i%len(topics)], payloads(i), byte(i%2)); err != nil {
				refused.Add(1)
			} else {
				sent.Add(1)
			}
		}
	}

	var rss []int
	sample := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			rss = append(rss, memKB(t, p.PID(), "VmRSS"))
		}
	}
	start := memKB(t, p.PID(), "VmRSS")

	// Phase 1: a flood of junk on every topic, the healthy UPS going on
	// battery in the middle of it.
	wg.Add(1)
	go attack(func(i int) []byte { return junk[rand.IntN(len(junk))] }, 20000)
	sample(2 * time.Second)
	served := servedAt(t, u, "dummy", "OB DISCHRG")
	m, _ := waitEvent(t, sub, "upsbridge/ups/good/event", "ONBATT", 0, 10*time.Second)
	floodDelay := m.At.Sub(served)
	sample(2 * time.Second)
	close(stop)
	wg.Wait()
	floodSent := sent.Load()
	floodPeak := maxOf(rss)

	// Phase 2: large payloads: 16 KB (delivered, a command refused before
	// decoding), 900 KB and 5 MB (over the bridge's maximum packet size:
	// the broker keeps them from it).
	stop = make(chan struct{})
	payloads := [][]byte{bytes.Repeat([]byte("x"), 5<<20), bytes.Repeat([]byte("{"), 900<<10), bytes.Repeat([]byte("["), 16<<10)}
	wg.Add(1)
	go attack(func(i int) []byte { return payloads[i%3] }, 120)
	rss = rss[:0]
	sample(2 * time.Second)
	served = servedAt(t, u, "dummy", "OL")
	m, _ = waitEvent(t, sub, "upsbridge/ups/good/event", "ONLINE", 0, 10*time.Second)
	hugeDelay := m.At.Sub(served)
	wg.Wait()
	sample(3 * time.Second)
	hugePeak := maxOf(rss)
	after := rss[len(rss)-1]
	peak := memKB(t, p.PID(), "VmHWM")

	t.Logf("flood: %d junk messages sent; RSS %.1f MB before, max %.1f MB during; healthy ONBATT %s after upsd served it",
		floodSent, float64(start)/1024, float64(floodPeak)/1024, floodDelay.Round(time.Millisecond))
	t.Logf("large payloads: %d sent (16 KB, 900 KB, 5 MB), %d refused to the attacker; RSS max %.1f MB, %.1f MB after; healthy ONLINE %s after upsd served it; peak RSS %.1f MB",
		sent.Load()-floodSent, refused.Load(), float64(hugePeak)/1024, float64(after)/1024, hugeDelay.Round(time.Millisecond), float64(peak)/1024)

	out := p.Output.String()
	t.Logf("bridge log: %d commands refused for size, %d messages over the packet limit reached it (the broker drops them), %d warnings of messages dropped while the handler was busy",
		strings.Count(out, "command refused: payload larger"), strings.Count(out, "mqtt message refused"), strings.Count(out, "incoming messages dropped"))
	if floodSent < 1000 {
		t.Errorf("only %d junk messages went out: the flood did not happen", floodSent)
	}
	if peak > 64<<10 {
		t.Errorf("peak RSS %d kB, over 64 MB", peak)
	}
	// The aim is one poll interval (logged above); the assertion leaves
	// room for a loaded machine but fails if events stall behind the attack.
	for _, d := range []time.Duration{floodDelay, hugeDelay} {
		if d > 4*poll {
			t.Errorf("a healthy event took %s under attack, want about the poll interval %s", d, poll)
		}
	}
	if !strings.Contains(p.Output.String(), "command refused: payload larger than the limit") {
		t.Error("no log of the refused 16 KB commands")
	}
	if strings.Contains(p.Output.String(), "panic:") {
		t.Error("the bridge panicked")
	}
	// States still flow after the attack.
	sub.WaitPayload("upsbridge/ups/good/state", 10*time.Second, func(s string) bool { return strings.Contains(s, `"OL"`) })
	select {
	case <-p.Done():
		t.Fatal("the bridge exited")
	default:
	}
}
