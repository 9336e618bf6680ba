package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// SlackConfig is the `type: slack` notifier: an incoming webhook.
type SlackConfig struct {
	engine.Common `koanf:",squash"`
	URL           config.Secret `koanf:"url"`
	URLFile       string        `koanf:"url_file"`
	URLEnv        string        `koanf:"url_env"`

	u engine.SecretRef
}

func init() {
	engine.Register("slack", func() *SlackConfig {
		return &SlackConfig{Common: engine.Defaults("slack", engine.ServiceDefaults{RateLimit: 60, FlapWindow: 10 * time.Second})}
	})
}

// Validate implements config.Validator.
func (c *SlackConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.u.Resolve(&c.URL, c.URLFile, c.URLEnv, "url", true)...)
	if c.URL != "" {
		errs = append(errs, engine.CheckURL("url", c.URL.Reveal())...)
	}
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *SlackConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("slack notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &slack{cfg: c}, c.URL.Reveal())
}

type slack struct{ cfg *SlackConfig }

func (sl *slack) Escape(s string) string { return engine.MarkupSlack.Escape(s) }

func (s *slack) MaxBytes() int { return 30000 }

func (s *slack) Send(ctx context.Context, m engine.Message) error {
	resp, err := engine.PostJSON(ctx, "slack", s.cfg.URL.Reveal(), nil, map[string]any{"text": "*" + m.Title + "*\n" + engine.Truncate(m.Body, 30000)})
	if err != nil {
		return err
	}
	return resp.OK2xx("slack")
}
