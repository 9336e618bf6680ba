package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testSpec struct {
	SourceCommon `koanf:",squash"`
	PollInterval time.Duration `koanf:"poll_interval"`
	Address      string        `koanf:"address"`
	Password     Secret        `koanf:"password"`
}

func (s *testSpec) Validate() []FieldError {
	if s.PollInterval <= 0 {
		return []FieldError{Errorf("poll_interval", "must be > 0, got %q", s.PollInterval.String())}
	}
	return nil
}

func init() {
	Register("sources", "testsrc", func() any { return &testSpec{PollInterval: time.Second} })
}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsFileEnv(t *testing.T) {
	p := write(t, `
mqtt:
  url: tcp://broker:1883
  topic_prefix: home/ups
bridge:
  id: nas
  dead_time: 20s
sources:
  - id: nas-ups
    type: testsrc
    address: 192.0.2.1
`)
	cfg, err := Load(p, []string{"UPSBRIDGE_MQTT__USERNAME=bob", "UPSBRIDGE_BRIDGE__STATE_INTERVAL=10s", "OTHER=1", "UPSBRIDGE_CONFIG=/x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.URL != "tcp://broker:1883" || cfg.MQTT.TopicPrefix != "home/ups" || cfg.MQTT.Username != "bob" {
		t.Errorf("mqtt = %+v", cfg.MQTT)
	}
	if cfg.Bridge.DeadTime != 20*time.Second || cfg.Bridge.StateInterval != 10*time.Second || cfg.Bridge.NoCommWarnTime != 300*time.Second {
		t.Errorf("bridge = %+v", cfg.Bridge)
	}
	spec := cfg.Sources[0].Spec.(*testSpec)
	if spec.ID != "nas-ups" || spec.Address != "192.0.2.1" || spec.PollInterval != time.Second {
		t.Errorf("source = %+v", spec)
	}
	if !cfg.HASS.Enabled || cfg.HASS.DiscoveryPrefix != "homeassistant" {
		t.Errorf("hass defaults = %+v", cfg.HASS)
	}
}

func TestLoadReportsEveryErrorWithItsPath(t *testing.T) {
	p := write(t, `
log:
  level: loud
mqtt:
  url: "ftp://x"
  bogus: 1
bridge:
  id: "Bad Id"
  dead_time: 15
  state_interval: 0s
sources:
  - id: a
    type: testsrc
    poll_interval: 0s
    colour: red
  - id: a
    type: testsrc
  - type: nosuch
  - id: b
`)
	_, err := Load(p, nil)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	msg := err.Error()
	// Shape errors first (decode), so value checks come only when shapes pass:
	for _, want := range []string{
		`mqtt.bogus: unknown key`,
		`bridge.dead_time: must be a duration with a unit`,
		`sources[0].colour: unknown key`,
		`sources[2].type: unknown type "nosuch"`,
		`sources[3].type: is required`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}

	p = write(t, `
log:
  level: loud
mqtt:
  url: "ftp://x"
bridge:
  id: "Bad Id"
  state_interval: 0s
sources:
  - id: a
    type: testsrc
    poll_interval: 0s
  - id: a
    type: testsrc
`)
	_, err = Load(p, nil)
	msg = err.Error()
	for _, want := range []string{
		`log.level: must be debug, info, warn or error, got "loud"`,
		`mqtt.url: unsupported scheme "ftp"`,
		`bridge.id: must match`,
		`bridge.state_interval: must be > 0, got "0s"`,
		`sources[0].poll_interval: must be > 0, got "0s"`,
		`sources[1].id: "a" is already the id of sources[0]`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	pw := write(t, "hunter2\n")
	p := write(t, "mqtt:\n  password_file: "+pw+"\n")
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Password.Reveal() != "hunter2" {
		t.Fatalf("password from file = %q", cfg.MQTT.Password.Reveal())
	}
	for _, s := range []string{cfg.MQTT.Password.String(), strings.TrimSpace(strings.ReplaceAll(stringOf(cfg.MQTT), "\n", " "))} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("secret printed: %s", s)
		}
	}
	p = write(t, "mqtt:\n  password: a\n  password_file: "+pw+"\n")
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "mqtt.password: set either") {
		t.Fatalf("both password and password_file: %v", err)
	}
}

func stringOf(v any) string { return strings.TrimSpace(fmtSprint(v)) }

func TestMalformedYAML(t *testing.T) {
	p := write(t, "mqtt: [unclosed\n")
	_, err := Load(p, nil)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("malformed YAML: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("mqtt:\n  url: tcp://x:1\nsources:\n  - id: a\n    type: testsrc\n")
	f.Add("bridge: 3\n")
	f.Add("sources: {a: 1}\n")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(body), 0o600)
		_, _ = Load(p, nil) // must not panic
	})
}

// TestFileBounds: a configuration or secret file over its limit is an error
// naming the file and the limit, and is not read whole.
func TestFileBounds(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	body := strings.Repeat("# padding\n", MaxConfigBytes/10+1)
	if err := os.WriteFile(big, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(big, nil)
	if err == nil || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "larger than the limit of 1048576 bytes") {
		t.Fatalf("oversized config: %v", err)
	}
	sec := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(sec, make([]byte, MaxSecretFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	var s Secret
	errs := ResolveSecret(&s, sec, "password")
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "password_file") || !strings.Contains(errs[0].Error(), "limit of 65536 bytes") {
		t.Fatalf("oversized secret file: %v", errs)
	}
	if s != "" {
		t.Fatal("a secret was read from an oversized file")
	}
}
