package notify

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// GotifyConfig is the `type: gotify` notifier: an application on a Gotify
// server.
type GotifyConfig struct {
	engine.Common `koanf:",squash"`
	Server        string        `koanf:"server"`
	Token         config.Secret `koanf:"token"`
	TokenFile     string        `koanf:"token_file"`
	TokenEnv      string        `koanf:"token_env"`

	tok engine.SecretRef
}

func init() {
	engine.Register("gotify", func() *GotifyConfig {
		return &GotifyConfig{Common: engine.Defaults("gotify", engine.ServiceDefaults{FlapWindow: 10 * time.Second})}
	})
}

// Validate implements config.Validator.
func (c *GotifyConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.Token, c.TokenFile, c.TokenEnv, "token", true)...)
	errs = append(errs, engine.CheckURL("server", c.Server)...)
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *GotifyConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("gotify notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &gotify{cfg: c}, c.Token.Reveal())
}

type gotify struct{ cfg *GotifyConfig }

func (g *gotify) Escape(s string) string { return engine.MarkupPlain.Escape(s) }

func (g *gotify) MaxBytes() int { return 0 }

func (g *gotify) Send(ctx context.Context, m engine.Message) error {
	prio := map[bridge.Severity]int{bridge.SeverityInfo: 4, bridge.SeverityWarning: 6, bridge.SeverityCritical: 9}[m.Severity]
	h := http.Header{"X-Gotify-Key": {g.cfg.Token.Reveal()}}
	resp, err := engine.PostJSON(ctx, "gotify", strings.TrimRight(g.cfg.Server, "/")+"/message", h,
		map[string]any{"title": m.Title, "message": m.Body, "priority": prio})
	if err != nil {
		return err
	}
	return resp.OK2xx("gotify")
}
