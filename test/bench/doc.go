// Package bench is upsbridge's performance suite: detection latency against
// Debian's real upsmon, fleet fan-out, scale and footprint, measured with
// real upsd + dummy-ups, mosquitto and the upsbridge binary on loopback.
// The suite is behind the build tag "bench" (see run.sh); it writes
// docs/benchmarks.md. The Go benchmarks of the hot paths (hotpath_test.go)
// need no tag: go test -run '^$' -bench . -benchmem ./test/bench
package bench
