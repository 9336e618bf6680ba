package nut

import "time"

// SetDiscoverInterval changes how often ups: "*" lists the server's UPSes
// (default 10 s). It is for tests; call it before Run.
func SetDiscoverInterval(s *Source, d time.Duration) { s.tm.discover = d }
