package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// WebhookConfig is the `type: webhook` notifier: a generic JSON POST, with
// an optional HMAC-SHA256 signature and custom headers.
type WebhookConfig struct {
	engine.Common `koanf:",squash"`
	URL           config.Secret `koanf:"url"`
	URLFile       string        `koanf:"url_file"`
	URLEnv        string        `koanf:"url_env"`
	// Secret signs each request: X-Timestamp (Unix seconds) and
	// X-Signature-256: sha256=hex(HMAC-SHA256(secret, timestamp+"."+body)).
	Secret     config.Secret `koanf:"secret"`
	SecretFile string        `koanf:"secret_file"`
	SecretEnv  string        `koanf:"secret_env"`
	// Headers are added to every request; their values are secrets (an
	// Authorization header, say).
	Headers map[string]config.Secret `koanf:"headers"`

	u, sec engine.SecretRef
	now    func() time.Time
}

func init() {
	engine.Register("webhook", func() *WebhookConfig {
		return &WebhookConfig{Common: engine.Defaults("webhook", engine.ServiceDefaults{FlapWindow: 10 * time.Second})}
	})
}

// Validate implements config.Validator.
func (c *WebhookConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.u.Resolve(&c.URL, c.URLFile, c.URLEnv, "url", true)...)
	errs = append(errs, c.sec.Resolve(&c.Secret, c.SecretFile, c.SecretEnv, "secret", false)...)
	if c.URL != "" {
		errs = append(errs, engine.CheckURL("url", c.URL.Reveal())...)
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			errs = append(errs, config.Errorf("headers."+k, "is not a valid header name"))
		}
	}
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *WebhookConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("webhook notifier %q: %w", c.Name, config.Errors(errs))
	}
	now := c.now
	if now == nil {
		now = time.Now
	}
	secrets := []string{c.URL.Reveal(), c.Secret.Reveal()}
	for _, v := range c.Headers {
		secrets = append(secrets, v.Reveal())
	}
	return engine.New(env, &c.Common, &webhook{cfg: c, now: now, bridgeID: env.BridgeID}, secrets...)
}

// WebhookSignature returns the X-Signature-256 value for a body.
func WebhookSignature(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10) + "."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// WebhookPayload is the JSON body the webhook notifier sends (schema 1).
// Its fields are public API.
type WebhookPayload struct {
	Schema   int              `json:"schema"`
	Bridge   string           `json:"bridge,omitempty"`
	Event    string           `json:"event"`
	Severity string           `json:"severity"`
	UPS      string           `json:"ups,omitempty"`
	Host     string           `json:"host,omitempty"`
	Time     string           `json:"time"`
	Status   []string         `json:"status"`
	Title    string           `json:"title"`
	Message  string           `json:"message"`
	Values   map[string]any   `json:"values,omitempty"`
	Events   []WebhookPayload `json:"events,omitempty"` // a digest's events
}

func payloadOf(r engine.Record, bridgeID string) WebhookPayload {
	p := WebhookPayload{Schema: 1, Bridge: bridgeID, Event: r.Type, Severity: bridge.Severity(r.Severity).String(), UPS: r.UPS,
		Host: r.Host, Time: bridge.FormatTime(r.Time), Status: strings.Fields(r.Status), Message: r.Message}
	if p.Status == nil {
		p.Status = []string{}
	}
	for k, v := range r.Vars {
		if p.Values == nil {
			p.Values = map[string]any{}
		}
		key := strings.ReplaceAll(k, ".", "_")
		if n, ok := bridge.ParseNumber(v); ok {
			p.Values[key] = n
		} else {
			p.Values[key] = v
		}
	}
	return p
}

type webhook struct {
	cfg      *WebhookConfig
	now      func() time.Time
	bridgeID string
}

func (w *webhook) MaxBytes() int { return 0 }

func (w *webhook) Send(ctx context.Context, m engine.Message) error {
	p := payloadOf(m.Records[0], w.bridgeID)
	p.Event = m.Event
	p.Severity = m.Severity.String()
	p.Title = m.Title
	p.Message = m.Body
	if len(m.Records) > 1 {
		for _, r := range m.Records {
			p.Events = append(p.Events, payloadOf(r, w.bridgeID))
		}
	}
	body, err := json.Marshal(p)
	if err != nil {
		return engine.Rejected(fmt.Errorf("webhook: encode: %w", err))
	}
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range w.cfg.Headers {
		h.Set(k, v.Reveal())
	}
	if w.cfg.Secret != "" {
		ts := w.now().Unix()
		h.Set("X-Timestamp", strconv.FormatInt(ts, 10))
		h.Set("X-Signature-256", WebhookSignature(w.cfg.Secret.Reveal(), ts, body))
	}
	resp, err := engine.Do(ctx, "webhook", http.MethodPost, w.cfg.URL.Reveal(), h, body)
	if err != nil {
		return err
	}
	return resp.OK2xx("webhook")
}
