package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/sources/nut"
)

// secretFiles stands in for the files the sample configs name under
// /etc/upsbridge (and /run/secrets): check-config reads them.
func secretFiles(t *testing.T, bin string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"mqtt-password", "nut-password", "wecom-key", "mqtt-homeassistant-password", "mqtt-pve1-password", "http-token"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not-a-real-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := filepath.Join(dir, "bridge.key")
	if out, err := exec.Command(bin, "keygen", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("upsbridge keygen: %v\n%s", err, out)
	}
	if err := os.Rename(key+".pub", filepath.Join(dir, "bridge.pub")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkConfig runs the real binary's check-config on a config whose
// /etc/upsbridge/ and /run/secrets/ paths point at dir.
func checkConfigFile(t *testing.T, bin, dir, name string, body []byte) {
	t.Helper()
	body = bytes.ReplaceAll(body, []byte("/etc/upsbridge/"), []byte(dir+"/"))
	body = bytes.ReplaceAll(body, []byte("/run/secrets/"), []byte(dir+"/"))
	p := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check-config", "-c", p)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no UPSBRIDGE_* from the caller
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s does not pass check-config: %v\n%s", name, err, out)
	}
}

// TestDeploySampleConfigs: every sample config shipped in deploy/ passes
// the real binary's check-config.
func TestDeploySampleConfigs(t *testing.T) {
	bin := harness.Binary(t)
	dir := secretFiles(t, bin)
	root := harness.RepoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "config", "*.yaml"))
	compose, _ := filepath.Glob(filepath.Join(root, "deploy", "compose", "*.yaml"))
	files = append(files, compose...)
	if len(files) < 6 {
		t.Fatalf("found %d sample configs, want the 4 in deploy/config and 2 in deploy/compose", len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(rel, func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checkConfigFile(t, bin, dir, rel, body)
		})
	}
}

// TestDeployImportUpsmonPassesCheckConfig: import-upsmon's output for real
// upsmon.conf files passes check-config. The NOTIFYCMD and CMDSCRIPT
// programs of those files live on the user's host; here they are created.
func TestDeployImportUpsmonPassesCheckConfig(t *testing.T) {
	bin := harness.Binary(t)
	td := filepath.Join(harness.RepoRoot(t), "internal", "importer", "upsmon", "testdata")
	tests := []struct {
		upsmon, upssched string
		want             []string
	}{
		{"synology-wecom.upsmon.conf", "", []string{`type: exec`, `command: ["/usr/local/bin/wechat-notify.sh"]`, `address: "192.168.1.10"`}},
		{"debian-primary-upssched.upsmon.conf", "debian-primary-upssched.upssched.conf", []string{`primary: true`, `on_battery_for: 60s`}},
		{"proxmox-two-ups.upsmon.conf", "", []string{`power_value: 0`, `"--channel", "ops"`}},
	}
	progs := regexp.MustCompile(`"(/usr/local/bin/[^"]+)"`)
	for _, tt := range tests {
		t.Run(tt.upsmon, func(t *testing.T) {
			args := []string{"import-upsmon", filepath.Join(td, tt.upsmon)}
			if tt.upssched != "" {
				args = append(args, "--upssched", filepath.Join(td, tt.upssched))
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("import-upsmon: %v\n%s", err, stderr.String())
			}
			out := stdout.Bytes()
			for _, w := range tt.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("output lacks %s", w)
				}
			}
			if !strings.Contains(stderr.String(), "not carried over") {
				t.Errorf("stderr does not summarise the lines not carried over: %s", stderr.String())
			}
			// Stand-ins for the user's scripts, at a path of the same name.
			dir := t.TempDir()
			for _, m := range progs.FindAllSubmatch(out, -1) {
				stand := filepath.Join(dir, filepath.Base(string(m[1])))
				if err := os.WriteFile(stand, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				out = bytes.ReplaceAll(out, m[1], []byte(stand))
			}
			checkConfigFile(t, bin, dir, tt.upsmon+".yaml", out)
		})
	}
}

// TestDeploySynologyBuilds: the shipped Synology config (password_file on
// its nut source, key_file on its notifier) loads and every source and
// notifier builds from it, as `run` does after `check-config` accepted it.
// A secret resolved during a first validation used to make the second one
// fail with "set either password or password_file, not both".
func TestDeploySynologyBuilds(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"mqtt-password", "nut-password", "wecom-key"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not-a-real-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	body, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "deploy", "config", "synology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.ReplaceAll(body, []byte("/etc/upsbridge/"), []byte(dir+"/"))
	p := filepath.Join(t.TempDir(), "synology.yaml")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	env := bridge.Env{StateDir: t.TempDir()}
	for i, s := range cfg.Sources {
		src, err := s.Spec.NewSource(env)
		if err != nil {
			t.Errorf("sources[%d]: %v", i, err)
			continue
		}
		_ = src
	}
	for i, n := range cfg.Notify {
		sink, err := n.Spec.NewSink(env)
		if err != nil {
			t.Errorf("notify[%d]: %v", i, err)
			continue
		}
		if c, ok := sink.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
	if got := cfg.Sources[0].Spec.(*nut.Config).Password.Reveal(); got != "not-a-real-secret" {
		t.Errorf("nut password resolved to %q, want the file's content", got)
	}
}
