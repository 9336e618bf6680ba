package executor

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// recordingScript writes a script that appends its first argument to a
// file, and returns the script and the file.
func recordingScript(t *testing.T, exit int) (string, string) {
	t.Helper()
	dir := t.TempDir()
	rec := filepath.Join(dir, "record.txt")
	script := filepath.Join(dir, "rec.sh")
	body := "#!/bin/sh\necho \"$1\" >> " + rec + "\nexit " + string(rune('0'+exit)) + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, rec
}

func TestPoweroffMethods(t *testing.T) {
	for mode, want := range map[string][]string{
		"auto": {MethodLogind, MethodCommand}, "logind": {MethodLogind}, "command": {MethodCommand},
	} {
		if got := (&CommandExecutor{Mode: mode}).PoweroffMethods(); !slices.Equal(got, want) {
			t.Errorf("mode %s: methods %v, want %v", mode, got, want)
		}
	}
}

func TestCommandPoweroffAndRun(t *testing.T) {
	script, rec := recordingScript(t, 0)
	e := &CommandExecutor{Mode: "command", ShutdownCommand: []string{script, "POWEROFF"}, Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if err := e.Run(t.Context(), "stage shed", []string{script, "shed"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Poweroff(t.Context(), MethodCommand); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(rec)
	if got := strings.Fields(string(data)); !slices.Equal(got, []string{"shed", "POWEROFF"}) {
		t.Errorf("recorded %q", got)
	}
	if err := e.Poweroff(t.Context(), "halt"); err == nil || !strings.Contains(err.Error(), `"halt"`) {
		t.Errorf("unknown method: %v", err)
	}
}

func TestCommandFailures(t *testing.T) {
	script, _ := recordingScript(t, 3)
	e := &CommandExecutor{Mode: "command", ShutdownCommand: []string{script, "POWEROFF"}, Timeout: 5 * time.Second}
	if err := e.Poweroff(t.Context(), MethodCommand); err == nil || !strings.Contains(err.Error(), "shutdown_command") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing shutdown_command: %v", err)
	}
	slow := &CommandExecutor{Timeout: 100 * time.Millisecond}
	if err := slow.Run(context.Background(), "stage slow", []string{"sleep", "10"}); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("slow command: %v", err)
	}
	// No system bus here: logind fails with an error naming the bus.
	bus := &CommandExecutor{SystemBus: "unix:path=" + filepath.Join(t.TempDir(), "no-bus")}
	if err := bus.Poweroff(t.Context(), MethodLogind); err == nil || !strings.Contains(err.Error(), "logind") {
		t.Errorf("logind without a bus: %v", err)
	}
}
