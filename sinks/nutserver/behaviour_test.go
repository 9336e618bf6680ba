package nutserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

func TestTracking(t *testing.T) {
	ts := startServer(t, nil)
	block := make(chan struct{})
	ts.fb.mu.Lock()
	ts.fb.block = block
	ts.fb.mu.Unlock()
	c := dial(t, ts.addr)
	c.do("USERNAME admin\n")
	c.do("PASSWORD adminpass\n")
	c.do("SET TRACKING ON\n")
	r := c.do("INSTCMD ups beeper.mute\n")
	id, ok := strings.CutPrefix(strings.TrimSpace(r), "OK TRACKING ")
	if !ok || len(id) != 36 || strings.ToUpper(id) != id {
		t.Fatalf("INSTCMD with tracking: %q", r)
	}
	if got := c.do("GET TRACKING " + id + "\n"); got != "PENDING\n" {
		t.Errorf("while running: %q", got)
	}
	close(block)
	waitFor(t, func() bool { return c.do("GET TRACKING "+id+"\n") == "SUCCESS\n" }, "never SUCCESS")
	if got := c.do("GET TRACKING 2DDC5036-F665-4D29-BE4C-0374D091D263\n"); got != "ERR UNKNOWN\n" {
		t.Errorf("unknown id: %q", got)
	}
	// The source's real result: a failure, and a command the driver did
	// not handle.
	for _, tt := range []struct {
		res  bridge.CommandResult
		err  error
		want string
	}{
		{bridge.CommandResult{Status: "FAILED"}, nil, "ERR FAILED\n"},
		{bridge.CommandResult{Status: "UNKNOWN"}, nil, "ERR UNKNOWN\n"},
		{bridge.CommandResult{}, errors.New("source down"), "ERR FAILED\n"},
		{bridge.CommandResult{Status: "PENDING"}, nil, "PENDING\n"},
	} {
		ts.fb.mu.Lock()
		ts.fb.block, ts.fb.result, ts.fb.err = nil, tt.res, tt.err
		ts.fb.mu.Unlock()
		r := c.do("SET VAR ups ups.delay.start 10\n")
		id := strings.TrimSpace(strings.TrimPrefix(r, "OK TRACKING "))
		waitFor(t, func() bool { return c.do("GET TRACKING "+id+"\n") == tt.want }, "result of %v/%v is not %q", tt.res, tt.err, tt.want)
	}
	c.do("SET TRACKING OFF\n")
	if got := c.do("INSTCMD ups beeper.mute\n"); got != "OK\n" {
		t.Errorf("without tracking: %q", got)
	}
}

func TestFSDLatch(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	for _, l := range []string{"USERNAME admin\n", "PASSWORD adminpass\n"} {
		c.do(l)
	}
	ts.update(testState("OB DISCHRG"))
	if got := c.do("FSD ups\n"); got != "OK FSD-SET\n" {
		t.Fatalf("FSD: %q", got)
	}
	// Served at once, on every name, before the bridge's state shows it.
	if got := c.do("GET VAR qnapups ups.status\n"); got != "VAR qnapups ups.status \"FSD OB DISCHRG\"\n" {
		t.Errorf("after FSD: %q", got)
	}
	waitFor(t, func() bool { _, f := ts.fb.snapshot(); return len(f) == 1 && f[0] == "rack" }, "bridge.ForceFSD not called")
	// The bridge's latched state: FSD in its status (appended by the
	// bridge) is served in front, as upsd does.
	st := testState("OB DISCHRG")
	st.Status = bridge.ParseStatus("OB DISCHRG FSD")
	st.Critical = true
	ts.update(st)
	if ts.lookup("ups").unit.localFSD.Load() {
		t.Error("local latch kept once the bridge shows FSD")
	}
	if got := c.do("LIST VAR ups\n"); !strings.Contains(got, "VAR ups ups.status \"FSD OB DISCHRG\"\n") {
		t.Errorf("LIST VAR: %q", got)
	}
	if got := c.do("LIST RW ups\n"); strings.Contains(got, "FSD") {
		t.Errorf("LIST RW carries FSD: %q", got)
	}
	// Mains back: the bridge releases its latch, so does the server.
	ts.update(testState("OL"))
	if got := c.do("GET VAR ups ups.status\n"); got != "VAR ups ups.status \"OL\"\n" {
		t.Errorf("after mains returned: %q", got)
	}
	// A secondary may not.
	m := dial(t, ts.addr)
	m.do("USERNAME monuser\n")
	m.do("PASSWORD secret\n")
	if got := m.do("FSD ups\n"); got != "ERR ACCESS-DENIED\n" {
		t.Errorf("FSD by a secondary: %q", got)
	}
	// FSD is not gated: it works on stale data.
	stale := testState("OB LB")
	stale.Comm = false
	ts.update(stale)
	if got := c.do("FSD ups\n"); got != "OK FSD-SET\n" {
		t.Errorf("FSD while stale: %q", got)
	}
	if got := c.do("GET VAR ups ups.status\n"); got != "ERR DATA-STALE\n" {
		t.Errorf("read while stale: %q", got)
	}
}

func TestLogins(t *testing.T) {
	ts := startServer(t, nil)
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	for _, c := range []*client{a, b} {
		c.do("USERNAME monuser\n")
		c.do("PASSWORD secret\n")
	}
	a.do("LOGIN ups\n")
	b.do("LOGIN qnapups\n")
	if got := strings.Join(ts.Logins("rack"), ","); got != "monuser@127.0.0.1,monuser@127.0.0.1" {
		t.Errorf("Logins: %q", got)
	}
	if got := ts.Logins("other"); len(got) != 0 {
		t.Errorf("Logins(other): %q", got)
	}
	a.do("LOGOUT\n")
	b.c.Close()
	waitFor(t, func() bool { return len(ts.Logins("rack")) == 0 }, "logins not released on LOGOUT and close")
}

func TestDefaultUPSList(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.UPS = nil })
	st := testState("OL")
	st.UPS = "another"
	ts.update(st)
	c := dial(t, ts.addr)
	if got := c.do("LIST UPS\n"); got != "BEGIN LIST UPS\nUPS another \"Description unavailable\"\nUPS rack \"Description unavailable\"\nEND LIST UPS\n" {
		t.Errorf("LIST UPS: %q", got)
	}
	if got := c.do("GET VAR rack ups.mfr\n"); got != "VAR rack ups.mfr \"Example\"\n" {
		t.Errorf("GET VAR: %q", got)
	}
}

func TestAllowFrom(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.AllowFrom = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("VER\n"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 64)); err == nil {
		t.Fatalf("a refused address got %d bytes", n)
	}
	ok := startServer(t, func(o *Options) { o.AllowFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	if got := dial(t, ok.addr).do("NETVER\n"); got != "1.3\n" {
		t.Errorf("allowed address: %q", got)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upsbridge"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestStartTLS(t *testing.T) {
	cert := selfSigned(t)
	ts := startServer(t, func(o *Options) { o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} })
	c := dial(t, ts.addr)
	if got := c.do("STARTTLS\n"); got != "OK STARTTLS\n" {
		t.Fatalf("STARTTLS: %q", got)
	}
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool.AddCert(leaf)
	tc := tls.Client(c.c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tcl := &client{t: t, c: tc, rd: bufio.NewReader(tc)}
	if got := tcl.do("PROTVER\n"); got != "1.3\n" {
		t.Errorf("PROTVER over TLS: %q", got)
	}
	if got := tcl.do("STARTTLS\n"); got != "ERR ALREADY-SSL-MODE\n" {
		t.Errorf("second STARTTLS: %q", got)
	}
	if got := tcl.do("GET VAR ups ups.status\n"); got != "VAR ups ups.status \"OL\"\n" {
		t.Errorf("over TLS: %q", got)
	}
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A brute force from one address gets AuthBurst guesses checked; after
// that even the right password is refused until the bucket refills.
// Failures are logged with the user, never the password.
func TestBruteForce(t *testing.T) {
	var logs syncBuffer
	ts := startServer(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.AuthBurst, o.AuthRefill = 3, time.Hour
	})
	for i := 0; i < 50; i++ {
		c := dial(t, ts.addr)
		c.do("USERNAME monuser\n")
		c.do("PASSWORD guess" + strings.Repeat("x", i) + "\n")
		if got := c.do("LOGIN ups\n"); got != "ERR ACCESS-DENIED\n" {
			t.Fatalf("guess %d: %q", i, got)
		}
		c.c.Close()
	}
	c := dial(t, ts.addr)
	c.do("USERNAME monuser\n")
	c.do("PASSWORD secret\n")
	if got := c.do("LOGIN ups\n"); got != "ERR ACCESS-DENIED\n" {
		t.Errorf("right password during the lockout: %q", got)
	}
	out := logs.String()
	if strings.Contains(out, "guess") || strings.Contains(out, "secret") {
		t.Errorf("a password reached the log:\n%s", out)
	}
	if n := strings.Count(out, "authentication failed"); n != 3 {
		t.Errorf("%d failures logged one by one, want 3 (then a summary):\n%s", n, out)
	}
	if !strings.Contains(out, "too many failed logins") || !strings.Contains(out, "user=monuser") {
		t.Errorf("no rate-limit log:\n%s", out)
	}
}

func TestLimiterRefills(t *testing.T) {
	l := newLimiter(2, 10*time.Second)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 2; i++ {
		if ok, _, _ := l.allow("a", t0); !ok {
			t.Fatalf("check %d refused", i)
		}
		l.fail("a", t0)
	}
	if ok, logNow, n := l.allow("a", t0); ok || !logNow || n != 1 {
		t.Errorf("after the burst: ok=%v log=%v n=%d", ok, logNow, n)
	}
	if ok, logNow, _ := l.allow("a", t0.Add(time.Second)); ok || logNow {
		t.Errorf("second refusal: ok=%v log=%v (logged once a minute)", ok, logNow)
	}
	if ok, _, _ := l.allow("b", t0); !ok {
		t.Error("another address is refused")
	}
	if ok, _, _ := l.allow("a", t0.Add(10*time.Second)); !ok {
		t.Error("not refilled after one period")
	}
}

// Bad input: a line far over any limit, binary junk, a half line then
// silence, a client that never reads: the connection stays bounded and
// other clients keep their answers.
func TestBadInput(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.IdleTimeout, o.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond })
	t.Run("huge line", func(t *testing.T) {
		// A server of its own with the default idle timeout: the idle
		// timer runs until a complete line arrives, so with the 500 ms of
		// the other cases the server would close this connection whenever
		// reading 6 MB takes longer than that (a loaded machine, -race).
		// What this case proves is the parse of a long line, not a speed.
		ts := startServer(t, nil)
		c := dial(t, ts.addr)
		chunk := bytes.Repeat([]byte("GET VAR ups ups.status "), 1<<12)
		for i := 0; i < 64; i++ { // 6 MB without LF
			if _, err := c.c.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		// The first 32 words count, as in upsd: a GET VAR with junk.
		if got := c.do("\n"); got != "VAR ups ups.status \"OL\"\n" {
			t.Errorf("after a 6 MB line: %q", got)
		}
		if got := c.do("NETVER\n"); got != "1.3\n" {
			t.Errorf("next line: %q", got)
		}
	})
	t.Run("binary junk", func(t *testing.T) {
		c := dial(t, ts.addr)
		junk := make([]byte, 1<<16)
		_, _ = rand.Read(junk)
		junk = bytes.ReplaceAll(junk, []byte{'\n'}, nil)
		_, _ = c.c.Write(append(junk, '\n'))
		r := c.reply()
		if !strings.HasPrefix(r, "ERR ") {
			t.Errorf("junk got %q", r)
		}
		if got := c.do("NETVER\n"); got != "1.3\n" {
			t.Errorf("after junk: %q", got)
		}
	})
	t.Run("half line then silence", func(t *testing.T) {
		c := dial(t, ts.addr)
		_, _ = c.c.Write([]byte("GET VAR ups ups.sta"))
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.c.Read(make([]byte, 16)); err != io.EOF {
			t.Errorf("idle half line: %v, want the server to close", err)
		}
	})
	t.Run("client that never reads", func(t *testing.T) {
		slow, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		if tc, ok := slow.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := bytes.Repeat([]byte("LIST VAR ups\n"), 2000)
			_ = slow.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = slow.Write(req)
		}()
		fast := dial(t, ts.addr)
		for i := 0; i < 50; i++ {
			if got := fast.do("GET VAR ups ups.status\n"); got != "VAR ups ups.status \"OL\"\n" {
				t.Fatalf("fast client: %q", got)
			}
		}
		wg.Wait()
		// The server dropped the client that never read.
		waitFor(t, func() bool { return ts.nconn.Load() <= 1 }, "the non-reading client is still connected")
	})
}

// Run stops with the queue.
func TestSinkRun(t *testing.T) {
	s, err := New(Options{Bridge: &fakeBridge{}})
	if err != nil {
		t.Fatal(err)
	}
	q := bridge.NewQueue("nut_server", 0, slog.New(slog.DiscardHandler))
	done := make(chan error)
	go func() { done <- s.Run(context.Background(), q) }()
	q.PutState(testState("OB"))
	q.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := s.lookup("rack").unit.view.Load(); v == nil || v.st.Vars["ups.status"] != "OB" {
		t.Error("state not installed")
	}
}
