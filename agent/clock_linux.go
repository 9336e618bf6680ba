package agent

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootMono is CLOCK_MONOTONIC: time since boot, the same in every process
// of one boot.
func bootMono() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
