// Package console is a sink that prints events and state changes readably,
// for `upsbridge demo` and for watching a bridge from a terminal.
package console

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/upsbridge/upsbridge/bridge"
)

// Sink writes one line per event and per status change.
type Sink struct {
	mu     sync.Mutex
	w      io.Writer
	status map[string]string
}

// New returns a console sink writing to w.
func New(w io.Writer) *Sink { return &Sink{w: w, status: map[string]string{}} }

// Name implements bridge.Sink.
func (s *Sink) Name() string { return "console" }

// Run implements bridge.Sink.
func (s *Sink) Run(ctx context.Context, q *bridge.Queue) error {
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return nil
		}
		s.mu.Lock()
		switch m.Kind {
		case bridge.MessageEvent:
			e := m.Event
			fmt.Fprintf(s.w, "%s  %-9s %-8s %s\n", e.Time.Format("15:04:05.000"), e.Type, strings.ToUpper(e.Severity().String()), e.Message)
		case bridge.MessageState:
			st := m.State
			line := describe(st)
			if s.status[st.UPS] != line {
				s.status[st.UPS] = line
				fmt.Fprintf(s.w, "%s  %-9s %-8s %s\n", st.Time.Format("15:04:05.000"), "state", st.UPS, line)
			}
		}
		s.mu.Unlock()
	}
}

func describe(st *bridge.State) string {
	if !st.Comm {
		return "no communication"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "status=%q", st.Status.Raw)
	if v, ok := st.Vars.Number(bridge.VarBatteryCharge); ok {
		fmt.Fprintf(&b, " charge=%.0f%%", v)
	}
	if v, ok := st.Vars.Number(bridge.VarRuntime); ok {
		fmt.Fprintf(&b, " runtime=%.0fmin", v/60)
	}
	if st.Critical {
		b.WriteString(" CRITICAL")
	}
	return b.String()
}
