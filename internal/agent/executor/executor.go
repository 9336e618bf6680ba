// Package executor carries out the shutdown agent's decisions: it runs
// stage and undo commands as processes and powers the host off through
// systemd-logind or a command. It decides nothing; retrying a failed power
// off is the agent's job.
package executor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// Executor carries out the policy's decisions. Tests substitute it.
type Executor interface {
	// Run runs a stage's or undo's command, bounded by ctx.
	Run(ctx context.Context, what string, argv []string) error
	// PoweroffMethods lists the ways this executor can power the host
	// off, in the order the agent tries them (and falls back between them
	// when one fails).
	PoweroffMethods() []string
	// Poweroff asks the OS to power off by method. A nil error means the
	// OS accepted the request, not that the host is down.
	Poweroff(ctx context.Context, method string) error
}

// Power-off methods.
const (
	MethodLogind  = "logind"
	MethodCommand = "command"
)

// CommandExecutor runs commands as processes and powers off by logind,
// a command, or both (auto: logind first, falling back to the command).
type CommandExecutor struct {
	Mode            string // auto | logind | command
	ShutdownCommand []string
	Timeout         time.Duration
	// SystemBus is the D-Bus system bus address (default: the standard
	// socket, or $DBUS_SYSTEM_BUS_ADDRESS).
	SystemBus string
	Logger    *slog.Logger
}

// maxOutput bounds the command output kept for the log.
const maxOutput = 4096

type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxOutput - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Run implements Executor: the command runs with the executor's timeout;
// its output is logged; a failure is returned (and reported by the agent).
func (e *CommandExecutor) Run(ctx context.Context, what string, argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second // children holding the pipes open
	start := time.Now()
	err := cmd.Run()
	log := e.logger().With("what", what, "command", argv[0], "duration", time.Since(start).Round(time.Millisecond), "output", out.String())
	if cctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%s: %s: timed out after %s", what, argv[0], timeout)
	} else if err != nil {
		err = fmt.Errorf("%s: %s: %w", what, argv[0], err)
	}
	if err != nil {
		log.Error("command failed", "err", err)
		return err
	}
	log.Info("command ran")
	return nil
}

func (e *CommandExecutor) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// PoweroffMethods implements Executor: auto alternates logind and
// shutdown_command; logind and command use only that one.
func (e *CommandExecutor) PoweroffMethods() []string {
	switch e.Mode {
	case MethodLogind:
		return []string{MethodLogind}
	case MethodCommand:
		return []string{MethodCommand}
	}
	return []string{MethodLogind, MethodCommand}
}

// Poweroff implements Executor.
func (e *CommandExecutor) Poweroff(ctx context.Context, method string) error {
	switch method {
	case MethodLogind:
		return e.logind(ctx)
	case MethodCommand:
		return e.Run(ctx, "shutdown_command", e.ShutdownCommand)
	}
	return fmt.Errorf("power off: unknown method %q", method)
}

// logind asks systemd-logind to power off (org.freedesktop.login1.Manager
// .PowerOff), which works from a container with the host's system bus
// socket mounted, without systemctl in the image.
func (e *CommandExecutor) logind(ctx context.Context) error {
	addr := e.SystemBus
	if addr == "" {
		addr = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	}
	if addr == "" {
		addr = "unix:path=/run/dbus/system_bus_socket"
	}
	conn, err := dbus.Connect(addr, dbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("logind: connect to the system bus %s: %w", addr, err)
	}
	defer conn.Close()
	obj := conn.Object("org.freedesktop.login1", "/org/freedesktop/login1")
	call := obj.CallWithContext(ctx, "org.freedesktop.login1.Manager.PowerOff", 0, false)
	if call.Err != nil {
		return fmt.Errorf("logind: PowerOff: %w", call.Err)
	}
	e.logger().Info("logind accepted the power off")
	return nil
}

// DryRunExecutor logs and runs nothing.
type DryRunExecutor struct{ Logger *slog.Logger }

// Run implements Executor.
func (d DryRunExecutor) Run(_ context.Context, what string, argv []string) error {
	d.Logger.Warn("dry run: would run", "what", what, "argv", argv)
	return nil
}

// PoweroffMethods implements Executor.
func (d DryRunExecutor) PoweroffMethods() []string { return []string{"dry_run"} }

// Poweroff implements Executor.
func (d DryRunExecutor) Poweroff(context.Context, string) error {
	d.Logger.Warn("dry run: would power off the host")
	return nil
}
