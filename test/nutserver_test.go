package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// Accounts of the upsbridge NUT server in these tests.
const (
	nsMonUser, nsMonPass     = "monuser", "secret"
	nsAdminUser, nsAdminPass = "admin", "123456" // QNAP's hard-coded account
)

// servedUPS is a dummy-ups UPS behind real upsd, read by a nut source of
// upsbridge and served again by upsbridge's NUT server.
type servedUPS struct {
	upsd   *harness.UPSD
	bridge *harness.Process
	addr   string // upsbridge's NUT server
}

const servedDev = `ups.mfr: Example
ups.model: Sim 1500
ups.serial: 0003
ups.status: OL
ups.id: rack-1
ups.load: 20
ups.delay.shutdown: 20
battery.charge: 100
battery.runtime: 3000
input.voltage: 230.0
output.voltage: 230.0
device.location: Rack "A" \ row #2
`

// startServed starts upsd with one dummy UPS, upsbridge reading it with a
// nut source as primary, and serving it as "ups" and "qnapups".
func startServed(t *testing.T, dev, extra string) *servedUPS {
	t.Helper()
	harness.NeedUpsc(t)
	u := harness.StartUPSD(t, harness.UPSDOptions{MaxAge: 5, Devices: []harness.NUTDevice{{Name: "dummy", Dev: dev, Desc: "Simulated UPS"}}})
	mq := harness.StartMosquitto(t)
	port := harness.FreePort(t)
	cfg := fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: nutsrv, state_dir: %s}
hass: {enabled: false}
sources:
  - {id: rack, type: nut, address: "%s", ups: dummy, username: %s, password: %s, primary: true, poll_interval: 500ms, poll_interval_on_battery: 500ms}
nut_server:
  listen: ["127.0.0.1:%d"]
  users:
    - {name: %s, password: %s, upsmon: secondary}
    - {name: %s, password: %s, upsmon: primary, actions: [SET, FSD], instcmds: [ALL]}
  ups:
    - {id: rack, name: ups, description: "Rack UPS"}
    - {id: rack, name: qnapups}
%s`, mq.URL(), t.TempDir(), u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword, port,
		nsMonUser, nsMonPass, nsAdminUser, nsAdminPass, extra)
	p := harness.StartBridge(t, cfg)
	t.Cleanup(func() {
		if strings.Contains(p.Output.String(), "WARNING: DATA RACE") {
			t.Error("the race detector found a data race in upsbridge (output below)")
		}
	})
	s := &servedUPS{upsd: u, bridge: p, addr: harness.Addr(port)}
	s.waitStatus(t, "ups", "OL", 30*time.Second)
	return s
}

// upsc runs the real upsc and returns its stdout.
func upsc(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(harness.NeedUpsc(t), args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("upsc %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (s *servedUPS) waitStatus(t *testing.T, name, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	var err error
	for time.Now().Before(deadline) {
		got, err = upsc(t, name+"@"+s.addr, "ups.status")
		if err == nil && strings.TrimSpace(got) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("upsc %s@upsbridge ups.status: %q, %v; want %q", name, got, err, want)
}

// nutTool runs a NUT client (upsrw, upscmd, upslog) with a timeout.
func nutTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	bin := harness.NeedBinary(t, name, "/usr/bin/"+name, "/bin/"+name)
	cmd := exec.Command("timeout", append([]string{"20", bin}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func stripSSLNote(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "Init SSL") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// Real upsc, upsrw and upscmd against upsbridge print what they print
// against the upsd it reads.
func TestNUTServerRealClients(t *testing.T) {
	s := startServed(t, servedDev, "")
	direct, bridged := "dummy@"+s.upsd.Addr(), "ups@"+s.addr

	t.Run("upsc -l -L", func(t *testing.T) {
		out, err := upsc(t, "-l", s.addr)
		if err != nil || out != "ups\nqnapups\n" {
			t.Errorf("upsc -l: %q %v", out, err)
		}
		out, err = upsc(t, "-L", s.addr)
		if err != nil || out != "ups: Rack UPS\nqnapups: Description unavailable\n" {
			t.Errorf("upsc -L: %q %v", out, err)
		}
	})
	t.Run("upsc full and single", func(t *testing.T) {
		want, err := upsc(t, direct)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"ups", "qnapups", "UPS"} {
			got, err := upsc(t, name+"@"+s.addr)
			if err != nil || got != want {
				t.Errorf("upsc %s@upsbridge differs from upsc on upsd (%v):\n got %q\nwant %q", name, err, got, want)
			}
		}
		if got, err := upsc(t, bridged, "device.location"); err != nil || got != "Rack \"A\" \\ row\n" {
			// dummy-ups reads '#' as a comment: the value ends before it.
			if want, _ := upsc(t, direct, "device.location"); got != want {
				t.Errorf("device.location: %q (%v), upsd says %q", got, err, want)
			}
		}
		if _, err := upsc(t, bridged, "no.such.var"); err == nil || !strings.Contains(err.Error(), "Variable not supported") {
			t.Errorf("unknown variable: %v", err)
		}
		if _, err := upsc(t, "nope@"+s.addr); err == nil || !strings.Contains(err.Error(), "Unknown UPS") {
			t.Errorf("unknown UPS: %v", err)
		}
	})
	t.Run("upsrw list", func(t *testing.T) {
		want, err1 := nutTool(t, "upsrw", direct)
		got, err2 := nutTool(t, "upsrw", bridged)
		if err1 != nil || err2 != nil || stripSSLNote(got) != stripSSLNote(want) || !strings.Contains(got, "[ups.id]") {
			t.Errorf("upsrw differs (%v, %v):\n got %s\nwant %s", err1, err2, got, want)
		}
	})
	t.Run("upscmd list", func(t *testing.T) {
		want, err1 := nutTool(t, "upscmd", "-l", direct)
		got, err2 := nutTool(t, "upscmd", "-l", bridged)
		got = strings.Replace(got, "[ups]", "[dummy]", 1)
		if err1 != nil || err2 != nil || stripSSLNote(got) != stripSSLNote(want) {
			t.Errorf("upscmd -l differs (%v, %v):\n got %s\nwant %s", err1, err2, got, want)
		}
	})
	t.Run("upsrw set with tracking", func(t *testing.T) {
		out, err := nutTool(t, "upsrw", "-s", "ups.id=rack-2", "-u", nsAdminUser, "-p", nsAdminPass, "-w", bridged)
		if err != nil || !strings.Contains(out, "SUCCESS") {
			t.Fatalf("upsrw -s -w: %v\n%s", err, out)
		}
		s.upsd.WaitVar("dummy", "ups.id", "rack-2", 10*time.Second)
		out, err = nutTool(t, "upsrw", "-s", "ups.id=x", "-u", nsMonUser, "-p", nsMonPass, bridged)
		if err == nil || !strings.Contains(out, "ERR ACCESS-DENIED") {
			t.Errorf("upsrw as a secondary: %v\n%s", err, out)
		}
		out, err = nutTool(t, "upsrw", "-s", "ups.id=x", "-u", nsAdminUser, "-p", "wrong", bridged)
		if err == nil || !strings.Contains(out, "ERR ACCESS-DENIED") {
			t.Errorf("upsrw with a wrong password: %v\n%s", err, out)
		}
	})
	t.Run("upscmd with tracking", func(t *testing.T) {
		// dummy-ups does not handle load.off: upsd's tracking says ERR
		// UNKNOWN, and so must upsbridge's.
		want, _ := nutTool(t, "upscmd", "-u", harness.NUTAdminUser, "-p", harness.NUTAdminPassword, "-w", direct, "load.off")
		got, _ := nutTool(t, "upscmd", "-u", nsAdminUser, "-p", nsAdminPass, "-w", bridged, "load.off")
		if stripSSLNote(got) != stripSSLNote(want) {
			t.Errorf("upscmd -w differs:\n got %q\nwant %q", got, want)
		}
		want, _ = nutTool(t, "upscmd", "-u", harness.NUTAdminUser, "-p", harness.NUTAdminPassword, direct, "no.such.cmd")
		got, err := nutTool(t, "upscmd", "-u", nsAdminUser, "-p", nsAdminPass, bridged, "no.such.cmd")
		if err == nil || got != want || !strings.Contains(got, "CMD-NOT-SUPPORTED") {
			t.Errorf("unknown command: %v %q, upsd: %q", err, got, want)
		}
	})
	t.Run("upslog", func(t *testing.T) {
		dir := t.TempDir()
		bin := harness.NeedBinary(t, "upslog", "/usr/bin/upslog")
		log := filepath.Join(dir, "ups.log")
		cmd := exec.Command(bin, "-s", bridged, "-l", log, "-i", "1", "-F", "-p", filepath.Join(dir, "upslog"), "-f", "%VAR ups.status% %VAR battery.charge% %VAR ups.mfr%")
		cmd.Env = append(os.Environ(), "NUT_STATEPATH="+dir, "NUT_ALTPIDPATH="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(log)
			if strings.Contains(string(b), "OL 100 Example\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("upslog wrote %q", b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// nsLine sends one request on a fresh connection to addr and reads one
// line back.
func nsSession(t *testing.T, addr string, reqs ...string) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(c)
	var out []string
	for _, r := range reqs {
		if _, err := c.Write([]byte(r + "\n")); err != nil {
			t.Fatal(err)
		}
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
	return out
}
