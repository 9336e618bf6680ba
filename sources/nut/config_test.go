package nut

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/config"
)

func TestValidate(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mut  func(*Config)
		want string // substring of the error, "" for valid
	}{
		{"minimal", func(c *Config) {}, ""},
		{"all ups", func(c *Config) { c.UPS = "*" }, ""},
		{"port", func(c *Config) { c.Address = "nas:70000" }, "address: must be host or host:port"},
		{"no address", func(c *Config) { c.Address = "" }, "address: is required"},
		{"no ups", func(c *Config) { c.UPS = "" }, "ups: is required"},
		{"ups with space", func(c *Config) { c.UPS = "my ups" }, "ups: must be a UPS name"},
		{"poll", func(c *Config) { c.PollInterval = 0 }, "poll_interval: must be > 0"},
		{"poll on battery", func(c *Config) { c.PollIntervalOnBattery = -time.Second }, "poll_interval_on_battery: must be > 0"},
		{"starttls", func(c *Config) { c.StartTLS = "yes" }, "starttls: must be off, try or require"},
		{"ca file", func(c *Config) { c.CAFile = "/nonexistent.pem" }, "ca_file:"},
		{"login needs account", func(c *Config) { c.Login = true }, "login: needs username and password"},
		{"primary needs account", func(c *Config) { c.Primary = true; c.Username = "u" }, "primary: needs username and password"},
		{"password file", func(c *Config) { c.Username = "u"; c.Password.File = pwFile; c.Primary = true }, ""},
		{"both passwords", func(c *Config) { c.Username = "u"; c.Password.Value = "x"; c.Password.File = pwFile }, "set only one of password, password_file and password_env"},
		{"password without user", func(c *Config) { c.Password.Value = "x" }, "username: is required"},
		{"max_ups", func(c *Config) { c.MaxUPS = 0 }, "max_ups: must be >= 1"},
		{"max_vars", func(c *Config) { c.MaxVars = -1 }, "max_vars: must be >= 1"},
		{"max_connections", func(c *Config) { c.MaxConnections = 1 }, "max_connections: must be 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.ID, c.Type, c.Address, c.UPS = "nas", "nut", "192.168.1.10", "ups"
			tt.mut(c)
			errs := c.Validate()
			got := config.Errors(errs).Error()
			if tt.want == "" && len(errs) > 0 {
				t.Fatalf("unexpected errors: %s", got)
			}
			if tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("errors %q lack %q", got, tt.want)
			}
			if strings.Contains(got, "s3cret") {
				t.Fatal("secret in error")
			}
		})
	}
}

func TestPublishedID(t *testing.T) {
	c := DefaultConfig()
	c.ID, c.Address, c.UPS = "nas", "nas", "*"
	s := New(*c, nil2(), nil)
	if got := s.PublishedID("Rack.UPS 1"); got != "nas_rack_ups_1" {
		t.Fatalf("PublishedID = %q", got)
	}
	c.UPS = "dummy"
	if got := New(*c, nil2(), nil).PublishedID("dummy"); got != "nas" {
		t.Fatalf("single PublishedID = %q", got)
	}
}

func nil2() *slogLogger { return slogDiscard() }
