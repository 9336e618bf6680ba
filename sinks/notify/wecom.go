package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// WeComConfig is the `type: wecom` notifier: a WeCom (WeChat Work) group
// robot webhook.
type WeComConfig struct {
	engine.Common `koanf:",squash"`
	// Key is the robot's key; or URL, the whole webhook URL as WeCom shows
	// it (…/cgi-bin/webhook/send?key=…). Either is a secret.
	Key     config.Secret `koanf:"key"`
	KeyFile string        `koanf:"key_file"`
	KeyEnv  string        `koanf:"key_env"`
	URL     config.Secret `koanf:"url"`
	// MsgType is markdown (default), text or markdown_v2.
	MsgType string `koanf:"msgtype"`
	// MentionedList are user ids (or "@all") to @; MentionedMobileList are
	// phone numbers (text messages only).
	MentionedList       []string `koanf:"mentioned_list"`
	MentionedMobileList []string `koanf:"mentioned_mobile_list"`

	key engine.SecretRef
}

const wecomBase = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"

func init() {
	engine.Register("wecom", func() *WeComConfig {
		return &WeComConfig{Common: engine.Defaults("wecom", engine.ServiceDefaults{RateLimit: 20, FlapWindow: 10 * time.Second}), MsgType: "markdown"}
	})
}

// Validate implements config.Validator.
func (c *WeComConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.key.Resolve(&c.Key, c.KeyFile, c.KeyEnv, "key", false)...)
	if (c.Key == "") == (c.URL == "") {
		errs = append(errs, config.Errorf("key", "set either key (or key_file, key_env) or url"))
	}
	if c.URL != "" {
		if _, err := c.endpoint(); err != nil {
			errs = append(errs, config.Errorf("url", "%v", err))
		}
	}
	switch c.MsgType {
	case "markdown", "text", "markdown_v2":
	default:
		errs = append(errs, config.Errorf("msgtype", "must be markdown, text or markdown_v2, got %q", c.MsgType))
	}
	return errs
}

func (c *WeComConfig) endpoint() (string, error) {
	if c.URL == "" {
		return wecomBase + "?key=" + url.QueryEscape(c.Key.Reveal()), nil
	}
	u, err := url.Parse(c.URL.Reveal())
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("must be the webhook URL https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…")
	}
	if u.Query().Get("key") == "" {
		return "", fmt.Errorf("the webhook URL has no key=… parameter")
	}
	return u.String(), nil
}

// NewSink implements bridge.SinkSpec.
func (c *WeComConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("wecom notifier %q: %w", c.Name, config.Errors(errs))
	}
	ep, _ := c.endpoint()
	svc := &wecom{cfg: c, endpoint: ep}
	key := c.Key.Reveal()
	if c.URL != "" {
		u, _ := url.Parse(ep)
		key = u.Query().Get("key")
	}
	return engine.New(env, &c.Common, svc, key, c.URL.Reveal())
}

type wecom struct {
	cfg      *WeComConfig
	endpoint string
}

func (w *wecom) Escape(s string) string {
	if w.cfg.MsgType == "text" {
		return engine.MarkupPlain.Escape(s)
	}
	return engine.MarkupChatMarkdown.Escape(s)
}

func (w *wecom) MaxBytes() int {
	if w.cfg.MsgType == "text" {
		return 2048
	}
	return 4096
}

// wecomColor maps severity to WeCom markdown's font colours.
func wecomColor(s bridge.Severity) string {
	switch s {
	case bridge.SeverityCritical, bridge.SeverityWarning:
		return "warning"
	}
	return "info"
}

func (w *wecom) Send(ctx context.Context, m engine.Message) error {
	var body map[string]any
	switch w.cfg.MsgType {
	case "text":
		t := map[string]any{"content": engine.Truncate(m.Title+"\n"+m.Body, 2048)}
		if len(w.cfg.MentionedList) > 0 {
			t["mentioned_list"] = w.cfg.MentionedList
		}
		if len(w.cfg.MentionedMobileList) > 0 {
			t["mentioned_mobile_list"] = w.cfg.MentionedMobileList
		}
		body = map[string]any{"msgtype": "text", "text": t}
	case "markdown_v2":
		body = map[string]any{"msgtype": "markdown_v2", "markdown_v2": map[string]any{"content": engine.Truncate("## "+m.Title+"\n\n"+m.Body, 4096)}}
	default:
		var b strings.Builder
		fmt.Fprintf(&b, "**<font color=\"%s\">%s</font>**\n", wecomColor(m.Severity), m.Title)
		b.WriteString(strings.ReplaceAll(m.Body, "\n", "\n> "))
		var mentions strings.Builder
		for _, u := range w.cfg.MentionedList {
			fmt.Fprintf(&mentions, "<@%s>", u)
		}
		tail := ""
		if mentions.Len() > 0 {
			tail = "\n" + mentions.String()
		}
		content := engine.Truncate(b.String(), 4096-len(tail)) + tail
		body = map[string]any{"msgtype": "markdown", "markdown": map[string]any{"content": content}}
	}
	resp, err := engine.PostJSON(ctx, "wecom", w.endpoint, nil, body)
	if err != nil {
		return err
	}
	if err := resp.OK2xx("wecom"); err != nil {
		return err
	}
	var r struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(resp.Body, &r); err != nil || r.ErrCode == nil {
		return engine.Transient(fmt.Errorf("wecom: unexpected answer: %s", engine.Shorten(string(resp.Body), 200)), 0)
	}
	return wecomError(*r.ErrCode, r.ErrMsg)
}

// wecomError classifies WeCom's errcode (HTTP 200 with an error body).
func wecomError(code int, msg string) error {
	if code == 0 {
		return nil
	}
	err := fmt.Errorf("wecom: errcode %d: %s", code, engine.Shorten(msg, 200))
	switch code {
	case 45009: // rate limit: back off at least a minute
		return engine.Transient(err, time.Minute)
	case -1, 45033:
		return engine.Transient(err, 0)
	case 93000, 40001, 40014, 42001, 93004, 93008:
		return engine.Refused(err)
	case 40003, 46004: // bad userid in mentions: the config's mention list
		return engine.Refused(err)
	}
	return engine.Rejected(err)
}
