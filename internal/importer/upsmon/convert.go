package upsmon

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

// Options tune a conversion.
type Options struct {
	// SourcePath is shown in the header comment (e.g. /etc/nut/upsmon.conf).
	SourcePath string
	// Upssched is the parsed upssched.conf, if upsmon's NOTIFYCMD is upssched.
	Upssched *File
	// ReadFile, when set, lets the converter read upssched's CMDSCRIPT to
	// recognise the classic "timer expired: upsmon -c fsd" script. Nil reads
	// nothing.
	ReadFile func(name string) ([]byte, error)
}

// Note is a line that was not carried over (or carried over with a caveat),
// with the reason.
type Note struct {
	Where  string // "upsmon.conf:12"
	file   int    // 0 upsmon.conf, 1 upssched.conf: notes sort by file, then line
	line   int
	Raw    string // the line, password masked
	Reason string
}

// Result is a converted configuration.
type Result struct {
	// YAML is the upsbridge configuration, comments included.
	YAML []byte
	// Notes lists every line not carried over, and caveats, in file order.
	Notes []Note
	// Sources, Notifiers and Stages count what was generated.
	Sources, Notifiers, Stages int
}

type monitor struct {
	d           Directive
	ups, host   string
	port        int
	power       int
	user, pass  string
	primary     bool
	id          string
	displayName string // ups@host[:port], upsmon's UPSNAME
}

type stage struct {
	name    string
	after   int // seconds on battery
	run     []string
	comment string
}

type converter struct {
	opts  Options
	notes []Note

	monitors     []*monitor
	minSupplies  *int
	deadTime     *int
	finalDelay   *int
	hostSync     *int
	pollFreq     *int
	pollAlert    *int
	nocommWarn   *int
	shutdownCmd  *Directive
	notifyCmd    *Directive
	notifyFlags  map[string][]string // type -> flags
	flagLines    map[string]Directive
	forceTLS     bool
	inSched      bool // converting upssched.conf
	stages       []stage
	poweroffWhen int // seconds on battery for the final stage; 0: only when critical
	poweroffNote string
}

// Convert turns a parsed upsmon.conf (and optionally upssched.conf) into an
// upsbridge configuration. It fails only when nothing usable is left: no
// MONITOR line could be converted.
func Convert(mon *File, opts Options) (*Result, error) {
	if mon == nil {
		return nil, errors.New("upsmon import: no upsmon.conf")
	}
	c := &converter{opts: opts, notifyFlags: map[string][]string{}, flagLines: map[string]Directive{}}
	for _, d := range mon.Directives {
		c.directive(d)
	}
	if len(c.monitors) == 0 {
		return nil, fmt.Errorf("upsmon import: %s has no usable MONITOR line, so there is no UPS to read", mon.Name)
	}
	c.assignIDs()
	if c.isUpssched() {
		if opts.Upssched == nil {
			c.note(*c.notifyCmd, "NOTIFYCMD is upssched: pass --upssched /etc/nut/upssched.conf to turn its timers into agent stages")
		} else {
			c.upssched(opts.Upssched)
		}
	}
	out := c.render()
	res := &Result{YAML: out, Notes: c.notes, Sources: len(c.monitors), Stages: len(c.stages) + 1}
	if c.notifierEvents() != nil {
		res.Notifiers = 1
	}
	return res, nil
}

func (c *converter) note(d Directive, reason string) {
	file := 0
	if c.opts.Upssched != nil && d.File == c.opts.Upssched.Name && c.inSched {
		file = 1
	}
	c.notes = append(c.notes, Note{Where: d.Where(), Raw: maskRaw(d), Reason: reason, file: file, line: d.Line})
}

// maskRaw hides MONITOR passwords in comments.
func maskRaw(d Directive) string {
	if d.Name == "MONITOR" && len(d.Args) >= 4 {
		parts := append([]string{"MONITOR"}, d.Args...)
		parts[4] = "********"
		return strings.Join(parts, " ")
	}
	return strings.TrimSpace(d.Raw)
}

// seconds parses a directive's single non-negative integer argument.
func (c *converter) seconds(d Directive) (*int, bool) {
	if len(d.Args) != 1 {
		c.note(d, fmt.Sprintf("%s takes one number, got %d argument(s); not carried over", d.Name, len(d.Args)))
		return nil, false
	}
	n, err := strconv.Atoi(d.Args[0])
	if err != nil || n < 0 {
		c.note(d, fmt.Sprintf("%s %q is not a number of seconds; not carried over", d.Name, d.Args[0]))
		return nil, false
	}
	return &n, true
}

func (c *converter) directive(d Directive) {
	switch d.Name {
	case "MONITOR":
		c.monitor(d)
	case "MINSUPPLIES":
		if n, ok := c.seconds(d); ok {
			c.minSupplies = n
		}
	case "DEADTIME":
		if n, ok := c.seconds(d); ok {
			if *n == 0 {
				c.note(d, "DEADTIME 0 would make every communication blip critical; upsbridge's default (15s) is kept")
				return
			}
			c.deadTime = n
		}
	case "FINALDELAY":
		if n, ok := c.seconds(d); ok {
			c.finalDelay = n
		}
	case "HOSTSYNC":
		if n, ok := c.seconds(d); ok {
			if *n == 0 {
				c.note(d, "HOSTSYNC 0 is not allowed in upsbridge (bridge.primary.host_sync must be > 0); the default 15s is kept")
				return
			}
			c.hostSync = n
		}
	case "POLLFREQ":
		if n, ok := c.seconds(d); ok && *n > 0 {
			c.pollFreq = n
		}
	case "POLLFREQALERT":
		if n, ok := c.seconds(d); ok && *n > 0 {
			c.pollAlert = n
		}
	case "NOCOMMWARNTIME":
		if n, ok := c.seconds(d); ok && *n > 0 {
			c.nocommWarn = n
		}
	case "SHUTDOWNCMD":
		dd := d
		c.shutdownCmd = &dd
	case "NOTIFYCMD":
		if len(d.Args) == 0 {
			c.note(d, "NOTIFYCMD without a command; not carried over")
			return
		}
		dd := d
		c.notifyCmd = &dd
	case "NOTIFYFLAG":
		if len(d.Args) != 2 {
			c.note(d, "NOTIFYFLAG takes a type and flags; not carried over")
			return
		}
		typ := strings.ToUpper(d.Args[0])
		c.notifyFlags[typ] = strings.Split(strings.ToUpper(d.Args[1]), "+")
		c.flagLines[typ] = d
	case "NOTIFYMSG":
		c.note(d, "custom NOTIFYMSG texts are not carried over: set `template` on the notifier (text/template, see docs/configuration.md)")
	case "RUN_AS_USER":
		c.note(d, "upsbridge runs as the user its service manager gives it (deploy/systemd: user upsbridge); the agent needs no root to power off through logind")
	case "POWERDOWNFLAG":
		c.note(d, "no flag file: a primary bridge asks the UPS to cut power itself when bridge.primary.kill_power is true")
	case "RBWARNTIME":
		c.note(d, "REPLBATT is repeated on upsbridge's fixed schedule (12 h, as upsmon's default)")
	case "OFFDURATION", "OBLBDURATION", "OVERDURATION", "ALARMCRITICAL":
		c.note(d, "upsbridge uses upsmon's defaults for this rule and has no key for it")
	case "SHUTDOWNEXIT":
		c.note(d, "the agent keeps running until the host powers off; no setting needed")
	case "POLLFAIL_LOG_THROTTLE_MAX":
		c.note(d, "upsbridge logs a communication loss once (COMMBAD) and then NOCOMM every bridge.nocomm_warn_time")
	case "FORCESSL":
		if len(d.Args) == 1 && d.Args[0] == "1" {
			c.forceTLS = true
			return
		}
		c.note(d, "FORCESSL off: sources keep starttls: off")
	case "CERTPATH", "CERTIDENT", "CERTHOST", "CERTVERIFY":
		c.note(d, "NSS certificate databases are not read: give each source a PEM ca_file and starttls: require (docs/security.md)")
	case "DEBUG_MIN":
		c.note(d, "use log.level: debug instead")
	default:
		c.note(d, fmt.Sprintf("unknown upsmon directive %s; not carried over", d.Name))
	}
}

// monitor parses MONITOR <ups>[@<host>[:<port>]] <powervalue> <user> <pass> <type>.
func (c *converter) monitor(d Directive) {
	if len(d.Args) != 5 {
		c.note(d, fmt.Sprintf("MONITOR needs 5 arguments (system powervalue username password primary|secondary), got %d; not carried over", len(d.Args)))
		return
	}
	m := &monitor{d: d, displayName: d.Args[0], user: d.Args[2], pass: d.Args[3]}
	sys := d.Args[0]
	m.ups, m.host, _ = strings.Cut(sys, "@")
	if m.host == "" {
		m.host = "localhost"
	}
	if strings.HasPrefix(m.host, "[") { // [::1]:3493
		if i := strings.Index(m.host, "]"); i > 0 {
			rest := m.host[i+1:]
			m.host = m.host[1:i]
			if p, ok := strings.CutPrefix(rest, ":"); ok {
				m.port, _ = strconv.Atoi(p)
			}
		}
	} else if h, p, ok := strings.Cut(m.host, ":"); ok {
		m.host = h
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			c.note(d, fmt.Sprintf("MONITOR port %q is not a port number; not carried over", p))
			return
		}
		m.port = n
	}
	if m.ups == "" || strings.ContainsAny(m.ups, "\"#\\ ") {
		c.note(d, fmt.Sprintf("MONITOR UPS name %q is not usable; not carried over", m.ups))
		return
	}
	pv, err := strconv.Atoi(d.Args[1])
	if err != nil || pv < 0 {
		c.note(d, fmt.Sprintf("MONITOR power value %q is not a number >= 0; not carried over", d.Args[1]))
		return
	}
	m.power = pv
	switch strings.ToLower(d.Args[4]) {
	case "primary", "master":
		m.primary = true
	case "secondary", "slave":
	default:
		c.note(d, fmt.Sprintf("MONITOR type %q is neither primary nor secondary; not carried over", d.Args[4]))
		return
	}
	c.monitors = append(c.monitors, m)
}

// assignIDs names each source: the UPS name, or <ups>_<host> when two
// MONITOR lines use the same UPS name on different servers.
func (c *converter) assignIDs() {
	count := map[string]int{}
	for _, m := range c.monitors {
		count[config.SanitizeID(m.ups)]++
	}
	used := map[string]int{}
	for _, m := range c.monitors {
		id := config.SanitizeID(m.ups)
		if count[id] > 1 {
			id = config.SanitizeID(m.ups + "_" + m.host)
		}
		if n := used[id]; n > 0 {
			used[id]++
			id = fmt.Sprintf("%s_%d", id, n+1)
		} else {
			used[id] = 1
		}
		m.id = id
	}
}

func (c *converter) isUpssched() bool {
	return c.notifyCmd != nil && path.Base(c.notifyCmd.Args[0]) == "upssched"
}

// notifierEvents returns the events upsmon handed to NOTIFYCMD (EXEC flag),
// or nil when no exec notifier is due.
func (c *converter) notifierEvents() []string {
	if c.notifyCmd == nil || c.isUpssched() {
		return nil
	}
	var evs []string
	for typ, flags := range c.notifyFlags {
		if !hasFlag(flags, "EXEC") {
			continue
		}
		if bridge.KnownEvent(bridge.EventType(typ)) {
			evs = append(evs, typ)
		}
	}
	sort.Strings(evs)
	return evs
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// notifyNotes explains the NOTIFYFLAG lines that do not map one to one.
func (c *converter) notifyNotes() {
	types := make([]string, 0, len(c.flagLines))
	for t := range c.flagLines {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return c.flagLines[types[i]].Line < c.flagLines[types[j]].Line })
	for _, typ := range types {
		d, flags := c.flagLines[typ], c.notifyFlags[typ]
		var why []string
		if !bridge.KnownEvent(bridge.EventType(typ)) {
			why = append(why, fmt.Sprintf("upsbridge has no %s event", typ))
		}
		if hasFlag(flags, "WALL") {
			why = append(why, "WALL dropped: upsbridge writes to no terminal")
		}
		if hasFlag(flags, "EXEC") && c.notifyCmd == nil {
			why = append(why, "EXEC without NOTIFYCMD ran nothing")
		}
		if len(why) > 0 {
			c.note(d, strings.Join(why, "; "))
		}
	}
	if c.notifyCmd != nil && !c.isUpssched() && len(c.notifierEvents()) == 0 {
		c.note(*c.notifyCmd, "no NOTIFYFLAG line has EXEC, so upsmon never ran NOTIFYCMD; no exec notifier is generated")
	}
}

// timer is one upssched START-TIMER.
type timer struct {
	d       Directive
	name    string
	secs    int
	event   string
	cancels bool // cancelled on ONLINE
}

// upssched maps on-battery timers to stages.
func (c *converter) upssched(f *File) {
	c.inSched = true
	defer func() { c.inSched = false }()
	var script []string
	timers := map[string]*timer{}
	var order []string
	for _, d := range f.Directives {
		switch d.Name {
		case "CMDSCRIPT":
			if len(d.Args) == 0 {
				c.note(d, "CMDSCRIPT without a path")
				continue
			}
			script = d.Args
		case "PIPEFN", "LOCKFN":
			c.note(d, "not needed: the agent keeps its timers itself (and survives restarts through agent.state_file)")
		case "AT":
			if len(d.Args) < 3 {
				c.note(d, "AT needs a type, a UPS and a command; not carried over")
				continue
			}
			typ, ups, cmd := strings.ToUpper(d.Args[0]), d.Args[1], strings.ToUpper(d.Args[2])
			rest := d.Args[3:]
			switch cmd {
			case "START-TIMER", "START-TIMER-SHARED":
				if len(rest) != 2 {
					c.note(d, "START-TIMER needs a name and seconds; not carried over")
					continue
				}
				secs, err := strconv.Atoi(rest[1])
				if err != nil || secs < 0 {
					c.note(d, fmt.Sprintf("timer length %q is not seconds; not carried over", rest[1]))
					continue
				}
				if typ != "ONBATT" {
					c.note(d, fmt.Sprintf("only timers started on ONBATT map to stages (on_battery_for); a timer on %s is not carried over", typ))
					continue
				}
				if _, dup := timers[rest[0]]; !dup {
					order = append(order, rest[0])
				}
				timers[rest[0]] = &timer{d: d, name: rest[0], secs: secs, event: typ}
				if ups != "*" {
					c.note(d, fmt.Sprintf("stages apply to the whole host, not to UPS %s alone", ups))
				}
			case "CANCEL-TIMER", "CANCEL-TIMER-MATCHED":
				if len(rest) == 0 {
					c.note(d, "CANCEL-TIMER needs a timer name")
					continue
				}
				if t := timers[rest[0]]; t != nil && typ == "ONLINE" {
					t.cancels = true
				} else if typ != "ONLINE" {
					c.note(d, fmt.Sprintf("a timer cancelled on %s does not map: stages are cancelled when mains returns", typ))
				}
				if len(rest) > 1 {
					c.note(d, fmt.Sprintf("the command %q run when no timer was pending is not carried over (use a notifier for ONLINE)", rest[1]))
				}
			case "EXECUTE":
				c.note(d, "EXECUTE on an event is not carried over: use an exec notifier with events: ["+typ+"]")
			default:
				c.note(d, fmt.Sprintf("unknown upssched command %s", cmd))
			}
		default:
			c.note(d, fmt.Sprintf("unknown upssched directive %s", d.Name))
		}
	}
	if len(order) == 0 {
		return
	}
	if len(script) == 0 {
		for _, name := range order {
			c.note(timers[name].d, "no CMDSCRIPT: the timer ran nothing; not carried over")
		}
		return
	}
	fsd := c.shutdownTimers(script[0])
	for _, name := range order {
		t := timers[name]
		if !t.cancels {
			c.note(t.d, "this timer was never cancelled on ONLINE; as a stage it is cancelled when mains returns")
		}
		if fsd[name] || (len(fsd) == 0 && looksLikeShutdown(name)) {
			if c.poweroffWhen == 0 || t.secs < c.poweroffWhen {
				c.poweroffWhen = t.secs
				c.poweroffNote = fmt.Sprintf("%s: timer %s (%ds on battery) ended in a shutdown", t.d.Where(), name, t.secs)
			}
			continue
		}
		run := append(append([]string{}, script...), name)
		c.stages = append(c.stages, stage{
			name: config.SanitizeID(name), after: t.secs, run: run,
			comment: fmt.Sprintf("%s: upssched timer %s", t.d.Where(), name),
		})
	}
	sort.SliceStable(c.stages, func(i, j int) bool { return c.stages[i].after < c.stages[j].after })
}

var shutdownName = regexp.MustCompile(`(?i)shut|fsd|poweroff|power_off|halt|critical`)

func looksLikeShutdown(name string) bool { return shutdownName.MatchString(name) }

// shutdownTimers returns the timers whose branch in upssched's CMDSCRIPT
// (the usual `case $1 in name) ... ;;` shell script) forces a shutdown with
// `upsmon -c fsd` or powers off directly, if the script can be read.
func (c *converter) shutdownTimers(p string) map[string]bool {
	out := map[string]bool{}
	if c.opts.ReadFile == nil {
		return out
	}
	b, err := c.opts.ReadFile(p)
	if err != nil {
		return out
	}
	var current []string
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.TrimSpace(line)
		if i := strings.Index(l, ")"); i > 0 && !strings.ContainsAny(l[:i], " $(\"'") {
			current = strings.Split(l[:i], "|")
			l = l[i+1:]
		}
		if shutdownCmd.MatchString(l) {
			for _, t := range current {
				out[strings.TrimSpace(t)] = true
			}
		}
		if strings.Contains(l, ";;") {
			current = nil
		}
	}
	return out
}

var shutdownCmd = regexp.MustCompile(`upsmon\s+-c\s+fsd|\bshutdown\s+-[hP]|\bpoweroff\b|systemctl\s+poweroff`)

// splitCommand turns SHUTDOWNCMD into argv; anything a shell would
// interpret goes through /bin/sh -c, as upsmon ran it with system().
func splitCommand(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if strings.ContainsAny(s, "|&;<>$`(){}*?~'\"\\") {
		return []string{"/bin/sh", "-c", s}
	}
	return strings.Fields(s)
}
