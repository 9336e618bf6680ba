// Package httpapi is upsbridge's HTTP endpoint (http.listen, off by
// default): Prometheus metrics, liveness and readiness probes, and the whole
// state as JSON.
//
//	GET /metrics    Prometheus text format 0.0.4 (see metrics.go)
//	GET /healthz    200 "ok" while the process serves requests
//	GET /readyz     200 "ready", or 503 with one line per problem: the broker
//	                connection is down, a source has read no UPS yet, a
//	                UPS is not communicating, or a sink reports a problem
//	                (a stats key "problem": a shutdown agent that cannot
//	                protect its host)
//	GET /api/state  every UPS state, agent, source and sink as JSON
//
// With a token (http.token) every path but /healthz needs
// "Authorization: Bearer <token>": /healthz says only "ok", and liveness
// probes (the container's HEALTHCHECK, an orchestrator) carry no secret.
//
// The package is a bridge sink: it consumes the states and events the bridge
// routes to every sink, so the numbers it shows are exactly what the other
// sinks were given. Sources and sinks register their own metrics in the
// process's metrics set (Options.Metrics), and show their numbers in
// /api/state and /readyz by implementing bridge.StatsReporter.
package httpapi

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/metricname"
)

// Observed is what the endpoint reads from the running bridge; *bridge.Bridge
// implements it.
type Observed interface {
	Sources() []bridge.Source
	Sinks() []bridge.SinkQueue
	SourceOf(ups string) string
}

// Options configure the endpoint.
type Options struct {
	// Listen is host:port; ":0" picks a free port (see Server.Addr).
	Listen   string
	BridgeID string
	Version  string
	// Bridge is the running bridge; nil shows only what the sink consumed.
	Bridge Observed
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every path but /healthz (http.token).
	Token config.Secret
	// Metrics is the process's metrics set, where the components registered
	// theirs; /metrics writes it (nil: a set with only the endpoint's own).
	Metrics *metrics.Set
}

// Server is the HTTP endpoint and the sink that feeds it.
type Server struct {
	opts Options
	log  *slog.Logger
	ln   net.Listener
	srv  *http.Server

	mu     sync.RWMutex
	states map[string]*bridge.State
	// events counts the events consumed, for upsbridge_events_total and
	// /api/state.
	events map[eventKey]uint64
	// agents holds the last event of each host's agent (stage started,
	// SHUTDOWN), for /api/state when the agent reports no stats itself.
	agentEvents map[string]*bridge.Event

	set *metrics.Set // what /metrics writes
}

// eventKey is one series of upsbridge_events_total.
type eventKey struct{ ups, typ, host string }

// New binds the listening socket (so a port in use is reported at start,
// not later) and builds the handlers. Serve serves; the Server is also the
// bridge sink that must be added with bridge.AddSink.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("http api: listen on %s: %w", opts.Listen, err)
	}
	s := &Server{
		opts:        opts,
		log:         opts.Logger.With("sink", "http"),
		ln:          ln,
		states:      map[string]*bridge.State{},
		events:      map[eventKey]uint64{},
		agentEvents: map[string]*bridge.Event{},
		set:         metricname.Set(opts.Metrics),
	}
	s.initMetrics(s.set)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /api/state", s.handleState)
	var h http.Handler = mux
	if opts.Token != "" {
		h = requireToken(opts.Token, mux)
	} else if !config.IsLoopbackListen(ln.Addr().String()) {
		s.log.Warn("http endpoint reachable beyond this machine without a token (http.token)", "addr", ln.Addr().String())
	}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	return s, nil
}

// Addr returns the address the endpoint listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handler returns the endpoint's handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Serve serves until ctx ends, then shuts the server down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("http endpoint listening", "addr", s.ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("http api: serve on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http api: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http api: serve: %w", err)
	}
	return nil
}

// Name implements bridge.Sink.
func (s *Server) Name() string { return "http" }

// Run implements bridge.Sink: it keeps the latest state of every UPS and
// counts events until the queue is closed and drained.
func (s *Server) Run(ctx context.Context, q *bridge.Queue) error {
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return nil
		}
		s.accept(m)
	}
}

func (s *Server) accept(m bridge.Message) {
	switch m.Kind {
	case bridge.MessageState:
		s.mu.Lock()
		s.states[m.State.UPS] = m.State
		s.mu.Unlock()
	case bridge.MessageEvent:
		ev := m.Event
		s.mu.Lock()
		s.events[eventKey{ev.UPS, string(ev.Type), ev.Host}]++
		if ev.Host != "" {
			s.agentEvents[ev.Host] = ev
		}
		s.mu.Unlock()
	}
}

// snapshot returns the consumed states sorted by UPS id.
func (s *Server) snapshot() []*bridge.State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*bridge.State, 0, len(s.states))
	for _, st := range s.states {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UPS < out[j].UPS })
	return out
}

// sourceStats returns each source's id and reported numbers.
func (s *Server) sourceStats() []namedStats {
	if s.opts.Bridge == nil {
		return nil
	}
	var out []namedStats
	for _, src := range s.opts.Bridge.Sources() {
		ns := namedStats{Name: src.ID()}
		if r, ok := src.(bridge.StatsReporter); ok {
			ns.Stats = r.Stats()
		}
		out = append(out, ns)
	}
	return out
}

// sinkStats returns each sink's name, queue and reported numbers, except
// this one's.
func (s *Server) sinkStats() []namedStats {
	if s.opts.Bridge == nil {
		return nil
	}
	var out []namedStats
	for _, sq := range s.opts.Bridge.Sinks() {
		if sq.Sink == bridge.Sink(s) {
			continue
		}
		ns := namedStats{Name: sq.Sink.Name(), QueueLength: sq.Queue.Len(), Dropped: sq.Queue.Dropped()}
		if r, ok := sq.Sink.(bridge.StatsReporter); ok {
			ns.Stats = r.Stats()
		}
		out = append(out, ns)
	}
	return out
}

type namedStats struct {
	Name        string
	QueueLength int
	Dropped     uint64
	Stats       map[string]any
}

// problems lists why the process is not ready; empty means ready.
func (s *Server) problems() []string {
	var out []string
	for _, ns := range s.sinkStats() {
		if c, ok := ns.Stats["connected"].(bool); ok && !c {
			if ns.Name == "mqtt" {
				out = append(out, "mqtt: not connected to the broker")
			} else {
				out = append(out, fmt.Sprintf("sink %s: not connected", ns.Name))
			}
		}
		// A sink states its own problem in words (a shutdown agent that
		// cannot protect its host).
		if p, ok := ns.Stats["problem"].(string); ok && p != "" {
			out = append(out, p)
		}
	}
	states := s.snapshot()
	for _, ns := range s.sourceStats() {
		if c, ok := ns.Stats["connected"].(bool); ok && !c {
			out = append(out, fmt.Sprintf("source %s: not connected", ns.Name))
		}
		seen := 0
		for _, st := range states {
			if s.opts.Bridge.SourceOf(st.UPS) != ns.Name {
				continue
			}
			seen++
			switch {
			case st.Gone:
			case !st.Comm:
				out = append(out, fmt.Sprintf("ups %s (source %s): not communicating", st.UPS, ns.Name))
			}
		}
		if seen == 0 {
			out = append(out, fmt.Sprintf("source %s: no UPS read yet", ns.Name))
		}
	}
	if s.opts.Bridge == nil {
		for _, st := range states {
			if !st.Gone && !st.Comm {
				out = append(out, fmt.Sprintf("ups %s: not communicating", st.UPS))
			}
		}
	}
	return out
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	p := s.problems()
	if len(p) == 0 {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready:")
	fmt.Fprintln(w, strings.Join(p, "\n"))
}

// handleMetrics serves the Prometheus text format: the process's metrics
// set with the endpoint's own families, then the Go runtime's and the
// process's, gzipped when the client accepts it (Prometheus does).
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Add("Vary", "Accept-Encoding")
	var out io.Writer = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() {
			if err := gz.Close(); err != nil {
				s.log.Debug("write /metrics", "err", err)
			}
			gz.Reset(io.Discard)
			gzipPool.Put(gz)
		}()
		out = gz
	}
	s.set.WritePrometheus(out)
	metrics.WriteProcessMetrics(out)
	metrics.WriteFDMetrics(out)
}
