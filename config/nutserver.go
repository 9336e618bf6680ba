package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// NUTServer configures the NUT server (sinks/nutserver): every UPS the
// bridge reads, served over NUT's network protocol as upsd does. Keys are
// public API. With an empty Listen (the default) nothing listens.
type NUTServer struct {
	// Listen is host:port addresses; "0.0.0.0:3493" serves the LAN.
	Listen []string     `koanf:"listen"`
	TLS    NUTServerTLS `koanf:"tls"`
	// AllowFrom lists CIDRs (or single addresses) allowed to connect;
	// empty allows any.
	AllowFrom []string `koanf:"allow_from"`
	// Users are the accounts of upsd.users.
	Users []NUTUser `koanf:"users"`
	// UPS maps upsbridge UPS ids to the names clients use; empty serves
	// every UPS under its id. An id may appear under several names
	// (Synology's "ups" and QNAP's "qnapups").
	UPS []NUTServerUPS `koanf:"ups"`
}

// NUTServerTLS enables STARTTLS when both files are set.
type NUTServerTLS struct {
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// NUTUser is one account, as a section of upsd.users.
type NUTUser struct {
	Name string `koanf:"name"`
	// Password is password, password_file or password_env.
	Password SecretRef `koanf:"password"`
	// Upsmon is "secondary", "primary" or "" (the account may not LOGIN).
	Upsmon string `koanf:"upsmon"`
	// Actions are SET and FSD.
	Actions []string `koanf:"actions"`
	// InstCmds are instant command names, or ALL.
	InstCmds []string `koanf:"instcmds"`
}

// NUTServerUPS serves one UPS under a name.
type NUTServerUPS struct {
	ID          string `koanf:"id"`
	Name        string `koanf:"name"`
	Description string `koanf:"description"`
}

// Enabled reports whether the server listens anywhere.
func (n *NUTServer) Enabled() bool { return len(n.Listen) > 0 }

// AllowPrefixes returns AllowFrom parsed (Validate has checked it).
func (n *NUTServer) AllowPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range n.AllowFrom {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// nutNamePattern is what a NUT UPS name may hold: the tokenizer keeps
// printable ASCII; names with blanks, quotes or '#' could not be sent by
// stock clients.
func validNUTName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '"' || c == '\\' || c == '#' || c == '=' || c == '@' || c == ':' {
			return false
		}
	}
	return true
}

// Validate checks the section and resolves password files. Keys are
// relative to nut_server.
func (n *NUTServer) Validate() []FieldError {
	var errs []FieldError
	for i, l := range n.Listen {
		if _, _, err := net.SplitHostPort(l); err != nil {
			errs = append(errs, Errorf(fmt.Sprintf("listen[%d]", i), "must be host:port such as 127.0.0.1:3493, got %q", l))
		}
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		errs = append(errs, Errorf("tls", "cert_file and key_file go together"))
	}
	for key, f := range map[string]string{"tls.cert_file": n.TLS.CertFile, "tls.key_file": n.TLS.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, Errorf(key, "%v", err))
		}
	}
	for i, s := range n.AllowFrom {
		if _, err := parsePrefix(s); err != nil {
			errs = append(errs, Errorf(fmt.Sprintf("allow_from[%d]", i), "must be a CIDR such as 192.168.1.0/24 or an address, got %q", s))
		}
	}
	users := map[string]int{}
	for i := range n.Users {
		u := &n.Users[i]
		path := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			errs = append(errs, Errorf(path+".name", "is required"))
		case strings.ContainsAny(u.Name, " \t\"\\#="):
			errs = append(errs, Errorf(path+".name", "must not contain blanks, quotes, '\\', '#' or '=' (NUT clients send it unquoted), got %q", u.Name))
		default:
			if j, dup := users[u.Name]; dup {
				errs = append(errs, Errorf(path+".name", "%q is already the name of users[%d]", u.Name, j))
			}
			users[u.Name] = i
		}
		errs = append(errs, Prefix(path, u.Password.Check("password"))...)
		if !u.Password.IsSet() {
			errs = append(errs, Errorf(path+".password", "is required (or password_file, password_env)"))
		} else if strings.ContainsAny(u.Password.Reveal(), " \t\"\\#=") {
			errs = append(errs, Errorf(path+".password", "must not contain blanks, quotes, '\\', '#' or '=': NUT clients send it unquoted, so it could never match"))
		}
		switch u.Upsmon {
		case "", "secondary", "primary":
		default:
			errs = append(errs, Errorf(path+".upsmon", "must be secondary, primary or \"\", got %q", u.Upsmon))
		}
		for j, a := range u.Actions {
			switch strings.ToUpper(a) {
			case "SET", "FSD":
			default:
				errs = append(errs, Errorf(fmt.Sprintf("%s.actions[%d]", path, j), "must be SET or FSD, got %q", a))
			}
		}
		for j, c := range u.InstCmds {
			if c == "" || strings.ContainsAny(c, " \t\"\\#") {
				errs = append(errs, Errorf(fmt.Sprintf("%s.instcmds[%d]", path, j), "must be a command name or ALL, got %q", c))
			}
		}
	}
	names := map[string]int{}
	for i, u := range n.UPS {
		path := fmt.Sprintf("ups[%d]", i)
		if !IDPattern.MatchString(u.ID) {
			errs = append(errs, Errorf(path+".id", "must be a upsbridge UPS id matching %s, got %q", IDPattern, u.ID))
		}
		name := u.Name
		if name == "" {
			name = u.ID
		}
		if !validNUTName(name) {
			errs = append(errs, Errorf(path+".name", "must be printable ASCII without blanks, quotes, '\\', '#', '=', '@' or ':', got %q", u.Name))
			continue
		}
		if j, dup := names[strings.ToLower(name)]; dup {
			errs = append(errs, Errorf(path+".name", "%q is already served by ups[%d] (names are case-insensitive)", name, j))
		}
		names[strings.ToLower(name)] = i
	}
	return errs
}
