package nut

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/nut/client"
)

// Config is the `type: nut` source's configuration.
type Config struct {
	config.SourceCommon `koanf:",squash"`
	// Address is upsd's host[:port] (default port 3493).
	Address string `koanf:"address"`
	// UPS is the UPS name on the server (its ups.conf section), or "*" for
	// every UPS the server lists, each published as <id>_<name>.
	UPS string `koanf:"ups"`
	// Username and Password are an upsd.users account; needed for login,
	// primary, instant commands and setting variables. The password is
	// given as password, password_file or password_env.
	Username string           `koanf:"username"`
	Password config.SecretRef `koanf:"password"`
	// PollInterval is the time between polls (one LIST VAR per UPS).
	PollInterval time.Duration `koanf:"poll_interval"`
	// PollIntervalOnBattery replaces PollInterval while the UPS is on
	// battery (upsmon's POLLFREQALERT).
	PollIntervalOnBattery time.Duration `koanf:"poll_interval_on_battery"`
	// StartTLS is off | try | require.
	StartTLS string `koanf:"starttls"`
	// CAFile verifies upsd's certificate (PEM); empty uses the system roots.
	CAFile string `koanf:"ca_file"`
	// Login logs in to the UPS as a secondary, so upsd counts this bridge
	// in NUMLOGINS and a primary waits for it, as upsmon does.
	Login bool `koanf:"login"`
	// Primary logs in as the UPS's primary (PRIMARY, or MASTER on old
	// servers) and lets the bridge set FSD when it decides the UPS is
	// critical. The account needs `upsmon primary` (or actions = FSD).
	Primary bool `koanf:"primary"`
	// MaxUPS bounds the UPSes polled with ups: "*"; names beyond it are
	// not polled (an error in the log and ups_over_limit in the metrics).
	MaxUPS int `koanf:"max_ups"`
	// MaxVars bounds the variables of one UPS (one LIST VAR reply).
	MaxVars int `koanf:"max_vars"`
	// MaxConnections bounds the connections the source holds open to upsd
	// at once (pollers, listing, commands); 0 means max_ups + 16.
	MaxConnections int `koanf:"max_connections"`
}

// Bounds on what a upsd may make the source hold. The largest device in
// the NUT device dump library has 581 variables in 17 KB.
const (
	DefaultMaxUPS  = 256
	DefaultMaxVars = 4096
)

// maxConnections is MaxConnections with its default applied.
func (c *Config) maxConnections() int {
	if c.MaxConnections > 0 {
		return c.MaxConnections
	}
	return c.MaxUPS + 16
}

func init() {
	config.RegisterSource("nut", func() config.SourceSpec { return DefaultConfig() })
}

// DefaultConfig returns a configuration with the defaults set.
func DefaultConfig() *Config {
	return &Config{
		PollInterval:          time.Second,
		PollIntervalOnBattery: 500 * time.Millisecond,
		StartTLS:              string(client.TLSOff),
		MaxUPS:                DefaultMaxUPS,
		MaxVars:               DefaultMaxVars,
	}
}

// Validate implements config.Validator.
func (c *Config) Validate() []config.FieldError {
	var errs []config.FieldError
	if c.Address == "" {
		errs = append(errs, config.Errorf("address", "is required (host or host:port of upsd, default port 3493)"))
	} else {
		_, port, err := net.SplitHostPort(client.NormalizeAddr(c.Address))
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 {
			errs = append(errs, config.Errorf("address", "must be host or host:port with a port 1..65535, got %q", c.Address))
		}
	}
	switch {
	case c.UPS == "":
		errs = append(errs, config.Errorf("ups", `is required: the UPS name on the server (see upsc -l %s), or "*" for all`, c.Address))
	case c.UPS != "*" && strings.ContainsFunc(c.UPS, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '"' || r == '#' || r == '\\' || r == '@' }):
		errs = append(errs, config.Errorf("ups", "must be a UPS name without spaces, quotes, '#', '@' or non-ASCII, got %q", c.UPS))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, config.Errorf("poll_interval", "must be > 0, got %q", c.PollInterval.String()))
	}
	if c.PollIntervalOnBattery <= 0 {
		errs = append(errs, config.Errorf("poll_interval_on_battery", "must be > 0, got %q", c.PollIntervalOnBattery.String()))
	}
	if c.MaxUPS < 1 {
		errs = append(errs, config.Errorf("max_ups", "must be >= 1, got %d", c.MaxUPS))
	}
	if c.MaxVars < 1 {
		errs = append(errs, config.Errorf("max_vars", "must be >= 1, got %d", c.MaxVars))
	}
	if c.MaxConnections < 0 || (c.MaxConnections > 0 && c.MaxConnections < 2) {
		errs = append(errs, config.Errorf("max_connections", "must be 0 (max_ups + 16) or >= 2, got %d", c.MaxConnections))
	}
	switch client.TLSMode(c.StartTLS) {
	case client.TLSOff, client.TLSTry, client.TLSRequire:
	default:
		errs = append(errs, config.Errorf("starttls", "must be off, try or require, got %q", c.StartTLS))
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			errs = append(errs, config.Errorf("ca_file", "%v", err))
		}
	}
	errs = append(errs, c.Password.Check("password")...)
	if c.Password.IsSet() && c.Username == "" {
		errs = append(errs, config.Errorf("username", "is required when a password is set"))
	}
	if (c.Login || c.Primary) && (c.Username == "" || !c.Password.IsSet()) {
		key := "login"
		if c.Primary {
			key = "primary"
		}
		errs = append(errs, config.Errorf(key, "needs username and password (an upsd.users account with upsmon secondary/primary)"))
	}
	return errs
}

// NewSource implements bridge.SourceSpec.
func (c *Config) NewSource(env bridge.Env) (bridge.Source, error) {
	// Validation is pure, so this agrees with config.Load; resolving is a
	// no-op after Load and reads the secret for specs built in code.
	errs := c.Validate()
	if len(errs) == 0 {
		errs = c.Password.Resolve("password", nil)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("nut source %q: %w", c.ID, config.Errors(errs))
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return New(*c, log, env.Metrics), nil
}
