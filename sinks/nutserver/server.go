// Package nutserver is a bridge sink that serves every UPS the bridge
// reads over NUT's network protocol, as upsd 2.8 does, so that upsmon
// (secondary or primary), upsc, upsrw, upscmd, NAS appliances, WinNUT,
// Home Assistant's NUT integration, PeaNUT and nut_exporter work against
// upsbridge. Reads answer from the latest state the bridge delivered;
// SET VAR and INSTCMD go back through the bridge to the UPS's source; a
// primary's FSD latches forced shutdown in the bridge.
package nutserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/metricname"
)

// Bridge is what the server needs of the bridge: the command route to
// sources, and the forced-shutdown latch.
type Bridge interface {
	bridge.CommandRunner
	// ForceFSD latches FSD for a client with primary rights (see
	// bridge.Bridge.ForceFSD).
	ForceFSD(ctx context.Context, ups string) error
}

// User is an account, as a section of upsd.users.
type User struct {
	Name     string
	Password string
	// Upsmon is "primary" (LOGIN, PRIMARY, FSD), "secondary" (LOGIN) or "".
	Upsmon   string
	Actions  []string // SET, FSD
	InstCmds []string // names, or ALL
}

// UPS serves the bridge's UPS ID under Name.
type UPS struct {
	ID          string
	Name        string
	Description string
}

// Options configure a Server.
type Options struct {
	Listen    []string
	TLS       *tls.Config // nil: STARTTLS answers FEATURE-NOT-CONFIGURED
	AllowFrom []netip.Prefix
	Users     []User
	// UPS is the served list; empty serves every UPS under its id.
	UPS    []UPS
	Bridge Bridge
	// Version is upsbridge's version, shown after upsd's in VER.
	Version string
	Logger  *slog.Logger
	// Metrics is the process's metrics set, where the server registers
	// its own (nil: a set of its own).
	Metrics *metrics.Set

	// IdleTimeout closes a connection that sent no complete line for this
	// long (default 120 s; upsd uses 60 s, which makes a client polling
	// every 60 s, like Home Assistant, reconnect each time).
	IdleTimeout time.Duration
	// WriteTimeout drops a client that does not read its replies.
	WriteTimeout time.Duration
	// MaxConns caps open connections (default 16384); the excess is closed.
	MaxConns int
	// CommandTimeout bounds a SET VAR or INSTCMD at the source.
	CommandTimeout time.Duration
	// AuthBurst failed credential checks per address are allowed, then one
	// per AuthRefill; beyond that credentials are refused unchecked.
	AuthBurst  int
	AuthRefill time.Duration
}

func (o *Options) setDefaults() {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16384
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 30 * time.Second
	}
	if o.AuthBurst <= 0 {
		o.AuthBurst = 5
	}
	if o.AuthRefill <= 0 {
		o.AuthRefill = 12 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// unit is one bridge UPS: its latest view and the FSD a client set here
// before the bridge's state shows it.
type unit struct {
	id       string
	view     atomic.Pointer[view]
	localFSD atomic.Bool
}

// slot is a served name of a unit.
type slot struct {
	name string // as configured (LIST UPS, LIST CLIENT)
	desc string
	unit *unit
}

// table is the immutable name lookup, replaced whole when a UPS appears.
type table struct {
	byName map[string]*slot // lower-case name
	list   []*slot          // LIST UPS order
	byID   map[string]*unit
}

// Server is the NUT server. It is a bridge.Sink; Serve runs its listeners.
type Server struct {
	opts  Options
	log   *slog.Logger
	fixed bool
	users map[string]*user
	lim   *limiter
	track *tracker

	mu    sync.Mutex // writers of tab; conns; logins
	tab   atomic.Pointer[table]
	conns map[*conn]struct{}
	lns   []net.Listener
	nconn atomic.Int64

	cmdCtx  context.Context
	cmdStop context.CancelFunc
	cmdSem  chan struct{}
	wg      sync.WaitGroup // connections and commands

	// stats are the server's typed metrics (initMetrics).
	stats struct {
		accepted, refused, requests, authFailures *metrics.Counter
	}
}

// initMetrics registers the server's metrics as
// upsbridge_sink_<key>{sink="nut_server"}, the keys of Stats.
func (s *Server) initMetrics(set *metrics.Set) {
	set = metricname.Set(set)
	name := func(key string) string { return metricname.Series("upsbridge_sink_"+key, "sink", s.Name()) }
	s.stats.accepted = set.GetOrCreateCounter(name("accepted_total"))
	s.stats.refused = set.GetOrCreateCounter(name("refused_total"))
	s.stats.requests = set.GetOrCreateCounter(name("requests_total"))
	s.stats.authFailures = set.GetOrCreateCounter(name("auth_failures_total"))
	set.GetOrCreateGauge(name("connections"), func() float64 { return float64(s.nconn.Load()) })
}

var (
	_ bridge.Sink          = (*Server)(nil)
	_ bridge.StatsReporter = (*Server)(nil)
)

// New returns a server; Serve starts listening.
func New(opts Options) (*Server, error) {
	opts.setDefaults()
	if opts.Bridge == nil {
		return nil, errors.New("nut server: no bridge")
	}
	s := &Server{
		opts:   opts,
		log:    opts.Logger.With("component", "nut_server"),
		fixed:  len(opts.UPS) > 0,
		users:  map[string]*user{},
		lim:    newLimiter(opts.AuthBurst, opts.AuthRefill),
		track:  newTracker(time.Hour, 4096),
		conns:  map[*conn]struct{}{},
		cmdSem: make(chan struct{}, 32),
	}
	s.cmdCtx, s.cmdStop = context.WithCancel(context.Background())
	for _, u := range opts.Users {
		if _, dup := s.users[u.Name]; dup {
			return nil, fmt.Errorf("nut server: user %q defined twice", u.Name)
		}
		s.users[u.Name] = newUser(u)
	}
	t := &table{byName: map[string]*slot{}, byID: map[string]*unit{}}
	for _, u := range opts.UPS {
		name := u.Name
		if name == "" {
			name = u.ID
		}
		if _, dup := t.byName[strings.ToLower(name)]; dup {
			return nil, fmt.Errorf("nut server: UPS name %q served twice", name)
		}
		un := t.byID[u.ID]
		if un == nil {
			un = &unit{id: u.ID}
			t.byID[u.ID] = un
		}
		sl := &slot{name: name, desc: u.Description, unit: un}
		t.byName[strings.ToLower(name)] = sl
		t.list = append(t.list, sl)
	}
	s.tab.Store(t)
	s.initMetrics(opts.Metrics)
	return s, nil
}

// Name implements bridge.Sink.
func (s *Server) Name() string { return "nut_server" }

// Run implements bridge.Sink: it keeps the latest state of every UPS.
func (s *Server) Run(ctx context.Context, q *bridge.Queue) error {
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return ctx.Err()
		}
		if m.Kind == bridge.MessageState && m.State != nil {
			s.update(m.State)
		}
	}
}

// update installs a new state of a UPS.
func (s *Server) update(st *bridge.State) {
	t := s.tab.Load()
	un := t.byID[st.UPS]
	if un == nil {
		if s.fixed {
			return // not served
		}
		un = s.addUnit(st.UPS)
	}
	v := newView(st)
	if v.fsd {
		// The bridge's latch now shows: it governs from here on.
		un.localFSD.Store(false)
	} else if un.localFSD.Load() && !st.Critical && st.Status.Has(bridge.OL) && !st.Status.Has(bridge.OB) {
		// Mains is back: the bridge released its latch (bridge.SetFSD).
		un.localFSD.Store(false)
	}
	un.view.Store(v)
}

// addUnit serves a UPS the bridge reported for the first time under its id.
func (s *Server) addUnit(id string) *unit {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.tab.Load()
	if un := old.byID[id]; un != nil {
		return un
	}
	t := &table{byName: make(map[string]*slot, len(old.byName)+1), byID: make(map[string]*unit, len(old.byID)+1)}
	for k, v := range old.byName {
		t.byName[k] = v
	}
	for k, v := range old.byID {
		t.byID[k] = v
	}
	un := &unit{id: id}
	sl := &slot{name: id, unit: un}
	t.byID[id] = un
	if _, taken := t.byName[strings.ToLower(id)]; !taken {
		t.byName[strings.ToLower(id)] = sl
		t.list = append(append([]*slot(nil), old.list...), sl)
		sort.Slice(t.list, func(i, j int) bool { return t.list[i].name < t.list[j].name })
	} else {
		t.list = old.list
	}
	s.tab.Store(t)
	s.log.Info("serving UPS", "ups", id, "nut_ups", id)
	return un
}

// lookup finds a served name, case-insensitively.
func (s *Server) lookup(name string) *slot {
	t := s.tab.Load()
	if sl := t.byName[name]; sl != nil {
		return sl
	}
	return t.byName[strings.ToLower(name)]
}

// Logins returns the clients logged in (NUT LOGIN, as upsmon secondaries
// and primaries do) to the UPS with the bridge id ups, under any of its
// names, as "user@address", sorted. The bridge's own primary handshake
// waits for them to log out before it powers the UPS off.
func (s *Server) Logins(ups string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c := range s.conns {
		if sl := c.loginSlot(); sl != nil && sl.unit.id == ups {
			out = append(out, c.loginUser()+"@"+c.ip)
		}
	}
	sort.Strings(out)
	return out
}

// numLogins counts the connections logged in under one served name.
func (s *Server) numLogins(sl *slot) (n int, ips []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.loginSlot() == sl {
			n++
			ips = append(ips, c.ip)
		}
	}
	sort.Strings(ips)
	return n, ips
}

// Stats implements bridge.StatsReporter.
func (s *Server) Stats() map[string]any {
	return map[string]any{
		"connections":         s.nconn.Load(),
		"accepted_total":      s.stats.accepted.Get(),
		"refused_total":       s.stats.refused.Get(),
		"requests_total":      s.stats.requests.Get(),
		"auth_failures_total": s.stats.authFailures.Get(),
	}
}

// Listen binds every configured address. Serve calls it when it has not
// been called; calling it first reports a taken port before anything runs.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lns != nil {
		return nil
	}
	var lns []net.Listener
	for _, a := range s.opts.Listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("nut server: listen on %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	s.lns = lns
	return nil
}

// Close closes the listeners Listen opened, for a process that stops
// before Serve (Serve closes them itself when its context ends).
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for _, l := range s.lns {
		err = errors.Join(err, l.Close())
	}
	s.lns = nil
	return err
}

// Addrs returns the bound addresses (after Listen).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.lns))
	for i, l := range s.lns {
		out[i] = l.Addr()
	}
	return out
}

// Serve accepts connections until ctx ends, then closes every connection
// and waits for commands in flight.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	lns := s.lns
	s.mu.Unlock()
	for _, ln := range lns {
		s.log.Info("NUT server listening", "addr", ln.Addr().String(), "starttls", s.opts.TLS != nil)
	}
	var accepts sync.WaitGroup
	for _, ln := range lns {
		accepts.Add(1)
		go func() {
			defer accepts.Done()
			s.accept(ctx, ln)
		}()
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	accepts.Wait()
	s.mu.Lock()
	for c := range s.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	s.cmdStop()
	s.wg.Wait()
	return nil
}

func (s *Server) accept(ctx context.Context, ln net.Listener) {
	var refusedLog time.Time
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("NUT server: accept failed", "addr", ln.Addr().String(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		ip := remoteIP(nc)
		if !s.allowed(ip) {
			s.stats.refused.Inc()
			if time.Since(refusedLog) > time.Minute {
				refusedLog = time.Now()
				s.log.Warn("NUT server: connection refused: address not in allow_from", "remote", ip.String())
			}
			nc.Close()
			continue
		}
		if int(s.nconn.Load()) >= s.opts.MaxConns {
			s.stats.refused.Inc()
			if time.Since(refusedLog) > time.Minute {
				refusedLog = time.Now()
				s.log.Warn("NUT server: too many connections; closing new ones", "max", s.opts.MaxConns, "remote", ip.String())
			}
			nc.Close()
			continue
		}
		c := &conn{s: s, raw: nc, nc: nc, ip: ip.String()}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.nconn.Add(1)
		s.stats.accepted.Inc()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			s.nconn.Add(-1)
		}()
	}
}

func remoteIP(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

func (s *Server) allowed(ip netip.Addr) bool {
	if len(s.opts.AllowFrom) == 0 {
		return true
	}
	for _, p := range s.opts.AllowFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
