//go:build !linux

package agent

import "time"

// bootMono is 0 where there is no boot-relative clock: progress then keeps
// its meaning only within one process (and state_file has no boot id).
func bootMono() time.Duration { return 0 }
