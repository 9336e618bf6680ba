package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UPS is one entry of LIST UPS.
type UPS struct {
	Name        string
	Description string
}

// Var is a variable and its value.
type Var struct {
	Name  string
	Value string
}

// Range is one allowed range of a RANGE variable, as upsd prints it.
type Range struct {
	Min, Max string
}

// Type is the answer to GET TYPE.
type Type struct {
	RW    bool
	Enum  bool
	Range bool
	// Kind is "STRING", "NUMBER" or "" when upsd gave neither.
	Kind string
	// Length is n of STRING:n (0 when absent).
	Length int
	// Words are the raw type words.
	Words []string
}

// String returns the type in NUT's notation ("RW STRING:32").
func (t Type) String() string { return strings.Join(t.Words, " ") }

// Command is an instant command (LIST CMD).
type Command = string

// Tracking results of GET TRACKING <id>.
const (
	TrackingSuccess = "SUCCESS"
	TrackingPending = "PENDING"
)

// ListUPS returns the UPSes the server offers.
func (c *Conn) ListUPS(ctx context.Context) ([]UPS, error) {
	var out []UPS
	err := c.list(ctx, []string{"UPS"}, func(w [][]byte) error {
		if len(w) < 1 {
			return errors.New("UPS line without a name")
		}
		u := UPS{Name: string(w[0])}
		if len(w) > 1 {
			u.Description = string(w[1])
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// ListVar returns every variable of a UPS in one request.
func (c *Conn) ListVar(ctx context.Context, ups string) ([]Var, error) {
	var out []Var
	err := c.ListVarFunc(ctx, ups, func(name, value []byte) {
		out = append(out, Var{Name: string(name), Value: string(value)})
	})
	return out, err
}

// ListVarFunc is ListVar without building a slice: each is called with the
// name and unescaped value of every variable. The slices are valid only
// during the call, which lets a caller keep strings it already has.
func (c *Conn) ListVarFunc(ctx context.Context, ups string, each func(name, value []byte)) error {
	return c.list(ctx, []string{"VAR", ups}, func(w [][]byte) error {
		if len(w) != 2 {
			return fmt.Errorf("VAR line with %d words after the UPS name, want 2", len(w))
		}
		each(w[0], w[1])
		return nil
	})
}

// ListRW returns the writable variables of a UPS with their values.
func (c *Conn) ListRW(ctx context.Context, ups string) ([]Var, error) {
	var out []Var
	err := c.list(ctx, []string{"RW", ups}, func(w [][]byte) error {
		if len(w) != 2 {
			return fmt.Errorf("RW line with %d words after the UPS name, want 2", len(w))
		}
		out = append(out, Var{Name: string(w[0]), Value: string(w[1])})
		return nil
	})
	return out, err
}

// ListCmd returns the instant commands of a UPS.
func (c *Conn) ListCmd(ctx context.Context, ups string) ([]string, error) {
	return c.listSingles(ctx, "CMD line", "CMD", ups)
}

// ListEnum returns the allowed values of an ENUM variable.
func (c *Conn) ListEnum(ctx context.Context, ups, name string) ([]string, error) {
	return c.listSingles(ctx, "ENUM line", "ENUM", ups, name)
}

// ListRange returns the allowed ranges of a RANGE variable.
func (c *Conn) ListRange(ctx context.Context, ups, name string) ([]Range, error) {
	var out []Range
	err := c.list(ctx, []string{"RANGE", ups, name}, func(w [][]byte) error {
		if len(w) != 2 {
			return fmt.Errorf("RANGE line with %d values, want 2", len(w))
		}
		out = append(out, Range{Min: string(w[0]), Max: string(w[1])})
		return nil
	})
	return out, err
}

// ListClient returns the addresses of the clients logged in to a UPS.
func (c *Conn) ListClient(ctx context.Context, ups string) ([]string, error) {
	return c.listSingles(ctx, "CLIENT line", "CLIENT", ups)
}

// listSingles runs a LIST whose lines carry exactly one value each.
func (c *Conn) listSingles(ctx context.Context, what string, args ...string) ([]string, error) {
	var out []string
	err := c.list(ctx, args, func(w [][]byte) error {
		if len(w) != 1 {
			return fmt.Errorf("%s with %d values, want 1", what, len(w))
		}
		out = append(out, string(w[0]))
		return nil
	})
	return out, err
}

// GetVar returns one variable's value.
func (c *Conn) GetVar(ctx context.Context, ups, name string) (string, error) {
	w, err := c.get(ctx, "VAR", "VAR", ups, name)
	if err != nil {
		return "", err
	}
	if len(w) != 1 {
		return "", fmt.Errorf("GET VAR %s %s at %s: %w", ups, name, c.addr, &UnexpectedError{Request: "GET VAR", Line: strings.Join(w, " "), Want: "one value"})
	}
	return w[0], nil
}

// NumLogins returns how many clients are logged in to a UPS.
func (c *Conn) NumLogins(ctx context.Context, ups string) (int, error) {
	w, err := c.get(ctx, "NUMLOGINS", "NUMLOGINS", ups)
	if err != nil {
		return 0, err
	}
	if len(w) != 1 {
		return 0, fmt.Errorf("GET NUMLOGINS %s: want one number, got %q", ups, w)
	}
	n, err := strconv.Atoi(w[0])
	if err != nil {
		return 0, fmt.Errorf("GET NUMLOGINS %s: %w", ups, err)
	}
	return n, nil
}

// UPSDesc returns the description of a UPS (desc= in ups.conf).
func (c *Conn) UPSDesc(ctx context.Context, ups string) (string, error) {
	return c.getOne(ctx, "UPSDESC", ups)
}

// Desc returns the description of a variable. upsd does not escape these
// texts, so the whole quoted remainder of the line is taken.
func (c *Conn) Desc(ctx context.Context, ups, name string) (string, error) {
	return c.getDesc(ctx, "DESC", ups, name)
}

// CmdDesc returns the description of an instant command.
func (c *Conn) CmdDesc(ctx context.Context, ups, cmd string) (string, error) {
	return c.getDesc(ctx, "CMDDESC", ups, cmd)
}

func (c *Conn) getOne(ctx context.Context, what string, args ...string) (string, error) {
	w, err := c.get(ctx, what, append([]string{what}, args...)...)
	if err != nil {
		return "", err
	}
	if len(w) != 1 {
		return "", fmt.Errorf("GET %s %s: want one value, got %q", what, strings.Join(args, " "), w)
	}
	return w[0], nil
}

// getDesc reads a DESC/CMDDESC answer. These texts come unescaped from
// cmdvartab (NUT PR #3629), so a '"' or '#' inside would break word
// splitting: the value is taken raw between the first and last quote.
func (c *Conn) getDesc(ctx context.Context, what, ups, name string) (string, error) {
	label := "GET " + what + " " + ups + " " + name
	var out string
	err := c.exchange(ctx, label, func() error {
		if err := c.send("GET", what, ups, name); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if err := asErr(line, label); err != nil {
			return err
		}
		s := string(line)
		i, j := strings.IndexByte(s, '"'), strings.LastIndexByte(s, '"')
		head := strings.Fields(s[:max(i, 0)])
		if i < 0 || j <= i || len(head) != 3 || !strings.EqualFold(head[0], what) || !strings.EqualFold(head[1], ups) || !strings.EqualFold(head[2], name) {
			return &UnexpectedError{Request: label, Line: s, Want: what + " line"}
		}
		out = unescapeLoose(s[i+1 : j])
		return nil
	})
	if err != nil {
		return "", wrapReq(label, c.addr, err)
	}
	return out, nil
}

// unescapeLoose removes backslash escapes, keeping a lone trailing one.
func unescapeLoose(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// GetType returns a variable's type.
func (c *Conn) GetType(ctx context.Context, ups, name string) (Type, error) {
	w, err := c.get(ctx, "TYPE", "TYPE", ups, name)
	if err != nil {
		return Type{}, err
	}
	t := Type{Words: w}
	for _, word := range w {
		switch up := strings.ToUpper(word); {
		case up == "RW":
			t.RW = true
		case up == "ENUM":
			t.Enum = true
		case up == "RANGE":
			t.Range = true
		case up == "NUMBER":
			t.Kind = "NUMBER"
		case strings.HasPrefix(up, "STRING"):
			t.Kind = "STRING"
			if _, n, ok := strings.Cut(up, ":"); ok {
				t.Length, _ = strconv.Atoi(n)
			}
		}
	}
	return t, nil
}

// Tracking returns whether tracking is on for this connection.
func (c *Conn) Tracking(ctx context.Context) (bool, error) {
	line, err := c.simple(ctx, "GET TRACKING", "GET", "TRACKING")
	if err != nil {
		return false, err
	}
	return strings.EqualFold(strings.TrimSpace(line), "ON"), nil
}

// GetTracking returns the result of a tracked SET or INSTCMD: SUCCESS or
// PENDING, or an error: ErrUnknown (the driver did not handle it),
// ErrFailed, ErrInvalidArgument, and ErrFeatureNotConfigured when tracking
// is off.
func (c *Conn) GetTracking(ctx context.Context, id string) (string, error) {
	line, err := c.simple(ctx, "GET TRACKING "+id, "GET", "TRACKING", id)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// WaitTracking polls GET TRACKING every interval until the result is not
// PENDING or ctx ends. It returns the last result: SUCCESS, PENDING (ctx
// ended first) or the driver's ERR as an error.
func (c *Conn) WaitTracking(ctx context.Context, id string, interval time.Duration) (string, error) {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	t := time.NewTimer(0)
	defer t.Stop()
	res := TrackingPending
	for {
		select {
		case <-ctx.Done():
			return res, nil
		case <-t.C:
		}
		r, err := c.GetTracking(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return res, nil
			}
			return "", err
		}
		res = r
		if !strings.EqualFold(r, TrackingPending) {
			return r, nil
		}
		t.Reset(interval)
	}
}

// SetTracking turns result tracking of SET and INSTCMD on or off for this
// connection (needs USERNAME and PASSWORD first).
func (c *Conn) SetTracking(ctx context.Context, on bool) error {
	v := "OFF"
	if on {
		v = "ON"
	}
	_, err := c.expectOK(ctx, "SET TRACKING "+v, "SET", "TRACKING", v)
	return err
}

// SetVar sets a writable variable. It returns the tracking id when
// tracking is on (empty otherwise).
func (c *Conn) SetVar(ctx context.Context, ups, name, value string) (string, error) {
	label := "SET VAR " + ups + " " + name
	var line string
	err := c.exchange(ctx, label, func() error {
		if err := c.sendValue([]string{"SET", "VAR", ups, name}, value); err != nil {
			return err
		}
		l, err := c.readLine()
		if err != nil {
			return err
		}
		if err := asErr(l, label); err != nil {
			return err
		}
		line = string(l)
		return nil
	})
	if err != nil {
		return "", wrapReq(label, c.addr, err)
	}
	return c.okTracking(label, line)
}

// InstCmd runs an instant command, with arg when it is not empty. It
// returns the tracking id when tracking is on (empty otherwise). OK only
// means upsd handed the command to the driver; use tracking to learn more.
func (c *Conn) InstCmd(ctx context.Context, ups, cmd, arg string) (string, error) {
	label := "INSTCMD " + ups + " " + cmd
	words := []string{"INSTCMD", ups, cmd}
	var line string
	err := c.exchange(ctx, label, func() error {
		var err error
		if arg != "" {
			err = c.sendValue(words, arg)
		} else {
			err = c.send(words...)
		}
		if err != nil {
			return err
		}
		l, err := c.readLine()
		if err != nil {
			return err
		}
		if err := asErr(l, label); err != nil {
			return err
		}
		line = string(l)
		return nil
	})
	if err != nil {
		return "", wrapReq(label, c.addr, err)
	}
	return c.okTracking(label, line)
}

func (c *Conn) okTracking(label, line string) (string, error) {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "OK":
		return "", nil
	case len(f) == 3 && f[0] == "OK" && strings.EqualFold(f[1], "TRACKING"):
		return f[2], nil
	}
	return "", fmt.Errorf("%s at %s: %w", label, c.addr, &UnexpectedError{Request: label, Line: line, Want: "OK or OK TRACKING <id>"})
}

// Authenticate sends USERNAME and PASSWORD. upsd only checks them when a
// command needing them runs.
func (c *Conn) Authenticate(ctx context.Context, username, password string) error {
	if err := c.Username(ctx, username); err != nil {
		return err
	}
	return c.Password(ctx, password)
}

// Username sends USERNAME.
func (c *Conn) Username(ctx context.Context, username string) error {
	_, err := c.expectOK(ctx, "USERNAME", "USERNAME", username)
	return err
}

// Password sends PASSWORD. The password never appears in errors.
func (c *Conn) Password(ctx context.Context, password string) error {
	if err := checkArg(password); err != nil {
		return fmt.Errorf("PASSWORD: %w", errors.New("the password has characters upsd cannot receive (control characters or non-ASCII)"))
	}
	_, err := c.expectOK(ctx, "PASSWORD", "PASSWORD", password)
	return err
}

// Login logs in to a UPS as a client that upsd counts in NUMLOGINS (what
// upsmon secondaries do). One LOGIN per connection.
func (c *Conn) Login(ctx context.Context, ups string) error {
	_, err := c.expectOK(ctx, "LOGIN "+ups, "LOGIN", ups)
	return err
}

// Primary declares this client the UPS's primary: PRIMARY, and MASTER for
// servers older than 2.8 (any "OK ..." answer counts, such as
// "OK MASTER-GRANTED").
func (c *Conn) Primary(ctx context.Context, ups string) error {
	_, err := c.expectOK(ctx, "PRIMARY "+ups, "PRIMARY", ups)
	if err == nil || errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrUnknownUPS) || c.Err() != nil {
		return err
	}
	_, merr := c.expectOK(ctx, "MASTER "+ups, "MASTER", ups)
	if merr != nil && errors.Is(merr, ErrUnknownCommand) {
		return err
	}
	return merr
}

// FSD sets forced shutdown on a UPS (needs primary rights or actions=FSD).
func (c *Conn) FSD(ctx context.Context, ups string) error {
	_, err := c.expectOK(ctx, "FSD "+ups, "FSD", ups)
	return err
}

// Logout says goodbye and closes the connection.
func (c *Conn) Logout(ctx context.Context) error {
	line, err := c.simple(ctx, "LOGOUT", "LOGOUT")
	c.Close()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "OK") && !strings.HasPrefix(line, "Goodbye") {
		return fmt.Errorf("LOGOUT at %s: %w", c.addr, &UnexpectedError{Request: "LOGOUT", Line: line, Want: "OK Goodbye"})
	}
	return nil
}

// Ver returns upsd's free-text version line.
func (c *Conn) Ver(ctx context.Context) (string, error) {
	return c.simple(ctx, "VER", "VER")
}

// NetVer returns the protocol version ("1.3").
func (c *Conn) NetVer(ctx context.Context) (string, error) {
	return c.simple(ctx, "NETVER", "NETVER")
}

// Help returns upsd's list of commands.
func (c *Conn) Help(ctx context.Context) (string, error) {
	return c.simple(ctx, "HELP", "HELP")
}
