package test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// TestBridgeKeepsPublishingUnderFlood: a hostile client floods every topic
// the bridge subscribes to (commands, sets, agents' states and events, the
// UPS state watch) for 10 s while the UPS is on battery. The bridge's
// states keep coming at its on-battery pace: agents count dead time by
// them, so a bridge stalled by junk would power every host off. (Its
// subscriptions are on a connection of their own; before, a flood there
// held back the acknowledgements of its publications.)
func TestBridgeKeepsPublishingUnderFlood(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: devWith("OB DISCHRG")}}})
	mq := harness.StartMosquitto(t)
	harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s, topic_prefix: fl}
bridge: {id: b1, state_dir: %s}
hass: {enabled: false}
notify:
  - {name: ops, type: exec, command: ["true"]}
sources:
  - {id: nut1, type: nut, address: "%s", ups: dummy, poll_interval: 1s, poll_interval_on_battery: 500ms}
`, mq.URL(), t.TempDir(), u.Addr()))
	// Only the state topic: this subscriber is not flooded itself.
	sub := harness.Subscribe(t, mq.URL(), "fl/ups/nut1/state")
	sub.WaitFor("a state on battery", 30*time.Second, func(msgs []harness.Msg) bool {
		for _, m := range msgs {
			if !m.Retained {
				return true
			}
		}
		return false
	})

	junk := []byte(`{"junk":"x"}`)
	msgs := []harness.FloodMsg{
		{Topic: "fl/ups/nut1/command", Payload: []byte("beeper.mute")},
		{Topic: "fl/ups/nut1/set", Payload: junk},
		{Topic: "fl/agent/evil/state", Payload: junk},
		{Topic: "fl/agent/evil/event", Payload: junk},
		{Topic: "fl/ups/other/state", Payload: junk},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent uint64
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := harness.Flood(ctx, harness.Addr(mq.Port), fmt.Sprintf("evil-%d", i), msgs, 0)
			if err != nil {
				t.Errorf("flood: %v", err)
			}
			mu.Lock()
			sent += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	end := time.Now()
	// Two more seconds for a stalled publisher to show.
	time.Sleep(2 * time.Second)

	var worst time.Duration
	prev := start
	n := 0
	for _, m := range sub.Messages() {
		if m.Retained || m.At.Before(start) {
			continue
		}
		if m.At.After(end) {
			break
		}
		n++
		worst = max(worst, m.At.Sub(prev))
		prev = m.At
	}
	worst = max(worst, end.Sub(prev))
	t.Logf("flood %.0f messages/s for %s; %d bridge states received, worst gap %s", float64(sent)/end.Sub(start).Seconds(), end.Sub(start).Round(time.Millisecond), n, worst.Round(time.Millisecond))
	// On battery the bridge publishes every poll (500 ms). Sharing one
	// connection for publishing and these subscriptions, it managed 2
	// states in the 10 s (worst gap 4.9 s, only the 5 s battery interval
	// kept it above agents' dead time).
	if worst > 2500*time.Millisecond {
		t.Fatalf("the bridge went %s without publishing a state during the flood (%d states in %s)", worst.Round(time.Millisecond), n, end.Sub(start))
	}
}
