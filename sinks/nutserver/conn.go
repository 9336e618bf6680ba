package nutserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/nutproto"
)

// upsdVersion is the upsd release whose behaviour the server reproduces
// (VER, HELP, server.version).
const upsdVersion = "2.8.0"

const helpText = "Commands: HELP VER GET LIST SET INSTCMD LOGIN LOGOUT USERNAME PASSWORD STARTTLS"

// conn is one client connection, served by one goroutine.
type conn struct {
	s   *Server
	raw net.Conn // the accepted socket: what Serve closes on shutdown
	nc  net.Conn // raw, or the TLS connection over it after STARTTLS
	ip  string

	p     nutproto.Parser
	words [][]byte
	args  []string
	out   []byte

	username, password string
	userSet, passSet   bool
	tracking, tls      bool
	// login is the slot this connection LOGINed to; read by other
	// goroutines (NUMLOGINS, Logins) under s.mu.
	login     atomic.Pointer[slot]
	loginName atomic.Pointer[string]
}

func (c *conn) loginSlot() *slot { return c.login.Load() }

func (c *conn) loginUser() string {
	if p := c.loginName.Load(); p != nil {
		return *p
	}
	return ""
}

// action says what the connection does after a reply.
type action int

const (
	actNone action = iota
	actClose
	actStartTLS
)

// readBuf is small: an idle connection should cost little memory, and
// requests are short lines.
const readBuf = 512

// maxOut flushes replies gathered from pipelined requests.
const maxOut = 64 << 10

func (c *conn) serve() {
	defer c.nc.Close()
	var buf [readBuf]byte
	idle := c.s.opts.IdleTimeout
	_ = c.nc.SetReadDeadline(time.Now().Add(idle))
	for {
		n, err := c.nc.Read(buf[:])
		boundary := false
		for off := 0; off < n; {
			k, line := c.p.Feed(buf[off:n])
			off += k
			boundary = line
			if !line {
				continue
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(idle))
			switch c.request() {
			case actClose:
				c.flush()
				return
			case actStartTLS:
				if !c.flush() || !c.startTLS() {
					return
				}
				off = n // plaintext sent after STARTTLS is not TLS: dropped
			}
			if len(c.out) >= maxOut && !c.flush() {
				return
			}
		}
		if !c.flush() {
			return
		}
		if err != nil {
			return
		}
		if boundary {
			// Between lines: let go of a parser buffer a long line grew.
			c.p.Reset()
		}
	}
}

// flush writes the gathered replies in one write.
func (c *conn) flush() bool {
	if len(c.out) == 0 {
		return true
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	_, err := c.nc.Write(c.out)
	if cap(c.out) > 16<<10 {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	return err == nil
}

func (c *conn) startTLS() bool {
	tc := tls.Server(c.nc, c.s.opts.TLS)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.s.log.Debug("NUT server: TLS handshake failed", "remote", c.ip, "err", err)
		return false
	}
	_ = tc.SetDeadline(time.Time{})
	_ = tc.SetReadDeadline(time.Now().Add(c.s.opts.IdleTimeout))
	c.nc = tc
	c.tls = true
	c.p.Reset()
	return true
}

// reply helpers append to c.out.
func (c *conn) line(parts ...string) {
	for i, p := range parts {
		if i > 0 {
			c.out = append(c.out, ' ')
		}
		c.out = append(c.out, p...)
	}
	c.out = append(c.out, '\n')
}

func (c *conn) err(code string) { c.out = nutproto.AppendErr(c.out, code) }

// request answers one parsed line.
func (c *conn) request() action {
	c.s.stats.requests.Inc()
	if c.p.Err() != nil {
		c.err(nutproto.ErrInvalidArgument)
		return actNone
	}
	c.words = c.p.Words(c.words)
	c.args = c.args[:0]
	for _, w := range c.words {
		c.args = append(c.args, string(w))
	}
	if len(c.args) == 0 {
		c.err(nutproto.ErrUnknownCommand)
		return actNone
	}
	cmd, a := strings.ToUpper(c.args[0]), c.args[1:]
	switch cmd {
	case "LOGIN", "PRIMARY", "MASTER", "FSD", "SET", "INSTCMD":
		// Credentials are needed before anything else is looked at.
		if !c.userSet {
			c.err(nutproto.ErrUsernameRequired)
			return actNone
		}
		if !c.passSet {
			c.err(nutproto.ErrPasswordRequired)
			return actNone
		}
	}
	switch cmd {
	case "VER":
		if len(a) != 0 {
			c.err(nutproto.ErrInvalidArgument)
			break
		}
		c.line(c.s.serverInfo())
	case "NETVER", "PROTVER":
		if len(a) != 0 {
			c.err(nutproto.ErrInvalidArgument)
			break
		}
		c.line("1.3")
	case "HELP":
		if len(a) != 0 {
			c.err(nutproto.ErrInvalidArgument)
			break
		}
		c.line(helpText)
	case "STARTTLS":
		switch {
		case c.tls:
			c.err(nutproto.ErrAlreadySSLMode)
		case c.s.opts.TLS == nil:
			c.err(nutproto.ErrFeatureNotConfigured)
		default:
			c.line("OK STARTTLS")
			return actStartTLS
		}
	case "USERNAME":
		switch {
		case len(a) != 1:
			c.err(nutproto.ErrInvalidArgument)
		case c.userSet:
			c.err(nutproto.ErrAlreadySetUsername)
		default:
			c.username, c.userSet = a[0], true
			c.line("OK")
		}
	case "PASSWORD":
		switch {
		case len(a) != 1:
			c.err(nutproto.ErrInvalidArgument)
		case c.passSet:
			c.err(nutproto.ErrAlreadySetPassword)
		default:
			c.password, c.passSet = a[0], true
			c.line("OK")
		}
	case "LOGOUT":
		if len(a) != 0 {
			c.err(nutproto.ErrInvalidArgument)
			break
		}
		c.line("OK Goodbye")
		return actClose
	case "LOGIN":
		c.cmdLogin(a)
	case "PRIMARY", "MASTER":
		c.cmdPrimary(cmd, a)
	case "FSD":
		c.cmdFSD(a)
	case "GET":
		c.cmdGet(a)
	case "LIST":
		c.cmdList(a)
	case "SET":
		c.cmdSet(a)
	case "INSTCMD":
		c.cmdInstCmd(a)
	default:
		c.err(nutproto.ErrUnknownCommand)
	}
	return actNone
}

func (s *Server) serverInfo() string {
	v := "Network UPS Tools upsd " + upsdVersion + " - http://www.networkupstools.org/"
	if s.opts.Version != "" {
		v += " (upsbridge " + s.opts.Version + ")"
	}
	return v
}

// authorize checks the connection's credentials and that the account has
// right (or instant command cmd when right is ""). Failed credentials are
// counted per address, logged without the password, and rate limited.
func (c *conn) authorize(op, ups, right, cmd string) bool {
	now := time.Now()
	ok, logNow, refused := c.s.lim.allow(c.ip, now)
	if !ok {
		c.s.stats.authFailures.Inc()
		if logNow {
			c.s.log.Warn("NUT server: too many failed logins from this address; credentials refused unchecked",
				"remote", c.ip, "user", c.username, "refused", refused)
		}
		return false
	}
	u := c.s.checkPassword(c.username, c.password)
	if u == nil {
		c.s.lim.fail(c.ip, now)
		c.s.stats.authFailures.Inc()
		c.s.log.Warn("NUT server: authentication failed", "remote", c.ip, "user", c.username, "command", op, "nut_ups", ups)
		return false
	}
	if right != "" {
		if !u.rights[right] {
			c.s.log.Info("NUT server: access denied", "remote", c.ip, "user", c.username, "command", op, "nut_ups", ups, "missing_right", right)
			return false
		}
		return true
	}
	if !u.allCmds && !u.instcmds[strings.ToLower(cmd)] {
		c.s.log.Info("NUT server: access denied", "remote", c.ip, "user", c.username, "command", op, "nut_ups", ups, "instcmd", cmd)
		return false
	}
	return true
}

// granted finds the UPS a command names and checks the user's right to it,
// in upsd's order (UNKNOWN-UPS before ACCESS-DENIED), answering the error
// and returning nil when either fails.
func (c *conn) granted(cmd, name, right string) *slot {
	sl := c.s.lookup(name)
	if sl == nil {
		c.err(nutproto.ErrUnknownUPS)
		return nil
	}
	if !c.authorize(cmd, name, right, "") {
		c.err(nutproto.ErrAccessDenied)
		return nil
	}
	return sl
}

func (c *conn) cmdLogin(a []string) {
	if len(a) != 1 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	if c.login.Load() != nil {
		c.err(nutproto.ErrAlreadyLoggedIn)
		return
	}
	sl := c.granted("LOGIN", a[0], rightLogin)
	if sl == nil {
		return
	}
	name := c.username
	c.s.mu.Lock()
	c.loginName.Store(&name)
	c.login.Store(sl)
	c.s.mu.Unlock()
	c.s.log.Info("NUT client logged in", "remote", c.ip, "user", c.username, "nut_ups", sl.name, "ups", sl.unit.id)
	c.line("OK")
}

func (c *conn) cmdPrimary(cmd string, a []string) {
	if len(a) != 1 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	if c.granted(cmd, a[0], rightMaster) == nil {
		return
	}
	c.line("OK " + cmd + "-GRANTED")
}

func (c *conn) cmdFSD(a []string) {
	if len(a) != 1 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	sl := c.granted("FSD", a[0], rightFSD)
	if sl == nil {
		return
	}
	un := sl.unit
	un.localFSD.Store(true)
	c.s.log.Warn("NUT client set forced shutdown", "remote", c.ip, "user", c.username, "nut_ups", sl.name, "ups", un.id)
	// The status served here shows FSD at once (localFSD). bridge.ForceFSD
	// latches it for MQTT, agents and notifiers, and passes it upstream
	// (a NUT source as primary), which takes a round trip that must not
	// hold this client: upsd too answers before anyone acts on it.
	s := c.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.cmdCtx, s.opts.CommandTimeout)
		defer cancel()
		if err := s.opts.Bridge.ForceFSD(ctx, un.id); err != nil {
			s.log.Warn("NUT server: forced shutdown not passed on in full", "ups", un.id, "err", err)
		}
	}()
	c.line("OK FSD-SET")
}

// gate finds the UPS and checks its data is fresh, answering the error if
// not (upsd's ups_available).
func (c *conn) gate(name string) (*slot, *view) {
	sl := c.s.lookup(name)
	if sl == nil {
		c.err(nutproto.ErrUnknownUPS)
		return nil, nil
	}
	v := sl.unit.view.Load()
	switch {
	case v == nil || v.st.Gone:
		c.err(nutproto.ErrDriverNotConnected)
		return nil, nil
	case !v.st.Comm:
		c.err(nutproto.ErrDataStale)
		return nil, nil
	}
	return sl, v
}

func (c *conn) quoted(s string) { c.out = nutproto.AppendQuoted(c.out, s) }

func (c *conn) cmdGet(a []string) {
	if len(a) < 1 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	sub := strings.ToUpper(a[0])
	if sub == "TRACKING" {
		c.getTracking(a[1:])
		return
	}
	if len(a) < 2 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	ups := a[1]
	switch sub {
	case "NUMLOGINS":
		sl, _ := c.gate(ups)
		if sl == nil {
			return
		}
		n, _ := c.s.numLogins(sl)
		c.line("NUMLOGINS", ups, strconv.Itoa(n))
		return
	case "UPSDESC":
		sl := c.s.lookup(ups)
		if sl == nil {
			c.err(nutproto.ErrUnknownUPS)
			return
		}
		d := sl.desc
		if d == "" {
			d = "Unavailable"
		}
		c.out = append(c.out, "UPSDESC "+ups+" "...)
		c.quoted(d)
		c.out = append(c.out, '\n')
		return
	}
	if len(a) < 3 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	name := a[2]
	switch sub {
	case "VAR":
		if strings.HasPrefix(strings.ToLower(name), "server.") {
			switch strings.ToLower(name) {
			case "server.info":
				c.out = append(c.out, "VAR "+ups+" "+name+" "...)
				c.quoted(c.s.serverInfo())
				c.out = append(c.out, '\n')
			case "server.version":
				c.out = append(c.out, "VAR "+ups+" "+name+" "...)
				c.quoted(upsdVersion)
				c.out = append(c.out, '\n')
			default:
				c.err(nutproto.ErrVarNotSupported)
			}
			return
		}
		sl, v := c.gate(ups)
		if sl == nil {
			return
		}
		k, ok := v.name(name)
		if !ok {
			c.err(nutproto.ErrVarNotSupported)
			return
		}
		c.out = append(c.out, "VAR "+ups+" "+name+" "...)
		c.quoted(v.value(k, sl.unit.localFSD.Load()))
		c.out = append(c.out, '\n')
	case "TYPE":
		_, v := c.gate(ups)
		if v == nil {
			return
		}
		k, ok := v.name(name)
		if !ok {
			c.err(nutproto.ErrVarNotSupported)
			return
		}
		c.line("TYPE", ups, name, typeWords(v.writable(k)))
	case "DESC":
		_, v := c.gate(ups)
		if v == nil {
			return
		}
		d := ""
		if w := v.writable(name); w != nil {
			d = w.Description
		}
		c.desc("DESC", ups, name, d)
	case "CMDDESC":
		_, v := c.gate(ups)
		if v == nil {
			return
		}
		d := ""
		if cm := v.cmdSet[strings.ToLower(name)]; cm != nil {
			d = cm.Description
		}
		c.desc("CMDDESC", ups, name, d)
	default:
		c.err(nutproto.ErrInvalidArgument)
	}
}

func (c *conn) desc(kind, ups, name, d string) {
	if d == "" {
		d = "Description unavailable"
	}
	c.out = append(c.out, kind+" "+ups+" "+name+" "...)
	c.quoted(d)
	c.out = append(c.out, '\n')
}

func (c *conn) getTracking(a []string) {
	if len(a) == 0 {
		if c.tracking {
			c.line("ON")
		} else {
			c.line("OFF")
		}
		return
	}
	if !c.tracking {
		c.err(nutproto.ErrFeatureNotConfigured)
		return
	}
	res, ok := c.s.track.get(a[0], time.Now())
	switch {
	case !ok:
		c.err(nutproto.TrackUnknown)
	case res == "PENDING" || res == "SUCCESS":
		c.line(res)
	default:
		c.err(res)
	}
}

func (c *conn) cmdList(a []string) {
	if len(a) < 1 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	sub := strings.ToUpper(a[0])
	if sub == "UPS" {
		c.line("BEGIN LIST UPS")
		for _, sl := range c.s.tab.Load().list {
			d := sl.desc
			if d == "" {
				d = "Description unavailable"
			}
			c.out = append(c.out, "UPS "+sl.name+" "...)
			c.quoted(d)
			c.out = append(c.out, '\n')
		}
		c.line("END LIST UPS")
		return
	}
	if len(a) < 2 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	ups := a[1]
	switch sub {
	case "VAR":
		sl, v := c.gate(ups)
		if sl == nil {
			return
		}
		fsd := sl.unit.localFSD.Load()
		c.line("BEGIN LIST VAR", ups)
		for _, k := range v.names {
			c.out = append(c.out, "VAR "+ups+" "+k+" "...)
			c.quoted(v.value(k, fsd))
			c.out = append(c.out, '\n')
		}
		c.line("END LIST VAR", ups)
		return
	case "RW":
		sl, v := c.gate(ups)
		if sl == nil {
			return
		}
		c.line("BEGIN LIST RW", ups)
		for _, k := range v.rwNames() {
			// upsd does not put FSD into LIST RW.
			c.out = append(c.out, "RW "+ups+" "+k+" "...)
			c.quoted(v.st.Vars[k])
			c.out = append(c.out, '\n')
		}
		c.line("END LIST RW", ups)
		return
	case "CMD":
		sl, v := c.gate(ups)
		if sl == nil {
			return
		}
		c.line("BEGIN LIST CMD", ups)
		for _, k := range v.cmds {
			c.line("CMD", ups, k)
		}
		c.line("END LIST CMD", ups)
		return
	case "CLIENT":
		sl := c.s.lookup(ups)
		if sl == nil {
			c.err(nutproto.ErrUnknownUPS)
			return
		}
		_, ips := c.s.numLogins(sl)
		c.line("BEGIN LIST CLIENT", ups)
		for _, ip := range ips {
			c.line("CLIENT", sl.name, ip)
		}
		c.line("END LIST CLIENT", ups)
		return
	}
	if len(a) < 3 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	name := a[2]
	switch sub {
	case "ENUM", "RANGE":
		sl, v := c.gate(ups)
		if sl == nil {
			return
		}
		k, ok := v.name(name)
		if !ok {
			c.err(nutproto.ErrVarNotSupported)
			return
		}
		w := v.writable(k)
		c.line("BEGIN LIST", sub, ups, name)
		if w != nil && sub == "ENUM" {
			for _, e := range w.Enum {
				c.out = append(c.out, "ENUM "+ups+" "+name+" "...)
				c.quoted(e)
				c.out = append(c.out, '\n')
			}
		}
		if w != nil && sub == "RANGE" {
			for _, r := range w.Ranges {
				c.out = append(c.out, "RANGE "+ups+" "+name+" "...)
				c.quoted(formatRange(r[0]))
				c.out = append(c.out, ' ')
				c.quoted(formatRange(r[1]))
				c.out = append(c.out, '\n')
			}
		}
		c.line("END LIST", sub, ups, name)
	default:
		c.err(nutproto.ErrInvalidArgument)
	}
}

func (c *conn) cmdSet(a []string) {
	if len(a) < 1 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	switch strings.ToUpper(a[0]) {
	case "VAR":
		if len(a) < 4 {
			c.err(nutproto.ErrInvalidArgument)
			return
		}
		c.setVar(a[1], a[2], a[3])
	case "TRACKING":
		if len(a) < 2 {
			c.err(nutproto.ErrInvalidArgument)
			return
		}
		switch strings.ToUpper(a[1]) {
		case "ON":
			c.tracking = true
		case "OFF":
			c.tracking = false
		default:
			c.err(nutproto.ErrInvalidArgument)
			return
		}
		c.line("OK")
	default:
		c.err(nutproto.ErrInvalidArgument)
	}
}

func (c *conn) setVar(ups, name, val string) {
	sl, v := c.gate(ups)
	if sl == nil {
		return
	}
	if !c.authorize("SET", ups, rightSet, "") {
		c.err(nutproto.ErrAccessDenied)
		return
	}
	k, ok := v.name(name)
	if !ok {
		c.err(nutproto.ErrVarNotSupported)
		return
	}
	w := v.writable(k)
	if w == nil {
		c.err(nutproto.ErrReadOnly)
		return
	}
	if code := checkValue(w, val); code != "" {
		c.err(code)
		return
	}
	id := sl.unit.id
	desc := "SET " + k + "=" + val
	c.dispatch(desc, nutproto.ErrSetFailed, func(ctx context.Context) (bridge.CommandResult, error) {
		return c.s.opts.Bridge.SetVar(ctx, id, k, val)
	}, ups)
}

func (c *conn) cmdInstCmd(a []string) {
	if len(a) < 2 {
		c.err(nutproto.ErrInvalidArgument)
		return
	}
	ups, cmd := a[0], a[1]
	param := ""
	if len(a) == 3 {
		param = a[2]
	}
	sl, v := c.gate(ups)
	if sl == nil {
		return
	}
	cm := v.cmdSet[strings.ToLower(cmd)]
	if cm == nil {
		c.err(nutproto.ErrCmdNotSupported)
		return
	}
	if !c.authorize("INSTCMD", ups, "", cmd) {
		c.err(nutproto.ErrAccessDenied)
		return
	}
	id, name := sl.unit.id, cm.Name
	c.dispatch("INSTCMD "+name, nutproto.ErrInstCmdFailed, func(ctx context.Context) (bridge.CommandResult, error) {
		return c.s.opts.Bridge.InstCmd(ctx, id, name, param)
	}, ups)
}

// dispatch hands a command to the bridge and answers at once, as upsd
// answers once the driver has the command: "OK", or "OK TRACKING <id>"
// whose GET TRACKING reports the source's real result when it comes.
func (c *conn) dispatch(what, failCode string, run func(context.Context) (bridge.CommandResult, error), ups string) {
	select {
	case c.s.cmdSem <- struct{}{}:
	default:
		c.s.log.Warn("NUT server: too many commands in flight", "command", what, "nut_ups", ups)
		c.err(failCode)
		return
	}
	var tid string
	if c.tracking {
		tid = c.s.track.add(time.Now())
	}
	c.s.log.Info("NUT client command", "remote", c.ip, "user", c.username, "nut_ups", ups, "command", what, "tracking", tid)
	s := c.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.cmdSem }()
		ctx, cancel := context.WithTimeout(s.cmdCtx, s.opts.CommandTimeout)
		defer cancel()
		res, err := run(ctx)
		result := trackResult(res, err)
		if err != nil {
			s.log.Warn("NUT client command failed", "nut_ups", ups, "command", what, "err", err)
		} else {
			s.log.Info("NUT client command done", "nut_ups", ups, "command", what, "result", res.Status, "detail", res.Detail)
		}
		if tid != "" {
			s.track.set(tid, result)
		}
	}()
	if tid != "" {
		c.line("OK TRACKING " + tid)
	} else {
		c.line("OK")
	}
}

// trackResult maps a source's answer to GET TRACKING's words.
func trackResult(res bridge.CommandResult, err error) string {
	if err != nil {
		if errors.Is(err, bridge.ErrCommandUnknown) {
			return nutproto.TrackUnknown
		}
		return nutproto.TrackFailed
	}
	switch strings.ToUpper(res.Status) {
	case "SUCCESS", "PENDING":
		return strings.ToUpper(res.Status)
	case "UNKNOWN", "INVALID-ARGUMENT", "FAILED":
		return strings.ToUpper(res.Status)
	default:
		return nutproto.TrackFailed
	}
}
