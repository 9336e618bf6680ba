package config

import "time"

// Agent configures a shutdown agent (see sinks/shutdown).
type Agent struct {
	ID              string        `koanf:"id"`
	Supplies        []Supply      `koanf:"supplies"`
	MinSupplies     int           `koanf:"min_supplies"`
	DeadTime        time.Duration `koanf:"dead_time"`
	MaxStateAge     time.Duration `koanf:"max_state_age"`
	FinalDelay      time.Duration `koanf:"final_delay"`
	DryRun          bool          `koanf:"dry_run"`
	Poweroff        string        `koanf:"poweroff"`
	ShutdownCommand []string      `koanf:"shutdown_command"`
	StateFile       string        `koanf:"state_file"`
	Stages          []Stage       `koanf:"stages"`
	RequireSigned   bool          `koanf:"require_signed"`
	PublicKeyFile   string        `koanf:"public_key_file"`
}

// Supply is a UPS feeding the agent's host.
type Supply struct {
	UPS        string `koanf:"ups"`
	PowerValue int    `koanf:"power_value"`
}

// Stage is one step of the staged shutdown policy.
type Stage struct {
	Name               string        `koanf:"name"`
	OnBatteryFor       time.Duration `koanf:"on_battery_for"`
	BatteryChargeBelow float64       `koanf:"battery_charge_below"`
	RuntimeBelow       time.Duration `koanf:"runtime_below"`
	Run                []string      `koanf:"run"`
	Undo               []string      `koanf:"undo"`
	Action             string        `koanf:"action"`
}

// Validate checks the agent section. The shutdown sink owns the semantics;
// this checks what can be checked without I/O.
func (a *Agent) Validate() []FieldError {
	var errs []FieldError
	if a.ID != "" && !IDPattern.MatchString(a.ID) {
		errs = append(errs, Errorf("id", "must match %s, got %q", IDPattern, a.ID))
	}
	return errs
}
