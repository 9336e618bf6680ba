// Package nut is the `type: nut` source: it reads UPSes from NUT's upsd
// over the network, as upsmon does in netclient mode, with one LIST VAR per
// UPS per poll on a kept-open connection per UPS.
package nut

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/metricname"
	"github.com/upsbridge/upsbridge/internal/nut/client"
)

// Timings a test may shorten.
type timings struct {
	discover     time.Duration // LIST UPS interval in "*" mode
	info         time.Duration // refresh of commands and writable variables
	keepalive    time.Duration // longest silence on a connection (upsd drops at 60 s)
	backoffMax   time.Duration
	trackingWait time.Duration // how long a command waits for the driver's answer
}

func defaultTimings() timings {
	return timings{
		discover:     10 * time.Second,
		info:         5 * time.Minute,
		keepalive:    45 * time.Second,
		backoffMax:   30 * time.Second,
		trackingWait: 10 * time.Second,
	}
}

// Source reads one UPS, or every UPS of one upsd. Each UPS has its own
// poller goroutine and connection, so a slow UPS or server delays no other.
type Source struct {
	cfg  Config
	log  *slog.Logger
	opts client.Options
	tm   timings

	mu    sync.Mutex
	names map[string]string // published UPS id -> NUT name

	slots chan struct{} // one per open connection (max_connections)
	stats pollStats
}

// pollStats are the source's numbers for /metrics and Stats, safe to read
// while pollers run. The counters are the source's typed metrics; the
// gauges of initMetrics read the atomics.
type pollStats struct {
	polls, pollErrors, connects *metrics.Counter
	lastPoll                    atomic.Int64 // duration of the latest LIST VAR, ns
	pollers, conns              atomic.Int64 // running pollers, their open connections
	// limitErrors counts replies and listings refused for a bound
	// (lines, bytes, variables, connections); overLimit is how many UPS
	// names of the latest LIST UPS were beyond max_ups.
	limitErrors *metrics.Counter
	overLimit   atomic.Int64
}

// initMetrics registers the source's metrics in set (the process's, which
// /metrics writes), as upsbridge_source_<name>{source="<id>"}.
func (s *Source) initMetrics(set *metrics.Set) {
	set = metricname.Set(set)
	st := &s.stats
	name := func(key string) string { return metricname.Series("upsbridge_source_"+key, "source", s.cfg.ID) }
	st.polls = set.GetOrCreateCounter(name("polls_total"))
	st.pollErrors = set.GetOrCreateCounter(name("poll_errors_total"))
	st.connects = set.GetOrCreateCounter(name("connects_total"))
	st.limitErrors = set.GetOrCreateCounter(name("limit_errors_total"))
	set.GetOrCreateGauge(name("ups_polled"), func() float64 { return float64(st.pollers.Load()) })
	set.GetOrCreateGauge(name("last_poll_seconds"), func() float64 { return time.Duration(st.lastPoll.Load()).Seconds() })
	set.GetOrCreateGauge(name("connected"), func() float64 { return metricname.Bool(s.connected()) })
	set.GetOrCreateGauge(name("ups_over_limit"), func() float64 { return float64(st.overLimit.Load()) })
	set.GetOrCreateGauge(name("connections_open"), func() float64 { return float64(len(s.slots)) })
}

// connected reports whether every poller has its connection to upsd.
func (s *Source) connected() bool {
	pollers, conns := s.stats.pollers.Load(), s.stats.conns.Load()
	return pollers > 0 && conns == pollers
}

var (
	_ bridge.Source           = (*Source)(nil)
	_ bridge.StatsReporter    = (*Source)(nil)
	_ bridge.Commander        = (*Source)(nil)
	_ bridge.VarSetter        = (*Source)(nil)
	_ bridge.ForcedShutdowner = (*Source)(nil)
	_ bridge.PrimaryReporter  = (*Source)(nil)
)

// New returns a source for a validated configuration, with its metrics in
// set (nil: a set of its own).
func New(cfg Config, log *slog.Logger, set *metrics.Set) *Source {
	timeout := min(max(5*cfg.PollInterval, 2*time.Second), 10*time.Second)
	if cfg.MaxUPS <= 0 {
		cfg.MaxUPS = DefaultMaxUPS
	}
	if cfg.MaxVars <= 0 {
		cfg.MaxVars = DefaultMaxVars
	}
	s := &Source{
		cfg: cfg,
		log: log.With("source", cfg.ID, "address", cfg.Address),
		opts: client.Options{
			Timeout:  timeout,
			StartTLS: client.TLSMode(cfg.StartTLS),
			CAFile:   cfg.CAFile,
			// The wire bound sits above max_vars and max_ups, so that
			// those give their own, clearer errors first.
			MaxListLines: max(client.DefaultMaxListLines, cfg.MaxVars+1, cfg.MaxUPS+1),
		},
		tm:    defaultTimings(),
		names: map[string]string{},
		slots: make(chan struct{}, cfg.maxConnections()),
	}
	s.opts.Dialer = &slotDialer{s: s}
	s.initMetrics(set)
	return s
}

// slotDialer dials upsd only while the source holds fewer than
// max_connections connections; each connection frees its slot on Close.
type slotDialer struct {
	s *Source
	d net.Dialer
}

func (d *slotDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case d.s.slots <- struct{}{}:
	default:
		d.s.stats.limitErrors.Inc()
		return nil, fmt.Errorf("%w: the source already holds %d connections to upsd (max_connections)", client.ErrLimit, cap(d.s.slots))
	}
	nc, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		<-d.s.slots
		return nil, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return &slotConn{Conn: nc, free: func() { <-d.s.slots }}, nil
	}
	return &slotTCPConn{TCPConn: tc, free: sync.OnceFunc(func() { <-d.s.slots })}, nil
}

// slotConn and slotTCPConn free their slot once, on the first Close. The
// TCP one keeps SyscallConn, which the client uses for TCP_QUICKACK.
type slotConn struct {
	net.Conn
	free func()
	once sync.Once
}

func (c *slotConn) Close() error {
	c.once.Do(c.free)
	return c.Conn.Close()
}

type slotTCPConn struct {
	*net.TCPConn
	free func()
}

func (c *slotTCPConn) Close() error {
	c.free()
	return c.TCPConn.Close()
}

// ID implements bridge.Source.
func (s *Source) ID() string { return s.cfg.ID }

// Stats implements bridge.StatsReporter: polls and their errors, connects
// to upsd, the latest LIST VAR round trip, and "connected" while every
// poller has its connection to upsd.
func (s *Source) Stats() map[string]any {
	return map[string]any{
		"server":             s.cfg.Address,
		"ups_polled":         s.stats.pollers.Load(),
		"polls_total":        s.stats.polls.Get(),
		"poll_errors_total":  s.stats.pollErrors.Get(),
		"connects_total":     s.stats.connects.Get(),
		"last_poll_seconds":  time.Duration(s.stats.lastPoll.Load()).Seconds(),
		"connected":          s.connected(),
		"limit_errors_total": s.stats.limitErrors.Get(),
		"ups_over_limit":     s.stats.overLimit.Load(),
		"connections_open":   len(s.slots),
	}
}

// PublishedID returns the UPS id under which a UPS of this source is
// published: the source id for a single UPS, <id>_<name> (sanitised) for
// ups: "*".
func (s *Source) PublishedID(name string) string {
	if s.cfg.UPS != "*" {
		return s.cfg.ID
	}
	return config.SanitizeID(s.cfg.ID + "_" + name)
}

// Run implements bridge.Source.
func (s *Source) Run(ctx context.Context, out chan<- bridge.Update) error {
	if s.cfg.UPS != "*" {
		id := s.PublishedID(s.cfg.UPS)
		s.setName(id, s.cfg.UPS)
		s.poll(ctx, out, id, s.cfg.UPS, nil)
		return ctx.Err()
	}
	return s.discover(ctx, out)
}

func (s *Source) setName(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "" {
		delete(s.names, id)
		return
	}
	s.names[id] = name
}

func (s *Source) nutName(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.names[id]
	if !ok {
		return "", fmt.Errorf("nut source %q: %w %q", s.cfg.ID, bridge.ErrUnknownUPS, id)
	}
	return n, nil
}

func send(ctx context.Context, out chan<- bridge.Update, u bridge.Update) bool {
	select {
	case out <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Source) backoff(attempt int) time.Duration {
	return bridge.Backoff(attempt, max(s.cfg.PollInterval, 250*time.Millisecond), s.tm.backoffMax, rand.Float64)
}

// dial connects, upgrades with STARTTLS as configured, and authenticates
// when credentials are set.
func (s *Source) dial(ctx context.Context) (*client.Conn, error) {
	c, err := client.Dial(ctx, s.cfg.Address, s.opts)
	if err != nil {
		return nil, err
	}
	if s.cfg.Username != "" {
		if err := c.Authenticate(ctx, s.cfg.Username, s.cfg.Password.Reveal()); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// connectPoller dials a poll connection for one UPS, logged in as a
// secondary or primary when configured.
func (s *Source) connectPoller(ctx context.Context, name string) (*client.Conn, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.Login || s.cfg.Primary {
		if err := c.Login(ctx, name); err != nil && !errors.Is(err, client.ErrAlreadyLoggedIn) {
			c.Close()
			return nil, err
		}
	}
	if s.cfg.Primary {
		if err := c.Primary(ctx, name); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// poller is the state of one UPS's poll loop.
type poller struct {
	s      *Source
	id     string
	name   string
	log    *slog.Logger
	conn   *client.Conn
	vars   bridge.Vars
	order  []string // variable names of vars in LIST order
	info   *bridge.Info
	infoAt time.Time
	commOK bool
	// warnedAt is when a UPS never read yet was last reported unreadable:
	// a server that fails every request is reported once a minute, not at
	// every poll.
	warnedAt time.Time
}

// warnEvery is how often a UPS that was never read is reported again.
const warnEvery = time.Minute

// poll runs one UPS's loop until ctx ends. unknown, when not nil, is told
// that upsd no longer knows the UPS ("*" mode).
func (s *Source) poll(ctx context.Context, out chan<- bridge.Update, id, name string, unknown chan<- string) {
	p := &poller{s: s, id: id, name: name, log: s.log.With("ups", id, "nut_ups", name)}
	s.stats.pollers.Add(1)
	defer s.stats.pollers.Add(-1)
	defer p.closeConn()
	attempt := 0
	wireFails := 0 // polls in a row that failed on the wire
	for ctx.Err() == nil {
		if p.conn == nil {
			c, err := s.connectPoller(ctx, name)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				p.lost(ctx, out, err)
				if !sleep(ctx, s.backoff(attempt)) {
					return
				}
				attempt++
				continue
			}
			p.conn = c
			s.stats.conns.Add(1)
			s.stats.connects.Inc()
			p.infoAt = time.Time{}
		}
		start := time.Now()
		interval := s.cfg.PollInterval
		vars, err := p.listVar(ctx)
		s.stats.lastPoll.Store(int64(time.Since(start)))
		if errors.Is(err, client.ErrLimit) {
			s.stats.limitErrors.Inc()
		}
		if err != nil {
			s.stats.pollErrors.Inc()
		} else {
			s.stats.polls.Inc()
		}
		switch {
		case err == nil:
			attempt, wireFails = 0, 0
			if st := vars[bridge.VarStatus]; st == "WAIT" {
				// upsd's placeholder before the driver's first dump: not a
				// state, and the other variables are incomplete.
				p.log.Debug("driver not ready yet (WAIT)")
				break
			}
			var info *bridge.Info
			if p.infoAt.IsZero() || time.Since(p.infoAt) >= s.tm.info {
				info = p.fetchInfo(ctx)
			}
			if !p.commOK {
				p.log.Info("reading UPS")
				p.commOK = true
			}
			if !send(ctx, out, bridge.Update{Source: s.cfg.ID, UPS: id, Kind: bridge.Reading, Time: time.Now(), Vars: vars, Info: info}) {
				return
			}
			if bridge.ParseStatus(vars[bridge.VarStatus]).Has(bridge.OB) {
				interval = s.cfg.PollIntervalOnBattery
			}
		case errors.Is(err, client.ErrUnknownUPS):
			p.lost(ctx, out, err)
			if unknown != nil {
				select {
				case unknown <- name:
				default:
				}
			}
		default:
			p.lost(ctx, out, err)
			if p.conn.Err() != nil {
				// The connection is gone: reconnect at once after a good
				// poll (an idle drop or a restarted upsd); when polls keep
				// failing on the wire (a broken or hostile upsd), back off
				// so that it costs no busy loop.
				p.closeConn()
				wireFails++
				if wireFails > 1 && !sleep(ctx, s.backoff(wireFails-2)) {
					return
				}
				continue
			}
		}
		if !p.wait(ctx, start.Add(interval)) {
			return
		}
	}
}

// closeConn closes the poll connection, if any.
func (p *poller) closeConn() {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
		p.s.stats.conns.Add(-1)
	}
}

// lost reports communication lost for the UPS.
func (p *poller) lost(ctx context.Context, out chan<- bridge.Update, err error) {
	if p.commOK || (p.vars == nil && time.Since(p.warnedAt) >= warnEvery) {
		p.log.Warn("cannot read UPS", "err", err)
		p.warnedAt = time.Now()
	}
	p.commOK = false
	send(ctx, out, bridge.Update{Source: p.s.cfg.ID, UPS: p.id, Kind: bridge.CommLost, Time: time.Now(), Err: err})
}

// wait sleeps until next, sending a cheap request whenever the connection
// would otherwise stay silent for longer than the keepalive.
func (p *poller) wait(ctx context.Context, next time.Time) bool {
	for {
		d := time.Until(next)
		if d <= p.s.tm.keepalive {
			return sleep(ctx, d)
		}
		if !sleep(ctx, p.s.tm.keepalive) {
			return false
		}
		if p.conn != nil {
			if _, err := p.conn.NetVer(ctx); err != nil && p.conn.Err() != nil {
				p.closeConn()
				return true // poll now, which reconnects
			}
		}
	}
}

// listVar reads every variable with one LIST VAR. When nothing changed it
// returns the previous map itself (sources never modify a sent map), so a
// steady UPS costs no allocation per poll.
func (p *poller) listVar(ctx context.Context) (bridge.Vars, error) {
	prev, order := p.vars, p.order
	var next bridge.Vars
	var nextOrder []string
	i := 0
	maxVars := p.s.cfg.MaxVars
	err := p.conn.ListVarFunc(ctx, p.name, func(name, value []byte) {
		if i >= maxVars {
			i++ // counted, not kept: the reading is refused below
			return
		}
		if next == nil && i < len(order) && order[i] == string(name) && prev[order[i]] == string(value) {
			i++
			return
		}
		if next == nil {
			next = make(bridge.Vars, len(order)+4)
			nextOrder = make([]string, i, len(order)+4)
			copy(nextOrder, order[:i])
			for _, k := range order[:i] {
				next[k] = prev[k]
			}
		}
		var k string
		if i < len(order) && order[i] == string(name) {
			k = order[i]
		} else {
			k = string(name)
		}
		v, ok := prev[k]
		if !ok || v != string(value) {
			v = string(value)
		}
		next[k] = v
		nextOrder = append(nextOrder, k)
		i++
	})
	if err != nil {
		return nil, err
	}
	if i > maxVars {
		return nil, fmt.Errorf("LIST VAR %s at %s: %d variables, more than max_vars %d: %w", p.name, p.conn.Addr(), i, maxVars, client.ErrLimit)
	}
	if next == nil {
		if i == len(order) && prev != nil {
			return prev, nil
		}
		// Fewer variables than before, all equal so far.
		next = make(bridge.Vars, i)
		for _, k := range order[:i] {
			next[k] = prev[k]
		}
		nextOrder = append([]string(nil), order[:i]...)
	}
	if len(nextOrder) != len(order) || !sameNames(nextOrder, order) {
		p.infoAt = time.Time{} // the variable set changed: refresh writables
	}
	p.vars, p.order = next, nextOrder
	return next, nil
}

func sameNames(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fetchInfo reads the UPS's instant commands and writable variables. It
// returns the new Info only when it differs from what was sent last.
// Failures are logged and retried at the next refresh.
func (p *poller) fetchInfo(ctx context.Context) *bridge.Info {
	info, err := p.s.readInfo(ctx, p.conn, p.name)
	p.infoAt = time.Now()
	if err != nil {
		p.log.Debug("cannot read commands and writable variables", "err", err)
		if p.conn.Err() != nil {
			p.infoAt = time.Time{}
		}
		return nil
	}
	if p.info != nil && reflect.DeepEqual(*p.info, *info) {
		return nil
	}
	p.info = info
	return info
}

// readInfo gathers LIST CMD and LIST RW with each writable variable's
// type, ENUM values and RANGEs, and descriptions.
func (s *Source) readInfo(ctx context.Context, c *client.Conn, name string) (*bridge.Info, error) {
	info := &bridge.Info{}
	cmds, err := c.ListCmd(ctx, name)
	if err != nil {
		return nil, err
	}
	sort.Strings(cmds)
	for _, cmd := range cmds {
		d, err := c.CmdDesc(ctx, name, cmd)
		if err != nil && c.Err() != nil {
			return nil, err
		}
		if d == "Description unavailable" {
			d = ""
		}
		info.Commands = append(info.Commands, bridge.Command{Name: cmd, Description: d})
	}
	rw, err := c.ListRW(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, v := range rw {
		w := bridge.Writable{Name: v.Name}
		t, err := c.GetType(ctx, name, v.Name)
		if err != nil {
			if c.Err() != nil {
				return nil, err
			}
		}
		switch {
		case t.Enum:
			w.Type = "ENUM"
			if w.Enum, err = c.ListEnum(ctx, name, v.Name); err != nil && c.Err() != nil {
				return nil, err
			}
		case t.Range:
			w.Type = "RANGE"
			rs, err := c.ListRange(ctx, name, v.Name)
			if err != nil && c.Err() != nil {
				return nil, err
			}
			for _, r := range rs {
				lo, err1 := strconv.ParseFloat(r.Min, 64)
				hi, err2 := strconv.ParseFloat(r.Max, 64)
				if err1 == nil && err2 == nil {
					w.Ranges = append(w.Ranges, [2]float64{lo, hi})
				}
			}
		case t.Kind == "NUMBER":
			w.Type = "NUMBER"
		case t.Kind == "STRING":
			w.Type = "STRING"
			if t.Length > 0 {
				w.Type = "STRING:" + strconv.Itoa(t.Length)
			}
		}
		if d, err := c.Desc(ctx, name, v.Name); err == nil && d != "Description unavailable" {
			w.Description = d
		} else if err != nil && c.Err() != nil {
			return nil, err
		}
		info.Writable = append(info.Writable, w)
	}
	return info, nil
}

// discover runs "*" mode: LIST UPS on its own connection, one poller per
// UPS, Gone for a UPS that left the list.
func (s *Source) discover(ctx context.Context, out chan<- bridge.Update) error {
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	pollers := map[string]*running{} // by NUT name
	ids := map[string]string{}       // published id -> NUT name, to catch collisions
	unknown := make(chan string, 1)
	var wg sync.WaitGroup
	defer func() {
		for _, r := range pollers {
			r.cancel()
		}
		wg.Wait()
	}()
	var conn *client.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	attempt := 0
	for ctx.Err() == nil {
		if conn == nil {
			c, err := s.dial(ctx)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				s.log.Warn("cannot list UPSes", "err", err)
				if !sleep(ctx, s.backoff(attempt)) {
					break
				}
				attempt++
				continue
			}
			conn = c
		}
		list, err := conn.ListUPS(ctx)
		if err != nil {
			if errors.Is(err, client.ErrLimit) {
				s.stats.limitErrors.Inc()
			}
			s.log.Warn("cannot list UPSes", "err", err)
			if conn.Err() != nil {
				conn.Close()
				conn = nil
			}
			if !sleep(ctx, s.backoff(attempt)) {
				break
			}
			attempt++
			continue
		}
		attempt = 0
		if over := len(list) - s.cfg.MaxUPS; over > 0 {
			// Keep the UPSes already polled, then the first names listed.
			sort.SliceStable(list, func(i, j int) bool { return pollers[list[i].Name] != nil && pollers[list[j].Name] == nil })
			if s.stats.overLimit.Swap(int64(over)) != int64(over) {
				s.stats.limitErrors.Inc()
				s.log.Error("upsd lists more UPSes than max_ups; the rest are not polled", "listed", len(list), "max_ups", s.cfg.MaxUPS, "not_polled", over)
			}
			list = list[:s.cfg.MaxUPS]
		} else {
			s.stats.overLimit.Store(0)
		}
		seen := map[string]bool{}
		for _, u := range list {
			seen[u.Name] = true
			if pollers[u.Name] != nil {
				continue
			}
			id := s.PublishedID(u.Name)
			if other, dup := ids[id]; dup && other != u.Name {
				s.log.Error("two UPS names give the same id; the second is not published", "ups", id, "nut_ups", u.Name, "other", other)
				continue
			}
			ids[id] = u.Name
			s.setName(id, u.Name)
			s.log.Info("UPS found", "ups", id, "nut_ups", u.Name, "description", u.Description)
			pctx, cancel := context.WithCancel(ctx)
			r := &running{cancel: cancel, done: make(chan struct{})}
			pollers[u.Name] = r
			wg.Add(1)
			go func(name, id string) {
				defer wg.Done()
				defer close(r.done)
				s.poll(pctx, out, id, name, unknown)
			}(u.Name, id)
		}
		for name, r := range pollers {
			if seen[name] {
				continue
			}
			r.cancel()
			<-r.done
			delete(pollers, name)
			id := s.PublishedID(name)
			delete(ids, id)
			s.setName(id, "")
			s.log.Warn("UPS no longer listed by upsd", "ups", id, "nut_ups", name)
			if !send(ctx, out, bridge.Update{Source: s.cfg.ID, UPS: id, Kind: bridge.Gone, Time: time.Now()}) {
				break
			}
		}
		// Wait for the next listing, earlier when a poller met UNKNOWN-UPS.
		t := time.NewTimer(s.tm.discover)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-unknown:
		}
		t.Stop()
	}
	return ctx.Err()
}

// commandConn opens a short-lived authenticated connection for a command,
// so commands never wait behind, or delay, polling.
func (s *Source) commandConn(ctx context.Context, op string) (*client.Conn, error) {
	if s.cfg.Username == "" || s.cfg.Password.Reveal() == "" {
		return nil, fmt.Errorf("nut source %q: %s needs username and password in the source's config (an upsd.users account with the right actions/instcmds)", s.cfg.ID, op)
	}
	c, err := s.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("nut source %q: %s: %w", s.cfg.ID, op, err)
	}
	return c, nil
}

// InstCmd implements bridge.Commander: it runs the command with tracking
// and waits for the driver's answer. Status is SUCCESS, PENDING (no answer
// in time, or a server without tracking), or the driver's ERR code
// (FAILED, UNKNOWN, INVALID-ARGUMENT).
func (s *Source) InstCmd(ctx context.Context, ups, command, arg string) (bridge.CommandResult, error) {
	name, err := s.nutName(ups)
	if err != nil {
		return bridge.CommandResult{}, err
	}
	return s.tracked(ctx, "instant command "+command, func(c *client.Conn) (string, error) {
		return c.InstCmd(ctx, name, command, arg)
	})
}

// SetVar implements bridge.VarSetter, with tracking as InstCmd.
func (s *Source) SetVar(ctx context.Context, ups, varName, value string) (bridge.CommandResult, error) {
	name, err := s.nutName(ups)
	if err != nil {
		return bridge.CommandResult{}, err
	}
	return s.tracked(ctx, "set "+varName, func(c *client.Conn) (string, error) {
		return c.SetVar(ctx, name, varName, value)
	})
}

func (s *Source) tracked(ctx context.Context, op string, run func(*client.Conn) (string, error)) (bridge.CommandResult, error) {
	c, err := s.commandConn(ctx, op)
	if err != nil {
		return bridge.CommandResult{}, err
	}
	defer c.Close()
	tracking := true
	if err := c.SetTracking(ctx, true); err != nil {
		if c.Err() != nil || errors.Is(err, client.ErrAccessDenied) {
			return bridge.CommandResult{}, fmt.Errorf("nut source %q: %s: %w", s.cfg.ID, op, err)
		}
		tracking = false // a server older than 2.8
	}
	id, err := run(c)
	if err != nil {
		return bridge.CommandResult{}, fmt.Errorf("nut source %q: %s: %w", s.cfg.ID, op, err)
	}
	if !tracking || id == "" {
		return bridge.CommandResult{Status: "PENDING", Detail: "upsd passed it to the driver; this server does not report the result"}, nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.tm.trackingWait)
	defer cancel()
	res, err := c.WaitTracking(wctx, id, 50*time.Millisecond)
	var pe *client.ProtocolError
	switch {
	case err == nil && strings.EqualFold(res, client.TrackingSuccess):
		_ = c.Logout(ctx)
		return bridge.CommandResult{Status: "SUCCESS"}, nil
	case err == nil:
		return bridge.CommandResult{Status: "PENDING", Detail: "the driver did not answer within " + s.tm.trackingWait.String()}, nil
	case errors.As(err, &pe):
		_ = c.Logout(ctx)
		return bridge.CommandResult{Status: pe.Code, Detail: "the driver answered ERR " + pe.Code + ": " + hint(pe.Code)}, nil
	default:
		return bridge.CommandResult{}, fmt.Errorf("nut source %q: %s: waiting for the result: %w", s.cfg.ID, op, err)
	}
}

func hint(code string) string {
	e := &client.ProtocolError{Code: code}
	_, h, _ := strings.Cut(e.Error(), ": ")
	return h
}

// IsPrimary implements bridge.PrimaryReporter: with primary: true the
// bridge is the primary of every UPS this source reads (its upsd account
// has upsmon primary rights); otherwise it is a secondary that relays the
// FSD upsd reports.
func (s *Source) IsPrimary(ups string) bool {
	if !s.cfg.Primary {
		return false
	}
	_, err := s.nutName(ups)
	return err == nil
}

// SetFSD implements bridge.ForcedShutdowner: as the UPS's primary it sets
// FSD on upsd, so every upsmon secondary of that UPS shuts down too.
func (s *Source) SetFSD(ctx context.Context, ups string) error {
	name, err := s.nutName(ups)
	if err != nil {
		return err
	}
	if !s.cfg.Primary {
		return fmt.Errorf("nut source %q: FSD on %q: %w (set primary: true with an upsd.users account that has upsmon primary)", s.cfg.ID, ups, bridge.ErrNotSupported)
	}
	c, err := s.commandConn(ctx, "FSD")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Primary(ctx, name); err != nil {
		return fmt.Errorf("nut source %q: FSD on %q: %w", s.cfg.ID, ups, err)
	}
	if err := c.FSD(ctx, name); err != nil {
		return fmt.Errorf("nut source %q: FSD on %q: %w", s.cfg.ID, ups, err)
	}
	s.log.Warn("forced shutdown set on upsd", "ups", ups, "nut_ups", name)
	_ = c.Logout(ctx)
	return nil
}
