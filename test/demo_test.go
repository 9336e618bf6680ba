package test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// The README's first command: `upsbridge demo` runs the embedded broker, a
// simulated outage and a readable event log. A real MQTT client connects to
// the embedded broker and sees the retained state and the outage's events.
func TestDemoEmbeddedBroker(t *testing.T) {
	bin := harness.Binary(t)
	addr := harness.Addr(harness.FreePort(t))
	out := &harness.SafeBuffer{}
	// 60x: the outage reaches LOWBATT, so the primary sets FSD and logs it.
	cmd := exec.Command(bin, "demo", "--listen", addr, "--time-scale", "60")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	harness.WaitTCP(t, addr, 10*time.Second)
	sub := harness.Subscribe(t, "tcp://"+addr, "upsbridge/#")
	sub.WaitFor("a retained state of demo-ups", 10*time.Second, func(msgs []harness.Msg) bool {
		for _, m := range msgs {
			if m.Topic == "upsbridge/ups/demo-ups/state" {
				var st struct {
					UPS string `json:"ups"`
				}
				return json.Unmarshal([]byte(m.Payload), &st) == nil && st.UPS == "demo-ups"
			}
		}
		return false
	})
	sub.WaitFor("ONBATT, FSD and ONLINE events", 60*time.Second, func(msgs []harness.Msg) bool {
		seen := map[string]bool{}
		for _, m := range msgs {
			if m.Topic == "upsbridge/ups/demo-ups/event" {
				var ev struct {
					Type string `json:"type"`
				}
				if json.Unmarshal([]byte(m.Payload), &ev) == nil {
					seen[ev.Type] = true
				}
			}
		}
		return seen["ONBATT"] && seen["FSD"] && seen["ONLINE"]
	})
	// The readable log on stdout names the events too.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "ONBATT") {
		if time.Now().After(deadline) {
			t.Fatalf("demo's event log does not show ONBATT")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Readable output only: the log lines (the primary's warnings) too,
	// though stdout and stderr are no terminal here.
	if !strings.Contains(out.String(), "forced shutdown set as primary") {
		t.Errorf("the primary's warning is not in the demo's output")
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			t.Errorf("JSON line in the demo's output: %s", line)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("demo exited %d after SIGTERM, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop within 10 s of SIGTERM")
	}
}
