package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/upsbridge/upsbridge/sinks/notify/engine"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

func checkURL(key, raw string) []config.FieldError {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return []config.FieldError{config.Errorf(key, "must be an http(s) URL, got %q", engine.RedactURL(raw))}
	}
	return nil
}

// ---- ntfy ----

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
	config.Register("notify", "ntfy", func() any {
		return &NtfyConfig{Common: engine.Defaults("ntfy", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second}), Server: "https://ntfy.sh"}
	})
}

// Validate implements config.Validator.
func (c *NtfyConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.Token, c.TokenFile, c.TokenEnv, "token", false)...)
	errs = append(errs, checkURL("server", c.Server)...)
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

// ---- gotify ----

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
	config.Register("notify", "gotify", func() any {
		return &GotifyConfig{Common: engine.Defaults("gotify", engine.ServiceDefaults{FlapWindow: 10 * time.Second})}
	})
}

// Validate implements config.Validator.
func (c *GotifyConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.Token, c.TokenFile, c.TokenEnv, "token", true)...)
	errs = append(errs, checkURL("server", c.Server)...)
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

// ---- bark ----

// BarkConfig is the `type: bark` notifier: the Bark iOS app.
type BarkConfig struct {
	engine.Common `koanf:",squash"`
	Server        string        `koanf:"server"`
	DeviceKey     config.Secret `koanf:"device_key"`
	DeviceKeyFile string        `koanf:"device_key_file"`
	DeviceKeyEnv  string        `koanf:"device_key_env"`
	Group         string        `koanf:"group"`
	Sound         string        `koanf:"sound"`

	key engine.SecretRef
}

func init() {
	config.Register("notify", "bark", func() any {
		return &BarkConfig{Common: engine.Defaults("bark", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second}), Server: "https://api.day.app", Group: "upsbridge"}
	})
}

// Validate implements config.Validator.
func (c *BarkConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.key.Resolve(&c.DeviceKey, c.DeviceKeyFile, c.DeviceKeyEnv, "device_key", true)...)
	errs = append(errs, checkURL("server", c.Server)...)
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *BarkConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("bark notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &bark{cfg: c}, c.DeviceKey.Reveal())
}

type bark struct{ cfg *BarkConfig }

func (b *bark) Escape(s string) string { return engine.MarkupPlain.Escape(s) }

func (b *bark) MaxBytes() int { return 3000 }

func (b *bark) Send(ctx context.Context, m engine.Message) error {
	level := map[bridge.Severity]string{bridge.SeverityInfo: "active", bridge.SeverityWarning: "timeSensitive", bridge.SeverityCritical: "critical"}[m.Severity]
	body := map[string]any{"device_key": b.cfg.DeviceKey.Reveal(), "title": m.Title, "body": engine.Truncate(m.Body, 3000), "level": level, "group": b.cfg.Group}
	if b.cfg.Sound != "" {
		body["sound"] = b.cfg.Sound
	}
	resp, err := engine.PostJSON(ctx, "bark", strings.TrimRight(b.cfg.Server, "/")+"/push", nil, body)
	if err != nil {
		return err
	}
	var r struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(resp.Body, &r) == nil && r.Code != 0 && r.Code != 200 {
		st := r.Code
		if resp.Status >= 400 {
			st = resp.Status
		}
		if st == 400 && strings.Contains(strings.ToLower(r.Message), "device") {
			return engine.Refused(fmt.Errorf("bark: code %d: %s", r.Code, engine.Shorten(r.Message, 200)))
		}
		return engine.HTTPStatusError("bark", st, r.Message, resp.RetryAfter)
	}
	return resp.OK2xx("bark")
}

// ---- pushover ----

// PushoverConfig is the `type: pushover` notifier.
type PushoverConfig struct {
	engine.Common `koanf:",squash"`
	Token         config.Secret `koanf:"token"`
	TokenFile     string        `koanf:"token_file"`
	TokenEnv      string        `koanf:"token_env"`
	User          config.Secret `koanf:"user"`
	UserFile      string        `koanf:"user_file"`
	UserEnv       string        `koanf:"user_env"`
	Device        string        `koanf:"device"`
	Sound         string        `koanf:"sound"`
	APIURL        string        `koanf:"api_url"`

	tok, usr engine.SecretRef
}

func init() {
	config.Register("notify", "pushover", func() any {
		return &PushoverConfig{Common: engine.Defaults("pushover", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second}), APIURL: "https://api.pushover.net/1/messages.json"}
	})
}

// Validate implements config.Validator.
func (c *PushoverConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.Token, c.TokenFile, c.TokenEnv, "token", true)...)
	errs = append(errs, c.usr.Resolve(&c.User, c.UserFile, c.UserEnv, "user", true)...)
	errs = append(errs, checkURL("api_url", c.APIURL)...)
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *PushoverConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("pushover notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &pushover{cfg: c}, c.Token.Reveal(), c.User.Reveal())
}

type pushover struct{ cfg *PushoverConfig }

func (p *pushover) Escape(s string) string { return engine.MarkupPlain.Escape(s) }

func (p *pushover) MaxBytes() int { return 1024 }

func (p *pushover) Send(ctx context.Context, m engine.Message) error {
	prio := map[bridge.Severity]int{bridge.SeverityInfo: -1, bridge.SeverityWarning: 0, bridge.SeverityCritical: 1}[m.Severity]
	form := url.Values{"token": {p.cfg.Token.Reveal()}, "user": {p.cfg.User.Reveal()}, "title": {engine.Truncate(m.Title, 250)},
		"message": {engine.Truncate(m.Body, 1024)}, "priority": {strconv.Itoa(prio)}, "timestamp": {strconv.FormatInt(m.Time.Unix(), 10)}}
	if p.cfg.Device != "" {
		form.Set("device", p.cfg.Device)
	}
	if p.cfg.Sound != "" {
		form.Set("sound", p.cfg.Sound)
	}
	resp, err := engine.Do(ctx, "pushover", http.MethodPost, p.cfg.APIURL, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form.Encode()))
	if err != nil {
		return err
	}
	if resp.Status >= 200 && resp.Status < 300 {
		return nil
	}
	var r struct {
		Status int      `json:"status"`
		Errors []string `json:"errors"`
		Token  string   `json:"token"`
		User   string   `json:"user"`
	}
	_ = json.Unmarshal(resp.Body, &r)
	msg := strings.Join(r.Errors, "; ")
	if msg == "" {
		msg = string(resp.Body)
	}
	if resp.Status == 400 && (r.Token == "invalid" || r.User == "invalid") {
		return engine.Refused(fmt.Errorf("pushover: HTTP 400: %s", engine.Shorten(msg, 200)))
	}
	ra := resp.RetryAfter
	if resp.Status >= 500 && ra < 5*time.Second {
		ra = 5 * time.Second
	}
	return engine.HTTPStatusError("pushover", resp.Status, msg, ra)
}

// ---- slack ----

// SlackConfig is the `type: slack` notifier: an incoming webhook.
type SlackConfig struct {
	engine.Common `koanf:",squash"`
	URL           config.Secret `koanf:"url"`
	URLFile       string        `koanf:"url_file"`
	URLEnv        string        `koanf:"url_env"`

	u engine.SecretRef
}

func init() {
	config.Register("notify", "slack", func() any {
		return &SlackConfig{Common: engine.Defaults("slack", engine.ServiceDefaults{RateLimit: 60, FlapWindow: 10 * time.Second})}
	})
}

// Validate implements config.Validator.
func (c *SlackConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.u.Resolve(&c.URL, c.URLFile, c.URLEnv, "url", true)...)
	if c.URL != "" {
		errs = append(errs, checkURL("url", c.URL.Reveal())...)
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

// ---- discord ----

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
	config.Register("notify", "discord", func() any {
		return &DiscordConfig{Common: engine.Defaults("discord", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second})}
	})
}

// Validate implements config.Validator.
func (c *DiscordConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.u.Resolve(&c.URL, c.URLFile, c.URLEnv, "url", true)...)
	if c.URL != "" {
		errs = append(errs, checkURL("url", c.URL.Reveal())...)
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
