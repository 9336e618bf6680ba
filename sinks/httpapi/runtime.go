package httpapi

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The Go runtime families users' dashboards use, with the names, HELP
// texts and types of the official client's Go collector, computed from
// runtime/metrics (no stop-the-world) and debug.ReadGCStats.
var (
	descGoroutines = newDesc("go_goroutines", "Number of goroutines that currently exist.", gaugeType)
	descThreads    = newDesc("go_threads", "Number of OS threads created.", gaugeType)
	descGCDuration = newDesc("go_gc_duration_seconds",
		"A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", summaryType)
	descGoInfo     = newDesc("go_info", "Information about the Go environment.", gaugeType, "version")
	descAllocBytes = newDesc("go_memstats_alloc_bytes",
		"Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", gaugeType)
	descHeapInuse = newDesc("go_memstats_heap_inuse_bytes",
		"Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", gaugeType)
	descSysBytes = newDesc("go_memstats_sys_bytes",
		"Number of bytes obtained from system. Equals to /memory/classes/total:byte.", gaugeType)
)

// gcQuantiles are the quantiles of go_gc_duration_seconds: what
// debug.ReadGCStats computes with five PauseQuantiles.
var gcQuantiles = []float64{0, 0.25, 0.5, 0.75, 1}

// collectRuntime adds the go_* families.
func collectRuntime(m *metricSet) {
	m.add(descGoroutines, float64(runtime.NumGoroutine()))
	threads, _ := runtime.ThreadCreateProfile(nil)
	m.add(descThreads, float64(threads))

	gc := debug.GCStats{PauseQuantiles: make([]time.Duration, len(gcQuantiles))}
	debug.ReadGCStats(&gc)
	pauses := make([]float64, len(gcQuantiles))
	for i, p := range gc.PauseQuantiles {
		pauses[i] = p.Seconds()
	}
	m.addSummary(descGCDuration, gcQuantiles, pauses, gc.PauseTotal.Seconds(), uint64(gc.NumGC))

	m.add(descGoInfo, 1, runtime.Version())

	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/total:bytes"},
	}
	metrics.Read(samples)
	objects, unused, total := u64(samples[0]), u64(samples[1]), u64(samples[2])
	m.add(descAllocBytes, objects)
	m.add(descHeapInuse, objects+unused)
	m.add(descSysBytes, total)
}

// u64 returns a runtime/metrics sample's value; 0 if this Go does not
// know the metric (KindBad), rather than a panic.
func u64(s metrics.Sample) float64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return float64(s.Value.Uint64())
}
