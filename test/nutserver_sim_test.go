package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// A sim source served with the default UPS list (every UPS under its
// upsbridge id): upsc reads it, upscmd runs its commands with tracking,
// and reads answer DATA-STALE while the bridge has lost the UPS.
func TestNUTServerSim(t *testing.T) {
	harness.NeedUpsc(t)
	mq := harness.StartMosquitto(t)
	port := harness.FreePort(t)
	addr := harness.Addr(port)
	// comm_loss at 30x: on battery at 2 s, link lost from 4 s to 8 s.
	harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: nutsim, state_dir: %s}
hass: {enabled: false}
sources:
  - {id: steady, type: sim, scenario: steady, poll_interval: 200ms}
  - {id: lossy, type: sim, scenario: comm_loss, time_scale: 30, poll_interval: 200ms}
nut_server:
  listen: ["%s"]
  users:
    - {name: ops, password: opspass, instcmds: [beeper.mute]}
`, mq.URL(), t.TempDir(), addr))
	deadline := time.Now().Add(20 * time.Second)
	var list string
	for time.Now().Before(deadline) {
		list, _ = upsc(t, "-l", addr)
		if list == "lossy\nsteady\n" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if list != "lossy\nsteady\n" {
		t.Fatalf("upsc -l: %q", list)
	}
	full, err := upsc(t, "steady@"+addr)
	if err != nil || !strings.Contains(full, "ups.status: OL\n") || !strings.Contains(full, "device.model: Simulated UPS 1500\n") {
		t.Fatalf("upsc steady: %v\n%s", err, full)
	}
	out, err := nutTool(t, "upscmd", "-u", "ops", "-p", "opspass", "-w", "steady@"+addr, "beeper.mute")
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Errorf("upscmd -w beeper.mute: %v %s", err, out)
	}
	out, err = nutTool(t, "upscmd", "-u", "ops", "-p", "opspass", "steady@"+addr, "shutdown.return")
	if err == nil || !strings.Contains(out, "ERR ACCESS-DENIED") {
		t.Errorf("upscmd shutdown.return without the right: %v %s", err, out)
	}

	// Stale while the link is lost, fresh again after.
	waitUpsc := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		var got string
		for time.Now().Before(deadline) {
			o, err := upsc(t, "lossy@"+addr, "ups.status")
			got = o
			if err != nil {
				got = err.Error()
			}
			if strings.Contains(got, want) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("upsc lossy ups.status: %q, want %q", got, want)
	}
	waitUpsc("Data stale")
	if got := nsSession(t, addr, "GET VAR lossy ups.status", "LIST VAR lossy", "GET UPSDESC lossy", "GET NUMLOGINS lossy"); got[0] != "ERR DATA-STALE" ||
		got[1] != "ERR DATA-STALE" || got[2] != `UPSDESC lossy "Unavailable"` || got[3] != "ERR DATA-STALE" {
		t.Errorf("while stale: %q", got)
	}
	waitUpsc("OB DISCHRG")
}
