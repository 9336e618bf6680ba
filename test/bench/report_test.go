//go:build bench

package bench

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// sample is a set of latencies.
type sample []time.Duration

func (s sample) sorted() sample {
	c := append(sample(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}

// quantile uses the nearest rank.
func (s sample) quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := s.sorted()
	i := int(math.Ceil(q*float64(len(c)))) - 1
	return c[max(0, min(i, len(c)-1))]
}

func (s sample) median() time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := s.sorted()
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func (s sample) worst() time.Duration { return s.quantile(1) }

func (s sample) mean() time.Duration {
	if len(s) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return sum / time.Duration(len(s))
}

// p99 is reported only when the sample has at least 100 values.
func (s sample) p99() string {
	if len(s) < 100 {
		return "–"
	}
	return ms(s.quantile(0.99))
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// report collects the sections of docs/benchmarks.md.
type report struct {
	started  time.Time
	loadAvg  string // /proc/loadavg at the start
	quick    bool
	sections []string
	configs  []string
	notes    []string
}

func (r *report) add(title, intro string, header []string, rows [][]string, after string) {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", title)
	if intro != "" {
		fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(intro))
	}
	fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
	}
	if after != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(after))
	}
	r.sections = append(r.sections, b.String())
}

func (r *report) config(title, lang, body string) {
	r.configs = append(r.configs, fmt.Sprintf("%s:\n\n```%s\n%s```\n", title, lang, body))
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func machine() []string {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) >= 2 {
			var kb int64
			fmt.Sscan(f[1], &kb)
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	osName := "?"
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`)
			}
		}
	}
	return []string{
		fmt.Sprintf("- CPU: %s, %d logical CPUs visible to Go (GOMAXPROCS %d)", cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0)),
		"- Memory: " + mem,
		"- OS: " + osName + ", kernel " + cmdOut("uname", "-r"),
		"- " + runtime.Version() + "; NUT " + cmdOut("dpkg-query", "-W", "-f=${Version}", "nut-server") + " (Debian nut-server/nut-client); mosquitto " + cmdOut("dpkg-query", "-W", "-f=${Version}", "mosquitto"),
		"- upsbridge commit " + cmdOut("git", "-C", "../..", "rev-parse", "--short", "HEAD"),
	}
}

func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("# upsbridge benchmarks\n\n")
	b.WriteString("Written by the suite in `test/bench` (issue #8); do not edit by hand. Re-run with:\n\n")
	b.WriteString("```sh\nbash test/bench/run.sh          # full suite, under 15 minutes\nbash test/bench/run.sh -quick   # each scenario once at its smallest size\n```\n\n")
	mode := "full"
	if r.quick {
		mode = "quick (-quick: smallest sizes, one run; not the reference figures)"
	}
	if *extraYAMLFlag != "" || *scaleSizesFlag != "" || *onlyFlag != "" {
		mode += fmt.Sprintf("; what-if options: -only %q -extra-yaml %q -scale-sizes %q (not the reference figures)", *onlyFlag, *extraYAMLFlag, *scaleSizesFlag)
	}
	fmt.Fprintf(&b, "Date: %s. Mode: %s. Suite wall time: %s.\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"), mode, time.Since(r.started).Round(time.Second))
	b.WriteString("Machine:\n\n" + strings.Join(machine(), "\n") + "\n")
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) at the start: %s; at the end: %s. The machine is shared with other engineers' test runs, which adds noise to CPU and latency figures.\n\n", r.loadAvg, loadAvg())
	b.WriteString(strings.TrimSpace(method) + "\n\n")
	for _, s := range r.sections {
		b.WriteString(s + "\n")
	}
	if len(r.notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
		b.WriteString("\n")
	}
	b.WriteString("## Exact configurations\n\n")
	for _, c := range r.configs {
		b.WriteString(c + "\n")
	}
	return b.String()
}

const method = `
## Method

Everything is real and on loopback: Debian's ` + "`upsd`" + ` with ` + "`dummy-ups`" + ` drivers in a temporary
sandbox (run as root in the foreground, stopped by PID), Debian's real ` + "`upsmon`" + ` as a secondary
(` + "`upsmon -p -F`" + `, its config in a temp folder; its ` + "`NOTIFYCMD`" + ` appends ` + "`date +%s.%N`" + ` to a log and its
` + "`SHUTDOWNCMD`" + ` only records the call), mosquitto, and the upsbridge binary built from the tree
(` + "`go build ./cmd/upsbridge`" + `). A UPS changes state by rewriting its ` + "`.dev`" + ` file with an mtime on a new
whole second (dummy-ups only re-reads it then).

- **Time zero** is the moment upsd first serves the new ` + "`ups.status`" + `: a reference client sends
  ` + "`GET VAR <ups> ups.status`" + ` every 5 ms on one kept connection (what ` + "`upsc`" + ` shows, without forking a
  process per look) and stamps the first answer with the new value. Latencies are "beyond the moment upsd
  serves the change".
- **upsmon**: the time ` + "`date +%s.%N`" + ` recorded inside its NOTIFYCMD (ONBATT, LOWBATT, ONLINE).
- **upsbridge event**: the arrival of the ` + "`<prefix>/ups/<id>/event`" + ` message (ONBATT, LOWBATT, ONLINE) at an
  MQTT subscriber in the suite's process.
- **upsbridge agent**: the moment the shutdown agent's policy decided (OUTAGE_START on OB, the final
  poweroff stage on OB LB, OUTAGE_END on OL), through the agent's ` + "`OnDecision`" + ` hook. Agents run in the
  suite's process (dry run), each with its own MQTT connection, wired exactly as ` + "`upsbridge run`" + ` wires its
  ` + "`agent:`" + ` section (` + "`internal/agent/intake.Intake`" + ` + ` + "`agent.Agent`" + `).
- **Requests upsd sees**: the kernel's per-connection ` + "`data_segs_in`" + ` on upsd's side (` + "`ss -ti`" + `), summed
  over the clients under test (the reference client is left out); every NUT request is one line in one
  write.
- **CPU and memory**: ` + "`/proc/<pid>/stat`" + ` (utime+stime, all threads) and ` + "`VmRSS`" + ` of the upsbridge process.
- Median and worst are over every sample; p99 is given when a sample has at least 100 values.
`

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ", ")
}
