package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
)

type testSpec struct {
	SourceCommon `koanf:",squash"`
	PollInterval time.Duration `koanf:"poll_interval"`
	Address      string        `koanf:"address"`
	Password     Secret        `koanf:"password"`
	Token        SecretRef     `koanf:"token"`
}

func (s *testSpec) Validate() []FieldError {
	if s.PollInterval <= 0 {
		return []FieldError{Errorf("poll_interval", "must be > 0, got %q", s.PollInterval.String())}
	}
	return nil
}

func (s *testSpec) NewSource(bridge.Env) (bridge.Source, error) { return nil, errors.New("test spec") }

func init() {
	RegisterSource("testsrc", func() SourceSpec { return &testSpec{PollInterval: time.Second} })
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
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "mqtt.password: set only one of") {
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

// TestSecretRef: a secret given as value, file or environment variable is
// resolved once by Load (a second resolution changes nothing and fails
// nothing), validation reads nothing, and every mistake names its key.
func TestSecretRef(t *testing.T) {
	pw := write(t, "from-file\n")
	tests := []struct {
		name, yaml string
		env        []string
		want, err  string
	}{
		{"value", "mqtt:\n  password: plain\n", nil, "plain", ""},
		{"file", "mqtt:\n  password_file: " + pw + "\n", nil, "from-file", ""},
		{"env", "mqtt:\n  password_env: MQTT_PW\n", []string{"MQTT_PW=from-env"}, "from-env", ""},
		{"env var from UPSBRIDGE_", "mqtt: {}\n", []string{"UPSBRIDGE_MQTT__PASSWORD_FILE=" + pw}, "from-file", ""},
		{"env unset", "mqtt:\n  password_env: MQTT_PW\n", nil, "", "mqtt.password_env: environment variable MQTT_PW is not set"},
		{"missing file", "mqtt:\n  password_file: /nonexistent/pw\n", nil, "", "mqtt.password_file: read secret file"},
		{"file and env", "mqtt:\n  password_file: " + pw + "\n  password_env: X\n", nil, "", "mqtt.password: set only one of password, password_file and password_env"},
		{"in a typed entry", "sources:\n  - {id: a, type: testsrc, token_file: " + pw + "}\n", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(write(t, tt.yaml), tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.MQTT.Password.Reveal(); got != tt.want {
				t.Errorf("password %q, want %q", got, tt.want)
			}
			if len(cfg.Sources) > 0 {
				if got := cfg.Sources[0].Spec.(*testSpec).Token.Reveal(); got != "from-file" {
					t.Errorf("token in a source %q", got)
				}
			}
			// Validation and a second resolution agree with the first pass.
			if errs := cfg.Validate(); len(errs) > 0 {
				t.Errorf("second validation: %v", errs)
			}
			if errs := ResolveSecrets("", cfg, nil); len(errs) > 0 {
				t.Errorf("second resolution: %v", errs)
			}
			if got := cfg.MQTT.Password.Reveal(); got != tt.want {
				t.Errorf("password after a second pass %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDuplicateNames: two sources with one id, or two notifiers with one
// name, are configuration errors naming both entries.
func TestDuplicateNames(t *testing.T) {
	_, err := Load(write(t, `
sources:
  - {id: a, type: testsrc}
  - {id: a, type: testsrc}
notify:
  - {name: ops, type: testnote}
  - {name: ops, type: testnote}
`), nil)
	for _, want := range []string{
		`sources[1].id: "a" is already the id of sources[0]`,
		`notify[1].name: "ops" is already the name of notify[0]`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in: %v", want, err)
		}
	}
}

// TestRegisterTwicePanics: a type registered twice is a programming error
// (the kind of a spec is checked by the compiler).
func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering testsrc twice did not panic")
		}
	}()
	RegisterSource("testsrc", func() SourceSpec { return &testSpec{} })
}

type testNote struct {
	Name string `koanf:"name"`
	Type string `koanf:"type"`
}

func (n *testNote) NotifierName() string { return n.Name }

func (n *testNote) NewSink(bridge.Env) (bridge.Sink, error) { return nil, errors.New("test spec") }

func init() {
	RegisterNotifier("testnote", func() NotifierSpec { return &testNote{} })
}

// TestKeyFilesParsed: a signing key or agent public key file that exists
// but is not a key fails Load (so check-config), as it would fail run.
func TestKeyFilesParsed(t *testing.T) {
	pub, priv, err := signing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	privPEM, _ := signing.EncodePrivateKey(priv)
	pubPEM, _ := signing.EncodePublicKey(pub)
	good, goodPub, junk := write(t, string(privPEM)), write(t, string(pubPEM)), write(t, "not a key\n")
	// The agent's public key is checked by the agent's section
	// (agent/config_test.go): config does not know it.
	tests := []struct{ name, yaml, err string }{
		{"keys", "bridge:\n  signing_key_file: " + good + "\n", ""},
		{"junk signing key", "bridge:\n  signing_key_file: " + junk + "\n", "bridge.signing_key_file: signing key"},
		{"public key as signing key", "bridge:\n  signing_key_file: " + goodPub + "\n", "bridge.signing_key_file:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, tt.yaml), nil)
			switch {
			case tt.err == "" && err != nil:
				t.Fatal(err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want %q", err, tt.err)
			}
		})
	}
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
	s := SecretRef{File: sec}
	errs := s.Resolve("password", nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "password_file") || !strings.Contains(errs[0].Error(), "limit of 65536 bytes") {
		t.Fatalf("oversized secret file: %v", errs)
	}
	if s.Reveal() != "" {
		t.Fatal("a secret was read from an oversized file")
	}
}
