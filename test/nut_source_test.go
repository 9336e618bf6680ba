package test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/sources/nut"
)

// updates collects what a source sends.
type updates struct {
	t    *testing.T
	mu   sync.Mutex
	all  []bridge.Update
	wake chan struct{}
}

// runSource starts a nut source in-process; it stops when the test ends.
func runSource(t *testing.T, mutate func(*nut.Config), hooks ...func(*nut.Source)) (*nut.Source, *updates) {
	t.Helper()
	cfg := nut.DefaultConfig()
	cfg.ID = "nut1"
	cfg.Type = "nut"
	cfg.UPS = "dummy"
	mutate(cfg)
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(config.Errors(errs))
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	src, err := cfg.NewSource(bridge.Env{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		h(src.(*nut.Source))
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan bridge.Update, 64)
	u := &updates{t: t, wake: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case up := <-out:
				u.mu.Lock()
				u.all = append(u.all, up)
				u.mu.Unlock()
				select {
				case u.wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	srcDone := make(chan struct{})
	go func() { defer close(srcDone); _ = src.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-srcDone:
		case <-time.After(5 * time.Second):
			t.Error("source did not stop within 5s of cancel")
		}
		<-done
	})
	return src.(*nut.Source), u
}

// since returns the updates received after index i.
func (u *updates) since(i int) []bridge.Update {
	u.mu.Lock()
	defer u.mu.Unlock()
	if i > len(u.all) {
		return nil
	}
	return append([]bridge.Update(nil), u.all[i:]...)
}

func (u *updates) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.all)
}

// waitFor waits for an update after index from that satisfies cond and
// returns it with its index.
func (u *updates) waitFor(from int, what string, timeout time.Duration, cond func(bridge.Update) bool) (bridge.Update, int) {
	u.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for i, up := range u.since(from) {
			if cond(up) {
				return up, from + i
			}
		}
		select {
		case <-u.wake:
		case <-deadline.C:
			last := u.since(max(0, u.count()-3))
			u.t.Fatalf("no %s within %s; last updates: %s", what, timeout, describeUpdates(last))
		}
	}
}

func describeUpdates(us []bridge.Update) string {
	var b strings.Builder
	for _, u := range us {
		fmt.Fprintf(&b, "\n  %s kind=%d status=%q err=%v", u.UPS, u.Kind, u.Vars[bridge.VarStatus], u.Err)
	}
	return b.String()
}

func status(ups, want string) func(bridge.Update) bool {
	return func(u bridge.Update) bool {
		return u.UPS == ups && u.Kind == bridge.Reading && u.Vars[bridge.VarStatus] == want
	}
}

func commLost(ups string) func(bridge.Update) bool {
	return func(u bridge.Update) bool { return u.UPS == ups && u.Kind == bridge.CommLost }
}

// The source follows OL -> OB -> OB LB -> OL, polls faster on battery and
// sends Info (commands, writable variables) with the first reading.
func TestNUTSourceStatusSequence(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	_, ups := runSource(t, func(c *nut.Config) { c.Address = u.Addr() })

	first, i := ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	if first.Info == nil || !first.Info.HasCommand("load.off") || len(first.Info.Writable) == 0 {
		t.Fatalf("first reading without Info: %+v", first.Info)
	}
	for _, st := range []string{"OB", "OB LB", "OL"} {
		u.WriteDev("dummy", devWith(st))
		_, i = ups.waitFor(i, "status "+st, 10*time.Second, status("nut1", st))
	}
	// Info is not re-sent while it does not change.
	for _, up := range ups.since(1) {
		if up.Info != nil {
			t.Fatalf("Info sent again unchanged")
		}
	}
}

// On battery the source polls every poll_interval_on_battery.
func TestNUTSourceOnBatteryInterval(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: devWith("OB DISCHRG")}}})
	_, ups := runSource(t, func(c *nut.Config) {
		c.Address = u.Addr()
		c.PollInterval = 3 * time.Second
		c.PollIntervalOnBattery = 200 * time.Millisecond
	})
	_, i := ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OB DISCHRG"))
	start := time.Now()
	ups.waitFor(i+5, "sixth reading", 5*time.Second, status("nut1", "OB DISCHRG"))
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Fatalf("5 polls on battery took %s, want about 1 s", el)
	}
}

// SIGSTOP on the driver: comm lost after MAXAGE (DATA-STALE); SIGCONT: back.
func TestNUTSourceStaleDriver(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{MaxAge: 3, Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	_, ups := runSource(t, func(c *nut.Config) { c.Address = u.Addr() })
	_, i := ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	u.SignalDriver("dummy", syscall.SIGSTOP)
	stopped := time.Now()
	lost, i := ups.waitFor(i, "comm lost", 15*time.Second, commLost("nut1"))
	if !strings.Contains(lost.Err.Error(), "DATA-STALE") {
		t.Fatalf("comm lost for %v, want DATA-STALE", lost.Err)
	}
	t.Logf("DATA-STALE after %s (MAXAGE 3)", time.Since(stopped).Round(time.Millisecond))
	u.SignalDriver("dummy", syscall.SIGCONT)
	ups.waitFor(i, "reading after SIGCONT", 10*time.Second, status("nut1", "OL"))
}

// upsd killed: comm lost (refused); restarted: readings again. The
// source's stats (/api/state; the same numbers are its metrics) follow: connected, polls, errors, connects.
func TestNUTSourceUPSDRestart(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	src, ups := runSource(t, func(c *nut.Config) { c.Address = u.Addr() })
	_, i := ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	st := src.Stats()
	if st["connected"] != true || st["polls_total"].(uint64) < 1 || st["connects_total"] != uint64(1) || st["ups_polled"] != int64(1) {
		t.Errorf("stats while reading: %v", st)
	}
	if d := st["last_poll_seconds"].(float64); d <= 0 || d > 5 {
		t.Errorf("last_poll_seconds = %v", d)
	}
	u.Kill()
	_, i = ups.waitFor(i, "comm lost", 5*time.Second, commLost("nut1"))
	// The poller reports the loss, then closes its connection: wait for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := src.Stats()
		if st["connected"] == false && st["poll_errors_total"].(uint64) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats with upsd down: %v", st)
		}
	}
	u.Start()
	ups.waitFor(i, "reading after restart", 20*time.Second, status("nut1", "OL"))
	if st := src.Stats(); st["connected"] != true || st["connects_total"].(uint64) < 2 {
		t.Errorf("stats after upsd came back: %v", st)
	}
}

// A driver that stops: DRIVER-NOT-CONNECTED is comm lost.
func TestNUTSourceDriverGone(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	_, ups := runSource(t, func(c *nut.Config) { c.Address = u.Addr() })
	_, i := ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	u.StopDriver("dummy")
	lost, i := ups.waitFor(i, "comm lost", 10*time.Second, commLost("nut1"))
	if !strings.Contains(lost.Err.Error(), "DRIVER-NOT-CONNECTED") {
		t.Fatalf("err = %v", lost.Err)
	}
	u.StartDriver("dummy")
	ups.waitFor(i, "reading after driver restart", 15*time.Second, status("nut1", "OL"))
}

// A refused address is comm lost, with the UPS named.
func TestNUTSourceRefused(t *testing.T) {
	_, ups := runSource(t, func(c *nut.Config) { c.Address = harness.Addr(harness.FreePort(t)) })
	lost, _ := ups.waitFor(0, "comm lost", 5*time.Second, commLost("nut1"))
	if !strings.Contains(lost.Err.Error(), "refused") {
		t.Fatalf("err = %v", lost.Err)
	}
}

// Primary: FSD set by the bridge is seen in the status; an instant command
// returns the driver's answer through tracking; SET VAR succeeds.
func TestNUTSourceCommandsAndFSD(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	src, ups := runSource(t, func(c *nut.Config) {
		c.Address = u.Addr()
		c.Username = harness.NUTAdminUser
		c.Password = config.SecretValue(harness.NUTAdminPassword)
		c.Primary = true
	})
	_, i := ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	if n, err := numLogins(u); err != nil || n != 1 {
		t.Fatalf("NUMLOGINS = %d, %v; the primary must be logged in", n, err)
	}
	ctx := nutCtx(t, 30*time.Second)
	res, err := src.InstCmd(ctx, "nut1", "load.off", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "UNKNOWN" {
		t.Fatalf("load.off on dummy-ups = %+v, want the driver's UNKNOWN", res)
	}
	if _, err := src.InstCmd(ctx, "nut1", "no.such", ""); err == nil || !strings.Contains(err.Error(), "CMD-NOT-SUPPORTED") {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := src.InstCmd(ctx, "other", "load.off", ""); !errors.Is(err, bridge.ErrUnknownUPS) {
		t.Fatalf("unknown UPS: %v", err)
	}
	// Not "#": upsd 2.8.0 hands values to the driver unescaped, so a "#" is
	// cut as a comment and the driver never answers the tracking id.
	res, err = src.SetVar(ctx, "nut1", "ups.model", "Sim 2")
	if err != nil || res.Status != "SUCCESS" {
		t.Fatalf("SetVar = %+v, %v", res, err)
	}
	_, i = ups.waitFor(i, "new model", 10*time.Second, func(up bridge.Update) bool { return up.Vars["ups.model"] == "Sim 2" })
	if err := src.SetFSD(ctx, "nut1"); err != nil {
		t.Fatal(err)
	}
	ups.waitFor(i, "FSD", 5*time.Second, status("nut1", "FSD OL"))
}

// Without primary: FSD is refused, commands need an account.
func TestNUTSourceNoPrimary(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	src, ups := runSource(t, func(c *nut.Config) { c.Address = u.Addr() })
	ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	ctx := nutCtx(t, 10*time.Second)
	if err := src.SetFSD(ctx, "nut1"); !errors.Is(err, bridge.ErrNotSupported) {
		t.Fatalf("SetFSD without primary: %v", err)
	}
	if _, err := src.InstCmd(ctx, "nut1", "load.off", ""); err == nil || !strings.Contains(err.Error(), "username and password") {
		t.Fatalf("InstCmd without account: %v", err)
	}
}

// login: true makes upsd count the bridge, as an upsmon secondary.
func TestNUTSourceLogin(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	_, ups := runSource(t, func(c *nut.Config) {
		c.Address = u.Addr()
		c.Username = harness.NUTMonUser
		c.Password = config.SecretValue(harness.NUTMonPassword)
		c.Login = true
	})
	ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	if n, err := numLogins(u); err != nil || n != 1 {
		t.Fatalf("NUMLOGINS = %d, %v", n, err)
	}
}

func numLogins(u *harness.UPSD) (int, error) {
	out, err := upsdLine(u.Addr(), "GET NUMLOGINS dummy")
	if err != nil {
		return 0, err
	}
	var n int
	_, err = fmt.Sscanf(out, "NUMLOGINS dummy %d", &n)
	return n, err
}

// ups: "*" publishes every UPS as <id>_<name>, picks up a new one and
// marks a removed one gone.
func TestNUTSourceAllUPSes(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{
		{Name: "Rack.A", Dev: baseDev},
		{Name: "rackb", Dev: devWith("OB")},
	}})
	_, ups := runSource(t, func(c *nut.Config) { c.Address = u.Addr(); c.UPS = "*" },
		func(s *nut.Source) { nut.SetDiscoverInterval(s, 300*time.Millisecond) })
	ups.waitFor(0, "rack.a", 10*time.Second, status("nut1_rack_a", "OL"))
	_, i := ups.waitFor(0, "rackb", 10*time.Second, status("nut1_rackb", "OB"))

	u.AddUPS(harness.NUTDevice{Name: "rackc", Dev: devWith("OL CHRG")})
	_, i = ups.waitFor(i, "new UPS", 20*time.Second, status("nut1_rackc", "OL CHRG"))

	u.RemoveUPS("rackb")
	ups.waitFor(i, "gone", 20*time.Second, func(up bridge.Update) bool { return up.UPS == "nut1_rackb" && up.Kind == bridge.Gone })
}

// One dead server never delays another source.
func TestNUTSourcesIndependent(t *testing.T) {
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: baseDev}}})
	// A server that accepts but never answers.
	dead := harness.FreePort(t)
	ln, err := listenBlackhole(t, dead)
	if err != nil {
		t.Fatal(err)
	}
	_ = ln
	_, deadUps := runSource(t, func(c *nut.Config) { c.ID = "dead"; c.Address = harness.Addr(dead) })
	_, ups := runSource(t, func(c *nut.Config) { c.Address = u.Addr() })
	_, i := ups.waitFor(0, "first reading", 10*time.Second, status("nut1", "OL"))
	start := time.Now()
	ups.waitFor(i+3, "three more readings", 5*time.Second, status("nut1", "OL"))
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("3 polls took %s beside a dead server", el)
	}
	deadUps.waitFor(0, "dead server comm lost", 15*time.Second, commLost("dead"))
}
