package agent

import (
	"time"

	"github.com/upsbridge/upsbridge/internal/agent/policy"
)

// Clock is the agent's clock. Decisions use only its monotonic part; the
// wall part is for people (payload ts, logs, "would have powered off at").
type Clock interface {
	// Now is the present instant.
	Now() policy.Now
	// MonoOf is the monotonic instant of a reading t of time.Now() (the
	// moment news was received).
	MonoOf(t time.Time) time.Duration
}

// systemClock measures monotonic instants from the boot where the OS
// tells it (CLOCK_MONOTONIC on Linux), so progress saved in state_file keeps
// its meaning across an agent restart within one boot; elsewhere from the
// process start.
type systemClock struct {
	origin time.Time     // a time.Now() reading, with its monotonic part
	base   time.Duration // the boot-relative instant of origin
}

// SystemClock returns the clock of the machine.
func SystemClock() Clock {
	return systemClock{origin: time.Now(), base: bootMono()}
}

func (c systemClock) Now() policy.Now {
	t := time.Now()
	return policy.Now{Mono: c.MonoOf(t), Wall: t}
}

// MonoOf uses t's monotonic reading (time.Time.Sub does when both have
// one), so a step of the wall clock changes nothing.
func (c systemClock) MonoOf(t time.Time) time.Duration { return c.base + t.Sub(c.origin) }
