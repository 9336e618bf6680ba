// Package engine is the delivery engine every notifier shares; the services
// (WeCom, Telegram, email, exec, …) live outside it and implement Service.
//
// Events that pass a notifier's filters are written to a durable on-disk
// queue in <state_dir>/notify-<name>/ before anything is sent, so an outage
// of the network or a restart of the process loses nothing. A delivery loop
// then sends them in order, one notifier independent of the others, with
// exponential backoff and jitter on transient errors, a per-service rate
// limit (bursts beyond it are coalesced into one digest message), flap
// suppression (ONBATT then ONLINE within flap_window becomes one "power
// blip") and permanent errors (bad key or token) reported once, loudly.
//
// A service is a config type that embeds Common (registered with
// config.RegisterNotifier("<type>", …) and building its sink with New)
// and a Service that sends one rendered Message. The helpers here (Do,
// PostJSON, HTTPStatusError, SecretRef, Markup, Truncate) keep the services'
// answers to the same rules: no redirects, bounded answers, secrets never in
// an error's text.
package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

// DefaultEvents are the events a notifier sends when `events` is not set:
// the notification types upsmon enables (SYSLOG+WALL) out of the box, plus
// the agents' stage events (stage started, failed, undone).
var DefaultEvents = []string{"ONLINE", "ONBATT", "LOWBATT", "FSD", "COMMOK", "COMMBAD", "SHUTDOWN", "REPLBATT", "NOCOMM",
	"STAGE", "STAGE_FAILED", "UNDO"}

// Common holds the keys every notifier has. Each service's config embeds it
// with `koanf:",squash"`.
type Common struct {
	// Name identifies the notifier in logs and names its queue directory.
	Name string `koanf:"name"`
	Type string `koanf:"type"`
	// Events is the list of event names to send ("all" for every one);
	// empty means DefaultEvents.
	Events []string `koanf:"events"`
	// UPS limits the notifier to these UPS ids; empty means all.
	UPS []string `koanf:"ups"`
	// MinSeverity drops events below it: info | warning | critical.
	MinSeverity string `koanf:"min_severity"`
	// Language of the built-in texts: en | zh.
	Language string `koanf:"language"`
	// Title and Template override the built-in title and body
	// (text/template; see Data for the fields).
	Title    string `koanf:"title"`
	Template string `koanf:"template"`
	// RateLimit messages per RateWindow at most (0: no limit). Beyond it,
	// queued events are coalesced into one message.
	RateLimit  int           `koanf:"rate_limit"`
	RateWindow time.Duration `koanf:"rate_window"`
	// FlapWindow: ONBATT followed by ONLINE within it is sent as one "power
	// blip" message (0: off). ONBATT is held back this long.
	FlapWindow time.Duration `koanf:"flap_window"`
	// RetryMin and RetryMax bound the exponential backoff between attempts.
	RetryMin time.Duration `koanf:"retry_min"`
	RetryMax time.Duration `koanf:"retry_max"`
	// MaxAttempts drops a message after that many failed attempts (0: retry
	// until delivered, the default for network services).
	MaxAttempts int `koanf:"max_attempts"`
	// PermanentRetry is how often a notifier whose credentials were refused
	// tries again (quietly) after reporting it once.
	PermanentRetry time.Duration `koanf:"permanent_retry"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `koanf:"timeout"`
	// QueueMax bounds the on-disk queue (0: unbounded).
	QueueMax int `koanf:"queue_max"`
	// NoSync skips fsync on the queue (faster; a machine crash may lose
	// the last events, a process crash does not).
	NoSync bool `koanf:"no_sync"`
}

// ServiceDefaults are a service's own defaults for the keys of Common that
// depend on the service (a vendor's rate limit, whether chat messages hold
// ONBATT back to merge blips, whether delivery ever gives up).
type ServiceDefaults struct {
	// RateLimit messages per RateWindow (0: no limit); RateWindow 0 means
	// one minute.
	RateLimit  int
	RateWindow time.Duration
	// FlapWindow merges ONBATT+ONLINE within it into one blip (0: off).
	FlapWindow time.Duration
	// Attempts drops a message after that many failed attempts (0: never).
	Attempts int
}

// Defaults returns Common with the engine's defaults and the service's d,
// for the config factory a service registers.
func Defaults(typ string, d ServiceDefaults) Common {
	if d.RateWindow == 0 {
		d.RateWindow = time.Minute
	}
	return Common{
		Type:           typ,
		MinSeverity:    "info",
		Language:       "en",
		RateLimit:      d.RateLimit,
		RateWindow:     d.RateWindow,
		FlapWindow:     d.FlapWindow,
		RetryMin:       2 * time.Second,
		RetryMax:       5 * time.Minute,
		MaxAttempts:    d.Attempts,
		PermanentRetry: 15 * time.Minute,
		Timeout:        10 * time.Second,
		QueueMax:       100000,
	}
}

// Register makes `type: <typ>` entries under notify known to the
// configuration: each entry decodes strictly into a fresh value from newSpec
// (its defaults set, from Defaults), is validated when it implements
// config.Validator, and builds its notifier with NewSink, which wraps the
// service in New.
func Register[S config.NotifierSpec](typ string, newSpec func() S) {
	config.RegisterNotifier(typ, func() config.NotifierSpec { return newSpec() })
}

// Validate checks the common keys (keys relative to the entry).
func (c *Common) Validate() []config.FieldError {
	var errs []config.FieldError
	switch {
	case c.Name == "":
		errs = append(errs, config.Errorf("name", "is required"))
	case !config.IDPattern.MatchString(c.Name):
		errs = append(errs, config.Errorf("name", "must match %s, got %q", config.IDPattern, c.Name))
	}
	for i, e := range c.Events {
		if strings.EqualFold(e, "all") {
			continue
		}
		if !bridge.KnownEvent(bridge.EventType(strings.ToUpper(e))) {
			errs = append(errs, config.Errorf(fmt.Sprintf("events[%d]", i), "unknown event %q (known: all, %s)", e, strings.Join(knownEvents(), ", ")))
		}
	}
	for i, u := range c.UPS {
		if !config.IDPattern.MatchString(u) {
			errs = append(errs, config.Errorf(fmt.Sprintf("ups[%d]", i), "must match %s, got %q", config.IDPattern, u))
		}
	}
	if _, err := bridge.ParseSeverity(c.MinSeverity); err != nil {
		errs = append(errs, config.Errorf("min_severity", "%v", err))
	}
	if c.Language != "en" && c.Language != "zh" {
		errs = append(errs, config.Errorf("language", "must be en or zh, got %q", c.Language))
	}
	if _, err := parseTemplates(c.Title, c.Template); err != nil {
		fe := err.(config.FieldError)
		errs = append(errs, fe)
	}
	if c.RateLimit < 0 {
		errs = append(errs, config.Errorf("rate_limit", "must be >= 0, got %d", c.RateLimit))
	}
	if c.RateLimit > 0 && c.RateWindow <= 0 {
		errs = append(errs, config.Errorf("rate_window", "must be > 0, got %q", c.RateWindow.String()))
	}
	if c.FlapWindow < 0 {
		errs = append(errs, config.Errorf("flap_window", "must be >= 0, got %q", c.FlapWindow.String()))
	}
	for _, p := range []struct {
		key string
		d   time.Duration
	}{{"retry_min", c.RetryMin}, {"retry_max", c.RetryMax}, {"permanent_retry", c.PermanentRetry}, {"timeout", c.Timeout}} {
		if p.d <= 0 {
			errs = append(errs, config.Errorf(p.key, "must be > 0, got %q", p.d.String()))
		}
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, config.Errorf("retry_max", "must be >= retry_min (%s), got %q", c.RetryMin, c.RetryMax.String()))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, config.Errorf("max_attempts", "must be >= 0, got %d", c.MaxAttempts))
	}
	if c.QueueMax < 0 {
		errs = append(errs, config.Errorf("queue_max", "must be >= 0, got %d", c.QueueMax))
	}
	return errs
}

func knownEvents() []string {
	var out []string
	for _, t := range bridge.EventTypes() {
		out = append(out, string(t))
	}
	slices.Sort(out)
	return out
}

// filter decides which events a notifier sends.
type filter struct {
	all      bool
	events   map[bridge.EventType]bool
	ups      map[string]bool
	minLevel bridge.Severity
}

func newFilter(c *Common) filter {
	f := filter{events: map[bridge.EventType]bool{}}
	list := c.Events
	if len(list) == 0 {
		list = DefaultEvents
	}
	for _, e := range list {
		if strings.EqualFold(e, "all") {
			f.all = true
		}
		f.events[bridge.EventType(strings.ToUpper(e))] = true
	}
	if len(c.UPS) > 0 {
		f.ups = map[string]bool{}
		for _, u := range c.UPS {
			f.ups[u] = true
		}
	}
	f.minLevel, _ = bridge.ParseSeverity(c.MinSeverity)
	return f
}

// match reports whether the notifier sends e. Agent events (Host set)
// without a UPS pass the ups filter.
func (f filter) match(e *bridge.Event) bool {
	if !f.all && !f.events[e.Type] {
		return false
	}
	if f.ups != nil && e.UPS != "" && !f.ups[e.UPS] {
		return false
	}
	return e.Severity() >= f.minLevel
}

// NotifierName returns the notifier's name (for notify-test --notifier).
func (c *Common) NotifierName() string { return c.Name }
