package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

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
	engine.Register("bark", func() *BarkConfig {
		return &BarkConfig{Common: engine.Defaults("bark", engine.ServiceDefaults{RateLimit: 30, FlapWindow: 10 * time.Second}), Server: "https://api.day.app", Group: "upsbridge"}
	})
}

// Validate implements config.Validator.
func (c *BarkConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.key.Resolve(&c.DeviceKey, c.DeviceKeyFile, c.DeviceKeyEnv, "device_key", true)...)
	errs = append(errs, engine.CheckURL("server", c.Server)...)
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
