package upsmon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode"
)

// q quotes a string for YAML: a JSON string is a valid YAML double-quoted
// scalar, and quoting every string keeps "yes", "0123" and "#" literal.
func q(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	// JSON leaves DEL, the C1 controls and the byte order mark as they
	// are; YAML accepts none of them raw in a scalar, so they are escaped.
	return yamlUnprintable.Replace(strings.TrimSuffix(b.String(), "\n"))
}

var yamlUnprintable = func() *strings.Replacer {
	var pairs []string
	for r := rune(0x7f); r <= 0x9f; r++ {
		pairs = append(pairs, string(r), fmt.Sprintf(`\u%04x`, r))
	}
	return strings.NewReplacer(append(pairs, "\uFEFF", `\ufeff`)...)
}()

func qlist(l []string) string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = q(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func dur(secs int) string { return fmt.Sprintf("%ds", secs) }

// comment writes each line of text as a YAML comment at indent. Input
// lines are the user's bytes: anything YAML does not accept in a comment
// (invalid UTF-8, control characters) is replaced.
func comment(b *strings.Builder, indent, text string) {
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || (unicode.IsPrint(r) && r != '\uFEFF') {
			return r
		}
		return '?'
	}, text)
	for _, l := range strings.Split(text, "\n") {
		fmt.Fprintf(b, "%s# %s\n", indent, l)
	}
}

func (c *converter) render() []byte {
	c.notifyNotes()
	sort.SliceStable(c.notes, func(i, j int) bool {
		a, b := c.notes[i], c.notes[j]
		if a.file != b.file {
			return a.file < b.file
		}
		return a.line < b.line
	})
	var b strings.Builder
	src := c.opts.SourcePath
	if src == "" {
		src = "upsmon.conf"
	}
	comment(&b, "", "upsbridge configuration imported from "+src+" by `upsbridge import-upsmon`.\n"+
		"Check it with `upsbridge check-config -c FILE` and rehearse the shutdown policy with\n"+
		"`upsbridge drill -c FILE` before you stop upsmon. Reference: docs/configuration.md;\n"+
		"guide: docs/migrating-from-upsmon.md.")
	b.WriteString("\n")

	// Every line not carried over, in file order, as the issue demands.
	if len(c.notes) > 0 {
		comment(&b, "", "Lines not carried over, or carried over with a caveat:")
		for _, n := range c.notes {
			comment(&b, "", fmt.Sprintf("  %s: %s\n      -> %s", n.Where, n.Raw, n.Reason))
		}
		b.WriteString("\n")
	}

	comment(&b, "", "upsbridge publishes UPS state on MQTT and the agent below reads it back from there.\n"+
		"\"embedded\" runs a broker inside this process on mqtt.listen; point url at your own\n"+
		"broker (tcp://host:1883, mqtts://host:8883) if you have one.")
	b.WriteString("mqtt:\n  url: embedded\n\n")

	b.WriteString("bridge:\n")
	if c.deadTime != nil {
		fmt.Fprintf(&b, "  dead_time: %s  # DEADTIME\n", dur(*c.deadTime))
	}
	if c.nocommWarn != nil {
		fmt.Fprintf(&b, "  nocomm_warn_time: %s  # NOCOMMWARNTIME\n", dur(*c.nocommWarn))
	}
	b.WriteString("  primary:\n")
	hs := 15
	hsNote := "upsmon's default HOSTSYNC"
	if c.hostSync != nil {
		hs, hsNote = *c.hostSync, "HOSTSYNC"
	}
	fmt.Fprintf(&b, "    host_sync: %s  # %s: after FSD, an agent powering_off this long is done, one silent this long is gone\n", dur(hs), hsNote)
	b.WriteString("    kill_power: false  # upsmon's POWERDOWNFLAG + upsdrvctl shutdown; enable deliberately\n\n")

	b.WriteString("sources:\n")
	for _, m := range c.monitors {
		comment(&b, "  ", fmt.Sprintf("%s: %s", m.d.Where(), maskRaw(m.d)))
		fmt.Fprintf(&b, "  - id: %s\n", q(m.id))
		b.WriteString("    type: nut\n")
		addr := m.host
		if strings.Contains(addr, ":") {
			addr = "[" + addr + "]"
		}
		if m.port != 0 {
			addr = fmt.Sprintf("%s:%d", addr, m.port)
		}
		fmt.Fprintf(&b, "    address: %s\n", q(addr))
		fmt.Fprintf(&b, "    ups: %s\n", q(m.ups))
		fmt.Fprintf(&b, "    username: %s\n", q(m.user))
		fmt.Fprintf(&b, "    password: %s  # better: password_file: /etc/upsbridge/nut-password\n", q(m.pass))
		if m.primary {
			b.WriteString("    primary: true  # MONITOR ... primary: this bridge sets FSD on upsd when the UPS turns critical\n")
		} else {
			b.WriteString("    login: true  # MONITOR ... secondary: upsd counts this host, the primary waits for it\n")
		}
		if c.pollFreq != nil {
			fmt.Fprintf(&b, "    poll_interval: %s  # POLLFREQ (upsbridge's default is 1s)\n", dur(*c.pollFreq))
		}
		if c.pollAlert != nil {
			fmt.Fprintf(&b, "    poll_interval_on_battery: %s  # POLLFREQALERT (upsbridge's default is 500ms)\n", dur(*c.pollAlert))
		}
		if c.forceTLS {
			b.WriteString("    starttls: require  # FORCESSL 1\n")
		}
	}
	b.WriteString("\n")

	if evs := c.notifierEvents(); evs != nil {
		cmd := c.notifyCmd.Args
		if len(cmd) == 1 && strings.ContainsAny(cmd[0], " \t") {
			// NUT 2.8.0 ran NOTIFYCMD through system(): "script arg" worked.
			cmd = splitCommand(cmd[0])
		}
		name := notifierName(strings.TrimSuffix(path.Base(cmd[0]), path.Ext(cmd[0])))
		comment(&b, "", fmt.Sprintf("%s: NOTIFYCMD with the events whose NOTIFYFLAG has EXEC. The command runs as\n"+
			"upsmon ran it: the message as its last argument, NOTIFYTYPE and UPSNAME in the environment\n"+
			"(UPSNAME is now the upsbridge UPS id, e.g. %q, where upsmon gave %q).",
			c.notifyCmd.Where(), c.monitors[0].id, c.monitors[0].displayName))
		b.WriteString("notify:\n")
		fmt.Fprintf(&b, "  - name: %s\n", q(name))
		b.WriteString("    type: exec\n")
		fmt.Fprintf(&b, "    command: %s\n", qlist(cmd))
		fmt.Fprintf(&b, "    events: %s\n\n", qlist(evs))
	}

	comment(&b, "", "This host's shutdown agent: upsmon's power values and timers, as a staged policy.")
	b.WriteString("agent:\n")
	comment(&b, "  ", "Starts in dry run: the agent logs each stage and the power-off it would run, and runs\n"+
		"nothing. Check the log through a test outage (upsbridge drill -c FILE prints the timeline),\n"+
		"then set dry_run: false (or delete the line) to go live, and stop upsmon.")
	b.WriteString("  dry_run: true\n")
	b.WriteString("  supplies:\n")
	for _, m := range c.monitors {
		fmt.Fprintf(&b, "    - ups: %s\n      power_value: %d\n", q(m.id), m.power)
	}
	ms := 1
	if c.minSupplies != nil {
		ms = *c.minSupplies
	}
	fmt.Fprintf(&b, "  min_supplies: %d  # MINSUPPLIES\n", ms)
	if c.deadTime != nil {
		fmt.Fprintf(&b, "  dead_time: %s  # DEADTIME\n", dur(*c.deadTime))
	}
	if c.finalDelay != nil {
		fmt.Fprintf(&b, "  final_delay: %s  # FINALDELAY\n", dur(*c.finalDelay))
	}
	switch {
	case c.shutdownCmd == nil:
		b.WriteString("  poweroff: auto  # no SHUTDOWNCMD: ask systemd-logind, then run shutdown_command\n")
	case len(c.shutdownCmd.Args) == 0 || strings.TrimSpace(strings.Join(c.shutdownCmd.Args, " ")) == "":
		b.WriteString("  poweroff: auto  # SHUTDOWNCMD was empty (upsmon ran nothing, as on Synology); upsbridge asks logind\n")
	default:
		argv := splitCommand(strings.Join(c.shutdownCmd.Args, " "))
		b.WriteString("  poweroff: command  # SHUTDOWNCMD\n")
		fmt.Fprintf(&b, "  shutdown_command: %s\n", qlist(argv))
	}
	b.WriteString("  stages:\n")
	for _, s := range c.stages {
		comment(&b, "    ", s.comment+"; runs CMDSCRIPT with the timer name, as upssched did")
		fmt.Fprintf(&b, "    - name: %s\n", q(s.name))
		fmt.Fprintf(&b, "      on_battery_for: %s\n", dur(s.after))
		fmt.Fprintf(&b, "      run: %s\n", qlist(s.run))
	}
	if c.poweroffNote != "" {
		comment(&b, "    ", c.poweroffNote)
	} else {
		comment(&b, "    ", "upsmon's rule: power off when the powered supplies' values sum below min_supplies\n(a supply is critical on FSD, OB+LB, or lost on battery for dead_time)")
	}
	b.WriteString("    - name: poweroff\n")
	if c.poweroffWhen > 0 {
		fmt.Fprintf(&b, "      on_battery_for: %s\n", dur(c.poweroffWhen))
	}
	b.WriteString("      action: poweroff\n")
	return []byte(b.String())
}

// notifierName names the exec notifier after its script.
func notifierName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "notifycmd"
	}
	return b.String()
}
