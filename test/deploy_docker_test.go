package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// TestDeployDockerfileRules checks the rules the image must keep (hadolint
// is not packaged for Debian bookworm, so these stand in for the ones that
// matter here): multi-stage, the build through deploy/docker/build.sh (the
// script CI runs outside a container), pinned base images, apt lists
// removed, a non-root user, and a HEALTHCHECK through the binary itself.
func TestDeployDockerfileRules(t *testing.T) {
	root := harness.RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	// Join continuation lines so each instruction is one line.
	df = strings.ReplaceAll(df, "\\\n", " ")
	var from, run []string
	var user, health, copyFrom string
	for _, line := range strings.Split(df, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		inst, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(inst) {
		case "FROM":
			from = append(from, rest)
		case "RUN":
			run = append(run, rest)
		case "USER":
			user = rest
		case "HEALTHCHECK":
			health = rest
		case "COPY":
			if strings.Contains(rest, "--from=") {
				copyFrom = rest
			}
		}
	}
	rules := []struct {
		name string
		ok   bool
	}{
		{"multi-stage: two FROM lines", len(from) == 2},
		{"the final stage copies the binary from the build stage", strings.Contains(copyFrom, "--from=build")},
		{"no :latest base image", !strings.Contains(strings.Join(from, " "), ":latest")},
		{"the build runs deploy/docker/build.sh", strings.Contains(strings.Join(run, "\n"), "deploy/docker/build.sh")},
		{"USER is set and is not root", user != "" && !regexp.MustCompile(`^(root|0)(:|$)`).MatchString(user)},
		{"HEALTHCHECK runs upsbridge health", strings.Contains(health, `"upsbridge", "health"`)},
		{"the final stage installs libusb", strings.Contains(strings.Join(run, "\n"), "libusb-1.0-0 ")},
	}
	for _, r := range rules {
		if !r.ok {
			t.Errorf("Dockerfile: %s", r.name)
		}
	}
	for _, r := range run {
		if strings.Contains(r, "apt-get install") {
			if !strings.Contains(r, "--no-install-recommends") || !strings.Contains(r, "rm -rf /var/lib/apt/lists") {
				t.Errorf("Dockerfile: apt-get install without --no-install-recommends or without removing the lists: %s", r)
			}
			if !strings.Contains(r, "apt-get update") {
				t.Errorf("Dockerfile: apt-get install without apt-get update in the same RUN: %s", r)
			}
		}
	}
	// The image's own config must be valid, with its environment.
	bin := harness.Binary(t)
	cmd := exec.Command(bin, "check-config", "-c", filepath.Join(root, "deploy", "config", "container.yaml"))
	cmd.Env = []string{"UPSBRIDGE_HTTP__LISTEN=0.0.0.0:9105", "UPSBRIDGE_BRIDGE__STATE_DIR=/var/lib/upsbridge"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the image's config with the image's environment: %v\n%s", err, out)
	}
}

// TestDeploySystemdUnits runs systemd-analyze verify on the units, pointed
// at the binary built for the tests (verify insists ExecStart exists), and
// checks the hardening the issue asks for is there.
func TestDeploySystemdUnits(t *testing.T) {
	root := harness.RepoRoot(t)
	units, _ := filepath.Glob(filepath.Join(root, "deploy", "systemd", "*.service"))
	if len(units) != 2 {
		t.Fatalf("found %d units, want upsbridge.service and upsbridge-agent.service", len(units))
	}
	required := []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"CapabilityBoundingSet=", "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "StateDirectory="}
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range required {
			if !strings.Contains(string(b), "\n"+r) {
				t.Errorf("%s lacks %s", filepath.Base(u), r)
			}
		}
		if strings.Contains(string(b), "\nUser=root") {
			t.Errorf("%s runs as root", filepath.Base(u))
		}
	}
	analyze := harness.NeedBinary(t, "systemd-analyze")
	bin := harness.Binary(t)
	dir := t.TempDir()
	var args []string
	for _, u := range units {
		b, _ := os.ReadFile(u)
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/upsbridge", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, args...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
