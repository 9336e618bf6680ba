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

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
)

// EnvPrefix starts every environment variable the configuration reads;
// "__" separates levels: UPSBRIDGE_MQTT__URL sets mqtt.url.
const EnvPrefix = "UPSBRIDGE_"

// EnvConfigPath names the configuration file when --config is not given.
const EnvConfigPath = "UPSBRIDGE_CONFIG"

// Config is the whole configuration. Its keys are public API.
type Config struct {
	Log     Log        `koanf:"log"`
	MQTT    MQTT       `koanf:"mqtt"`
	Bridge  Bridge     `koanf:"bridge"`
	HASS    HASS       `koanf:"hass"`
	HTTP    HTTP       `koanf:"http"`
	Sources []Source   `koanf:"sources"`
	Notify  []Notifier `koanf:"notify"`
	// Agent is the shutdown agent's section, nil when absent. Its struct
	// is registered by the agent's package (RegisterSection).
	Agent any `koanf:"agent"`
	// NUTServer serves the bridge's UPSes to NUT clients (off by default).
	NUTServer NUTServer `koanf:"nut_server"`
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
	URL      string `koanf:"url"`
	Listen   string `koanf:"listen"`
	ClientID string `koanf:"client_id"`
	Username string `koanf:"username"`
	// Password is password, password_file or password_env.
	Password    SecretRef `koanf:"password"`
	TLS         TLS       `koanf:"tls"`
	TopicPrefix string    `koanf:"topic_prefix"`
	// Commands says which commands and variable writes MQTT may ask for.
	Commands Commands `koanf:"commands"`
	// Broker secures the embedded broker (url: embedded).
	Broker Broker `koanf:"broker"`
}

// Commands is the policy for instant commands and variable writes that
// arrive over MQTT. It is closed by default: no variable may be written,
// and nothing that cuts the load or changes shutdown timing may run.
type Commands struct {
	// AllowSet lists the variables that may be written over MQTT.
	AllowSet []string `koanf:"allow_set"`
	// AllowDangerous lists, by name, the commands and variables that cut the
	// load or change shutdown timing (load.off*, shutdown.*, ups.delay.*,
	// battery.charge.low, battery.runtime.low) that MQTT may use.
	AllowDangerous []string `koanf:"allow_dangerous"`
}

// Broker configures who may use the embedded broker.
type Broker struct {
	// Users may connect with a password; each gets its role's ACL.
	Users []BrokerUser `koanf:"users"`
	// AllowAnonymous lets clients without a user name connect with full
	// access. It is required to listen beyond loopback without users.
	AllowAnonymous bool `koanf:"allow_anonymous"`
}

// BrokerUser is one account of the embedded broker.
type BrokerUser struct {
	Name string `koanf:"name"`
	// Password is password, password_file or password_env.
	Password SecretRef `koanf:"password"`
	// Role is bridge, agent (name = the agent's id), homeassistant or reader.
	Role string `koanf:"role"`
}

// BrokerRoles are the roles of embedded broker users.
var BrokerRoles = []string{"bridge", "agent", "homeassistant", "reader"}

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

// Primary configures the bridge's handshake as the primary of its UPSes
// (USB UPSes, and NUT UPSes with primary: true): after FSD it waits for the
// hosts the UPS feeds, then may cut the UPS's load.
type Primary struct {
	// HostSync: an agent powering_off this long is done; one that says
	// nothing this long counts as gone (upsmon's HOSTSYNC).
	HostSync time.Duration `koanf:"host_sync"`
	// MaxWait bounds the wait for agents still shutting down after FSD.
	MaxWait time.Duration `koanf:"max_wait"`
	// FinalDelay is waited after the hosts are done, before the kill.
	FinalDelay time.Duration `koanf:"final_delay"`
	// KillPower sends shutdown.return after the handshake if the UPS is
	// still not on line.
	KillPower bool `koanf:"kill_power"`
	// KillPowerDelay is set as ups.delay.shutdown before the kill where
	// the UPS allows it; 0 leaves the UPS's own delay.
	KillPowerDelay time.Duration `koanf:"kill_power_delay"`
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
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every path but /healthz.
	// (token, token_file or token_env).
	Token SecretRef `koanf:"token"`
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
			Primary: Primary{HostSync: 15 * time.Second, MaxWait: 10 * time.Minute, FinalDelay: 5 * time.Second,
				KillPowerDelay: 20 * time.Second},
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

// Load is the one configuration pass every command runs: defaults, then the
// YAML file at path (if path is not empty), then environment variables from
// environ (os.Environ() form); then every secret is resolved once (files and
// environment variables of SecretRef keys, looked up in environ); then the
// values are validated, without reading anything again. Building components
// from the result re-checks nothing that could fail differently, so `run`
// never rejects what `check-config` accepted. It returns Errors listing
// every problem.
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
		errs = append(errs, ResolveSecrets("", cfg, lookupIn(environ))...)
		errs = append(errs, checkKeyFiles(cfg)...)
	}
	if len(errs) == 0 {
		errs = append(errs, cfg.Validate()...)
	}
	if len(errs) > 0 {
		return nil, Errors(errs)
	}
	return cfg, nil
}

// checkKeyFiles parses the signing key files, as run does when it builds
// the signer and the agent's verifier, so a file that is there but is not
// a key fails check-config too.
func checkKeyFiles(cfg *Config) []FieldError {
	var errs []FieldError
	if f := cfg.Bridge.SigningKeyFile; f != "" {
		if _, err := signing.LoadSigner(f); err != nil {
			errs = append(errs, Errorf("bridge.signing_key_file", "%v", err))
		}
	}
	if fc, ok := cfg.Agent.(FileChecker); ok {
		errs = append(errs, Prefix("agent", fc.CheckFiles())...)
	}
	return errs
}

// FileChecker is implemented by registered sections that name files run
// will parse (keys): CheckFiles parses them as run would, once, after the
// secrets are resolved and before validation.
type FileChecker interface {
	CheckFiles() []FieldError
}

// lookupIn looks environment variables up in environ (os.Environ() form).
func lookupIn(environ []string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for i := len(environ) - 1; i >= 0; i-- {
			if k, v, ok := strings.Cut(environ[i], "="); ok && k == name {
				return v, true
			}
		}
		return "", false
	}
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

// Validate checks values (not keys, which decoding checks). It reads no
// secret (Load resolves them before) and may run any number of times with
// the same result. It returns every problem.
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
	errs = append(errs, Prefix("http", c.HTTP.Token.Check("token"))...)
	errs = append(errs, validateEntries("sources", "id", c.Sources, func(e Source) any { return e.Spec },
		func(e Source) string { return e.Spec.SourceID() }, true)...)
	errs = append(errs, validateEntries("notify", "name", c.Notify, func(e Notifier) any { return e.Spec },
		func(e Notifier) string { return e.Spec.NotifierName() }, false)...)
	if v, ok := c.Agent.(Validator); ok {
		errs = append(errs, Prefix("agent", v.Validate())...)
	}
	errs = append(errs, Prefix("nut_server", c.NUTServer.Validate())...)
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
	errs = append(errs, m.Password.Check("password")...)
	errs = append(errs, Prefix("commands", m.Commands.validate())...)
	if m.URL == "embedded" {
		errs = append(errs, m.validateBroker()...)
	}
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
		{"primary.max_wait", b.Primary.MaxWait},
	}
	for _, p := range positive {
		if p.d <= 0 {
			errs = append(errs, Errorf(p.key, "must be > 0, got %q", p.d.String()))
		}
	}
	if b.Primary.MaxWait > 0 && b.Primary.MaxWait < b.Primary.HostSync {
		errs = append(errs, Errorf("primary.max_wait", "must be at least primary.host_sync (%s), got %q", b.Primary.HostSync, b.Primary.MaxWait.String()))
	}
	for _, p := range []struct {
		key string
		d   time.Duration
	}{{"primary.final_delay", b.Primary.FinalDelay}, {"primary.kill_power_delay", b.Primary.KillPowerDelay}} {
		if p.d < 0 {
			errs = append(errs, Errorf(p.key, "must be >= 0, got %q", p.d.String()))
		}
	}
	return errs
}

// validateEntries validates each entry of a typed list and checks that its
// key (a source's id, a notifier's name) is unique; checkKey also requires
// the key and its pattern (notifiers check their own name).
func validateEntries[E any](kind, key string, list []E, spec func(E) any, name func(E) string, checkKey bool) []FieldError {
	var errs []FieldError
	seen := map[string]int{}
	for i, e := range list {
		path := fmt.Sprintf("%s[%d]", kind, i)
		if v, ok := spec(e).(Validator); ok {
			errs = append(errs, Prefix(path, v.Validate())...)
		}
		n := name(e)
		switch {
		case n == "":
			if checkKey {
				errs = append(errs, Errorf(path+"."+key, "is required"))
			}
		case !IDPattern.MatchString(n):
			if checkKey {
				errs = append(errs, Errorf(path+"."+key, "must match %s, got %q", IDPattern, n))
			}
		default:
			if j, dup := seen[n]; dup {
				errs = append(errs, Errorf(path+"."+key, "%q is already the %s of %s[%d]", n, key, kind, j))
			}
			seen[n] = i
		}
	}
	return errs
}

// Runnable reports what keeps `run` from starting on a valid configuration:
// nothing to run (no source and no agent). check-config reports it too, so
// run never fails on what check-config accepted. Other commands (notify-test,
// drill) take configurations that run would not.
func (c *Config) Runnable() []FieldError {
	if len(c.Sources) == 0 && c.Agent == nil {
		return []FieldError{{Msg: "nothing to run: the config has no sources and no agent"}}
	}
	return nil
}

// AsErrors returns the FieldErrors inside err, if it holds any.
func AsErrors(err error) (Errors, bool) {
	var e Errors
	ok := errors.As(err, &e)
	return e, ok
}

// validName is a NUT command or variable name: dotted, lower case.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (c *Commands) validate() []FieldError {
	var errs []FieldError
	for i, n := range c.AllowSet {
		if !validName.MatchString(n) {
			errs = append(errs, Errorf(fmt.Sprintf("allow_set[%d]", i), "must be a NUT variable name such as ups.delay.start, got %q", n))
		}
	}
	for i, n := range c.AllowDangerous {
		key := fmt.Sprintf("allow_dangerous[%d]", i)
		switch {
		case !validName.MatchString(n):
			errs = append(errs, Errorf(key, "must be a NUT command or variable name such as load.off, got %q", n))
		case !bridge.ControlsShutdown(n):
			errs = append(errs, Errorf(key, "%q neither cuts the load nor changes shutdown timing; list only load.off*, shutdown.*, ups.delay.*, battery.charge.low or battery.runtime.low here", n))
		case isShutdownVariable(n) && !contains(c.AllowSet, n):
			errs = append(errs, Errorf(key, "%q is a variable: list it in mqtt.commands.allow_set too", n))
		}
	}
	return errs
}

// isShutdownVariable tells the variables among bridge.ControlsShutdown's
// names: they must also be in allow_set.
func isShutdownVariable(n string) bool {
	return bridge.ControlsShutdown(n) && !strings.HasPrefix(n, "load.") && !strings.HasPrefix(n, "shutdown.")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// IsLoopbackListen reports whether a listen address (host:port) is reachable
// from this machine only: 127.0.0.0/8, ::1 or "localhost". An empty host
// (":1883") listens on every address.
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateBroker checks the embedded broker's users: beyond loopback it
// needs users unless allow_anonymous says otherwise.
func (m *MQTT) validateBroker() []FieldError {
	var errs []FieldError
	b := &m.Broker
	if len(b.Users) == 0 && !b.AllowAnonymous && !IsLoopbackListen(m.Listen) {
		errs = append(errs, Errorf("listen", "the embedded broker on %q is reachable beyond this machine: add users under mqtt.broker.users (with roles bridge, agent, homeassistant, reader), or set mqtt.broker.allow_anonymous: true to let anyone read and write every topic", m.Listen))
	}
	seen := map[string]int{}
	for i := range b.Users {
		u := &b.Users[i]
		key := fmt.Sprintf("broker.users[%d]", i)
		switch {
		case u.Name == "":
			errs = append(errs, Errorf(key+".name", "is required"))
		case strings.ContainsAny(u.Name, "+#/") || len(u.Name) > 64:
			errs = append(errs, Errorf(key+".name", "must be at most 64 characters without '+', '#' or '/', got %q", u.Name))
		default:
			if j, dup := seen[u.Name]; dup {
				errs = append(errs, Errorf(key+".name", "%q is already the name of broker.users[%d]", u.Name, j))
			}
			seen[u.Name] = i
		}
		if !contains(BrokerRoles, u.Role) {
			errs = append(errs, Errorf(key+".role", "must be one of %s, got %q", strings.Join(BrokerRoles, ", "), u.Role))
		} else if u.Role == "agent" && !IDPattern.MatchString(u.Name) {
			errs = append(errs, Errorf(key+".name", "an agent's user name is its agent.id and must match %s, got %q", IDPattern, u.Name))
		}
		if perr := u.Password.Check("password"); len(perr) > 0 {
			errs = append(errs, Prefix(key, perr)...)
		} else if !u.Password.IsSet() {
			errs = append(errs, Errorf(key+".password", "is required (or password_file, password_env)"))
		}
	}
	return errs
}
