// Package client speaks NUT's network protocol (upsd, TCP 3493) as in
// docs/net-protocol.txt of NUT 2.8: one persistent connection with one
// buffered reader, strictly one request at a time, a deadline on every
// request, NUT's quoting in both directions and every ERR code as a typed
// error.
//
// A request that fails on the wire (timeout, EOF, a malformed or over-long
// line) closes the connection, because upsd may still answer it later and
// the stream would be out of step; ERR answers leave the connection usable.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultPort is upsd's IANA port.
const DefaultPort = "3493"

// Default bounds on one LIST reply (see Options).
const (
	DefaultMaxListLines        = 10000
	DefaultMaxReplyBytes int64 = 1 << 20
)

// TLSMode says whether to upgrade the connection with STARTTLS.
type TLSMode string

// The STARTTLS modes.
const (
	// TLSOff never sends STARTTLS.
	TLSOff TLSMode = "off"
	// TLSTry sends STARTTLS and stays in plain text if upsd cannot do TLS
	// (FEATURE-NOT-CONFIGURED, FEATURE-NOT-SUPPORTED, UNKNOWN-COMMAND). Once
	// upsd has agreed, a failed handshake or certificate check is an error:
	// there is no silent downgrade.
	TLSTry TLSMode = "try"
	// TLSRequire fails unless the connection is upgraded and verified.
	TLSRequire TLSMode = "require"
)

// Options configure a connection. The zero value is usable.
type Options struct {
	// Timeout bounds each request when the context has no earlier
	// deadline, and the dial (default 10 s).
	Timeout time.Duration
	// MaxLineLength is the longest response line accepted, LF included
	// (default 4096; upsd itself never sends more than 512).
	MaxLineLength int
	// MaxListLines bounds the data lines of one LIST reply (default
	// 10,000; the largest device in the NUT device dump library has 581
	// variables). A longer reply fails with a *LimitError and closes the
	// connection, so a server answering endlessly costs bounded memory.
	MaxListLines int
	// MaxReplyBytes bounds the bytes of one LIST reply, line ends included
	// (default 1 MiB; the largest dump in that library is 17 KB).
	MaxReplyBytes int64
	// StartTLS selects STARTTLS (default off).
	StartTLS TLSMode
	// TLSConfig is used for STARTTLS. When nil, one is built from CAFile
	// and the host name of the address.
	TLSConfig *tls.Config
	// CAFile is a PEM file of CA certificates to verify upsd's certificate
	// against (default: the system roots).
	CAFile string
	// NoQuickAck turns off re-arming TCP_QUICKACK around reads (Linux). It
	// exists to measure what it saves; leave it false.
	NoQuickAck bool
	// Dialer dials the TCP connection; nil uses a net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxLineLength <= 0 {
		o.MaxLineLength = 4096
	}
	if o.MaxListLines <= 0 {
		o.MaxListLines = DefaultMaxListLines
	}
	if o.MaxReplyBytes <= 0 {
		o.MaxReplyBytes = DefaultMaxReplyBytes
	}
	if o.StartTLS == "" {
		o.StartTLS = TLSOff
	}
}

// Conn is a connection to upsd. Its methods are safe for concurrent use;
// requests are serialised, one at a time on the wire.
type Conn struct {
	opts Options
	addr string
	host string
	nc   net.Conn // the TCP connection, or TLS over it
	raw  net.Conn
	br   *bufio.Reader

	sem    chan struct{} // held while a request is on the wire
	broken atomic.Pointer[error]
	tls    bool

	// Scratch space reused between requests; only touched under sem.
	wbuf   []byte
	fields [][]byte
}

// NormalizeAddr adds upsd's default port to an address without one.
func NormalizeAddr(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	return net.JoinHostPort(addr, DefaultPort)
}

// Dial connects to upsd at addr (host[:port], default port 3493) and, when
// opts ask for it, upgrades the connection with STARTTLS.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	opts.setDefaults()
	addr = NormalizeAddr(addr)
	host, _, _ := net.SplitHostPort(addr)
	dctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var d interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	} = &net.Dialer{}
	if opts.Dialer != nil {
		d = opts.Dialer
	}
	nc, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to upsd at %s: %w", addr, err)
	}
	c := newConn(nc, addr, host, opts)
	if opts.StartTLS == TLSTry || opts.StartTLS == TLSRequire {
		err := c.StartTLS(ctx, nil)
		switch {
		case err == nil:
		case opts.StartTLS == TLSTry && (errors.Is(err, ErrFeatureNotConfigured) || errors.Is(err, ErrFeatureNotSupported) || errors.Is(err, ErrUnknownCommand)):
			// Plain text is what the user allowed.
		default:
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// NewConn wraps an established connection (for tests and custom
// transports). addr is used in errors and as the TLS server name.
func NewConn(nc net.Conn, addr string, opts Options) *Conn {
	opts.setDefaults()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return newConn(nc, addr, host, opts)
}

func newConn(nc net.Conn, addr, host string, opts Options) *Conn {
	c := &Conn{opts: opts, addr: addr, host: host, raw: nc, sem: make(chan struct{}, 1)}
	rd := io.Reader(nc)
	if !opts.NoQuickAck {
		if qa := newQuickAckConn(nc); qa != nil {
			c.raw = qa
			rd = qa
		}
	}
	c.nc = c.raw
	c.br = bufio.NewReaderSize(rd, opts.MaxLineLength)
	return c
}

// Addr returns the server's address as dialled.
func (c *Conn) Addr() string { return c.addr }

// TLS reports whether the connection was upgraded with STARTTLS.
func (c *Conn) TLS() bool { return c.tls }

// Close closes the connection without LOGOUT.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return c.nc.Close()
}

// Err returns why the connection is no longer usable, or nil.
func (c *Conn) Err() error {
	if p := c.broken.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *Conn) fail(err error) {
	c.broken.CompareAndSwap(nil, &err)
}

// exchange runs fn with the connection to itself, under the request's
// deadline. Wire failures close the connection.
func (c *Conn) exchange(ctx context.Context, label string, fn func() error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for the connection to upsd at %s: %w", label, c.addr, ctx.Err())
	}
	defer func() { <-c.sem }()
	if err := c.Err(); err != nil {
		return fmt.Errorf("%s: %w (%w)", label, ErrClosed, err)
	}
	start := time.Now()
	deadline := start.Add(c.opts.Timeout)
	fromCtx := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, fromCtx = d, true
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		c.fail(err)
		c.nc.Close()
		return fmt.Errorf("%s: %w", label, err)
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { _ = c.raw.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	err := fn()
	if err == nil {
		return nil
	}
	var pe *ProtocolError
	var ok inStep
	if errors.As(err, &pe) {
		return err
	}
	if errors.As(err, &ok) {
		return ok.error
	}
	// Anything else leaves the stream in an unknown position.
	switch {
	case ctx.Err() != nil && isTimeout(err):
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	case fromCtx && isTimeout(err):
		err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	case isTimeout(err):
		err = fmt.Errorf("no answer within %s: %w", deadline.Sub(start).Round(time.Millisecond), err)
	}
	c.fail(err)
	c.nc.Close()
	return err
}

// inStep marks an error after which the stream is still in step, so the
// connection stays open.
type inStep struct{ error }

func (e inStep) Unwrap() error { return e.error }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// send writes one request line built from words: the first ones bare
// (command keywords and names), the rest quoted when needed.
func (c *Conn) send(words ...string) error {
	b := c.wbuf[:0]
	for i, w := range words {
		if err := checkArg(w); err != nil {
			return inStep{err} // nothing was sent
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = AppendQuoted(b, w)
	}
	b = append(b, '\n')
	c.wbuf = b
	_, err := c.nc.Write(b)
	return err
}

// sendValue is send with the last word always quoted (values).
func (c *Conn) sendValue(words []string, value string) error {
	if err := checkArg(value); err != nil {
		return inStep{err}
	}
	b := c.wbuf[:0]
	for i, w := range words {
		if err := checkArg(w); err != nil {
			return inStep{err} // nothing was sent
		}
		if i > 0 {
			b = append(b, ' ')
		}
		b = AppendQuoted(b, w)
	}
	b = append(b, ' ')
	b = appendQuotedAlways(b, value)
	b = append(b, '\n')
	c.wbuf = b
	_, err := c.nc.Write(b)
	return err
}

// readLine returns the next line without its LF (and CR). The slice is
// valid until the next read.
func (c *Conn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: more than %d bytes without a line end", ErrLineTooLong, c.opts.MaxLineLength)
		}
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				return nil, fmt.Errorf("upsd at %s closed the connection mid-line: %w", c.addr, io.ErrUnexpectedEOF)
			}
			return nil, fmt.Errorf("upsd at %s closed the connection: %w", c.addr, io.EOF)
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

var errPrefix = []byte("ERR ")

// asErr turns an ERR line into a *ProtocolError, or returns nil.
func asErr(line []byte, request string) error {
	if !bytes.HasPrefix(line, errPrefix) && !bytes.Equal(line, []byte("ERR")) {
		return nil
	}
	rest := strings.TrimSpace(string(line[3:]))
	code, extra, _ := strings.Cut(rest, " ")
	return &ProtocolError{Code: code, Extra: strings.TrimSpace(extra), Request: request}
}

// simple sends a request and returns its one-line answer (ERR lines as
// *ProtocolError). label names the request in errors (no secrets).
func (c *Conn) simple(ctx context.Context, label string, words ...string) (string, error) {
	var out string
	err := c.exchange(ctx, label, func() error {
		if err := c.send(words...); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if err := asErr(line, label); err != nil {
			return err
		}
		out = string(line)
		return nil
	})
	if err != nil {
		return "", wrapReq(label, c.addr, err)
	}
	return out, nil
}

func wrapReq(label, addr string, err error) error {
	if err == nil {
		return nil
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return err // its message names the request already
	}
	return fmt.Errorf("%s at %s: %w", label, addr, err)
}

// expectOK sends a request whose answer must start with "OK"; it returns
// the words after OK.
func (c *Conn) expectOK(ctx context.Context, label string, words ...string) (string, error) {
	line, err := c.simple(ctx, label, words...)
	if err != nil {
		return "", err
	}
	if line != "OK" && !strings.HasPrefix(line, "OK ") {
		c.fail(&UnexpectedError{Request: label, Line: line, Want: "OK"})
		c.nc.Close()
		return "", fmt.Errorf("%s at %s: %w", label, c.addr, &UnexpectedError{Request: label, Line: line, Want: "OK"})
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "OK")), nil
}

// list sends "LIST <args>" and calls each for every line between BEGIN
// LIST and END LIST with the line's words after the echoed query. The
// words alias a buffer valid only during the call.
func (c *Conn) list(ctx context.Context, args []string, each func(words [][]byte) error) error {
	label := "LIST " + strings.Join(args, " ")
	err := c.exchange(ctx, label, func() error {
		words := append([]string{"LIST"}, args...)
		if err := c.send(words...); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if err := asErr(line, label); err != nil {
			return err
		}
		f, err := splitLine(line, c.fields)
		c.fields = f
		if err != nil || len(f) != len(args)+2 || !eqFold(f[0], "BEGIN") || !eqFold(f[1], "LIST") || !echoes(f[2:], args) {
			return &UnexpectedError{Request: label, Line: string(line), Want: "BEGIN " + label}
		}
		// Data lines start with the list type and the echoed arguments
		// after it, except the type word itself ("UPS", "VAR").
		typ := args[0]
		echo := args[1:]
		var cbErr error
		lines, size := 0, int64(len(line)+1)
		for {
			line, err := c.readLine()
			if err != nil {
				return err
			}
			// Bounds before anything is kept: the stream is abandoned (the
			// connection closes), since upsd may never send END.
			size += int64(len(line) + 1)
			if size > c.opts.MaxReplyBytes {
				return &LimitError{Request: label, What: "bytes in one reply", Limit: c.opts.MaxReplyBytes}
			}
			if lines >= c.opts.MaxListLines && !(len(line) >= 8 && eqFold(line[:8], "END LIST")) {
				return &LimitError{Request: label, What: "lines in one LIST reply", Limit: int64(c.opts.MaxListLines)}
			}
			lines++
			f, err := splitLine(line, c.fields)
			c.fields = f
			if err != nil {
				return err
			}
			if len(f) == len(args)+2 && eqFold(f[0], "END") && eqFold(f[1], "LIST") && echoes(f[2:], args) {
				return cbErr
			}
			if len(f) < 1+len(echo) || !eqFold(f[0], typ) || !echoes(f[1:1+len(echo)], echo) {
				return &UnexpectedError{Request: label, Line: string(line), Want: typ + " line or END " + label}
			}
			if cbErr == nil {
				// Keep reading to END even if the callback failed, so the
				// stream stays in step.
				if err := each(f[1+len(echo):]); err != nil {
					cbErr = inStep{&UnexpectedError{Request: label, Line: string(line), Want: err.Error()}}
				}
			}
		}
	})
	if err != nil {
		return wrapReq(label, c.addr, err)
	}
	return nil
}

func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x >= 'a' && x <= 'z' {
			x -= 'a' - 'A'
		}
		if y >= 'a' && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// echoes reports whether words repeat args, case-insensitively (upsd
// echoes the spelling the client sent).
func echoes(words [][]byte, args []string) bool {
	if len(words) != len(args) {
		return false
	}
	for i := range args {
		if !eqFold(words[i], args[i]) {
			return false
		}
	}
	return true
}

// get sends "GET <args>" and returns the words of the answer after the
// echoed request, checking that the answer starts with want and echoes the
// arguments.
func (c *Conn) get(ctx context.Context, want string, args ...string) ([]string, error) {
	label := "GET " + strings.Join(args, " ")
	var out []string
	err := c.exchange(ctx, label, func() error {
		if err := c.send(append([]string{"GET"}, args...)...); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if err := asErr(line, label); err != nil {
			return err
		}
		f, err := splitLine(line, c.fields)
		c.fields = f
		echo := args[1:]
		if err != nil || len(f) < 1+len(echo) || !eqFold(f[0], want) || !echoes(f[1:1+len(echo)], echo) {
			return &UnexpectedError{Request: label, Line: string(line), Want: want + " line"}
		}
		for _, w := range f[1+len(echo):] {
			out = append(out, string(w))
		}
		return nil
	})
	if err != nil {
		return nil, wrapReq(label, c.addr, err)
	}
	return out, nil
}

// StartTLS upgrades the connection. cfg nil builds one from the options
// (CAFile, or the system roots, and the host name of the address).
func (c *Conn) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if cfg == nil {
		cfg = c.opts.TLSConfig
	}
	if cfg == nil {
		var err error
		cfg, err = TLSConfig(c.opts.CAFile, c.host)
		if err != nil {
			return err
		}
	}
	label := "STARTTLS"
	return wrapReq(label, c.addr, c.exchange(ctx, label, func() error {
		if err := c.send("STARTTLS"); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if err := asErr(line, label); err != nil {
			return err
		}
		if !bytes.HasPrefix(line, []byte("OK")) {
			return &UnexpectedError{Request: label, Line: string(line), Want: "OK STARTTLS"}
		}
		if c.br.Buffered() > 0 {
			return &UnexpectedError{Request: label, Line: "(plain-text bytes after OK STARTTLS)", Want: "a TLS handshake"}
		}
		tc := tls.Client(c.raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		c.nc = tc
		c.br.Reset(tc)
		c.tls = true
		return nil
	}))
}

// TLSConfig returns a client TLS config that verifies the server against
// the CA certificates in caFile (PEM), or the system roots when caFile is
// empty.
func TLSConfig(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificates in it", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
