// Package upsd converts an existing upsd's upsd.users, ups.conf and
// (optionally) upsd.conf into upsbridge's nut_server section (`upsbridge
// import-upsd`), so that upsbridge can take over serving NUT clients with
// the same accounts and UPS names.
package upsd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/importer/upsmon"
)

// Note is a line that was not carried over, or carried over with a caveat.
type Note struct {
	Where  string
	Reason string
}

// Result is the converted section.
type Result struct {
	YAML  []byte
	Users int
	UPS   int
	Notes []Note
}

// Files are the parsed inputs; Users and UPS are required, Conf optional.
type Files struct {
	Users *upsmon.File
	UPS   *upsmon.File
	Conf  *upsmon.File
}

type userEntry struct {
	name, password, upsmon string
	actions, instcmds      []string
}

type upsEntry struct {
	name, desc, driver string
}

type converter struct {
	notes  []Note
	users  []*userEntry
	upss   []*upsEntry
	listen []string
	tls    string
}

func (c *converter) note(d upsmon.Directive, reason string) {
	c.notes = append(c.notes, Note{Where: d.Where(), Reason: reason})
}

// keyValue splits "key = value", "key=value" and "key value" forms.
func keyValue(d upsmon.Directive) (string, []string) {
	words := append([]string{d.Name}, d.Args...)
	key := strings.ToLower(words[0])
	rest := words[1:]
	if k, v, ok := strings.Cut(key, "="); ok {
		key = k
		rest = append([]string{v}, rest...)
	} else if len(rest) > 0 && strings.HasPrefix(rest[0], "=") {
		rest = append([]string{strings.TrimPrefix(rest[0], "=")}, rest[1:]...)
	}
	var out []string
	for _, r := range rest {
		if r != "" {
			out = append(out, r)
		}
	}
	return key, out
}

func section(d upsmon.Directive) (string, bool) {
	if len(d.Args) == 0 && strings.HasPrefix(d.Name, "[") && strings.HasSuffix(d.Name, "]") {
		// Name is upper-cased by the parser; the raw line keeps the case.
		raw := strings.TrimSpace(d.Raw)
		if i := strings.IndexByte(raw, '#'); i >= 0 {
			raw = strings.TrimSpace(raw[:i])
		}
		return strings.TrimSuffix(strings.TrimPrefix(raw, "["), "]"), true
	}
	return "", false
}

// Convert builds the nut_server section.
func Convert(f Files) (*Result, error) {
	if f.Users == nil || f.UPS == nil {
		return nil, fmt.Errorf("import-upsd: both upsd.users and ups.conf are needed")
	}
	c := &converter{}
	c.readUsers(f.Users)
	c.readUPS(f.UPS)
	if f.Conf != nil {
		c.readConf(f.Conf)
	}
	if len(c.upss) == 0 {
		return nil, fmt.Errorf("import-upsd: %s defines no UPS ([name] sections)", f.UPS.Name)
	}
	if len(c.listen) == 0 {
		c.listen = []string{"127.0.0.1:3493"} // upsd's default
	}
	return &Result{YAML: c.render(), Users: len(c.users), UPS: len(c.upss), Notes: c.notes}, nil
}

func (c *converter) readUsers(f *upsmon.File) {
	var cur *userEntry
	for _, d := range f.Directives {
		if name, ok := section(d); ok {
			cur = &userEntry{name: name}
			c.users = append(c.users, cur)
			continue
		}
		if cur == nil {
			c.note(d, "outside any [user] section: ignored")
			continue
		}
		key, args := keyValue(d)
		switch key {
		case "password":
			if len(args) != 1 {
				c.note(d, "password needs one value: ignored")
				continue
			}
			cur.password = args[0]
			if strings.ContainsAny(cur.password, " \t\"\\#=") {
				c.note(d, fmt.Sprintf("the password of %q contains a blank, quote, '\\', '#' or '=': NUT clients send it unquoted, so no client could log in with it; upsbridge refuses it, choose another", cur.name))
			}
		case "upsmon":
			if len(args) != 1 {
				c.note(d, "upsmon needs primary or secondary: ignored")
				continue
			}
			switch strings.ToLower(args[0]) {
			case "primary", "master":
				cur.upsmon = "primary"
			case "secondary", "slave":
				cur.upsmon = "secondary"
			default:
				c.note(d, fmt.Sprintf("upsmon %q is neither primary nor secondary: ignored", args[0]))
			}
		case "actions":
			for _, a := range args {
				switch strings.ToUpper(a) {
				case "SET", "FSD":
					cur.actions = appendUnique(cur.actions, strings.ToUpper(a))
				default:
					c.note(d, fmt.Sprintf("action %q is not carried over (upsbridge knows SET and FSD)", a))
				}
			}
		case "instcmds":
			for _, a := range args {
				if strings.EqualFold(a, "all") {
					a = "ALL"
				}
				cur.instcmds = appendUnique(cur.instcmds, a)
			}
		case "allowfrom":
			c.note(d, "allowfrom is ignored by upsd 2.8 as well; use nut_server.allow_from for addresses")
		default:
			c.note(d, fmt.Sprintf("%q is not a upsd.users setting: ignored", key))
		}
	}
	for _, u := range c.users {
		if u.password == "" {
			c.notes = append(c.notes, Note{Where: f.Name, Reason: fmt.Sprintf("user %q has no password: set one before loading the config", u.name)})
		}
	}
}

func appendUnique(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

func (c *converter) readUPS(f *upsmon.File) {
	var cur *upsEntry
	for _, d := range f.Directives {
		if name, ok := section(d); ok {
			cur = &upsEntry{name: name}
			c.upss = append(c.upss, cur)
			continue
		}
		if cur == nil {
			continue // global driver settings (maxretry, user, ...)
		}
		key, args := keyValue(d)
		switch key {
		case "desc":
			if len(args) > 0 {
				cur.desc = strings.Join(args, " ")
			}
		case "driver":
			if len(args) > 0 {
				cur.driver = args[0]
			}
		}
	}
}

func (c *converter) readConf(f *upsmon.File) {
	for _, d := range f.Directives {
		switch d.Name {
		case "LISTEN":
			if len(d.Args) < 1 || len(d.Args) > 2 {
				c.note(d, "LISTEN needs an address and an optional port: ignored")
				continue
			}
			port := "3493"
			if len(d.Args) == 2 {
				port = d.Args[1]
			}
			c.listen = appendUnique(c.listen, net.JoinHostPort(d.Args[0], port))
		case "CERTFILE":
			if len(d.Args) == 1 {
				// upsd's CERTFILE holds the certificate and the key; Go
				// reads both out of the same PEM file.
				c.tls = d.Args[0]
			}
		case "MAXAGE", "STATEPATH", "MAXCONN", "TRACKINGDELAY", "ALLOW_NO_DEVICE", "ALLOW_NOT_ALL_LISTENERS", "DISABLE_WEAK_SSL", "CERTPATH", "CERTIDENT", "CERTREQUEST":
			c.note(d, d.Name+" is not needed or not configurable in upsbridge: ignored")
		default:
			c.note(d, fmt.Sprintf("%q is not a upsd.conf setting upsbridge knows: ignored", d.Name))
		}
	}
}

func q(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func qlist(l []string) string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = q(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (c *converter) render() []byte {
	var b strings.Builder
	b.WriteString("# nut_server section converted by upsbridge import-upsd.\n")
	b.WriteString("# Each ups id must be the upsbridge id of the UPS (see `upsbridge run` logs or /api/state);\n")
	b.WriteString("# the name is what NUT clients already use, so they need no change.\n")
	if len(c.notes) > 0 {
		b.WriteString("# Not carried over, or with a caveat:\n")
		for _, n := range c.notes {
			fmt.Fprintf(&b, "#   %s: %s\n", n.Where, strings.ReplaceAll(n.Reason, "\n", " "))
		}
	}
	b.WriteString("nut_server:\n")
	fmt.Fprintf(&b, "  listen: %s\n", qlist(c.listen))
	if c.tls != "" {
		fmt.Fprintf(&b, "  tls: {cert_file: %s, key_file: %s}\n", q(c.tls), q(c.tls))
	}
	b.WriteString("  users:\n")
	if len(c.users) == 0 {
		b.WriteString("    []\n")
	}
	for _, u := range c.users {
		fmt.Fprintf(&b, "    - name: %s\n", q(u.name))
		fmt.Fprintf(&b, "      password: %s\n", q(u.password))
		fmt.Fprintf(&b, "      upsmon: %s\n", q(u.upsmon))
		if len(u.actions) > 0 {
			fmt.Fprintf(&b, "      actions: %s\n", qlist(u.actions))
		}
		if len(u.instcmds) > 0 {
			fmt.Fprintf(&b, "      instcmds: %s\n", qlist(u.instcmds))
		}
	}
	b.WriteString("  ups:\n")
	ids := map[string]string{}
	for _, u := range c.upss {
		id := config.SanitizeID(u.name)
		if other, dup := ids[id]; dup && other != u.name {
			id = id + "_" + fmt.Sprint(len(ids))
		}
		ids[id] = u.name
		fmt.Fprintf(&b, "    - id: %s\n", q(id))
		fmt.Fprintf(&b, "      name: %s\n", q(u.name))
		if u.desc != "" {
			fmt.Fprintf(&b, "      description: %s\n", q(u.desc))
		}
		if u.driver != "" {
			fmt.Fprintf(&b, "      # was driver %s in ups.conf: %s\n", u.driver, sourceHint(u.driver))
		}
	}
	return []byte(b.String())
}

func sourceHint(driver string) string {
	switch driver {
	case "usbhid-ups":
		return "read it with a usbhid source"
	case "dummy-ups":
		return "read it with a sim or nut source"
	}
	return "read it with a nut source from the upsd that runs this driver"
}
