// Package harness starts real peers for tests (mosquitto, and NUT's upsd
// with dummy-ups) on free loopback ports and stops them by PID, and gives
// tests MQTT subscribers that wait on conditions with deadlines.
package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
)

// NeedBinary returns the path of a program the test needs. A missing program
// skips the test on a developer's machine, but fails it under CI=true: CI
// never passes by skipping.
func NeedBinary(t testing.TB, name string, alsoLook ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range alsoLook {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (CI=true: a missing binary is a failure, not a skip)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Addr formats a loopback address.
func Addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
