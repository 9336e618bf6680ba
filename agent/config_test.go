package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/config"
)

func TestAgentConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring; "" means valid
		check   func(t *testing.T, a *Config)
	}{
		{name: "defaults", yaml: "agent:\n  id: web01\n  supplies: [{ups: nas-ups}]\n", check: func(t *testing.T, a *Config) {
			if a.MinSuppliesValue() != 1 || a.Supplies[0].Power() != 1 || a.DeadTime.String() != "15s" || a.MaxStateAge.String() != "1m30s" ||
				a.FinalDelayValue().String() != "5s" || a.Poweroff != "auto" || a.ShutdownCommand[0] != "systemctl" {
				t.Fatalf("defaults: %+v", a)
			}
		}},
		{name: "zero is meaningful", yaml: "agent:\n  supplies: [{ups: a, power_value: 0}]\n  min_supplies: 0\n  final_delay: 0s\n", check: func(t *testing.T, a *Config) {
			if a.MinSuppliesValue() != 0 || a.Supplies[0].Power() != 0 || a.FinalDelayValue() != 0 {
				t.Fatalf("zeros lost: %+v", a)
			}
		}},
		{name: "new keys", yaml: "agent:\n  supplies: [{ups: a, bridge: nas}]\n  low_battery_grace: 20s\n  off_duration: -1s\n", check: func(t *testing.T, a *Config) {
			pc := a.PolicyConfig()
			if pc.LowBatteryGrace != 20*time.Second || pc.OffDuration != -time.Second || pc.Supplies[0].Bridge != "nas" {
				t.Fatalf("policy config: %+v", pc)
			}
		}},
		{name: "off_duration default", yaml: "agent:\n  supplies: [{ups: a}]\n", check: func(t *testing.T, a *Config) {
			if a.OffDurationValue() != 30*time.Second || a.LowBatteryGrace != 0 {
				t.Fatalf("defaults: off %v grace %v", a.OffDurationValue(), a.LowBatteryGrace)
			}
		}},
		{name: "negative grace", yaml: "agent:\n  supplies: [{ups: a}]\n  low_battery_grace: -1s\n", wantErr: "agent.low_battery_grace"},
		{name: "bad pinned bridge", yaml: "agent:\n  supplies: [{ups: a, bridge: \"Bad Id\"}]\n", wantErr: "agent.supplies[0].bridge"},
		{name: "no supplies", yaml: "agent:\n  id: x\n", wantErr: "agent.supplies"},
		{name: "min above sum", yaml: "agent:\n  supplies: [{ups: a}]\n  min_supplies: 2\n", wantErr: "agent.min_supplies"},
		{name: "bad poweroff", yaml: "agent:\n  supplies: [{ups: a}]\n  poweroff: halt\n", wantErr: "agent.poweroff"},
		{name: "poweroff not last", yaml: "agent:\n  supplies: [{ups: a}]\n  stages:\n    - {name: off, action: poweroff}\n    - {name: b, on_battery_for: 1m, run: [x]}\n", wantErr: "agent.stages[0].action"},
		{name: "stage without condition", yaml: "agent:\n  supplies: [{ups: a}]\n  stages: [{name: s, run: [x]}]\n", wantErr: "has no condition"},
		{name: "signed without key", yaml: "agent:\n  supplies: [{ups: a}]\n  require_signed: true\n", wantErr: "agent.public_key_file"},
		{name: "unknown key", yaml: "agent:\n  supplies: [{ups: a}]\n  stagez: []\n", wantErr: "stagez"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, FromConfig(cfg))
			}
		})
	}
}

// A public key file that exists but is not a key fails Load (and so
// check-config), as it would fail run.
func TestAgentPublicKeyParsed(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pub")
	if err := os.WriteFile(junk, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("agent:\n  supplies: [{ups: a}]\n  public_key_file: "+junk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), "agent.public_key_file: public key") {
		t.Fatalf("Load = %v, want an agent.public_key_file error", err)
	}
}
