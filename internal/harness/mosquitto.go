package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Mosquitto is a real mosquitto broker on a loopback port.
type Mosquitto struct {
	t    testing.TB
	bin  string
	Port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	// Persistent keeps sessions and retained messages across a graceful
	// restart (StopGraceful then Start), as a broker with a persistence
	// file does.
	Persistent bool
	// Extra is appended to mosquitto.conf (an acl_file, limits).
	Extra string
}

// StartMosquittoConf is StartMosquitto with extra lines for mosquitto.conf.
func StartMosquittoConf(t testing.TB, extra string) *Mosquitto {
	t.Helper()
	bin := NeedBinary(t, "mosquitto", "/usr/sbin/mosquitto")
	m := &Mosquitto{t: t, bin: bin, Port: FreePort(t), dir: t.TempDir(), Extra: extra}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// StartMosquitto starts mosquitto on a free loopback port; it is stopped
// when the test ends.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin := NeedBinary(t, "mosquitto", "/usr/sbin/mosquitto")
	m := &Mosquitto{t: t, bin: bin, Port: FreePort(t), dir: t.TempDir()}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// URL is the broker's tcp:// URL.
func (m *Mosquitto) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.Port) }

// Start (re)starts the broker on its port and waits until it accepts
// connections. Retained messages do not survive a restart (no persistence),
// as after a broker crash without a persistence file.
func (m *Mosquitto) Start() {
	m.t.Helper()
	conf := filepath.Join(m.dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type error\n", m.Port)
	if m.Persistent {
		body += fmt.Sprintf("persistence true\npersistence_location %s/\n", m.dir)
	} else {
		body += "persistence false\n"
	}
	body += m.Extra
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		m.t.Fatal(err)
	}
	m.cmd = exec.Command(m.bin, "-c", conf)
	m.cmd.Stdout = os.Stderr
	m.cmd.Stderr = os.Stderr
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(m.cmd, m.done)
	WaitTCP(m.t, Addr(m.Port), 10*time.Second)
}

// Stop kills the broker (SIGKILL by PID) and waits for it to exit.
func (m *Mosquitto) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
	m.cmd = nil
}

// StopGraceful stops the broker with SIGTERM, so a persistent one saves its
// sessions, and waits for it to exit.
func (m *Mosquitto) StopGraceful() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Signal(syscall.SIGKILL)
		<-m.done
	}
	m.cmd = nil
}

// StartPersistentMosquitto is StartMosquitto with persistence on.
func StartPersistentMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin := NeedBinary(t, "mosquitto", "/usr/sbin/mosquitto")
	m := &Mosquitto{t: t, bin: bin, Port: FreePort(t), dir: t.TempDir(), Persistent: true}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// WaitTCP waits until addr accepts a TCP connection, or fails the test.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections within %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
