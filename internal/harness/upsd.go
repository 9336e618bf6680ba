package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Accounts in the sandbox's upsd.users.
const (
	// NUTAdminUser may SET, FSD, run every instant command and be primary.
	NUTAdminUser     = "admin"
	NUTAdminPassword = "secret"
	// NUTMonUser is an upsmon secondary: LOGIN only.
	NUTMonUser     = "mon"
	NUTMonPassword = "monpass"
)

// NUTDevice is one simulated UPS: a dummy-ups driver reading a .dev file.
type NUTDevice struct {
	Name string // the ups.conf section, i.e. the UPS name on upsd
	// Dev is the .dev content, written to the sandbox. Ignored when File
	// is set.
	Dev string
	// File is an existing .dev file to serve as is (never written).
	File string
	Desc string
}

// UPSDOptions configure a sandboxed upsd.
type UPSDOptions struct {
	// MaxAge is upsd's MAXAGE in seconds (default 15): how long a silent
	// driver's data stays fresh before ERR DATA-STALE.
	MaxAge  int
	Devices []NUTDevice
	// NoWait skips waiting until every UPS serves a real status.
	NoWait bool
}

// UPSD is Debian's real upsd with dummy-ups drivers in a temporary sandbox
// on a free loopback port, run as root in the foreground (-u root -F)
// without systemd and stopped by PID.
type UPSD struct {
	t    testing.TB
	bin  string // the package's private folder with upsd and dummy-ups
	Dir  string // the sandbox: etc/ and run/
	Port int
	opts UPSDOptions

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	devices map[string]NUTDevice
	drivers map[string]*nutProc
	mtimes  map[string]time.Time
}

type nutProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *SafeBuffer
}

// NUTBinDir returns the folder holding Debian's real upsd and dummy-ups
// (the /sbin wrappers refuse to run with MODE=none). It skips the test when
// NUT is not installed (fails it under CI=true).
func NUTBinDir(t testing.TB) string {
	t.Helper()
	if out, err := exec.Command("dpkg", "-L", "nut-server").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasSuffix(l, "/nut/upsd") {
				if _, err := os.Stat(filepath.Join(filepath.Dir(l), "dummy-ups")); err == nil {
					return filepath.Dir(l)
				}
			}
		}
	}
	p := NeedBinary(t, "nut-upsd-private", "/lib/nut/upsd", "/usr/lib/nut/upsd")
	return filepath.Dir(p)
}

// NeedUpsc returns the path of NUT's upsc client.
func NeedUpsc(t testing.TB) string {
	t.Helper()
	return NeedBinary(t, "upsc", "/usr/bin/upsc", "/bin/upsc")
}

var nutNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// StartUPSD starts the drivers, then upsd, and waits until every UPS
// serves a status (unless NoWait). Everything is stopped when the test
// ends.
func StartUPSD(t testing.TB, opts UPSDOptions) *UPSD {
	t.Helper()
	if opts.MaxAge <= 0 {
		opts.MaxAge = 15
	}
	u := &UPSD{
		t: t, bin: NUTBinDir(t), Dir: t.TempDir(), Port: FreePort(t), opts: opts,
		devices: map[string]NUTDevice{}, drivers: map[string]*nutProc{}, mtimes: map[string]time.Time{},
	}
	for _, d := range []string{"etc", "run"} {
		if err := os.MkdirAll(filepath.Join(u.Dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	u.writeFile("etc/upsd.conf", fmt.Sprintf("LISTEN 127.0.0.1 %d\nMAXAGE %d\n", u.Port, opts.MaxAge), 0o600)
	u.writeFile("etc/upsd.users", fmt.Sprintf("[%s]\n\tpassword = %s\n\tactions = SET FSD\n\tinstcmds = ALL\n\tupsmon primary\n[%s]\n\tpassword = %s\n\tupsmon secondary\n",
		NUTAdminUser, NUTAdminPassword, NUTMonUser, NUTMonPassword), 0o600)
	for _, d := range opts.Devices {
		u.addDevice(d)
	}
	u.writeUPSConf()
	t.Cleanup(u.StopAll)
	var wg sync.WaitGroup
	for _, d := range opts.Devices {
		wg.Add(1)
		go func() { defer wg.Done(); u.StartDriver(d.Name) }()
	}
	wg.Wait()
	u.Start()
	if !opts.NoWait {
		for _, d := range opts.Devices {
			u.WaitReady(d.Name, 30*time.Second)
		}
	}
	return u
}

func (u *UPSD) writeFile(rel, body string, mode os.FileMode) {
	u.t.Helper()
	if err := os.WriteFile(filepath.Join(u.Dir, rel), []byte(body), mode); err != nil {
		u.t.Fatal(err)
	}
}

func (u *UPSD) addDevice(d NUTDevice) {
	u.t.Helper()
	if !nutNameRE.MatchString(d.Name) {
		u.t.Fatalf("bad UPS name %q", d.Name)
	}
	u.mu.Lock()
	u.devices[d.Name] = d
	u.mu.Unlock()
	if d.File == "" {
		u.WriteDev(d.Name, d.Dev)
	}
}

func (u *UPSD) writeUPSConf() {
	u.mu.Lock()
	names := make([]string, 0, len(u.devices))
	for n := range u.devices {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		d := u.devices[n]
		port := d.File
		if port == "" {
			port = u.devPath(n)
		}
		fmt.Fprintf(&b, "[%s]\n\tdriver = dummy-ups\n\tport = %q\n", n, port)
		if d.Desc != "" {
			fmt.Fprintf(&b, "\tdesc = %q\n", d.Desc)
		}
	}
	u.mu.Unlock()
	u.writeFile("etc/ups.conf", b.String(), 0o600)
}

func (u *UPSD) devPath(name string) string { return filepath.Join(u.Dir, "etc", name+".dev") }

// Addr is upsd's host:port.
func (u *UPSD) Addr() string { return Addr(u.Port) }

func (u *UPSD) env() []string {
	return append(os.Environ(),
		"NUT_CONFPATH="+filepath.Join(u.Dir, "etc"),
		"NUT_STATEPATH="+filepath.Join(u.Dir, "run"),
		"NUT_ALTPIDPATH="+filepath.Join(u.Dir, "run"))
}

func (u *UPSD) spawn(name string, args ...string) *nutProc {
	u.t.Helper()
	p := &nutProc{cmd: exec.Command(filepath.Join(u.bin, name), args...), done: make(chan struct{}), out: &SafeBuffer{}}
	p.cmd.Env = u.env()
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		u.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p
}

func (p *nutProc) stop(sig syscall.Signal) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot exit
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Start starts upsd (again) on its port.
func (u *UPSD) Start() {
	u.t.Helper()
	p := u.spawn("upsd", "-u", "root", "-F")
	u.mu.Lock()
	u.cmd, u.done = p.cmd, p.done
	u.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", u.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			u.t.Fatalf("upsd exited: %s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("upsd did not listen on %s: %s", u.Addr(), p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops upsd (SIGTERM by PID), leaving the drivers running.
func (u *UPSD) Stop() { u.stopUPSD(syscall.SIGTERM) }

// Kill kills upsd with SIGKILL, as a crash.
func (u *UPSD) Kill() { u.stopUPSD(syscall.SIGKILL) }

func (u *UPSD) stopUPSD(sig syscall.Signal) {
	u.mu.Lock()
	cmd, done := u.cmd, u.done
	u.cmd = nil
	u.mu.Unlock()
	if cmd != nil {
		(&nutProc{cmd: cmd, done: done}).stop(sig)
	}
}

// PID returns upsd's process id (0 when stopped).
func (u *UPSD) PID() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cmd == nil {
		return 0
	}
	return u.cmd.Process.Pid
}

// Reload sends SIGHUP to upsd: it re-reads ups.conf.
func (u *UPSD) Reload() {
	u.mu.Lock()
	cmd := u.cmd
	u.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGHUP)
	}
}

// StartDriver starts the UPS's dummy-ups and waits for its socket.
func (u *UPSD) StartDriver(name string) {
	u.t.Helper()
	p := u.spawn("dummy-ups", "-a", name, "-u", "root", "-F")
	u.mu.Lock()
	u.drivers[name] = p
	u.mu.Unlock()
	sock := filepath.Join(u.Dir, "run", "dummy-ups-"+name)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		select {
		case <-p.done:
			u.t.Fatalf("dummy-ups %s exited: %s", name, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("dummy-ups %s did not create %s: %s", name, sock, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StopDriver stops the UPS's driver (upsd then answers DRIVER-NOT-CONNECTED).
func (u *UPSD) StopDriver(name string) {
	u.mu.Lock()
	p := u.drivers[name]
	delete(u.drivers, name)
	u.mu.Unlock()
	p.stop(syscall.SIGTERM)
}

// SignalDriver sends sig to the UPS's driver: SIGSTOP makes its data go
// stale after MAXAGE, SIGCONT brings it back.
func (u *UPSD) SignalDriver(name string, sig syscall.Signal) {
	u.t.Helper()
	u.mu.Lock()
	p := u.drivers[name]
	u.mu.Unlock()
	if p == nil {
		u.t.Fatalf("no driver for %s", name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		u.t.Fatalf("signal driver %s: %v", name, err)
	}
}

// DriverPID returns the process id of the UPS's driver.
func (u *UPSD) DriverPID(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if p := u.drivers[name]; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// WriteDev rewrites the UPS's .dev file and gives it an mtime strictly
// later than the previous write's, on a new whole second: dummy-ups only
// re-reads the file when the mtime (in seconds) changes.
func (u *UPSD) WriteDev(name, content string) {
	u.t.Helper()
	path := u.devPath(name)
	u.mu.Lock()
	mt := time.Now().Truncate(time.Second)
	if prev, ok := u.mtimes[name]; ok && !mt.After(prev) {
		mt = prev.Add(time.Second)
	}
	u.mtimes[name] = mt
	u.mu.Unlock()
	// Write, stamp, then rename over the file: a driver that reads while an
	// in-place rewrite is half done would get a partial file already
	// carrying the final mtime, and never read it again.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		u.t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mt, mt); err != nil {
		u.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		u.t.Fatal(err)
	}
}

// AddUPS adds a UPS to a running upsd: a new ups.conf section, its driver,
// then SIGHUP to upsd.
func (u *UPSD) AddUPS(d NUTDevice) {
	u.t.Helper()
	u.addDevice(d)
	u.writeUPSConf()
	u.StartDriver(d.Name)
	u.Reload()
}

// RemoveUPS removes a UPS from ups.conf, reloads upsd and stops the driver.
func (u *UPSD) RemoveUPS(name string) {
	u.mu.Lock()
	delete(u.devices, name)
	u.mu.Unlock()
	u.writeUPSConf()
	u.Reload()
	u.StopDriver(name)
}

// StopAll stops upsd and every driver.
func (u *UPSD) StopAll() {
	u.stopUPSD(syscall.SIGTERM)
	u.mu.Lock()
	ds := u.drivers
	u.drivers = map[string]*nutProc{}
	u.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ds {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(syscall.SIGTERM) }()
	}
	wg.Wait()
}

// GetVar asks upsd for one variable over a fresh connection: the value, or
// the ERR line as an error.
func (u *UPSD) GetVar(name, variable string) (string, error) {
	c, err := net.DialTimeout("tcp", u.Addr(), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET VAR %s %s\n", name, variable); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	prefix := fmt.Sprintf("VAR %s %s \"", name, variable)
	if !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, `"`) {
		return "", fmt.Errorf("upsd: %s", line)
	}
	raw := line[len(prefix) : len(line)-1]
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String(), nil
}

// WaitReady waits until upsd serves the UPS with a status other than WAIT
// (an empty or missing ups.status counts once the driver answers).
func (u *UPSD) WaitReady(name string, timeout time.Duration) {
	u.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, err := u.GetVar(name, "ups.status")
		if (err == nil && v != "WAIT") || (err != nil && strings.Contains(err.Error(), "VAR-NOT-SUPPORTED")) {
			return
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("UPS %s not ready on upsd within %s: %v %q", name, timeout, err, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitVar waits until the variable has the wanted value.
func (u *UPSD) WaitVar(name, variable, want string, timeout time.Duration) {
	u.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, err := u.GetVar(name, variable)
		if err == nil && v == want {
			return
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s %s = %q (%v) after %s, want %q", name, variable, v, err, timeout, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Upsc runs NUT's own upsc for the UPS and returns the variables it
// prints.
func (u *UPSD) Upsc(name string) (map[string]string, error) {
	cmd := exec.Command(NeedUpsc(u.t), name+"@"+u.Addr())
	cmd.Env = u.env()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("upsc %s: %w", name, err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if l == "" {
			continue
		}
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			k, ok = strings.CutSuffix(l, ":")
			if !ok {
				return nil, fmt.Errorf("upsc %s: odd line %q", name, l)
			}
		}
		vars[k] = v
	}
	return vars, nil
}

// Logs returns upsd's and the drivers' output so far (for failure reports).
func (u *UPSD) Logs() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var b strings.Builder
	for n, p := range u.drivers {
		fmt.Fprintf(&b, "--- dummy-ups %s\n%s", n, p.out.String())
	}
	return b.String()
}
