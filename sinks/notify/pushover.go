package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

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
	engine.Register("pushover", func() *PushoverConfig {
		return &PushoverConfig{Common: engine.Defaults("pushover", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second}), APIURL: "https://api.pushover.net/1/messages.json"}
	})
}

// Validate implements config.Validator.
func (c *PushoverConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.Token, c.TokenFile, c.TokenEnv, "token", true)...)
	errs = append(errs, c.usr.Resolve(&c.User, c.UserFile, c.UserEnv, "user", true)...)
	errs = append(errs, engine.CheckURL("api_url", c.APIURL)...)
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
