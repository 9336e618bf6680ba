package harness

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildOut  []byte

	plainOnce sync.Once
	plainPath string
	plainErr  error
	plainOut  []byte
)

// RepoRoot returns the repository root (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds the upsbridge binary once per test process (with -race when
// the tests run with it) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "upsbridge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "upsbridge")
		args := []string{"build", "-o", buildPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/upsbridge")
		cmd := exec.Command("go", args...)
		cmd.Dir = RepoRoot(t)
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build upsbridge: %v\n%s", buildErr, buildOut)
	}
	return buildPath
}

// PlainBinary builds the upsbridge binary without the race detector, once
// per test process, for tests that measure the process itself (memory,
// CPU): the detector multiplies both.
func PlainBinary(t testing.TB) string {
	t.Helper()
	plainOnce.Do(func() {
		dir, err := os.MkdirTemp("", "upsbridge-plain-")
		if err != nil {
			plainErr = err
			return
		}
		plainPath = filepath.Join(dir, "upsbridge")
		cmd := exec.Command("go", "build", "-o", plainPath, "./cmd/upsbridge")
		cmd.Dir = RepoRoot(t)
		plainOut, plainErr = cmd.CombinedOutput()
	})
	if plainErr != nil {
		t.Fatalf("build upsbridge: %v\n%s", plainErr, plainOut)
	}
	return plainPath
}

// Process is a running upsbridge.
type Process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	Output *SafeBuffer
}

// SafeBuffer is a bytes.Buffer safe for concurrent writes and reads.
type SafeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SafeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartBridge runs `upsbridge <args...>` with the YAML config written to a
// file and passed with -c. It is killed when the test ends; its output is
// logged if the test failed.
func StartBridge(t testing.TB, configYAML string, args ...string) *Process {
	t.Helper()
	return StartBinary(t, Binary(t), configYAML, args...)
}

// StartBinary is StartBridge with a given binary (see PlainBinary).
func StartBinary(t testing.TB, bin, configYAML string, args ...string) *Process {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "upsbridge.yaml")
	if err := os.WriteFile(cfg, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(args) == 0 {
		args = []string{"run"}
	}
	args = append(args, "-c", cfg)
	p := &Process{cmd: exec.Command(bin, args...), done: make(chan struct{}), Output: &SafeBuffer{}}
	p.cmd.Stdout = p.Output
	p.cmd.Stderr = p.Output
	p.cmd.Env = append(os.Environ(), "UPSBRIDGE_LOG__FORMAT=json")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start upsbridge: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("upsbridge output:\n%s", p.Output.String())
		}
	})
	return p
}

// Kill sends SIGKILL (no clean shutdown: the broker fires the Will).
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit.
func (p *Process) Stop(t testing.TB, timeout time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.Kill()
		t.Fatalf("upsbridge did not stop within %s after SIGTERM", timeout)
		return -1
	}
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }
