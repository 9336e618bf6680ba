// Package broker runs an MQTT broker inside the process (mochi-mqtt), for
// `mqtt.url: embedded`: a small setup needs no separate broker.
//
// It is closed by default: without users it serves loopback only; with
// users every client must log in, and each gets the ACL of its role (see
// ACL). Anonymous access beyond loopback needs AllowAnonymous, written
// explicitly.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/upsbridge/upsbridge/config"
)

// Options configure the embedded broker.
type Options struct {
	// Addr is host:port; port 0 picks a free one.
	Addr string
	// Users may log in; each gets its role's ACL.
	Users []User
	// AllowAnonymous lets clients without a user name in with full access.
	// Without users and without it, only a loopback Addr is accepted.
	AllowAnonymous bool
	// TopicPrefix and DiscoveryPrefix place the roles' topics.
	TopicPrefix     string
	DiscoveryPrefix string
	Logger          *slog.Logger
	// ConnectTimeout is how long a new connection has to send its CONNECT
	// (0: DefaultConnectTimeout).
	ConnectTimeout time.Duration
}

// User is one account.
type User struct {
	Name     string
	Password config.Secret
	Role     Role
}

// Broker is a running embedded broker.
type Broker struct {
	srv      *mochi.Server
	addr     string
	internal User
	auth     *authHook
	ln       *trackingListener
	log      *slog.Logger
	// closeWait bounds Close: past it, connections still open are left to
	// the process's exit rather than holding up its shutdown.
	closeWait time.Duration
}

// DefaultConnectTimeout bounds how long a new connection may take to send its
// CONNECT. mochi reads the CONNECT without a deadline: a client that opens
// a TCP connection and sends nothing would hold a goroutine forever, and
// stopping the broker waits for every connection's goroutine. After the
// CONNECT, mochi sets the connection's deadline from its keepalive.
const DefaultConnectTimeout = 10 * time.Second

// trackingListener is the broker's listening socket. It gives every
// accepted connection timeout to send its CONNECT, and keeps every open
// connection so that Close can end them itself before stopping mochi:
//
//   - mochi v2.7.9's Close deadlocks when a client's goroutine removes the
//     client while Close lists the listener's clients (a read lock taken
//     twice with a writer waiting in between);
//   - mochi counts a connection in a WaitGroup only once its goroutine
//     runs, and a count added while Close waits on it is a data race.
//
// So Close stops accepting, waits until mochi has taken up every accepted
// connection (pending), closes them all, waits for mochi's goroutines to
// end, and only then calls mochi's Close, which then finds nothing to do.
type trackingListener struct {
	net.Listener
	timeout time.Duration

	mu      sync.Mutex
	open    map[*trackedConn]struct{}
	pending map[*trackedConn]struct{} // accepted, not yet read by mochi
	drained chan struct{}             // closed when pending empties after stop
	stopped bool
}

func newTrackingListener(ln net.Listener, timeout time.Duration) *trackingListener {
	return &trackingListener{Listener: ln, timeout: timeout, open: map[*trackedConn]struct{}{}, pending: map[*trackedConn]struct{}{}}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(l.timeout)); err != nil {
		c.Close()
		return nil, fmt.Errorf("set the connect deadline: %w", err)
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		// Accepted as the socket closed: mochi must not take it up
		// after stop has counted what is pending.
		c.Close()
		return nil, net.ErrClosed
	}
	l.open[tc] = struct{}{}
	l.pending[tc] = struct{}{}
	return tc, nil
}

// served marks c as taken up by mochi (read or closed).
func (l *trackingListener) served(c *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, c)
	if l.stopped && len(l.pending) == 0 && l.drained != nil {
		close(l.drained)
		l.drained = nil
	}
}

// stop closes the socket and returns a channel closed once every accepted
// connection has been taken up.
func (l *trackingListener) stop() <-chan struct{} {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	ch := make(chan struct{})
	if len(l.pending) == 0 {
		close(ch)
	} else {
		l.drained = ch
	}
	return ch
}

// closeAll closes every open connection.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := make([]*trackedConn, 0, len(l.open))
	for c := range l.open {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// trackedConn tells its listener when mochi first reads it, and when it
// is closed.
type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.once.Do(func() { c.l.served(c) })
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.l.served(c) })
	c.l.mu.Lock()
	delete(c.l.open, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// Start listens on o.Addr and serves until Close. It refuses an address
// beyond loopback when there are no users unless AllowAnonymous is set.
func Start(o Options) (*Broker, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(o.Users) == 0 && !o.AllowAnonymous && !config.IsLoopbackListen(o.Addr) {
		return nil, fmt.Errorf("embedded broker: refusing to listen on %s without users (mqtt.broker.users) or mqtt.broker.allow_anonymous: true", o.Addr)
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = "upsbridge"
	}
	if o.DiscoveryPrefix == "" {
		o.DiscoveryPrefix = "homeassistant"
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	b := &Broker{log: log.With("component", "broker"), closeWait: o.ConnectTimeout + 2*time.Second}
	users := o.Users
	if len(users) > 0 {
		// The bridge in this process logs in like everyone else, with an
		// account that exists only in memory for this run.
		b.internal = User{Name: "upsbridge-internal-" + randomHex(6), Password: config.Secret(randomHex(32)), Role: RoleBridge}
		users = append(append([]User(nil), users...), b.internal)
	}
	h, err := newAuthHook(users, o.AllowAnonymous || len(o.Users) == 0, o.TopicPrefix, o.DiscoveryPrefix, log.With("component", "broker"))
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	b.auth = h

	// Listen here so a port in use is reported here, and port 0 works;
	// the broker serves this very socket.
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen on %s: %w", o.Addr, err)
	}
	bound := ln.Addr().String()

	srv := mochi.New(&mochi.Options{InlineClient: false, Logger: quiet(log)})
	if err := srv.AddHook(h, nil); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	b.ln = newTrackingListener(ln, o.ConnectTimeout)
	if err := srv.AddListener(listeners.NewNet("tcp", b.ln)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded broker: listen on %s: %w", bound, err)
	}
	if err := srv.Serve(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded broker: serve: %w", err)
	}
	b.srv, b.addr = srv, bound
	return b, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux (Go ≥ 1.24 panics instead)
	return hex.EncodeToString(b)
}

// Credentials returns the user name and password this process's own
// clients use; both are empty when the broker has no users.
func (b *Broker) Credentials() (string, config.Secret) {
	return b.internal.Name, b.internal.Password
}

// Rejected returns how many logins and ACL checks were refused.
func (b *Broker) Rejected() (logins, acl uint64) {
	return b.auth.loginsRejected.Load(), b.auth.aclRejected.Load()
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// URL returns the tcp:// URL clients connect to. A broker listening on
// every address is reached on loopback.
func (b *Broker) URL() string {
	host, port, err := net.SplitHostPort(b.addr)
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			if ip.To4() != nil {
				return "tcp://" + net.JoinHostPort("127.0.0.1", port)
			}
			return "tcp://" + net.JoinHostPort("::1", port)
		}
	}
	return "tcp://" + b.addr
}

// Close stops the broker.
//
// It closes every client connection (their Wills are published), waits
// for the broker's goroutines to end, at most the connect timeout and 2 s,
// and leaves what is left then to the process's exit, with a warning.
func (b *Broker) Close() error {
	// One deadline for both waits (a closed Done channel stays closed).
	ctx, cancel := context.WithTimeout(context.Background(), b.closeWait)
	defer cancel()
	select {
	case <-b.ln.stop():
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.ln.closeAll()
		b.srv.Listeners.ClientsWg.Wait()
		_ = b.srv.Close()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		b.log.Warn("embedded broker: connections still open at shutdown; leaving them to the process's exit", "waited", b.closeWait)
	}
	return nil
}

// Run serves until ctx ends, then closes the broker.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	if err := b.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("embedded broker: close: %w", err)
	}
	return nil
}

// quiet passes on only the broker's errors: mochi logs every client that
// goes away as a warning, which is routine here.
func quiet(log *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{log.Handler(), slog.LevelError}).With("component", "broker")
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}

func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(n), f.min}
}
