package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// TestNUTMeasureCPU measures a non-race upsbridge polling NUT at 1 s: CPU
// time per minute and resident memory of the bridge, and CPU time of the
// upsd processes, for 1 UPS and for 100 UPSes spread over 4 upsd instances.
// It runs only with MEASURE_NUT=1 (it takes about 2.5 minutes);
// MEASURE_NUT_SECONDS sets the window (default 60).
func TestNUTMeasureCPU(t *testing.T) {
	if os.Getenv("MEASURE_NUT") != "1" {
		t.Skip("set MEASURE_NUT=1 to measure CPU and memory")
	}
	window := 60 * time.Second
	if s, err := strconv.Atoi(os.Getenv("MEASURE_NUT_SECONDS")); err == nil && s > 0 {
		window = time.Duration(s) * time.Second
	}
	bin := filepath.Join(t.TempDir(), "upsbridge")
	build := exec.Command("go", "build", "-o", bin, "./cmd/upsbridge")
	build.Dir = harness.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, tc := range []struct{ servers, perServer int }{{1, 1}, {4, 25}} {
		t.Run(fmt.Sprintf("%dx%d", tc.servers, tc.perServer), func(t *testing.T) {
			var upsds []*harness.UPSD
			var sources []string
			for s := 0; s < tc.servers; s++ {
				var devs []harness.NUTDevice
				for i := 0; i < tc.perServer; i++ {
					devs = append(devs, harness.NUTDevice{Name: fmt.Sprintf("ups%02d", i), Dev: benchLikeDev})
				}
				u := harness.StartUPSD(t, harness.UPSDOptions{Devices: devs})
				upsds = append(upsds, u)
				ups := "ups00"
				if tc.perServer > 1 {
					ups = `"*"`
				}
				sources = append(sources, fmt.Sprintf(`  - {id: nas%d, type: nut, address: "%s", ups: %s, poll_interval: 1s}`, s, u.Addr(), ups))
			}
			broker := harness.StartMosquitto(t)
			cfg := filepath.Join(t.TempDir(), "upsbridge.yaml")
			if err := os.WriteFile(cfg, []byte(nutBridgeConfig(broker.URL(), t.TempDir(), "log: {level: warn}", sources...)), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "run", "-c", cfg)
			out := &harness.SafeBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Signal(os.Interrupt)
				_ = cmd.Wait()
				if t.Failed() {
					t.Log(out.String())
				}
			}()
			time.Sleep(10 * time.Second) // connect, discover, first Info
			if rssKiB(t, cmd.Process.Pid, "VmRSS") == 0 {
				t.Fatalf("upsbridge exited:\n%s", out.String())
			}
			upsdPIDs := func() []int {
				var p []int
				for _, u := range upsds {
					p = append(p, u.PID())
				}
				return p
			}
			b0, u0 := cpuTime(t, cmd.Process.Pid), sumCPU(t, upsdPIDs())
			time.Sleep(window)
			b1, u1 := cpuTime(t, cmd.Process.Pid), sumCPU(t, upsdPIDs())
			perMin := func(d time.Duration) time.Duration {
				return time.Duration(float64(d) * float64(time.Minute) / float64(window))
			}
			t.Logf("%d UPS on %d upsd at 1 s: upsbridge CPU %s/min, RSS %d KiB (peak %d KiB); upsd CPU %s/min",
				tc.servers*tc.perServer, tc.servers, perMin(b1-b0).Round(time.Millisecond), rssKiB(t, cmd.Process.Pid, "VmRSS"), rssKiB(t, cmd.Process.Pid, "VmHWM"), perMin(u1-u0).Round(time.Millisecond))
		})
	}
}

const benchLikeDev = `ups.mfr: Example
ups.model: Sim 1500
ups.status: OL
ups.serial: 0003
battery.charge: 100
battery.runtime: 3000
battery.voltage: 27.1
input.voltage: 230.4
input.frequency: 50.0
output.voltage: 230.0
ups.load: 20
`

// cpuTime is a process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func sumCPU(t *testing.T, pids []int) time.Duration {
	var d time.Duration
	for _, p := range pids {
		d += cpuTime(t, p)
	}
	return d
}

func rssKiB(t *testing.T, pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
