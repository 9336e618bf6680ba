// Package sim is a simulated UPS driven by a scenario, for the demo, for
// tests and for drills: steady, outage, flapping and comm_loss. time_scale
// speeds simulated time up (60: one simulated minute per real second).
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

// Config is the `type: sim` source's configuration.
type Config struct {
	config.SourceCommon `koanf:",squash"`
	// Scenario is steady | outage | flapping | comm_loss.
	Scenario string `koanf:"scenario"`
	// TimeScale multiplies simulated time; 1 is real time.
	TimeScale float64 `koanf:"time_scale"`
	// PollInterval is the real time between readings.
	PollInterval time.Duration `koanf:"poll_interval"`
	// Loop restarts the scenario when it ends.
	Loop bool `koanf:"loop"`
}

// Scenarios lists the scenario names.
var Scenarios = []string{"steady", "outage", "flapping", "comm_loss"}

func init() {
	config.RegisterSource("sim", func() config.SourceSpec {
		return &Config{Scenario: "steady", TimeScale: 1, PollInterval: time.Second}
	})
}

// Validate implements config.Validator.
func (c *Config) Validate() []config.FieldError {
	var errs []config.FieldError
	if _, ok := scenarios[c.Scenario]; !ok {
		errs = append(errs, config.Errorf("scenario", "must be one of steady, outage, flapping, comm_loss, got %q", c.Scenario))
	}
	if !(c.TimeScale > 0) || math.IsInf(c.TimeScale, 0) {
		errs = append(errs, config.Errorf("time_scale", "must be > 0, got %v", c.TimeScale))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, config.Errorf("poll_interval", "must be > 0, got %q", c.PollInterval.String()))
	}
	return errs
}

// NewSource implements bridge.SourceSpec.
func (c *Config) NewSource(env bridge.Env) (bridge.Source, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("sim source %q: %w", c.ID, config.Errors(errs))
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: *c, log: log.With("source", c.ID)}, nil
}

// Source is a simulated UPS; its UPS id is the source id.
type Source struct {
	cfg Config
	log *slog.Logger
}

// ID implements bridge.Source.
func (s *Source) ID() string { return s.cfg.ID }

// Run implements bridge.Source: it plays the scenario until ctx ends. A
// poll that jumps over phase boundaries (time_scale large against
// poll_interval) first sends a reading at each boundary crossed, in order,
// so every phase of the scenario is observed at any speed.
func (s *Source) Run(ctx context.Context, out chan<- bridge.Update) error {
	sc := scenarios[s.cfg.Scenario]
	start := time.Now()
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	last := time.Duration(-1) // simulated time of the previous reading
	for {
		elapsed := time.Duration(float64(time.Since(start)) * s.cfg.TimeScale)
		restart := false
		if sc.length > 0 && elapsed >= sc.length {
			elapsed = sc.length
			restart = s.cfg.Loop
		}
		for _, b := range sc.boundaries(last, elapsed) {
			if !s.send(ctx, out, sc.at(b)) {
				return nil
			}
		}
		if restart {
			start, elapsed = time.Now(), 0
		}
		if !s.send(ctx, out, sc.at(elapsed)) {
			return nil
		}
		last = elapsed
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// send sends one reading (or loss of communication) of p; false when ctx
// ended first.
func (s *Source) send(ctx context.Context, out chan<- bridge.Update, p point) bool {
	u := bridge.Update{Source: s.cfg.ID, UPS: s.cfg.ID, Time: time.Now()}
	if p.commLost {
		u.Kind = bridge.CommLost
		u.Err = errors.New("simulated communication loss")
	} else {
		u.Kind = bridge.Reading
		u.Vars = p.vars()
		u.Info = info
	}
	select {
	case out <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

// Simulate returns the readings of a scenario at simulated times, for drills
// and tests that need no goroutine.
func Simulate(scenario string, at time.Duration) (bridge.Vars, bool, error) {
	sc, ok := scenarios[scenario]
	if !ok {
		return nil, false, fmt.Errorf("sim: unknown scenario %q", scenario)
	}
	p := sc.at(at)
	if p.commLost {
		return nil, false, nil
	}
	return p.vars(), true, nil
}

// Length returns the simulated length of a scenario (0 for endless).
func Length(scenario string) time.Duration { return scenarios[scenario].length }

var info = &bridge.Info{Commands: []bridge.Command{
	{Name: "beeper.mute", Description: "Temporarily mute the UPS beeper"},
	{Name: "test.battery.start.quick", Description: "Start a quick battery test"},
	{Name: "test.battery.stop", Description: "Stop a battery test"},
	{Name: "shutdown.return", Description: "Turn off the load and return when power is back"},
}}

// point is the simulated UPS at one moment.
type point struct {
	onBattery bool
	charging  bool
	charge    float64 // %
	commLost  bool
}

const (
	fullRuntime = 40 * time.Minute // runtime at 100 % charge and 30 % load
	lowCharge   = 20.0
)

func (p point) vars() bridge.Vars {
	status := "OL"
	switch {
	case p.onBattery && p.charge < lowCharge:
		status = "OB DISCHRG LB"
	case p.onBattery:
		status = "OB DISCHRG"
	case p.charging:
		status = "OL CHRG"
	}
	load := 30.0
	runtime := fullRuntime.Seconds() * p.charge / 100
	v := bridge.Vars{
		"device.mfr":              "upsbridge",
		"device.model":            "Simulated UPS 1500",
		"device.serial":           "SIM0001",
		"device.type":             "ups",
		"ups.mfr":                 "upsbridge",
		"ups.model":               "Simulated UPS 1500",
		"ups.serial":              "SIM0001",
		"ups.firmware":            "1.0",
		"ups.status":              status,
		"ups.load":                strconv.FormatFloat(load, 'f', 0, 64),
		"ups.realpower.nominal":   "900",
		"ups.power.nominal":       "1500",
		"battery.charge":          strconv.FormatFloat(math.Round(p.charge), 'f', 0, 64),
		"battery.charge.low":      strconv.FormatFloat(lowCharge, 'f', 0, 64),
		"battery.runtime":         strconv.FormatFloat(math.Round(runtime), 'f', 0, 64),
		"battery.runtime.low":     "300",
		"battery.voltage":         strconv.FormatFloat(24*(0.9+0.15*p.charge/100), 'f', 1, 64),
		"battery.voltage.nominal": "24",
		"input.voltage":           "230.0",
		"input.voltage.nominal":   "230",
		"input.frequency":         "50.0",
		"output.voltage":          "230.0",
		"ups.beeper.status":       "enabled",
		"driver.name":             "sim",
	}
	if p.onBattery {
		v["input.voltage"] = "0.0"
		v["input.frequency"] = "0.0"
	}
	return v
}

// The outage scenario's phases: mains fails, the battery goes low (the
// first whole simulated second with charge under lowCharge, draining at
// 4 %/min from 100 %), mains returns, the battery is full again (charging
// at 10 %/min).
const (
	outageFail   = time.Minute
	outageLow    = outageFail + time.Duration((100-lowCharge)/4*float64(time.Minute)) + time.Second
	outageReturn = 22 * time.Minute
	outageFull   = outageReturn + 8*time.Minute + 24*time.Second // 16 % + 84 % at 10 %/min
)

// scenario maps simulated time to a point; length 0 means endless.
type scenario struct {
	length time.Duration
	at     func(t time.Duration) point
	// phases are the simulated times at which a phase starts (the status
	// or the link changes), in order, for scenarios of a given length.
	phases []time.Duration
	// period repeats phases every period, for endless scenarios.
	period time.Duration
}

// maxBoundaries bounds the readings one poll sends for boundaries crossed:
// an endless scenario at a huge time_scale crosses any number of them.
const maxBoundaries = 16

// boundaries returns the phase starts in (from, to), in order, at most
// maxBoundaries of them (the latest ones, which lead up to to).
func (sc scenario) boundaries(from, to time.Duration) []time.Duration {
	var out []time.Duration
	add := func(b time.Duration) {
		if b > from && b < to {
			out = append(out, b)
		}
	}
	if sc.period > 0 {
		first := max(from, 0) / sc.period
		// Periods crossed beyond maxBoundaries are skipped whole.
		if n := (to - max(from, 0)) / sc.period; n > maxBoundaries {
			first = to/sc.period - maxBoundaries
		}
		for k := first; k*sc.period < to; k++ {
			for _, p := range sc.phases {
				add(k*sc.period + p)
			}
		}
	} else {
		for _, p := range sc.phases {
			add(p)
		}
	}
	if len(out) > maxBoundaries {
		out = out[len(out)-maxBoundaries:]
	}
	return out
}

var scenarios = map[string]scenario{
	"steady": {at: func(time.Duration) point { return point{charge: 100} }},
	// outage: 1 min on mains, mains fails and the battery drains at 4 %/min
	// (LB under 20 % after 20 min), mains returns at 22 min, charging at
	// 10 %/min until full.
	"outage": {length: 40 * time.Minute, phases: []time.Duration{
		outageFail, outageLow, outageReturn, outageFull,
	}, at: func(t time.Duration) point {
		const failAt, returnAt = outageFail, outageReturn
		switch {
		case t < failAt:
			return point{charge: 100}
		case t < returnAt:
			return point{onBattery: true, charge: 100 - 4*(t-failAt).Minutes()}
		default:
			c := 100 - 4*(returnAt-failAt).Minutes() + 10*(t-returnAt).Minutes()
			if c >= 100 {
				return point{charge: 100}
			}
			return point{charging: true, charge: c}
		}
	}},
	// flapping: mains drops for 5 s every 30 s.
	"flapping": {period: 30 * time.Second, phases: []time.Duration{25 * time.Second, 30 * time.Second}, at: func(t time.Duration) point {
		if t%(30*time.Second) >= 25*time.Second {
			return point{onBattery: true, charge: 99}
		}
		return point{charge: 100}
	}},
	// comm_loss: on battery at 1 min, the link is lost from 2 to 4 min.
	"comm_loss": {length: 6 * time.Minute, phases: []time.Duration{
		time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	}, at: func(t time.Duration) point {
		switch {
		case t < time.Minute:
			return point{charge: 100}
		case t >= 2*time.Minute && t < 4*time.Minute:
			return point{commLost: true}
		case t < 5*time.Minute:
			return point{onBattery: true, charge: 100 - 4*(t-time.Minute).Minutes()}
		default:
			return point{charging: true, charge: 84}
		}
	}},
}

// InstCmd implements bridge.Commander: the simulated UPS accepts the
// commands it lists and does nothing.
func (s *Source) InstCmd(_ context.Context, ups, command, _ string) (bridge.CommandResult, error) {
	if ups != s.cfg.ID {
		return bridge.CommandResult{}, fmt.Errorf("sim: %w %q", bridge.ErrUnknownUPS, ups)
	}
	if !info.HasCommand(command) {
		return bridge.CommandResult{Status: "FAILED"}, fmt.Errorf("sim: %w: %q", bridge.ErrCommandUnknown, command)
	}
	s.log.Info("simulated instant command", "ups", ups, "command", command)
	return bridge.CommandResult{Status: "SUCCESS"}, nil
}

var _ bridge.Commander = (*Source)(nil)

// IsPrimary implements bridge.PrimaryReporter: the simulated UPS stands for
// one attached to the bridge (USB), of which the bridge is the primary.
func (s *Source) IsPrimary(ups string) bool { return ups == s.cfg.ID }

var _ bridge.PrimaryReporter = (*Source)(nil)
