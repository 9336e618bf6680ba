package agent

import (
	"runtime"
	"testing"
	"time"
)

// TestSystemClockSurvivesRestart: two clocks made at different moments (as
// by two runs of the agent in one boot) give the same monotonic instant
// for the same moment, so progress saved by one keeps its meaning for the
// other.
func TestSystemClockSurvivesRestart(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the boot-relative clock is Linux's CLOCK_MONOTONIC")
	}
	a := SystemClock()
	time.Sleep(50 * time.Millisecond)
	b := SystemClock()
	now := time.Now()
	da, db := a.MonoOf(now), b.MonoOf(now)
	if diff := (da - db).Abs(); diff > 5*time.Millisecond {
		t.Fatalf("the clocks disagree by %s on one moment", diff)
	}
	if da < 50*time.Millisecond {
		t.Fatalf("instant %s is not relative to the boot", da)
	}
	// Wall and monotonic parts: Now().Mono follows MonoOf of its Wall
	// reading.
	n := a.Now()
	if d := (a.MonoOf(n.Wall) - n.Mono).Abs(); d != 0 {
		t.Fatalf("Now: mono %s, MonoOf(wall) %s", n.Mono, a.MonoOf(n.Wall))
	}
}
