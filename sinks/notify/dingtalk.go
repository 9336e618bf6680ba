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
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// DingTalkConfig is the `type: dingtalk` notifier: a DingTalk custom robot.
type DingTalkConfig struct {
	engine.Common `koanf:",squash"`
	// AccessToken is the robot's access_token (from its webhook URL).
	AccessToken     config.Secret `koanf:"access_token"`
	AccessTokenFile string        `koanf:"access_token_file"`
	AccessTokenEnv  string        `koanf:"access_token_env"`
	// Secret is the signing secret ("SEC…") when the robot uses signing.
	Secret     config.Secret `koanf:"secret"`
	SecretFile string        `koanf:"secret_file"`
	SecretEnv  string        `koanf:"secret_env"`
	// URL is the API endpoint (default https://oapi.dingtalk.com/robot/send).
	URL string `koanf:"url"`
	// MsgType is markdown (default) or text.
	MsgType   string   `koanf:"msgtype"`
	AtMobiles []string `koanf:"at_mobiles"`
	AtUserIDs []string `koanf:"at_user_ids"`
	AtAll     bool     `koanf:"at_all"`

	tok, sec engine.SecretRef
	now      func() time.Time
}

func init() {
	engine.Register("dingtalk", func() *DingTalkConfig {
		return &DingTalkConfig{Common: engine.Defaults("dingtalk", engine.ServiceDefaults{RateLimit: 20, FlapWindow: 10 * time.Second}),
			URL: "https://oapi.dingtalk.com/robot/send", MsgType: "markdown"}
	})
}

// Validate implements config.Validator.
func (c *DingTalkConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.tok.Resolve(&c.AccessToken, c.AccessTokenFile, c.AccessTokenEnv, "access_token", true)...)
	errs = append(errs, c.sec.Resolve(&c.Secret, c.SecretFile, c.SecretEnv, "secret", false)...)
	if u, err := url.Parse(c.URL); err != nil || u.Host == "" {
		errs = append(errs, config.Errorf("url", "must be an http(s) URL, got %q", c.URL))
	}
	if c.MsgType != "markdown" && c.MsgType != "text" {
		errs = append(errs, config.Errorf("msgtype", "must be markdown or text, got %q", c.MsgType))
	}
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *DingTalkConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("dingtalk notifier %q: %w", c.Name, config.Errors(errs))
	}
	now := c.now
	if now == nil {
		now = time.Now
	}
	return engine.New(env, &c.Common, &dingtalk{cfg: c, now: now}, c.AccessToken.Reveal(), c.Secret.Reveal())
}

// DingTalkSign returns DingTalk's signature for a timestamp in Unix
// milliseconds: Base64(HMAC-SHA256(key=secret, timestamp+"\n"+secret)),
// not yet URL-encoded.
func DingTalkSign(secret string, tsMillis int64) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(tsMillis, 10) + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

type dingtalk struct {
	cfg *DingTalkConfig
	now func() time.Time
}

func (d *dingtalk) Escape(s string) string {
	if d.cfg.MsgType == "text" {
		return engine.MarkupPlain.Escape(s)
	}
	return engine.MarkupChatMarkdown.Escape(s)
}

func (d *dingtalk) MaxBytes() int { return 18000 }

func (d *dingtalk) Send(ctx context.Context, m engine.Message) error {
	q := url.Values{"access_token": {d.cfg.AccessToken.Reveal()}}
	if d.cfg.Secret != "" {
		ts := d.now().UnixMilli()
		q.Set("timestamp", strconv.FormatInt(ts, 10))
		q.Set("sign", DingTalkSign(d.cfg.Secret.Reveal(), ts))
	}
	endpoint := d.cfg.URL + "?" + q.Encode()
	// The @mobile must appear in the text to be highlighted.
	var mentions strings.Builder
	for _, mob := range d.cfg.AtMobiles {
		mentions.WriteString(" @" + mob)
	}
	for _, id := range d.cfg.AtUserIDs {
		mentions.WriteString(" @" + id)
	}
	at := map[string]any{"atMobiles": nonNil(d.cfg.AtMobiles), "atUserIds": nonNil(d.cfg.AtUserIDs), "isAtAll": d.cfg.AtAll}
	var body map[string]any
	if d.cfg.MsgType == "text" {
		body = map[string]any{"msgtype": "text", "text": map[string]any{"content": engine.Truncate(m.Title+"\n"+m.Body, 18000) + mentions.String()}, "at": at}
	} else {
		text := "#### " + m.Title + "\n\n" + strings.ReplaceAll(m.Body, "\n", "\n\n")
		body = map[string]any{"msgtype": "markdown", "markdown": map[string]any{"title": m.Title, "text": engine.Truncate(text, 18000) + mentions.String()}, "at": at}
	}
	resp, err := engine.PostJSON(ctx, "dingtalk", endpoint, nil, body)
	if err != nil {
		return err
	}
	if err := resp.OK2xx("dingtalk"); err != nil {
		return err
	}
	var r struct {
		ErrCode *int   `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
		Status  int    `json:"status"`
		Wait    int    `json:"wait"`
		Punish  string `json:"punish"`
	}
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return engine.Transient(fmt.Errorf("dingtalk: unexpected answer: %s", engine.Shorten(string(resp.Body), 200)), 0)
	}
	if r.ErrCode == nil {
		if r.Punish != "" || r.Status != 0 { // anti-abuse gateway
			return engine.Transient(fmt.Errorf("dingtalk: throttled by the gateway (status %d, wait %ds)", r.Status, r.Wait), time.Duration(r.Wait)*time.Second)
		}
		return engine.Transient(fmt.Errorf("dingtalk: unexpected answer: %s", engine.Shorten(string(resp.Body), 200)), 0)
	}
	return dingtalkError(*r.ErrCode, r.ErrMsg)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func dingtalkError(code int, msg string) error {
	if code == 0 {
		return nil
	}
	err := fmt.Errorf("dingtalk: errcode %d: %s", code, engine.Shorten(msg, 200))
	switch code {
	case 130101, 410100: // too fast: the robot is throttled for ~10 minutes
		return engine.Transient(err, time.Minute)
	case -1:
		return engine.Transient(err, 0)
	case 300001, 310000, 400013, 300005: // token, signature, keyword, IP allow-list
		return engine.Refused(err)
	}
	return engine.Rejected(err)
}
