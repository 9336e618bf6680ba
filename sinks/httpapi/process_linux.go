package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// The process families of the official client's process collector (same
// names, HELP texts and types), read from /proc/self without procfs.
var (
	descCPU = newDesc("process_cpu_seconds_total",
		"Total user and system CPU time spent in seconds.", counterType)
	descRSS = newDesc("process_resident_memory_bytes",
		"Resident memory size in bytes.", gaugeType)
	descVsize = newDesc("process_virtual_memory_bytes",
		"Virtual memory size in bytes.", gaugeType)
	descOpenFDs = newDesc("process_open_fds",
		"Number of open file descriptors.", gaugeType)
	descMaxFDs = newDesc("process_max_fds",
		"Maximum number of open file descriptors.", gaugeType)
	descStartTime = newDesc("process_start_time_seconds",
		"Start time of the process since unix epoch in seconds.", gaugeType)
)

// userHZ is the unit of the times in /proc/<pid>/stat. It is 100 on every
// Linux architecture Go supports (procfs assumes the same).
const userHZ = 100

// collectProcess adds the process_* families; one that cannot be read is
// left out and logged once, never a failed scrape.
func collectProcess(m *metricSet) {
	b, err := os.ReadFile("/proc/self/stat")
	var st procStat
	if err == nil {
		st, err = parseProcStat(b)
	}
	if err != nil {
		m.skip("process_cpu_seconds_total", err.Error())
	} else {
		m.add(descCPU, float64(st.utime+st.stime)/userHZ)
		m.add(descVsize, float64(st.vsize))
		m.add(descRSS, float64(st.rss)*float64(os.Getpagesize()))
		if bt, err := bootTime(); err != nil {
			m.skip(descStartTime.name, err.Error())
		} else {
			m.add(descStartTime, float64(bt)+float64(st.starttime)/userHZ)
		}
	}
	if n, err := openFDs(); err != nil {
		m.skip(descOpenFDs.name, err.Error())
	} else {
		m.add(descOpenFDs, float64(n))
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		m.skip(descMaxFDs.name, fmt.Sprintf("getrlimit NOFILE: %v", err))
	} else {
		m.add(descMaxFDs, float64(lim.Cur))
	}
}

// procStat is what the process families need of /proc/<pid>/stat.
type procStat struct {
	utime, stime uint64 // clock ticks (fields 14 and 15)
	starttime    uint64 // clock ticks after boot (field 22)
	vsize        uint64 // bytes (field 23)
	rss          uint64 // pages (field 24)
}

// parseProcStat parses /proc/<pid>/stat (proc(5)). The command name
// (field 2) is in parentheses and may itself hold spaces and parentheses,
// so the fields are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("parse /proc/self/stat: no ')' after the command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 24-2 {
		return procStat{}, fmt.Errorf("parse /proc/self/stat: %d fields after the command name, want at least %d", len(f), 24-2)
	}
	var st procStat
	for _, x := range []struct {
		field int
		dst   *uint64
	}{{14, &st.utime}, {15, &st.stime}, {22, &st.starttime}, {23, &st.vsize}, {24, &st.rss}} {
		v, err := strconv.ParseUint(string(f[x.field-3]), 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parse /proc/self/stat: field %d: %w", x.field, err)
		}
		*x.dst = v
	}
	return st, nil
}

// bootTime is the "btime" of /proc/stat, read once: it does not change
// while the system runs.
var bootTime = sync.OnceValues(func() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read boot time: %w", err)
	}
	return parseBootTime(b)
})

// parseBootTime finds the "btime <seconds>" line of /proc/stat.
func parseBootTime(b []byte) (uint64, error) {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			v, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/stat btime: %w", err)
			}
			return v, nil
		}
	}
	return 0, errors.New("parse /proc/stat: no btime line")
}

// openFDs counts the entries of /proc/self/fd, less the descriptor used to
// read the directory itself.
func openFDs() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("count open fds: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("count open fds: %w", err)
	}
	return len(names) - 1, nil
}
