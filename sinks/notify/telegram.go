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

// TelegramConfig is the `type: telegram` notifier: a bot sending to a chat.
type TelegramConfig struct {
	engine.Common `koanf:",squash"`
	BotToken      config.Secret `koanf:"bot_token"`
	BotTokenFile  string        `koanf:"bot_token_file"`
	BotTokenEnv   string        `koanf:"bot_token_env"`
	ChatID        string        `koanf:"chat_id"`
	ThreadID      int64         `koanf:"message_thread_id"`
	APIURL        string        `koanf:"api_url"`
	SilentForInfo bool          `koanf:"silent_for_info"`

	tok engine.SecretRef
}

func init() {
	engine.Register("telegram", func() *TelegramConfig {
		return &TelegramConfig{Common: engine.Defaults("telegram", engine.ServiceDefaults{RateLimit: 20, FlapWindow: 10 * time.Second}), APIURL: "https://api.telegram.org"}
	})
}

// Validate implements config.Validator.
func (c *TelegramConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.BotToken, c.BotTokenFile, c.BotTokenEnv, "bot_token", true)...)
	if c.ChatID == "" {
		errs = append(errs, config.Errorf("chat_id", "is required"))
	}
	errs = append(errs, engine.CheckURL("api_url", c.APIURL)...)
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *TelegramConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("telegram notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &telegram{cfg: c}, c.BotToken.Reveal())
}

type telegram struct{ cfg *TelegramConfig }

func (t *telegram) Escape(s string) string { return engine.MarkupPlain.Escape(s) }

func (t *telegram) MaxBytes() int { return 4096 }

func (t *telegram) Send(ctx context.Context, m engine.Message) error {
	body := map[string]any{"chat_id": t.cfg.ChatID, "text": engine.Truncate(m.Title+"\n\n"+m.Body, 4096)}
	if t.cfg.ThreadID != 0 {
		body["message_thread_id"] = t.cfg.ThreadID
	}
	if t.cfg.SilentForInfo && m.Severity == bridge.SeverityInfo {
		body["disable_notification"] = true
	}
	endpoint := strings.TrimRight(t.cfg.APIURL, "/") + "/bot" + t.cfg.BotToken.Reveal() + "/sendMessage"
	resp, err := engine.PostJSON(ctx, "telegram", endpoint, nil, body)
	if err != nil {
		return err
	}
	var r struct {
		OK          bool   `json:"ok"`
		ErrorCode   int    `json:"error_code"`
		Description string `json:"description"`
		Parameters  struct {
			RetryAfter int `json:"retry_after"`
		} `json:"parameters"`
	}
	if json.Unmarshal(resp.Body, &r) != nil {
		if err := resp.OK2xx("telegram"); err != nil {
			return err
		}
		return engine.Transient(fmt.Errorf("telegram: unexpected answer: %s", engine.Shorten(string(resp.Body), 200)), 0)
	}
	if r.OK {
		return nil
	}
	err = fmt.Errorf("telegram: error %d: %s", r.ErrorCode, engine.Shorten(r.Description, 200))
	code := r.ErrorCode
	if code == 0 {
		code = resp.Status
	}
	switch {
	case code == 429 || code >= 500:
		return engine.Transient(err, time.Duration(r.Parameters.RetryAfter)*time.Second)
	case code == 401 || code == 403 || code == 404:
		return engine.Refused(err)
	case code == 400 && strings.Contains(strings.ToLower(r.Description), "chat"):
		return engine.Refused(err) // chat not found, group upgraded: the config's chat_id
	}
	return engine.Rejected(err)
}
