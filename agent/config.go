package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
)

// The agent section registers itself, so package config imports nothing of
// the agent.
func init() {
	config.RegisterSection("agent", func() any { return &Config{} })
}

// CheckFiles implements config.FileChecker: the public key must parse, as
// run parses it.
func (a *Config) CheckFiles() []config.FieldError {
	if a.PublicKeyFile == "" {
		return nil
	}
	if _, err := signing.LoadVerifier(a.PublicKeyFile); err != nil {
		return []config.FieldError{config.Errorf("public_key_file", "%v", err)}
	}
	return nil
}

// FromConfig returns the agent section of cfg, or nil when it has none.
func FromConfig(cfg *config.Config) *Config {
	a, _ := cfg.Agent.(*Config)
	return a
}

// Config is the `agent:` section: it configures a shutdown agent. Keys are
// public API. Validate fills in the defaults, so every loaded config has
// them.
type Config struct {
	ID       string   `koanf:"id"` // default: the host name
	Supplies []Supply `koanf:"supplies"`
	// MinSupplies is upsmon's MINSUPPLIES (default 1; 0 never shuts down).
	// A pointer because 0 is meaningful and must not be taken as unset.
	MinSupplies *int          `koanf:"min_supplies"`
	DeadTime    time.Duration `koanf:"dead_time"` // default 15s
	// MaxStateAge: no live state of a supply for this long makes the host
	// unprotected (reported loudly, never acted on); it is also the window
	// in which a first live epoch's ts must lie (default 90s).
	MaxStateAge time.Duration `koanf:"max_state_age"`
	// LowBatteryGrace is upsmon's OBLBDURATION: OB LB must hold this long
	// before it is critical (default 0: at once).
	LowBatteryGrace time.Duration `koanf:"low_battery_grace"`
	// OffDuration is upsmon's OFFDURATION: OFF for this long is critical
	// (default 30s; negative disables). A pointer because 0 is meaningful.
	OffDuration *time.Duration `koanf:"off_duration"`
	// FinalDelay is upsmon's FINALDELAY (default 5s; 0 allowed).
	FinalDelay      *time.Duration `koanf:"final_delay"`
	DryRun          bool           `koanf:"dry_run"`
	Poweroff        string         `koanf:"poweroff"`         // auto | logind | command (default auto)
	ShutdownCommand []string       `koanf:"shutdown_command"` // default systemctl poweroff
	StateFile       string         `koanf:"state_file"`       // default <state_dir>/agent-<id>.json
	// CommandTimeout bounds every stage, undo and shutdown command (default 60s).
	CommandTimeout time.Duration `koanf:"command_timeout"`
	Stages         []Stage       `koanf:"stages"`
	RequireSigned  bool          `koanf:"require_signed"`
	PublicKeyFile  string        `koanf:"public_key_file"`
}

// Supply is a UPS feeding the agent's host.
type Supply struct {
	UPS string `koanf:"ups"`
	// Bridge, when set, pins the bridge whose states count for this supply.
	Bridge string `koanf:"bridge"`
	// PowerValue is upsmon's MONITOR power value (default 1; 0 monitors only).
	PowerValue *int `koanf:"power_value"`
}

// Power returns the supply's power value with its default.
func (s Supply) Power() int {
	if s.PowerValue == nil {
		return 1
	}
	return *s.PowerValue
}

// Stage is one step of the staged shutdown policy. A stage fires when any of
// its conditions holds; the stage whose action is "poweroff" is the final one.
type Stage struct {
	Name               string        `koanf:"name"`
	OnBatteryFor       time.Duration `koanf:"on_battery_for"`
	BatteryChargeBelow float64       `koanf:"battery_charge_below"`
	RuntimeBelow       time.Duration `koanf:"runtime_below"`
	Run                []string      `koanf:"run"`
	Undo               []string      `koanf:"undo"`
	Action             string        `koanf:"action"` // "" | poweroff
}

// Agent defaults.
const (
	DefaultAgentDeadTime       = 15 * time.Second
	DefaultAgentMaxStateAge    = 90 * time.Second
	DefaultAgentFinalDelay     = 5 * time.Second
	DefaultAgentCommandTimeout = 60 * time.Second
	DefaultAgentOffDuration    = 30 * time.Second
)

// MinSuppliesValue returns min_supplies with its default.
func (a *Config) MinSuppliesValue() int {
	if a.MinSupplies == nil {
		return 1
	}
	return *a.MinSupplies
}

// FinalDelayValue returns final_delay with its default.
func (a *Config) FinalDelayValue() time.Duration {
	if a.FinalDelay == nil {
		return DefaultAgentFinalDelay
	}
	return *a.FinalDelay
}

// ApplyDefaults fills unset keys. stateDir is where state_file goes by
// default; it may be empty (then state_file stays empty unless set).
func (a *Config) ApplyDefaults(stateDir string) {
	if a.ID == "" {
		host, _ := os.Hostname()
		a.ID = config.SanitizeID(host)
	}
	if a.MinSupplies == nil {
		v := 1
		a.MinSupplies = &v
	}
	for i := range a.Supplies {
		if a.Supplies[i].PowerValue == nil {
			v := 1
			a.Supplies[i].PowerValue = &v
		}
	}
	if a.DeadTime == 0 {
		a.DeadTime = DefaultAgentDeadTime
	}
	if a.MaxStateAge == 0 {
		a.MaxStateAge = DefaultAgentMaxStateAge
	}
	if a.FinalDelay == nil {
		d := DefaultAgentFinalDelay
		a.FinalDelay = &d
	}
	if a.OffDuration == nil {
		d := DefaultAgentOffDuration
		a.OffDuration = &d
	}
	if a.Poweroff == "" {
		a.Poweroff = "auto"
	}
	if len(a.ShutdownCommand) == 0 {
		a.ShutdownCommand = []string{"systemctl", "poweroff"}
	}
	if a.CommandTimeout == 0 {
		a.CommandTimeout = DefaultAgentCommandTimeout
	}
	if a.StateFile == "" && stateDir != "" {
		a.StateFile = filepath.Join(stateDir, "agent-"+a.ID+".json")
	}
}

// OffDurationValue returns off_duration with its default.
func (a *Config) OffDurationValue() time.Duration {
	if a.OffDuration == nil {
		return DefaultAgentOffDuration
	}
	return *a.OffDuration
}

// Validate implements config.Validator: it checks the agent section
// (what can be checked without I/O and the key file's presence) and fills
// its defaults.
func (a *Config) Validate() []config.FieldError {
	a.ApplyDefaults("")
	var errs []config.FieldError
	if !config.IDPattern.MatchString(a.ID) {
		errs = append(errs, config.Errorf("id", "must match %s, got %q", config.IDPattern, a.ID))
	}
	if len(a.Supplies) == 0 {
		errs = append(errs, config.Errorf("supplies", "is required: list the UPSes feeding this host"))
	}
	seen := map[string]bool{}
	sum := 0
	for i, s := range a.Supplies {
		key := "supplies[" + strconv.Itoa(i) + "]"
		switch {
		case !config.IDPattern.MatchString(s.UPS):
			errs = append(errs, config.Errorf(key+".ups", "must be a UPS id as published (%s), got %q", config.IDPattern, s.UPS))
		case seen[s.UPS]:
			errs = append(errs, config.Errorf(key+".ups", "%q is listed twice", s.UPS))
		}
		seen[s.UPS] = true
		if s.Bridge != "" && !config.IDPattern.MatchString(s.Bridge) {
			errs = append(errs, config.Errorf(key+".bridge", "must be a bridge id (%s), got %q", config.IDPattern, s.Bridge))
		}
		if s.Power() < 0 {
			errs = append(errs, config.Errorf(key+".power_value", "must be >= 0, got %d", s.Power()))
		}
		sum += s.Power()
	}
	if m := a.MinSuppliesValue(); m < 0 {
		errs = append(errs, config.Errorf("min_supplies", "must be >= 0, got %d", m))
	} else if len(a.Supplies) > 0 && m > sum {
		errs = append(errs, config.Errorf("min_supplies", "is %d but the supplies' power values sum to %d: the host would shut down at once", m, sum))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"dead_time", a.DeadTime}, {"max_state_age", a.MaxStateAge}, {"command_timeout", a.CommandTimeout}} {
		if d.v <= 0 {
			errs = append(errs, config.Errorf(d.key, "must be > 0, got %q", d.v.String()))
		}
	}
	if a.LowBatteryGrace < 0 {
		errs = append(errs, config.Errorf("low_battery_grace", "must be >= 0, got %q", a.LowBatteryGrace.String()))
	}
	if a.FinalDelayValue() < 0 {
		errs = append(errs, config.Errorf("final_delay", "must be >= 0, got %q", a.FinalDelayValue().String()))
	}
	switch a.Poweroff {
	case "auto", "logind", "command":
	default:
		errs = append(errs, config.Errorf("poweroff", "must be auto, logind or command, got %q", a.Poweroff))
	}
	if (a.Poweroff == "command" || a.Poweroff == "auto") && (len(a.ShutdownCommand) == 0 || strings.TrimSpace(a.ShutdownCommand[0]) == "") {
		errs = append(errs, config.Errorf("shutdown_command", "must name a program"))
	}
	names := map[string]bool{}
	for i, st := range a.Stages {
		key := "stages[" + strconv.Itoa(i) + "]"
		switch {
		case !config.IDPattern.MatchString(st.Name):
			errs = append(errs, config.Errorf(key+".name", "must match %s, got %q", config.IDPattern, st.Name))
		case names[st.Name]:
			errs = append(errs, config.Errorf(key+".name", "%q is used twice", st.Name))
		}
		names[st.Name] = true
		switch st.Action {
		case "":
		case "poweroff":
			if i != len(a.Stages)-1 {
				errs = append(errs, config.Errorf(key+".action", "poweroff must be the last stage (it is final)"))
			}
			if len(st.Undo) > 0 {
				errs = append(errs, config.Errorf(key+".undo", "the poweroff stage is never undone"))
			}
		default:
			errs = append(errs, config.Errorf(key+".action", "must be poweroff or empty, got %q", st.Action))
		}
		if st.OnBatteryFor < 0 || st.RuntimeBelow < 0 || st.BatteryChargeBelow < 0 || st.BatteryChargeBelow > 100 {
			errs = append(errs, config.Errorf(key, "conditions must be >= 0 (battery_charge_below at most 100)"))
		}
		if st.Action == "" && st.OnBatteryFor == 0 && st.RuntimeBelow == 0 && st.BatteryChargeBelow == 0 {
			errs = append(errs, config.Errorf(key, "has no condition (on_battery_for, battery_charge_below or runtime_below)"))
		}
		if st.Action == "" && len(st.Run) == 0 {
			errs = append(errs, config.Errorf(key+".run", "is required for a stage without action"))
		}
		for _, c := range [][]string{st.Run, st.Undo} {
			if len(c) > 0 && strings.TrimSpace(c[0]) == "" {
				errs = append(errs, config.Errorf(key, "a command's first word must name a program"))
			}
		}
	}
	if a.RequireSigned && a.PublicKeyFile == "" {
		errs = append(errs, config.Errorf("public_key_file", "is required with require_signed: true"))
	}
	if a.PublicKeyFile != "" {
		if _, err := os.Stat(a.PublicKeyFile); err != nil {
			errs = append(errs, config.Errorf("public_key_file", "%v", err))
		}
	}
	return errs
}

// PolicyConfig returns the policy's configuration of the section.
func (a *Config) PolicyConfig() policy.Config {
	pc := policy.Config{MinSupplies: a.MinSuppliesValue(), DeadTime: a.DeadTime, MaxStateAge: a.MaxStateAge,
		LowBatteryGrace: a.LowBatteryGrace, OffDuration: a.OffDurationValue(), DryRun: a.DryRun}
	for _, s := range a.Supplies {
		pc.Supplies = append(pc.Supplies, policy.Supply{UPS: s.UPS, Power: s.Power(), Bridge: s.Bridge})
	}
	for _, st := range a.Stages {
		pc.Stages = append(pc.Stages, policy.Stage{Name: st.Name, OnBatteryFor: st.OnBatteryFor, ChargeBelow: st.BatteryChargeBelow,
			RuntimeBelow: st.RuntimeBelow, Run: st.Run, Undo: st.Undo, Final: st.Action == "poweroff"})
	}
	return pc
}
