package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// realUpsmon is Debian's upsmon in its own config folder, in the
// foreground without privilege separation (-p -F), stopped by PID. Its
// NOTIFYCMD and SHUTDOWNCMD only append to files in that folder: nothing
// is ever shut down.
type realUpsmon struct {
	dir  string
	cmd  *exec.Cmd
	out  *harness.SafeBuffer
	done chan struct{}
}

var realUpsmonMu sync.Mutex

// upsmonPIDFile is where upsmon 2.8.0 writes its PID whatever
// NUT_ALTPIDPATH says; it refuses to start while the file names a live
// process, so starts are serialised and our process's file is removed.
const upsmonPIDFile = "/run/nut/upsmon.pid"

func startRealUpsmon(t *testing.T, monitor string) *realUpsmon {
	t.Helper()
	bin := filepath.Join(harness.NUTBinDir(t), "upsmon")
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o700)
	write := func(name, body string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("notify.sh", fmt.Sprintf("#!/bin/sh\necho \"$(date +%%s.%%N) $NOTIFYTYPE\" >> %s/notify.log\n", dir), 0o755)
	write("shutdown.sh", fmt.Sprintf("#!/bin/sh\necho \"$(date +%%s.%%N) SHUTDOWNCMD\" >> %s/shutdown.log\n", dir), 0o755)
	var flags strings.Builder
	for _, f := range []string{"ONLINE", "ONBATT", "LOWBATT", "FSD", "COMMOK", "COMMBAD", "SHUTDOWN", "NOCOMM"} {
		fmt.Fprintf(&flags, "NOTIFYFLAG %s EXEC\n", f)
	}
	write("upsmon.conf", fmt.Sprintf(`MONITOR %s
MINSUPPLIES 1
POLLFREQ 1
POLLFREQALERT 1
HOSTSYNC 15
DEADTIME 15
FINALDELAY 0
POWERDOWNFLAG %s/killpower
NOTIFYCMD %s/notify.sh
%sSHUTDOWNCMD "%s/shutdown.sh"
`, monitor, dir, dir, flags.String(), dir), 0o600)
	realUpsmonMu.Lock()
	defer realUpsmonMu.Unlock()
	removeUpsmonPID(0)
	m := &realUpsmon{dir: dir, out: &harness.SafeBuffer{}, done: make(chan struct{})}
	m.cmd = exec.Command(bin, "-p", "-F")
	m.cmd.Env = append(os.Environ(), "NUT_CONFPATH="+dir, "NUT_STATEPATH="+dir, "NUT_ALTPIDPATH="+dir)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
		removeUpsmonPID(m.cmd.Process.Pid)
		if t.Failed() {
			t.Logf("upsmon (%s) output:\n%s", monitor, m.out.String())
		}
	})
	// Wait until it wrote its PID file (if the folder exists), then
	// remove it so that the next upsmon may start.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(upsmonPIDFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(m.cmd.Process.Pid) {
			break
		}
		if _, err := os.Stat(filepath.Dir(upsmonPIDFile)); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	removeUpsmonPID(m.cmd.Process.Pid)
	return m
}

func removeUpsmonPID(pid int) {
	b, err := os.ReadFile(upsmonPIDFile)
	if err != nil {
		return
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if n == pid || (pid == 0 && (n <= 0 || syscall.Kill(n, 0) != nil)) {
		_ = os.Remove(upsmonPIDFile)
	}
}

// shutdownAt returns when SHUTDOWNCMD ran, if it did.
func (m *realUpsmon) shutdownAt() (time.Time, bool) {
	b, err := os.ReadFile(filepath.Join(m.dir, "shutdown.log"))
	if err != nil {
		return time.Time{}, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, int64(sec*1e9)), true
}

func (m *realUpsmon) notified(typ string) bool {
	b, _ := os.ReadFile(filepath.Join(m.dir, "notify.log"))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[1] == typ {
			return true
		}
	}
	return false
}

func (m *realUpsmon) waitShutdown(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if at, ok := m.shutdownAt(); ok {
			return at
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(m.dir, "notify.log"))
			t.Fatalf("upsmon ran no SHUTDOWNCMD within %s; notifications:\n%s", timeout, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLogins waits until GET NUMLOGINS on upsbridge says n.
func waitLogins(t *testing.T, addr, ups string, n int, timeout time.Duration) {
	t.Helper()
	want := fmt.Sprintf("NUMLOGINS %s %d", ups, n)
	deadline := time.Now().Add(timeout)
	var got []string
	for time.Now().Before(deadline) {
		got = nsSession(t, addr, "GET NUMLOGINS "+ups)
		if got[0] == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("NUMLOGINS: %q, want %q", got, want)
}

// A upsmon secondary of upsbridge shuts down on OB LB and on FSD, as it
// would against upsd.
func TestNUTServerUpsmonSecondary(t *testing.T) {
	t.Run("OB LB", func(t *testing.T) {
		s := startServed(t, servedDev, "")
		m := startRealUpsmon(t, fmt.Sprintf("ups@%s 1 %s %s secondary", s.addr, nsMonUser, nsMonPass))
		waitLogins(t, s.addr, "ups", 1, 10*time.Second)
		if lc := nsSession(t, s.addr, "LIST CLIENT ups"); lc[0] != "BEGIN LIST CLIENT ups" {
			t.Fatalf("LIST CLIENT: %q", lc)
		}
		if _, ok := m.shutdownAt(); ok {
			t.Fatal("upsmon shut down while on line")
		}
		s.upsd.WriteDev("dummy", strings.Replace(servedDev, "ups.status: OL", "ups.status: OB LB", 1))
		m.waitShutdown(t, 20*time.Second)
		if !m.notified("ONBATT") && !m.notified("LOWBATT") {
			t.Error("no ONBATT/LOWBATT notification")
		}
	})
	t.Run("FSD", func(t *testing.T) {
		s := startServed(t, servedDev, "")
		m := startRealUpsmon(t, fmt.Sprintf("qnapups@%s 1 %s %s secondary", s.addr, nsMonUser, nsMonPass))
		waitLogins(t, s.addr, "qnapups", 1, 10*time.Second)
		s.upsd.WriteDev("dummy", strings.Replace(servedDev, "ups.status: OL", "ups.status: OB DISCHRG", 1))
		s.waitStatus(t, "qnapups", "OB DISCHRG", 10*time.Second)
		// On battery but not low: upsmon waits.
		time.Sleep(2 * time.Second)
		if _, ok := m.shutdownAt(); ok {
			t.Fatal("upsmon shut down on OB alone")
		}
		got := nsSession(t, s.addr, "USERNAME "+nsAdminUser, "PASSWORD "+nsAdminPass, "FSD ups", "GET VAR qnapups ups.status")
		if got[2] != "OK FSD-SET" || got[3] != `VAR qnapups ups.status "FSD OB DISCHRG"` {
			t.Fatalf("FSD: %q", got)
		}
		m.waitShutdown(t, 20*time.Second)
		if !m.notified("FSD") {
			t.Error("no FSD notification")
		}
		// The nut source is primary: upsd upstream has FSD too.
		s.upsd.WaitVar("dummy", "ups.status", "FSD OB DISCHRG", 10*time.Second)
	})
}

// A upsmon primary of upsbridge sets FSD on OB LB, waits for its
// secondary to log out (NUMLOGINS), then runs its SHUTDOWNCMD; the FSD
// reaches the bridge's latch and the upsd upstream.
func TestNUTServerUpsmonPrimary(t *testing.T) {
	s := startServed(t, servedDev, "")
	prim := startRealUpsmon(t, fmt.Sprintf("ups@%s 1 %s %s primary", s.addr, nsAdminUser, nsAdminPass))
	waitLogins(t, s.addr, "ups", 1, 10*time.Second)
	sec := startRealUpsmon(t, fmt.Sprintf("ups@%s 1 %s %s secondary", s.addr, nsMonUser, nsMonPass))
	waitLogins(t, s.addr, "ups", 2, 10*time.Second)
	// A third secondary that never shuts down: a raw connection logged in.
	held, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	fmt.Fprintf(held, "USERNAME %s\nPASSWORD %s\nLOGIN ups\n", nsMonUser, nsMonPass)
	waitLogins(t, s.addr, "ups", 3, 10*time.Second)

	s.upsd.WriteDev("dummy", strings.Replace(servedDev, "ups.status: OL", "ups.status: OB LB", 1))
	secAt := sec.waitShutdown(t, 20*time.Second)
	waitLogins(t, s.addr, "ups", 2, 10*time.Second) // the secondary logged out
	// The primary waits while NUMLOGINS > 1 (HOSTSYNC is 15 s).
	time.Sleep(2 * time.Second)
	if _, ok := prim.shutdownAt(); ok {
		t.Fatal("the primary shut down while a secondary was still logged in")
	}
	released := time.Now()
	held.Close()
	primAt := prim.waitShutdown(t, 10*time.Second)
	if d := primAt.Sub(released); d > 5*time.Second {
		t.Errorf("the primary shut down %s after the last secondary left", d)
	}
	if primAt.Before(secAt) {
		t.Errorf("primary shut down at %s, before its secondary at %s", primAt, secAt)
	}
	if !strings.Contains(s.bridge.Output.String(), `"msg":"NUT client set forced shutdown","component":"nut_server","remote":"127.0.0.1","user":"admin"`) {
		t.Errorf("the primary never set FSD")
	}
	t.Logf("secondary shut down at %s, primary %s later", secAt.Format("15:04:05.000"), primAt.Sub(secAt).Round(time.Millisecond))
	if !strings.Contains(s.bridge.Output.String(), "forced shutdown set as primary") {
		t.Errorf("the bridge did not latch FSD:\n%s", s.bridge.Output.String())
	}
	s.upsd.WaitVar("dummy", "ups.status", "FSD OB LB", 10*time.Second)
	s.waitStatus(t, "ups", "FSD OB LB", 10*time.Second)
}

// The driver behind upsd stops: upsd's data goes stale, the nut source
// loses the UPS, and upsbridge answers DATA-STALE as upsd does; a upsmon
// secondary logged in stays logged in, and reads come back with the driver.
func TestNUTServerStaleUpstream(t *testing.T) {
	s := startServed(t, servedDev, "")
	m := startRealUpsmon(t, fmt.Sprintf("ups@%s 1 %s %s secondary", s.addr, nsMonUser, nsMonPass))
	waitLogins(t, s.addr, "ups", 1, 10*time.Second)
	s.upsd.SignalDriver("dummy", syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			s.upsd.SignalDriver("dummy", syscall.SIGCONT)
		}
	}()
	waitReply := func(req, want string, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		var got []string
		for time.Now().Before(deadline) {
			if got = nsSession(t, s.addr, req); got[0] == want {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: %q, want %q", req, got, want)
	}
	waitReply("GET VAR ups ups.status", "ERR DATA-STALE", 30*time.Second)
	if out, err := upsc(t, "ups@"+s.addr); err == nil || !strings.Contains(err.Error(), "Data stale") {
		t.Errorf("upsc while stale: %q %v", out, err)
	}
	// Not gated: UPSDESC, LIST CLIENT (the secondary is still logged in).
	if got := nsSession(t, s.addr, "GET UPSDESC ups", "LIST CLIENT ups"); got[0] != `UPSDESC ups "Rack UPS"` || got[1] != "BEGIN LIST CLIENT ups" {
		t.Errorf("ungated reads while stale: %q", got)
	}
	s.upsd.SignalDriver("dummy", syscall.SIGCONT)
	stopped = false
	waitReply("GET VAR ups ups.status", `VAR ups ups.status "OL"`, 30*time.Second)
	if _, ok := m.shutdownAt(); ok {
		t.Error("upsmon shut down over stale data on mains")
	}
}
