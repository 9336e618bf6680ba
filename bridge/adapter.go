package bridge

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Source reads one or more UPSes. Run blocks until ctx ends, sending updates
// into out; it never closes out (the bridge owns it). A source handles its own
// reconnects; a returned error other than ctx's is logged and the source is
// started again after a pause.
type Source interface {
	ID() string
	Run(ctx context.Context, out chan<- Update) error
}

// Sink consumes states and events from its queue until the queue is closed
// and drained, or ctx ends.
type Sink interface {
	Name() string
	Run(ctx context.Context, q *Queue) error
}

// Commander is the optional ability of a source to run an instant command on
// a UPS it reads. ups is the UPS id as published.
type Commander interface {
	InstCmd(ctx context.Context, ups, command, arg string) (CommandResult, error)
}

// VarSetter is the optional ability of a source to set a writable variable.
type VarSetter interface {
	SetVar(ctx context.Context, ups, name, value string) (CommandResult, error)
}

// ForcedShutdowner is the optional ability of a source to tell the UPS's
// server that the UPS is in forced shutdown (NUT's FSD as a primary), so that
// other clients of that server shut down too.
type ForcedShutdowner interface {
	SetFSD(ctx context.Context, ups string) error
}

// PrimaryReporter is the optional ability of a source to say whether the
// bridge is the primary of a UPS it reads: the one that decides forced
// shutdown (FSD) when the UPS turns critical, as upsmon's primary does. A
// source that reads the UPS directly (USB) is; a NUT source only when its
// upsd account is the UPS's primary. A source without this ability makes
// the bridge a secondary of its UPSes: it relays the FSD its server reports
// and never sets one.
type PrimaryReporter interface {
	IsPrimary(ups string) bool
}

// CommandResult is what a UPS said about a command.
type CommandResult struct {
	// Status is "SUCCESS", "FAILED", "PENDING" (result unknown) or the
	// source's own word.
	Status string
	Detail string
}

// CommandRunner is the bridge's side of commands, as sinks see it. It is
// the one route from sinks back to UPSes.
type CommandRunner interface {
	InstCmd(ctx context.Context, ups, command, arg string) (CommandResult, error)
	SetVar(ctx context.Context, ups, name, value string) (CommandResult, error)
}

// Errors for commands routed through the bridge.
var (
	ErrUnknownUPS     = errors.New("unknown UPS")
	ErrNotSupported   = errors.New("the source of this UPS does not support it")
	ErrCommandUnknown = errors.New("the UPS does not offer this command")
	// ErrNotPrimary: the bridge is a secondary of the UPS; FSD is its
	// primary's decision.
	ErrNotPrimary = errors.New("the bridge is not the primary of this UPS")
)

// Backoff returns the wait before reconnect attempt n (0-based): exponential
// from min to max with full jitter in [d/2, d), so that many clients that
// lost the same server do not return in step.
func Backoff(n int, min, max time.Duration, rand func() float64) time.Duration {
	d := min
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(rand()*float64(d/2))
}

// Env is what the program hands an adapter when it builds one from config.
type Env struct {
	Logger   *slog.Logger
	BridgeID string
	// StateDir is where an adapter keeps what must survive a restart.
	StateDir string
	// Commands routes commands to UPSes (for sinks that accept them).
	Commands CommandRunner
	// Metrics is the process's metrics set, which /metrics writes: an
	// adapter registers its own typed metrics there (nil: the adapter keeps
	// them in a set of its own).
	Metrics *metrics.Set
}

// SourceSpec is implemented by a source type's config struct (registered
// with config.RegisterSource): it builds the source.
type SourceSpec interface {
	NewSource(env Env) (Source, error)
}

// SinkSpec is implemented by a sink type's config struct (registered with
// config.RegisterNotifier): it builds the sink.
type SinkSpec interface {
	NewSink(env Env) (Sink, error)
}
