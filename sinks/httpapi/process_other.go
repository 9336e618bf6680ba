//go:build !linux

package httpapi

// collectProcess adds nothing: the process_* families are read from /proc,
// which only Linux has.
func collectProcess(*metricSet) {}
