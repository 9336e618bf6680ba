package upsd_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/importer/upsd"
	"github.com/upsbridge/upsbridge/internal/importer/upsmon"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func parse(t *testing.T, name string) *upsmon.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := upsmon.Parse(f, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConvert(t *testing.T) {
	tests := []struct {
		name      string
		conf      bool
		users     int
		ups       int
		wantNotes []string
		check     func(t *testing.T, c *config.NUTServer)
	}{
		{name: "homelab", conf: true, users: 4, ups: 2,
			wantNotes: []string{"allowfrom is ignored", `action "LOGIN" is not carried over`, "MAXAGE"},
			check: func(t *testing.T, c *config.NUTServer) {
				if strings.Join(c.Listen, ",") != "0.0.0.0:3493,[::1]:3493" {
					t.Errorf("listen %q", c.Listen)
				}
				a := c.Users[0]
				if a.Name != "admin" || a.Password.Reveal() != "s3cr3t-ok" || a.Upsmon != "primary" ||
					strings.Join(a.Actions, ",") != "SET,FSD" || strings.Join(a.InstCmds, ",") != "ALL" {
					t.Errorf("admin %+v", a)
				}
				if m := c.Users[1]; m.Name != "monuser" || m.Upsmon != "secondary" || m.Password.Reveal() != "secret" {
					t.Errorf("monuser %+v", m)
				}
				if h := c.Users[2]; h.Password.Reveal() != "hasspass" || h.Upsmon != "" ||
					strings.Join(h.InstCmds, ",") != "test.battery.start.quick,test.battery.stop,beeper.mute" {
					t.Errorf("hass %+v", h)
				}
				if c.UPS[0].ID != "rack" || c.UPS[0].Name != "rack" || c.UPS[0].Description != "Rack UPS (CyberPower CP1500)" {
					t.Errorf("ups[0] %+v", c.UPS[0])
				}
				if c.UPS[1].ID != "office_ups" || c.UPS[1].Name != "Office_UPS" {
					t.Errorf("ups[1] %+v", c.UPS[1])
				}
			}},
		{name: "synology", users: 1, ups: 1, check: func(t *testing.T, c *config.NUTServer) {
			if strings.Join(c.Listen, ",") != "127.0.0.1:3493" || c.UPS[0].Name != "ups" || c.Users[0].Upsmon != "secondary" {
				t.Errorf("got %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := upsd.Files{Users: parse(t, tt.name+".upsd.users"), UPS: parse(t, tt.name+".ups.conf")}
			if tt.conf {
				f.Conf = parse(t, tt.name+".upsd.conf")
			}
			res, err := upsd.Convert(f)
			if err != nil {
				t.Fatal(err)
			}
			if res.Users != tt.users || res.UPS != tt.ups {
				t.Errorf("%d users, %d UPS; want %d, %d", res.Users, res.UPS, tt.users, tt.ups)
			}
			all := ""
			for _, n := range res.Notes {
				all += n.Where + ": " + n.Reason + "\n"
			}
			for _, w := range tt.wantNotes {
				if !strings.Contains(all, w) {
					t.Errorf("notes lack %q:\n%s", w, all)
				}
			}
			golden := filepath.Join("testdata", tt.name+".golden.yaml")
			if *update {
				_ = os.WriteFile(golden, res.YAML, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(res.YAML) {
				t.Errorf("YAML differs from %s:\n%s", golden, res.YAML)
			}
			// The output loads as an upsbridge config (the TLS file aside).
			y := strings.ReplaceAll(string(res.YAML), "/etc/nut/upsd.pem", filepath.Join(t.TempDir(), "missing.pem"))
			cfgPath := filepath.Join(t.TempDir(), "c.yaml")
			_ = os.WriteFile(cfgPath, []byte(y), 0o600)
			cfg, err := config.Load(cfgPath, nil)
			if tt.conf {
				if !strings.Contains(string(res.YAML), `tls: {cert_file: "/etc/nut/upsd.pem", key_file: "/etc/nut/upsd.pem"}`) {
					t.Errorf("CERTFILE not carried over:\n%s", res.YAML)
				}
				if err == nil || !strings.Contains(err.Error(), "nut_server.tls.cert_file") {
					t.Fatalf("want only the missing TLS file reported, got %v", err)
				}
				y = strings.Replace(y, "  tls:", "  #tls:", 1)
				_ = os.WriteFile(cfgPath, []byte(y), 0o600)
				cfg, err = config.Load(cfgPath, nil)
			}
			if err != nil {
				t.Fatalf("output does not load: %v\n%s", err, y)
			}
			tt.check(t, &cfg.NUTServer)
		})
	}
}

func TestConvertErrors(t *testing.T) {
	empty := &upsmon.File{Name: "ups.conf"}
	if _, err := upsd.Convert(upsd.Files{Users: empty, UPS: empty}); err == nil || !strings.Contains(err.Error(), "defines no UPS") {
		t.Errorf("got %v", err)
	}
	if _, err := upsd.Convert(upsd.Files{UPS: empty}); err == nil {
		t.Error("no users file accepted")
	}
}
