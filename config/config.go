// Package config loads upsbridge's configuration: defaults in code, then a
// YAML file, then UPSBRIDGE_* environment variables. Unknown keys are errors
// and every problem is reported at once with its key path.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable the configuration reads;
// "__" separates levels: UPSBRIDGE_MQTT__URL sets mqtt.url.
const EnvPrefix = "UPSBRIDGE_"

// EnvConfigPath names the configuration file when --config is not given.
const EnvConfigPath = "UPSBRIDGE_CONFIG"

// Config is the whole configuration. Its keys are public API.
type Config struct {
	Log     Log     `koanf:"log"`
	MQTT    MQTT    `koanf:"mqtt"`
	Bridge  Bridge  `koanf:"bridge"`
	HASS    HASS    `koanf:"hass"`
	HTTP    HTTP    `koanf:"http"`
	Sources []Typed `koanf:"sources"`
	Notify  []Typed `koanf:"notify"`
	Agent   *Agent  `koanf:"agent"`
}

// Log configures logging.
type Log struct {
	Level  string `koanf:"level"`  // debug | info | warn | error
	Format string `koanf:"format"` // auto | text | json
}

// MQTT configures the broker connection.
type MQTT struct {
	// URL is tcp://host:port, mqtt://, mqtts://, ssl://, ws://, wss://, or
	// "embedded" to run a broker inside the process on Listen.
	URL          string `koanf:"url"`
	Listen       string `koanf:"listen"`
	ClientID     string `koanf:"client_id"`
	Username     string `koanf:"username"`
	Password     Secret `koanf:"password"`
	PasswordFile string `koanf:"password_file"`
	TLS          TLS    `koanf:"tls"`
	TopicPrefix  string `koanf:"topic_prefix"`
}

// TLS configures TLS to the broker.
type TLS struct {
	CAFile             string `koanf:"ca_file"`
	CertFile           string `koanf:"cert_file"`
	KeyFile            string `koanf:"key_file"`
	InsecureSkipVerify bool   `koanf:"insecure_skip_verify"`
}

// Bridge configures the core.
type Bridge struct {
	ID             string        `koanf:"id"`
	StateInterval  time.Duration `koanf:"state_interval"`
	DeadTime       time.Duration `koanf:"dead_time"`
	NoCommWarnTime time.Duration `koanf:"nocomm_warn_time"`
	// StateDir holds what must survive a restart (queued events).
	StateDir string  `koanf:"state_dir"`
	Primary  Primary `koanf:"primary"`
	// SigningKeyFile is an Ed25519 private key (upsbridge keygen); when set,
	// every state and event is signed.
	SigningKeyFile string `koanf:"signing_key_file"`
}

// Primary configures the bridge's role as the primary of its UPSes.
type Primary struct {
	HostSync  time.Duration `koanf:"host_sync"`
	KillPower bool          `koanf:"kill_power"`
}

// HASS configures Home Assistant discovery.
type HASS struct {
	Enabled           bool   `koanf:"enabled"`
	DiscoveryPrefix   string `koanf:"discovery_prefix"`
	Mode              string `koanf:"mode"` // entity | device
	DangerousCommands bool   `koanf:"dangerous_commands"`
}

// HTTP configures the metrics and health endpoint.
type HTTP struct {
	Listen string `koanf:"listen"` // empty: off
}

// SourceCommon holds the keys every source has. Source specs embed it.
type SourceCommon struct {
	ID   string `koanf:"id"`
	Type string `koanf:"type"`
}

// SourceID returns the source's id.
func (c *SourceCommon) SourceID() string { return c.ID }

// Default returns the configuration with every default set.
func Default() *Config {
	host, _ := os.Hostname()
	return &Config{
		Log:  Log{Level: "info", Format: "auto"},
		MQTT: MQTT{URL: "tcp://127.0.0.1:1883", Listen: "127.0.0.1:1883", TopicPrefix: "upsbridge"},
		Bridge: Bridge{
			ID:             SanitizeID(host),
			StateInterval:  30 * time.Second,
			DeadTime:       15 * time.Second,
			NoCommWarnTime: 300 * time.Second,
			Primary:        Primary{HostSync: 15 * time.Second},
		},
		HASS: HASS{Enabled: true, DiscoveryPrefix: "homeassistant", Mode: "entity"},
	}
}

// SanitizeID turns a host name or UPS name into an id that matches IDPattern:
// lower case, other characters replaced by '_'.
func SanitizeID(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "upsbridge"
	}
	return b.String()
}

// IDPattern is what every id in the configuration must match.
var IDPattern = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Errors is every problem found in a configuration.
type Errors []FieldError

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, fe := range e {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// MaxConfigBytes bounds the configuration file: a real one is a few KB.
const MaxConfigBytes = 1 << 20

// readBounded reads a file of at most limit bytes; a larger one is an error
// naming the limit, and is never read whole.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("the file is larger than the limit of %d bytes", limit)
	}
	return b, nil
}

// rawBytes is a koanf provider of bytes already read.
type rawBytes []byte

func (r rawBytes) ReadBytes() ([]byte, error) { return r, nil }
func (r rawBytes) Read() (map[string]any, error) {
	return nil, errors.New("config: raw bytes need a parser")
}

// Load reads the configuration: defaults, then the YAML file at path (if
// path is not empty), then environment variables from environ (os.Environ()
// form). It returns Errors listing every problem.
func Load(path string, environ []string) (*Config, error) {
	k := koanf.New(".")
	if path != "" {
		b, err := readBounded(path, MaxConfigBytes)
		if err != nil {
			return nil, Errors{{Key: "", Msg: fmt.Sprintf("read config file %s: %v", path, err)}}
		}
		if err := k.Load(rawBytes(b), yaml.Parser()); err != nil {
			return nil, Errors{{Key: "", Msg: fmt.Sprintf("read config file %s: %v", path, err)}}
		}
	}
	if env := envMap(environ); len(env) > 0 {
		if err := k.Load(confmap.Provider(env, "."), nil); err != nil {
			return nil, Errors{{Msg: fmt.Sprintf("read environment: %v", err)}}
		}
	}
	cfg := Default()
	d := &decoder{}
	d.decodeStruct("", k.Raw(), refValue(cfg))
	errs := d.errs
	if len(errs) == 0 {
		errs = append(errs, cfg.Validate()...)
	}
	if len(errs) > 0 {
		return nil, Errors(errs)
	}
	return cfg, nil
}

// envMap turns UPSBRIDGE_A__B_C=v into {"a.b_c": "v"}.
func envMap(environ []string) map[string]any {
	out := map[string]any{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) || k == EnvConfigPath {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(k, EnvPrefix))
		key = strings.ReplaceAll(key, "__", ".")
		if key != "" {
			out[key] = v
		}
	}
	return out
}

// Validate checks values (not keys, which decoding checks) and resolves
// secret files. It returns every problem.
func (c *Config) Validate() []FieldError {
	var errs []FieldError
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, Errorf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level))
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		errs = append(errs, Errorf("log.format", "must be auto, text or json, got %q", c.Log.Format))
	}
	errs = append(errs, Prefix("mqtt", c.MQTT.validate())...)
	errs = append(errs, Prefix("bridge", c.Bridge.validate())...)
	switch c.HASS.Mode {
	case "entity", "device":
	default:
		errs = append(errs, Errorf("hass.mode", "must be entity or device, got %q", c.HASS.Mode))
	}
	if c.HASS.DiscoveryPrefix == "" || strings.ContainsAny(c.HASS.DiscoveryPrefix, "+#") {
		errs = append(errs, Errorf("hass.discovery_prefix", "must be a topic without wildcards, got %q", c.HASS.DiscoveryPrefix))
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			errs = append(errs, Errorf("http.listen", "must be host:port, got %q", c.HTTP.Listen))
		}
	}
	errs = append(errs, validateTyped("sources", c.Sources, true)...)
	errs = append(errs, validateTyped("notify", c.Notify, false)...)
	if c.Agent != nil {
		errs = append(errs, Prefix("agent", c.Agent.Validate())...)
	}
	return errs
}

func (m *MQTT) validate() []FieldError {
	var errs []FieldError
	if m.URL != "embedded" {
		u, err := url.Parse(m.URL)
		switch {
		case err != nil:
			errs = append(errs, Errorf("url", "must be a URL such as tcp://host:1883, mqtts://host:8883 or \"embedded\": %v", err))
		case u.Host == "":
			errs = append(errs, Errorf("url", "must be a URL such as tcp://host:1883, mqtts://host:8883 or \"embedded\", got %q", m.URL))
		default:
			switch u.Scheme {
			case "tcp", "mqtt", "mqtts", "ssl", "tls", "ws", "wss":
			default:
				errs = append(errs, Errorf("url", "unsupported scheme %q (use tcp, mqtt, mqtts, ssl, ws or wss)", u.Scheme))
			}
		}
	}
	if _, _, err := net.SplitHostPort(m.Listen); err != nil {
		errs = append(errs, Errorf("listen", "must be host:port, got %q", m.Listen))
	}
	if m.TopicPrefix == "" || strings.ContainsAny(m.TopicPrefix, "+#") || strings.HasPrefix(m.TopicPrefix, "/") || strings.HasSuffix(m.TopicPrefix, "/") {
		errs = append(errs, Errorf("topic_prefix", "must be a topic without wildcards or leading/trailing '/', got %q", m.TopicPrefix))
	}
	errs = append(errs, ResolveSecret(&m.Password, m.PasswordFile, "password")...)
	if (m.TLS.CertFile == "") != (m.TLS.KeyFile == "") {
		errs = append(errs, Errorf("tls", "cert_file and key_file go together"))
	}
	for key, f := range map[string]string{"tls.ca_file": m.TLS.CAFile, "tls.cert_file": m.TLS.CertFile, "tls.key_file": m.TLS.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, Errorf(key, "%v", err))
		}
	}
	return errs
}

func (b *Bridge) validate() []FieldError {
	var errs []FieldError
	if !IDPattern.MatchString(b.ID) {
		errs = append(errs, Errorf("id", "must match %s, got %q", IDPattern, b.ID))
	}
	positive := []struct {
		key string
		d   time.Duration
	}{
		{"state_interval", b.StateInterval},
		{"dead_time", b.DeadTime},
		{"nocomm_warn_time", b.NoCommWarnTime},
		{"primary.host_sync", b.Primary.HostSync},
	}
	for _, p := range positive {
		if p.d <= 0 {
			errs = append(errs, Errorf(p.key, "must be > 0, got %q", p.d.String()))
		}
	}
	return errs
}

func validateTyped(kind string, list []Typed, ids bool) []FieldError {
	var errs []FieldError
	seen := map[string]int{}
	for i, t := range list {
		path := fmt.Sprintf("%s[%d]", kind, i)
		if v, ok := t.Spec.(Validator); ok {
			errs = append(errs, Prefix(path, v.Validate())...)
		}
		if !ids {
			continue
		}
		idr, ok := t.Spec.(interface{ SourceID() string })
		if !ok {
			continue
		}
		id := idr.SourceID()
		switch {
		case id == "":
			errs = append(errs, Errorf(path+".id", "is required"))
		case !IDPattern.MatchString(id):
			errs = append(errs, Errorf(path+".id", "must match %s, got %q", IDPattern, id))
		default:
			if j, dup := seen[id]; dup {
				errs = append(errs, Errorf(path+".id", "%q is already the id of %s[%d]", id, kind, j))
			}
			seen[id] = i
		}
	}
	return errs
}

// AsErrors returns the FieldErrors inside err, if it holds any.
func AsErrors(err error) (Errors, bool) {
	var e Errors
	ok := errors.As(err, &e)
	return e, ok
}
