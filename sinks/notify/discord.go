package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// DiscordConfig is the `type: discord` notifier: a channel webhook.
type DiscordConfig struct {
	engine.Common `koanf:",squash"`
	URL           config.Secret `koanf:"url"`
	URLFile       string        `koanf:"url_file"`
	URLEnv        string        `koanf:"url_env"`
	Username      string        `koanf:"username"`

	u engine.SecretRef
}

func init() {
	engine.Register("discord", func() *DiscordConfig {
		return &DiscordConfig{Common: engine.Defaults("discord", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second})}
	})
}

// Validate implements config.Validator.
func (c *DiscordConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.u.Resolve(&c.URL, c.URLFile, c.URLEnv, "url", true)...)
	if c.URL != "" {
		errs = append(errs, engine.CheckURL("url", c.URL.Reveal())...)
	}
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *DiscordConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("discord notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &discord{cfg: c}, c.URL.Reveal())
}

type discord struct{ cfg *DiscordConfig }

func (d *discord) Escape(s string) string { return engine.MarkupDiscord.Escape(s) }

func (d *discord) MaxBytes() int { return 1900 }

func (d *discord) Send(ctx context.Context, m engine.Message) error {
	body := map[string]any{"content": engine.Truncate("**"+m.Title+"**\n"+m.Body, 1990), "allowed_mentions": map[string]any{"parse": []string{}}}
	if d.cfg.Username != "" {
		body["username"] = d.cfg.Username
	}
	resp, err := engine.PostJSON(ctx, "discord", d.cfg.URL.Reveal(), nil, body)
	if err != nil {
		return err
	}
	if resp.Status == 429 {
		var r struct {
			RetryAfter float64 `json:"retry_after"`
			Message    string  `json:"message"`
		}
		_ = json.Unmarshal(resp.Body, &r)
		return engine.Transient(fmt.Errorf("discord: HTTP 429: %s", r.Message), time.Duration(r.RetryAfter*float64(time.Second)))
	}
	return resp.OK2xx("discord")
}
