package bridge

import (
	"fmt"
	"time"
)

// CriticalRules are the knobs of upsmon's definition of a critical UPS,
// shared by the bridge's tracker and the shutdown agent so both always
// agree on when a host must power off.
type CriticalRules struct {
	// DeadTime: communication lost while last seen on battery for longer
	// than this is critical (upsmon DEADTIME).
	DeadTime time.Duration
	// OffDuration: OFF for this long is critical (upsmon OFFDURATION);
	// negative disables the rule.
	OffDuration time.Duration
	// LowBatteryGrace: OB LB must hold this long before it is critical
	// (upsmon OBLBDURATION; 0 is at once).
	LowBatteryGrace time.Duration
}

// CriticalInput is what is known of a UPS at one moment. Durations are
// measured by the caller on its own monotonic clock.
type CriticalInput struct {
	Status Flags
	// CommLost is true when the UPS (or the news of it) is not current;
	// SinceGood is how long ago the last good reading was.
	CommLost  bool
	SinceGood time.Duration
	// OffFor is how long OFF has been reported (0 when it is not).
	OffFor time.Duration
	// LowBatteryFor is how long OB and LB have both been reported.
	LowBatteryFor time.Duration
}

// Critical reports whether a UPS is critical, and why, by upsmon's rules:
// FSD; OB with LB (not while calibrating) held for LowBatteryGrace; OFF for
// OffDuration; or, last seen on battery, no good reading for DeadTime.
func Critical(r CriticalRules, in CriticalInput) (bool, string) {
	st := in.Status
	switch {
	case st.Has(FSD):
		return true, "forced shutdown (FSD)"
	case st.Has(OB) && st.Has(LB) && !st.Has(CAL) && in.LowBatteryFor >= r.LowBatteryGrace:
		return true, "on battery with low battery"
	case r.OffDuration >= 0 && st.Has(OFF) && in.OffFor > 0 && in.OffFor >= r.OffDuration:
		return true, fmt.Sprintf("off for %s (off_duration %s)", in.OffFor.Round(time.Second), r.OffDuration)
	case in.CommLost && st.Has(OB) && in.SinceGood > r.DeadTime:
		return true, fmt.Sprintf("no news for %s while last seen on battery (dead_time %s)", in.SinceGood.Round(time.Second), r.DeadTime)
	}
	return false, ""
}
