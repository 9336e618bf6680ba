package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunHTTPListenError: an http.listen that cannot be bound stops run
// with exit 2 and an error naming the component in words.
func TestRunHTTPListenError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bridge.yaml")
	body := fmt.Sprintf(`mqtt: {url: "tcp://127.0.0.1:1"}
log: {format: text}
bridge: {id: b1, state_dir: %s}
http: {listen: %q}
sources: [{id: sim-ups, type: sim, scenario: steady, poll_interval: 1s}]
`, filepath.Join(dir, "state"), taken.Addr().String())
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), []string{"run", "-c", cfg}, stdio{Stdout: &out, Stderr: &errb})
	if code != exitConfig {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitConfig, errb.String())
	}
	want := "err=\"http api: listen on " + taken.Addr().String() + ": "
	if !strings.Contains(errb.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errb.String())
	}
	for _, leak := range []string{"zz-", "hook"} {
		if strings.Contains(errb.String(), leak) {
			t.Errorf("stderr names %q:\n%s", leak, errb.String())
		}
	}
}

// TestNotifyTestUPSName: notify-test runs an exec notifier with UPSNAME
// and NOTIFYTYPE set, as upsmon's NOTIFYCMD gets them.
func TestNotifyTestUPSName(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "got")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s %s\\n' \"$UPSNAME\" \"$NOTIFYTYPE\" >> "+got+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "bridge.yaml")
	body := fmt.Sprintf(`bridge: {id: b1, state_dir: %s}
sources: [{id: nas-ups, type: sim, scenario: steady}]
notify:
  - {name: script, type: exec, command: [%q]}
`, filepath.Join(dir, "state"), script)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dispatch(context.Background(), []string{"notify-test", "-c", cfg}, stdio{Stdout: &out, Stderr: &errb}); code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "nas-ups TEST\n" {
		t.Errorf("the script saw %q, want %q", b, "nas-ups TEST\n")
	}
}
