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

// NtfyConfig is the `type: ntfy` notifier: a topic on an ntfy server.
type NtfyConfig struct {
	engine.Common `koanf:",squash"`
	Server        string        `koanf:"server"`
	Topic         string        `koanf:"topic"`
	Token         config.Secret `koanf:"token"`
	TokenFile     string        `koanf:"token_file"`
	TokenEnv      string        `koanf:"token_env"`
	Username      string        `koanf:"username"`
	Password      config.Secret `koanf:"password"`
	Tags          []string      `koanf:"tags"`
	Click         string        `koanf:"click"`

	tok engine.SecretRef
}

func init() {
	engine.Register("ntfy", func() *NtfyConfig {
		return &NtfyConfig{Common: engine.Defaults("ntfy", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second}), Server: "https://ntfy.sh"}
	})
}

// Validate implements config.Validator.
func (c *NtfyConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.Token, c.TokenFile, c.TokenEnv, "token", false)...)
	errs = append(errs, engine.CheckURL("server", c.Server)...)
	if c.Topic == "" || strings.ContainsAny(c.Topic, "/?# ") {
		errs = append(errs, config.Errorf("topic", "is required and must be a plain topic name, got %q", c.Topic))
	}
	if c.Token != "" && c.Username != "" {
		errs = append(errs, config.Errorf("token", "set either token or username/password"))
	}
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *NtfyConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("ntfy notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &ntfy{cfg: c}, c.Token.Reveal(), c.Password.Reveal())
}

type ntfy struct{ cfg *NtfyConfig }

func (n *ntfy) Escape(s string) string { return engine.MarkupPlain.Escape(s) }

func (n *ntfy) MaxBytes() int { return 4000 }

func (n *ntfy) Send(ctx context.Context, m engine.Message) error {
	prio := map[bridge.Severity]int{bridge.SeverityInfo: 3, bridge.SeverityWarning: 4, bridge.SeverityCritical: 5}[m.Severity]
	body := map[string]any{"topic": n.cfg.Topic, "title": engine.Truncate(m.Title, 1000), "message": engine.Truncate(m.Body, 4000), "priority": prio}
	tags := append([]string{}, n.cfg.Tags...)
	if m.Severity == bridge.SeverityCritical {
		tags = append(tags, "rotating_light")
	} else if m.Severity == bridge.SeverityWarning {
		tags = append(tags, "warning")
	}
	if len(tags) > 0 {
		body["tags"] = tags
	}
	if n.cfg.Click != "" {
		body["click"] = n.cfg.Click
	}
	h := http.Header{}
	if n.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+n.cfg.Token.Reveal())
	} else if n.cfg.Username != "" {
		req, _ := http.NewRequest("GET", "http://x", nil)
		req.SetBasicAuth(n.cfg.Username, n.cfg.Password.Reveal())
		h.Set("Authorization", req.Header.Get("Authorization"))
	}
	resp, err := engine.PostJSON(ctx, "ntfy", strings.TrimRight(n.cfg.Server, "/")+"/", h, body)
	if err != nil {
		return err
	}
	return resp.OK2xx("ntfy")
}
