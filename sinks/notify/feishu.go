package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// FeishuConfig is the `type: feishu` notifier: a Feishu or Lark custom bot.
type FeishuConfig struct {
	engine.Common `koanf:",squash"`
	// URL is the bot's webhook URL (…/open-apis/bot/v2/hook/<token>); it
	// holds the token, so it is a secret. Or Token with Host.
	URL     config.Secret `koanf:"url"`
	URLFile string        `koanf:"url_file"`
	URLEnv  string        `koanf:"url_env"`
	Token   config.Secret `koanf:"token"`
	// Host is open.feishu.cn (default) or open.larksuite.com, with Token.
	Host string `koanf:"host"`
	// Secret is the signing secret when the bot has signing on.
	Secret     config.Secret `koanf:"secret"`
	SecretFile string        `koanf:"secret_file"`
	SecretEnv  string        `koanf:"secret_env"`

	u, sec engine.SecretRef
	now    func() time.Time
}

func init() {
	engine.Register("feishu", func() *FeishuConfig {
		return &FeishuConfig{Common: engine.Defaults("feishu", engine.ServiceDefaults{RateLimit: 100, FlapWindow: 10 * time.Second}), Host: "open.feishu.cn"}
	})
}

// Validate implements config.Validator.
func (c *FeishuConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.u.Resolve(&c.URL, c.URLFile, c.URLEnv, "url", false)...)
	errs = append(errs, c.sec.Resolve(&c.Secret, c.SecretFile, c.SecretEnv, "secret", false)...)
	if (c.URL == "") == (c.Token == "") {
		errs = append(errs, config.Errorf("url", "set either url (or url_file, url_env) or token"))
	}
	if c.URL != "" {
		if u, err := url.Parse(c.URL.Reveal()); err != nil || u.Host == "" {
			errs = append(errs, config.Errorf("url", "must be the bot's webhook URL https://open.feishu.cn/open-apis/bot/v2/hook/…"))
		}
	}
	return errs
}

func (c *FeishuConfig) endpoint() string {
	if c.URL != "" {
		return c.URL.Reveal()
	}
	return "https://" + c.Host + "/open-apis/bot/v2/hook/" + url.PathEscape(c.Token.Reveal())
}

// NewSink implements bridge.SinkSpec.
func (c *FeishuConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("feishu notifier %q: %w", c.Name, config.Errors(errs))
	}
	now := c.now
	if now == nil {
		now = time.Now
	}
	return engine.New(env, &c.Common, &feishu{cfg: c, now: now, endpoint: c.endpoint()}, c.URL.Reveal(), c.Token.Reveal(), c.Secret.Reveal())
}

// FeishuSign returns Feishu's signature: Base64(HMAC-SHA256(key =
// timestamp+"\n"+secret, message = empty)), timestamp in Unix seconds.
func FeishuSign(secret string, ts int64) string {
	mac := hmac.New(sha256.New, []byte(strconv.FormatInt(ts, 10)+"\n"+secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

type feishu struct {
	cfg      *FeishuConfig
	endpoint string
	now      func() time.Time
}

func (f *feishu) Escape(s string) string { return engine.MarkupFeishuText.Escape(s) }

func (f *feishu) MaxBytes() int { return 18000 }

func (f *feishu) Send(ctx context.Context, m engine.Message) error {
	body := map[string]any{"msg_type": "text", "content": map[string]any{"text": engine.Truncate(m.Title+"\n"+m.Body, 18000)}}
	if f.cfg.Secret != "" {
		ts := f.now().Unix()
		body["timestamp"] = strconv.FormatInt(ts, 10)
		body["sign"] = FeishuSign(f.cfg.Secret.Reveal(), ts)
	}
	resp, err := engine.PostJSON(ctx, "feishu", f.endpoint, nil, body)
	if err != nil {
		return err
	}
	if resp.Status != 200 && len(resp.Body) == 0 {
		return resp.OK2xx("feishu")
	}
	var r struct {
		Code          *int   `json:"code"`
		Msg           string `json:"msg"`
		StatusCode    *int   `json:"StatusCode"`
		StatusMessage string `json:"StatusMessage"`
	}
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		if err := resp.OK2xx("feishu"); err != nil {
			return err
		}
		return engine.Transient(fmt.Errorf("feishu: unexpected answer: %s", engine.Shorten(string(resp.Body), 200)), 0)
	}
	code, msg := -999, ""
	switch {
	case r.Code != nil:
		code, msg = *r.Code, r.Msg
	case r.StatusCode != nil:
		code, msg = *r.StatusCode, r.StatusMessage
	}
	if code == -999 {
		if err := resp.OK2xx("feishu"); err != nil {
			return err
		}
		return engine.Transient(fmt.Errorf("feishu: unexpected answer: %s", engine.Shorten(string(resp.Body), 200)), 0)
	}
	return feishuError(code, msg, resp)
}

func feishuError(code int, msg string, resp *engine.Response) error {
	if code == 0 {
		return nil
	}
	err := fmt.Errorf("feishu: code %d: %s", code, engine.Shorten(msg, 200))
	switch code {
	case 11232: // frequency limited
		return engine.Transient(err, 10*time.Second)
	case 19001, 19021, 19022, 19024: // token, signature, IP, keywords
		return engine.Refused(err)
	}
	if resp.Status == 429 || resp.Status >= 500 {
		return engine.Transient(err, resp.RetryAfter)
	}
	return engine.Rejected(err)
}
