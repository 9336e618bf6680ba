package test

import (
	"bufio"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// scripted replays a client's bytes on one connection. Each reply is read
// as the strictest of the clients reads it: a LIST ends only on a line
// exactly "END LIST <query as sent>" (go.nut, aionut), within 2 s (go.nut).
type scripted struct {
	t   *testing.T
	c   net.Conn
	rd  *bufio.Reader
	eol string
}

func newScripted(t *testing.T, addr, eol string) *scripted {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &scripted{t: t, c: c, rd: bufio.NewReader(c), eol: eol}
}

// send writes one request and returns the reply lines (without LF).
func (s *scripted) send(req string) []string {
	s.t.Helper()
	if _, err := s.c.Write([]byte(req + s.eol)); err != nil {
		s.t.Fatalf("%q: %v", req, err)
	}
	_ = s.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var lines []string
	end := ""
	for {
		l, err := s.rd.ReadString('\n')
		if err != nil {
			s.t.Fatalf("%q: reply %q: %v", req, lines, err)
		}
		if strings.ContainsAny(strings.TrimSuffix(l, "\n"), "\r\n") {
			s.t.Errorf("%q: reply line %q has CR or LF inside", req, l)
		}
		for _, b := range []byte(strings.TrimSuffix(l, "\n")) {
			if b < 0x20 || b > 0x7e {
				s.t.Errorf("%q: reply line %q has a non-ASCII byte", req, l)
				break
			}
		}
		if len(l) > 511 {
			s.t.Errorf("%q: reply line of %d bytes", req, len(l))
		}
		l = strings.TrimSuffix(l, "\n")
		lines = append(lines, l)
		if len(lines) == 1 && strings.HasPrefix(req, "LIST ") && !strings.HasPrefix(l, "ERR ") {
			if l != "BEGIN "+req {
				s.t.Fatalf("%q: first line %q, want %q", req, l, "BEGIN "+req)
			}
			end = "END " + req
			continue
		}
		if end == "" || l == end {
			return lines
		}
	}
}

// allowedErr are the codes a client may see; WinNUT throws on others.
var allowedErr = regexp.MustCompile(`^ERR (ACCESS-DENIED|UNKNOWN-UPS|VAR-NOT-SUPPORTED|CMD-NOT-SUPPORTED|INVALID-ARGUMENT|INSTCMD-FAILED|SET-FAILED|READONLY|TOO-LONG|FEATURE-NOT-SUPPORTED|FEATURE-NOT-CONFIGURED|ALREADY-SSL-MODE|DRIVER-NOT-CONNECTED|DATA-STALE|ALREADY-LOGGED-IN|ALREADY-SET-PASSWORD|ALREADY-SET-USERNAME|USERNAME-REQUIRED|PASSWORD-REQUIRED|UNKNOWN-COMMAND|INVALID-VALUE)$`)

func (s *scripted) expect(req string, want ...string) {
	s.t.Helper()
	got := s.send(req)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		s.t.Errorf("%q:\n got %q\nwant %q", req, got, want)
	}
}

// varsOf parses a LIST VAR reply the way aionut and PeaNUT do (which do
// not decode escapes: values here have none).
func varsOf(lines []string, ups string) map[string]string {
	out := map[string]string{}
	for _, l := range lines[1 : len(lines)-1] {
		rest := strings.TrimPrefix(l, "VAR "+ups+" ")
		name, val, _ := strings.Cut(rest, " ")
		out[name] = strings.Trim(val, `"`)
	}
	return out
}

// What Synology DSM, QNAP, WinNUT, Home Assistant (aionut), PeaNUT and
// nut_exporter (go.nut) send, byte for byte, against upsbridge serving a
// UPS read from real upsd, each checked against what that client needs.
func TestNUTServerClientSessions(t *testing.T) {
	s := startServed(t, servedDev, "")

	t.Run("Synology DSM", func(t *testing.T) {
		// DSM runs a pre-2.8 upsmon as secondary: UPS "ups", monuser/secret.
		c := newScripted(t, s.addr, "\n")
		if r := c.send("STARTTLS"); !strings.HasPrefix(r[0], "ERR ") {
			t.Errorf("STARTTLS: %q", r)
		}
		c.expect("USERNAME monuser", "OK")
		c.expect("PASSWORD secret", "OK")
		c.expect("LOGIN ups", "OK")
		c.expect("GET VAR ups ups.status", `VAR ups ups.status "OL"`)
		// The DSM UI needs ups.mfr and ups.model, or calls the server unavailable.
		c.expect("GET VAR ups ups.mfr", `VAR ups ups.mfr "Example"`)
		c.expect("GET VAR ups ups.model", `VAR ups ups.model "Sim 1500"`)
		c.expect("GET VAR ups battery.charge", `VAR ups battery.charge "100"`)
	})
	t.Run("QNAP", func(t *testing.T) {
		c := newScripted(t, s.addr, "\n")
		c.send("STARTTLS")
		c.expect("USERNAME admin", "OK")
		c.expect("PASSWORD 123456", "OK")
		c.expect("LOGIN qnapups", "OK")
		c.expect("GET VAR qnapups ups.status", `VAR qnapups ups.status "OL"`)
		c.expect("GET VAR qnapups battery.runtime", `VAR qnapups battery.runtime "3000"`)
		// Each alias has its own NUMLOGINS.
		c.expect("GET NUMLOGINS qnapups", "NUMLOGINS qnapups 1")
	})
	t.Run("WinNUT", func(t *testing.T) {
		// Two connections, one stays silent; lines end CR CR LF.
		silent := newScripted(t, s.addr, "\r\r\n")
		_ = silent
		c := newScripted(t, s.addr, "\r\r\n")
		c.expect("USERNAME monuser", "OK")
		c.expect("PASSWORD secret", "OK")
		// LOGIN without a UPS name: upsd answers INVALID-ARGUMENT, WinNUT
		// logs it and goes on.
		c.expect("LOGIN", "ERR INVALID-ARGUMENT")
		ver := c.send("VER")[0]
		if f := strings.Fields(ver); len(f) < 5 || f[0] != "Network" || f[4] == "" {
			t.Errorf("VER %q: WinNUT takes word 4 of a reply starting with Network", ver)
		}
		c.expect("NETVER", "1.3")
		for _, v := range []string{"ups.status", "battery.charge", "battery.runtime", "ups.load", "input.voltage", "output.voltage",
			"ups.mfr", "ups.model", "ups.serial", "ups.firmware", "input.frequency", "output.frequency", "battery.voltage",
			"battery.voltage.nominal", "input.voltage.nominal", "ups.realpower.nominal", "ups.power.nominal",
			"battery.charge.low", "battery.runtime.low", "ups.delay.shutdown"} {
			r := c.send("GET VAR ups " + v)[0]
			if !strings.HasPrefix(r, "VAR ups "+v+` "`) && r != "ERR VAR-NOT-SUPPORTED" {
				t.Errorf("GET VAR %s: %q (WinNUT needs a value or VAR-NOT-SUPPORTED)", v, r)
			}
		}
		// The variables window: LIST VAR, then GET DESC per variable; an
		// error aborts the list.
		lv := c.send("LIST VAR ups")
		for name := range varsOf(lv, "ups") {
			if r := c.send("GET DESC ups " + name)[0]; !strings.HasPrefix(r, "DESC ups "+name+` "`) {
				t.Errorf("GET DESC %s: %q", name, r)
			}
		}
	})
	t.Run("Home Assistant aionut", func(t *testing.T) {
		c := newScripted(t, s.addr, "\n")
		c.expect("USERNAME admin", "OK")
		c.expect("PASSWORD 123456", "OK")
		lu := c.send("LIST UPS")
		if lu[1] != `UPS ups "Rack UPS"` {
			t.Errorf("LIST UPS: %q (HA takes the first)", lu)
		}
		vars := varsOf(c.send("LIST VAR ups"), "ups")
		for _, k := range []string{"ups.status", "ups.mfr", "ups.model", "ups.serial", "device.mfr", "battery.charge", "battery.runtime"} {
			if vars[k] == "" {
				t.Errorf("LIST VAR lacks %s: %v", k, vars)
			}
		}
		if vars["ups.serial"] != "0003" {
			t.Errorf("ups.serial %q: values are served as the source reported them", vars["ups.serial"])
		}
		c.expect("LIST CMD ups", "BEGIN LIST CMD ups", "CMD ups load.off", "END LIST CMD ups")
		c.expect("INSTCMD ups load.off", "OK")
		// A second LIST VAR on the kept connection.
		if v := varsOf(c.send("LIST VAR ups"), "ups"); v["ups.status"] != "OL" {
			t.Errorf("second LIST VAR: %v", v)
		}
	})
	t.Run("PeaNUT", func(t *testing.T) {
		c := newScripted(t, s.addr, "\n")
		if lu := c.send("LIST UPS"); len(lu) != 4 {
			t.Errorf("LIST UPS: %q", lu)
		}
		vars := varsOf(c.send("LIST VAR ups"), "ups")
		for name := range vars {
			c.send("GET DESC ups " + name)
			// Any ERR to GET TYPE marks the device unreachable.
			if r := c.send("GET TYPE ups " + name)[0]; !strings.HasPrefix(r, "TYPE ups "+name+" ") {
				t.Errorf("GET TYPE %s: %q", name, r)
			}
		}
		c.send("LIST RW ups")
		c.send("LIST CMD ups")
		c.expect("GET UPSDESC ups", `UPSDESC ups "Rack UPS"`)
		c.send("LIST CLIENT ups")
		c.send("VER")
		c.expect("NETVER", "1.3")
		// Writes on a fresh socket: every reply exactly "OK".
		w := newScripted(t, s.addr, "\n")
		w.expect("USERNAME admin", "OK")
		w.expect("PASSWORD 123456", "OK")
		w.expect("LOGIN ups", "OK")
		w.expect("SET VAR ups ups.id peanut", "OK")
		w.expect("INSTCMD ups load.off", "OK")
		w.expect("LOGOUT", "OK Goodbye")
		s.upsd.WaitVar("dummy", "ups.id", "peanut", 10*time.Second)
	})
	t.Run("nut_exporter go.nut", func(t *testing.T) {
		c := newScripted(t, s.addr, "\n")
		c.send("VER")
		c.expect("NETVER", "1.3")
		c.expect("USERNAME monuser", "OK")
		c.expect("PASSWORD secret", "OK")
		lu := c.send("LIST UPS")
		for _, l := range lu[1 : len(lu)-1] {
			name := strings.Fields(l)[1]
			c.send("LIST CLIENT " + name)
			cmds := c.send("LIST CMD " + name)
			for _, l := range cmds[1 : len(cmds)-1] {
				cmd := strings.TrimPrefix(l, "CMD "+name+" ")
				if r := c.send("GET CMDDESC " + name + " " + cmd)[0]; !strings.HasPrefix(r, "CMDDESC "+name+" "+cmd+" ") {
					t.Errorf("GET CMDDESC: %q", r)
				}
			}
			c.send("GET UPSDESC " + name)
			// Any ERR aborts the scrape.
			if r := c.send("GET NUMLOGINS " + name)[0]; !strings.HasPrefix(r, "NUMLOGINS "+name+" ") {
				t.Errorf("GET NUMLOGINS: %q", r)
			}
			for v := range varsOf(c.send("LIST VAR "+name), name) {
				for _, q := range []string{"DESC", "TYPE"} {
					if r := c.send("GET " + q + " " + name + " " + v)[0]; !strings.HasPrefix(r, q+" "+name+" "+v+" ") {
						t.Errorf("GET %s %s: %q", q, v, r)
					}
				}
			}
		}
		c.expect("LOGOUT", "OK Goodbye")
	})
	t.Run("only upsd's ERR codes", func(t *testing.T) {
		c := newScripted(t, s.addr, "\n")
		for _, req := range []string{"GET VAR ups nope", "GET VAR nope x", "FOO", "", "LOGIN ups", "LIST", "GET TRACKING 1",
			"STARTTLS", "SET TRACKING ON", "USERNAME a b", "INSTCMD ups", "LIST ENUM ups nope", "X \"#\""} {
			r := c.send(req)[0]
			if strings.HasPrefix(r, "ERR") && !allowedErr.MatchString(r) {
				t.Errorf("%q: %q is not a code upsd sends", req, r)
			}
		}
	})
}
