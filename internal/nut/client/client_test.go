package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func dial(t *testing.T, f *fakeServer, opts Options) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), f.addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSplitLine(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{`VAR ups ups.status "OL"`, []string{"VAR", "ups", "ups.status", "OL"}, false},
		{`VAR ups x "a\\b \"q\" \#x"`, []string{"VAR", "ups", "x", `a\b "q" #x`}, false},
		{`VAR ups x ""`, []string{"VAR", "ups", "x", ""}, false},
		{"a\tb\r", []string{"a", "b"}, false},
		{`  spaced   out  `, []string{"spaced", "out"}, false},
		{`a\ b c`, []string{"a b", "c"}, false},
		{`word # comment "x`, []string{"word"}, false},
		{`"# kept in quotes"`, []string{"# kept in quotes"}, false},
		{`"###"`, []string{"###"}, false},
		{`a"b"`, []string{"a", "b"}, false},
		{`"unterminated`, nil, true},
		{`"ends in backslash\`, nil, true},
		{`trailing\`, nil, true},
		{``, []string{}, false},
		{`"Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/"`, []string{"Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := splitLine([]byte(tt.in), nil)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if tt.err {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("err %T is not *SyntaxError", err)
				}
				return
			}
			gs := []string{}
			for _, w := range got {
				gs = append(gs, string(w))
			}
			if !reflect.DeepEqual(gs, tt.want) {
				t.Fatalf("got %q, want %q", gs, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ups", "ups"},
		{"battery.charge", "battery.charge"},
		{"", `""`},
		{"a b", `"a b"`},
		{`a\b "q" #x`, `"a\\b \"q\" \#x"`},
		{"###", `"\#\#\#"`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestListVar(t *testing.T) {
	f := newFake(t, script(map[string]string{
		"LIST VAR ups": "BEGIN LIST VAR UPS\n" +
			"VAR UPS battery.charge \"100\"\n" +
			"VAR UPS device.model \"a\\\\b \\\"q\\\" \\#x\"\n" +
			"VAR UPS ups.serial \"\"\n" +
			"VAR UPS ups.status \"OL CHRG\"\r\n" +
			"END LIST VAR UPS\n",
	}))
	c := dial(t, f, Options{})
	got, err := c.ListVar(ctxT(t), "ups")
	if err != nil {
		t.Fatal(err)
	}
	want := []Var{{"battery.charge", "100"}, {"device.model", `a\b "q" #x`}, {"ups.serial", ""}, {"ups.status", "OL CHRG"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

var allCodes = []struct {
	code string
	err  error
}{
	{"ACCESS-DENIED", ErrAccessDenied}, {"UNKNOWN-UPS", ErrUnknownUPS}, {"VAR-NOT-SUPPORTED", ErrVarNotSupported},
	{"CMD-NOT-SUPPORTED", ErrCmdNotSupported}, {"INVALID-ARGUMENT", ErrInvalidArgument}, {"INSTCMD-FAILED", ErrInstCmdFailed},
	{"SET-FAILED", ErrSetFailed}, {"READONLY", ErrReadOnly}, {"TOO-LONG", ErrTooLong},
	{"FEATURE-NOT-SUPPORTED", ErrFeatureNotSupported}, {"FEATURE-NOT-CONFIGURED", ErrFeatureNotConfigured},
	{"ALREADY-SSL-MODE", ErrAlreadySSLMode}, {"DRIVER-NOT-CONNECTED", ErrDriverNotConnected}, {"DATA-STALE", ErrDataStale},
	{"ALREADY-LOGGED-IN", ErrAlreadyLoggedIn}, {"INVALID-PASSWORD", ErrInvalidPassword}, {"ALREADY-SET-PASSWORD", ErrAlreadySetPassword},
	{"INVALID-USERNAME", ErrInvalidUsername}, {"ALREADY-SET-USERNAME", ErrAlreadySetUsername}, {"USERNAME-REQUIRED", ErrUsernameRequired},
	{"PASSWORD-REQUIRED", ErrPasswordRequired}, {"UNKNOWN-COMMAND", ErrUnknownCommand}, {"INVALID-VALUE", ErrInvalidValue},
	{"UNKNOWN", ErrUnknown}, {"FAILED", ErrFailed},
}

// Every ERR code is a typed error that errors.Is recognises, names the
// request, says what to fix, and leaves the connection usable.
func TestErrCodes(t *testing.T) {
	var code string
	var mu sync.Mutex
	f := newFake(t, func(line string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if line == "VER" {
			return "Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/\n", false
		}
		return "ERR " + code + "\n", false
	})
	c := dial(t, f, Options{})
	for _, tc := range allCodes {
		t.Run(tc.code, func(t *testing.T) {
			mu.Lock()
			code = tc.code
			mu.Unlock()
			_, err := c.GetVar(ctxT(t), "ups", "ups.status")
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			for _, other := range allCodes {
				if other.code != tc.code && errors.Is(err, other.err) {
					t.Fatalf("err %v also matches %s", err, other.code)
				}
			}
			msg := err.Error()
			if !strings.Contains(msg, "GET VAR ups ups.status") || !strings.Contains(msg, tc.code) || !strings.Contains(msg, ": ") {
				t.Fatalf("message %q lacks request, code or hint", msg)
			}
			if c.Err() != nil {
				t.Fatalf("connection broken after ERR: %v", c.Err())
			}
			if _, err := c.Ver(ctxT(t)); err != nil {
				t.Fatalf("VER after ERR: %v", err)
			}
		})
	}
	mu.Lock()
	code = "ACCESS-DENIED"
	mu.Unlock()
	_, err := c.GetVar(ctxT(t), "ups", "ups.status")
	if !strings.Contains(err.Error(), "Synology") || !strings.Contains(err.Error(), "upsd.users") {
		t.Errorf("ACCESS-DENIED hint: %v", err)
	}
	if !IsCommLost(fmt.Errorf("x: %w", &ProtocolError{Code: CodeDataStale})) || IsCommLost(ErrAccessDenied) {
		t.Error("IsCommLost")
	}
}

// Garbage and framing errors close the connection: the stream may be out
// of step.
func TestGarbage(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		call   func(ctx context.Context, c *Conn) error
		want   any
	}{
		{"garbage to GET", "HELLO THERE\n", func(ctx context.Context, c *Conn) error { _, err := c.GetVar(ctx, "ups", "x"); return err }, &UnexpectedError{}},
		{"wrong echo", "VAR other x \"1\"\n", func(ctx context.Context, c *Conn) error { _, err := c.GetVar(ctx, "ups", "x"); return err }, &UnexpectedError{}},
		{"unterminated quote", "VAR ups x \"1\n", func(ctx context.Context, c *Conn) error { _, err := c.GetVar(ctx, "ups", "x"); return err }, &UnexpectedError{}},
		{"bad BEGIN", "BEGIN LIST VAR other\n", func(ctx context.Context, c *Conn) error { _, err := c.ListVar(ctx, "ups"); return err }, &UnexpectedError{}},
		{"junk in list", "BEGIN LIST VAR ups\nRW ups x \"1\"\nEND LIST VAR ups\n", func(ctx context.Context, c *Conn) error { _, err := c.ListVar(ctx, "ups"); return err }, &UnexpectedError{}},
		{"bad quote in list", "BEGIN LIST VAR ups\nVAR ups x \"1\nEND LIST VAR ups\n", func(ctx context.Context, c *Conn) error { _, err := c.ListVar(ctx, "ups"); return err }, &SyntaxError{}},
		{"too few words", "BEGIN LIST VAR ups\nVAR ups x\nEND LIST VAR ups\n", func(ctx context.Context, c *Conn) error { _, err := c.ListVar(ctx, "ups"); return err }, &UnexpectedError{}},
		{"OK expected", "NOPE\n", func(ctx context.Context, c *Conn) error { return c.FSD(ctx, "ups") }, &UnexpectedError{}},
		{"EOF mid-list", "BEGIN LIST VAR ups\nVAR ups x \"1\"\n", func(ctx context.Context, c *Conn) error { _, err := c.ListVar(ctx, "ups"); return err }, io.EOF},
		{"EOF mid-line", "BEGIN LIST VAR ups\nVAR ups x \"1", func(ctx context.Context, c *Conn) error { _, err := c.ListVar(ctx, "ups"); return err }, io.ErrUnexpectedEOF},
		{"line too long", "VAR ups x \"" + strings.Repeat("y", 5000) + "\"\n", func(ctx context.Context, c *Conn) error { _, err := c.GetVar(ctx, "ups", "x"); return err }, ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := tt.want.(error)
			eof := errors.Is(w, io.EOF) || errors.Is(w, io.ErrUnexpectedEOF)
			f := newFake(t, func(string) (string, bool) { return tt.answer, eof })
			c := dial(t, f, Options{})
			err := tt.call(ctxT(t), c)
			if err == nil {
				t.Fatal("no error")
			}
			switch w := tt.want.(type) {
			case *UnexpectedError:
				var ue *UnexpectedError
				if !errors.As(err, &ue) {
					t.Fatalf("err = %v (%T), want *UnexpectedError", err, err)
				}
			case *SyntaxError:
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want *SyntaxError", err)
				}
			case error:
				if !errors.Is(err, w) {
					t.Fatalf("err = %v, want %v", err, w)
				}
			}
			if tt.name == "too few words" {
				// Read to END: the stream is in step, the connection stays.
				if c.Err() != nil {
					t.Fatalf("connection closed after %v", err)
				}
				return
			}
			if c.Err() == nil {
				t.Fatalf("connection still usable after %v", err)
			}
			if _, err := c.Ver(ctxT(t)); !errors.Is(err, ErrClosed) {
				t.Fatalf("request after failure: %v, want ErrClosed", err)
			}
		})
	}
}

// A server that stops answering mid-list: the request ends at the
// context's deadline, not later, and the connection is closed.
func TestStopsMidList(t *testing.T) {
	f := newFake(t, func(string) (string, bool) {
		return "BEGIN LIST VAR ups\nVAR ups a \"1\"\n", false
	})
	c := dial(t, f, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.ListVar(ctx, "ups")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v", el)
	}
	if c.Err() == nil {
		t.Fatal("connection not closed")
	}

	// Options.Timeout applies without a context deadline.
	c2 := dial(t, f, Options{Timeout: 100 * time.Millisecond})
	_, err = c2.ListVar(context.Background(), "ups")
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("err = %v", err)
	}

	// Cancelling the context interrupts a blocked read.
	c3 := dial(t, f, Options{})
	ctx3, cancel3 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel3)
	if _, err := c3.ListVar(ctx3, "ups"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
}

func TestCommands(t *testing.T) {
	f := newFake(t, script(map[string]string{
		"LIST UPS":                             "BEGIN LIST UPS\nUPS dummy \"Simulated UPS\"\nUPS other \"Description unavailable\"\nEND LIST UPS\n",
		"LIST RW dummy":                        "BEGIN LIST RW dummy\nRW dummy ups.delay.shutdown \"20\"\nEND LIST RW dummy\n",
		"LIST CMD dummy":                       "BEGIN LIST CMD dummy\nCMD dummy load.off\nCMD dummy beeper.mute\nEND LIST CMD dummy\n",
		"LIST ENUM dummy input.sens":           "BEGIN LIST ENUM dummy input.sens\nENUM dummy input.sens \"low\"\nENUM dummy input.sens \"high\"\nEND LIST ENUM dummy input.sens\n",
		"LIST RANGE dummy ups.delay":           "BEGIN LIST RANGE dummy ups.delay\nRANGE dummy ups.delay \"0\" \"100\"\nEND LIST RANGE dummy ups.delay\n",
		"LIST CLIENT dummy":                    "BEGIN LIST CLIENT dummy\nCLIENT dummy 127.0.0.1\nEND LIST CLIENT dummy\n",
		"LIST ENUM dummy none":                 "BEGIN LIST ENUM dummy none\nEND LIST ENUM dummy none\n",
		"GET NUMLOGINS dummy":                  "NUMLOGINS dummy 2\n",
		"GET UPSDESC dummy":                    "UPSDESC dummy \"Simulated UPS\"\n",
		"GET VAR dummy ups.status":             "VAR dummy ups.status \"OB LB\"\n",
		"GET TYPE dummy ups.id":                "TYPE dummy ups.id RW STRING:32\n",
		"GET TYPE dummy input.sens":            "TYPE dummy input.sens RW ENUM\n",
		"GET DESC dummy ups.id":                "DESC dummy ups.id \"UPS \"system\" identifier #1\"\n",
		"GET CMDDESC dummy load.off":           "CMDDESC dummy load.off \"Turn off the load immediately\"\n",
		"GET TRACKING":                         "ON\n",
		"GET TRACKING abc":                     "SUCCESS\n",
		"GET TRACKING def":                     "ERR UNKNOWN\n",
		"SET TRACKING ON":                      "OK\n",
		`SET VAR dummy ups.id "a \"b\" \#c\\"`: "OK TRACKING abc\n",
		`SET VAR dummy ups.delay "5"`:          "OK\n",
		`INSTCMD dummy load.off`:               "OK TRACKING def\n",
		`INSTCMD dummy test.panel "1 2"`:       "OK\n",
		"USERNAME admin":                       "OK\n",
		`PASSWORD "se cret"`:                   "OK\n",
		"LOGIN dummy":                          "OK\n",
		"PRIMARY dummy":                        "OK PRIMARY-GRANTED\n",
		"MASTER old":                           "OK MASTER-GRANTED\n",
		"FSD dummy":                            "OK FSD-SET\n",
		"VER":                                  "Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/\n",
		"NETVER":                               "1.3\n",
		"HELP":                                 "Commands: HELP VER GET LIST SET INSTCMD LOGIN LOGOUT USERNAME PASSWORD STARTTLS\n",
		"LOGOUT":                               "OK Goodbye\n",
	}))
	c := dial(t, f, Options{})
	ctx := ctxT(t)
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	ups, err := c.ListUPS(ctx)
	check("ListUPS", ups, []UPS{{"dummy", "Simulated UPS"}, {"other", "Description unavailable"}}, err)
	rw, err := c.ListRW(ctx, "dummy")
	check("ListRW", rw, []Var{{"ups.delay.shutdown", "20"}}, err)
	cmds, err := c.ListCmd(ctx, "dummy")
	check("ListCmd", cmds, []string{"load.off", "beeper.mute"}, err)
	enum, err := c.ListEnum(ctx, "dummy", "input.sens")
	check("ListEnum", enum, []string{"low", "high"}, err)
	none, err := c.ListEnum(ctx, "dummy", "none")
	check("ListEnum empty", none, []string(nil), err)
	rng, err := c.ListRange(ctx, "dummy", "ups.delay")
	check("ListRange", rng, []Range{{"0", "100"}}, err)
	cl, err := c.ListClient(ctx, "dummy")
	check("ListClient", cl, []string{"127.0.0.1"}, err)
	n, err := c.NumLogins(ctx, "dummy")
	check("NumLogins", n, 2, err)
	d, err := c.UPSDesc(ctx, "dummy")
	check("UPSDesc", d, "Simulated UPS", err)
	v, err := c.GetVar(ctx, "dummy", "ups.status")
	check("GetVar", v, "OB LB", err)
	ty, err := c.GetType(ctx, "dummy", "ups.id")
	check("GetType", ty, Type{RW: true, Kind: "STRING", Length: 32, Words: []string{"RW", "STRING:32"}}, err)
	ty, err = c.GetType(ctx, "dummy", "input.sens")
	check("GetType enum", ty.Enum && ty.RW, true, err)
	d, err = c.Desc(ctx, "dummy", "ups.id")
	check("Desc (unescaped quotes and #)", d, `UPS "system" identifier #1`, err)
	d, err = c.CmdDesc(ctx, "dummy", "load.off")
	check("CmdDesc", d, "Turn off the load immediately", err)
	check("Authenticate", nil, nil, c.Authenticate(ctx, "admin", "se cret"))
	check("SetTracking", nil, nil, c.SetTracking(ctx, true))
	on, err := c.Tracking(ctx)
	check("Tracking", on, true, err)
	id, err := c.SetVar(ctx, "dummy", "ups.id", `a "b" #c\`)
	check("SetVar quoting", id, "abc", err)
	id, err = c.SetVar(ctx, "dummy", "ups.delay", "5")
	check("SetVar without tracking", id, "", err)
	res, err := c.WaitTracking(ctx, "abc", time.Millisecond)
	check("WaitTracking", res, "SUCCESS", err)
	id, err = c.InstCmd(ctx, "dummy", "load.off", "")
	check("InstCmd", id, "def", err)
	_, err = c.GetTracking(ctx, "def")
	if !errors.Is(err, ErrUnknown) {
		t.Errorf("GetTracking def: %v, want ErrUnknown", err)
	}
	_, err = c.InstCmd(ctx, "dummy", "test.panel", "1 2")
	check("InstCmd with arg", nil, nil, err)
	check("Login", nil, nil, c.Login(ctx, "dummy"))
	check("Primary", nil, nil, c.Primary(ctx, "dummy"))
	check("Primary falls back to MASTER", nil, nil, c.Primary(ctx, "old"))
	check("FSD", nil, nil, c.FSD(ctx, "dummy"))
	s, err := c.Ver(ctx)
	check("Ver", s, "Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/", err)
	s, err = c.NetVer(ctx)
	check("NetVer", s, "1.3", err)
	_, err = c.Help(ctx)
	check("Help", nil, nil, err)
	if _, err := c.SetVar(ctx, "dummy", "ups.id", "caf\xc3\xa9"); !errors.Is(err, ErrBadArgument) {
		t.Errorf("non-ASCII value: %v", err)
	}
	if _, err := c.SetVar(ctx, "dummy", "ups.id", "a\nb"); !errors.Is(err, ErrBadArgument) {
		t.Errorf("newline in value: %v", err)
	}
	check("Logout", nil, nil, c.Logout(ctx))
	if _, err := c.Ver(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("after logout: %v", err)
	}
	for _, l := range f.received() {
		if strings.Contains(l, "se cret") && !strings.HasPrefix(l, "PASSWORD") {
			t.Errorf("password leaked into %q", l)
		}
	}
}

func TestPasswordNotInErrors(t *testing.T) {
	f := newFake(t, func(line string) (string, bool) { return "ERR INVALID-PASSWORD\n", false })
	c := dial(t, f, Options{})
	err := c.Authenticate(ctxT(t), "admin", "hunter2")
	if err == nil {
		t.Fatal("no error")
	}
	err = c.Password(ctxT(t), "hunter2")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	err = c.Password(ctxT(t), "hunter2\x01")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

// Requests from many goroutines are serialised: every answer matches its
// request.
func TestConcurrentRequests(t *testing.T) {
	f := newFake(t, func(line string) (string, bool) {
		var ups, name string
		if _, err := fmt.Sscanf(line, "GET VAR %s %s", &ups, &name); err != nil {
			return "ERR INVALID-ARGUMENT\n", false
		}
		return fmt.Sprintf("VAR %s %s %q\n", ups, name, name+"-value"), false
	})
	c := dial(t, f, Options{})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				name := fmt.Sprintf("v%d.%d", i, j)
				v, err := c.GetVar(context.Background(), "ups", name)
				if err != nil || v != name+"-value" {
					t.Errorf("GetVar %s = %q, %v", name, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A request waiting for the connection gives up with its context.
func TestWaitForConnHonoursContext(t *testing.T) {
	release := make(chan struct{})
	f := newFake(t, func(line string) (string, bool) {
		if line == "VER" {
			<-release
		}
		return "1.3\n", false
	})
	defer close(release)
	c := dial(t, f, Options{})
	go c.Ver(context.Background())
	time.Sleep(20 * time.Millisecond) // let VER take the connection
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.NetVer(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestPrimaryMasterFallback(t *testing.T) {
	tests := []struct {
		name    string
		table   map[string]string
		wantErr error
	}{
		{"primary", map[string]string{"PRIMARY u": "OK PRIMARY-GRANTED\n"}, nil},
		{"old server: plain OK from MASTER", map[string]string{"MASTER u": "OK\n"}, nil},
		{"access denied is final", map[string]string{"PRIMARY u": "ERR ACCESS-DENIED\n", "MASTER u": "OK\n"}, ErrAccessDenied},
		{"both unknown", map[string]string{}, ErrUnknownCommand},
		{"master denied", map[string]string{"MASTER u": "ERR ACCESS-DENIED\n"}, ErrAccessDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, newFake(t, script(tt.table)), Options{})
			err := c.Primary(ctxT(t), "u")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// selfSigned writes a CA-less self-signed certificate for 127.0.0.1 and
// returns the server config and the PEM path.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "upsd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, path
}

// tlsFake answers STARTTLS with OK and then serves VER over TLS.
func tlsFake(t *testing.T, cfg *tls.Config, supported bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				buf := make([]byte, 64)
				n, _ := nc.Read(buf)
				if string(buf[:n]) != "STARTTLS\n" {
					return
				}
				if !supported {
					nc.Write([]byte("ERR FEATURE-NOT-CONFIGURED\n"))
					_, _ = nc.Read(buf) // the client's next line, unanswered
					nc.Write([]byte("plain\n"))
					return
				}
				nc.Write([]byte("OK STARTTLS\n"))
				tc := tls.Server(nc, cfg)
				if err := tc.Handshake(); err != nil {
					return
				}
				n, _ = tc.Read(buf)
				if string(buf[:n]) == "VER\n" {
					tc.Write([]byte("tls\n"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestStartTLS(t *testing.T) {
	srvCfg, caFile := selfSigned(t)
	_, otherCA := selfSigned(t)
	tests := []struct {
		name      string
		supported bool
		opts      Options
		want      string // VER answer, or "" for a dial error
	}{
		{"require verified", true, Options{StartTLS: TLSRequire, CAFile: caFile}, "tls"},
		{"try verified", true, Options{StartTLS: TLSTry, CAFile: caFile}, "tls"},
		{"try unconfigured stays plain", false, Options{StartTLS: TLSTry, CAFile: caFile}, "plain"},
		{"require unconfigured fails", false, Options{StartTLS: TLSRequire, CAFile: caFile}, ""},
		{"wrong CA fails", true, Options{StartTLS: TLSRequire, CAFile: otherCA}, ""},
		{"try with wrong CA fails, no downgrade", true, Options{StartTLS: TLSTry, CAFile: otherCA}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tlsFake(t, srvCfg, tt.supported)
			c, err := Dial(ctxT(t), addr, tt.opts)
			if tt.want == "" {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := c.Ver(ctxT(t))
			if err != nil || got != tt.want {
				t.Fatalf("VER = %q, %v; want %q", got, err, tt.want)
			}
			if c.TLS() != (tt.want == "tls") {
				t.Fatalf("TLS() = %v", c.TLS())
			}
		})
	}
}

func TestNormalizeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"nas":            "nas:3493",
		"nas:1234":       "nas:1234",
		"192.168.1.2":    "192.168.1.2:3493",
		"::1":            "[::1]:3493",
		"[fe80::1]":      "[fe80::1]:3493",
		"[fe80::1]:3494": "[fe80::1]:3494",
	} {
		if got := NormalizeAddr(in); got != want {
			t.Errorf("NormalizeAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
