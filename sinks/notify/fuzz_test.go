package notify

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// cannedTransport answers every request with one status and body, without
// any network.
type cannedTransport struct {
	status int
	body   []byte
}

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: c.status, Header: http.Header{"Retry-After": {"3"}}, Body: io.NopCloser(bytes.NewReader(c.body)), Request: r}, nil
}

// FuzzServiceResponse: whatever a service answers, each notifier returns
// nil or a classified error, never panics, and never leaks its key.
func FuzzServiceResponse(f *testing.F) {
	for _, s := range []struct {
		status uint16
		body   string
	}{
		{200, `{"errcode":0,"errmsg":"ok"}`},
		{200, `{"errcode":45009,"errmsg":"api freq out of limit"}`},
		{200, `{"status":1111,"wait":5,"punish":"deny"}`},
		{200, `{"code":19021,"msg":"sign match fail"}`},
		{200, `{"StatusCode":19001,"StatusMessage":"param invalid"}`},
		{429, `{"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":3}}`},
		{400, `{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}`},
		{200, `{"status":1,"request":"abc"}`},
		{400, `{"token":"invalid","errors":["application token is invalid"],"status":0}`},
		{404, `no_service`},
		{204, ``},
		{200, `{"errcode":null}`},
		{500, "\xff\xfe<html>"},
	} {
		f.Add(s.status, []byte(s.body))
	}
	const key = "FUZZKEY-0123456789"
	specs := []bridge.SinkSpec{
		&WeComConfig{Common: common("wecom"), URL: config.Secret("http://svc.invalid/cgi-bin/webhook/send?key=" + key), MsgType: "markdown"},
		&DingTalkConfig{Common: common("dingtalk"), AccessToken: key, URL: "http://svc.invalid/robot/send", MsgType: "markdown"},
		&FeishuConfig{Common: common("feishu"), URL: config.Secret("http://svc.invalid/open-apis/bot/v2/hook/" + key)},
		&TelegramConfig{Common: common("telegram"), BotToken: key, ChatID: "-1", APIURL: "http://svc.invalid"},
		&NtfyConfig{Common: common("ntfy"), Server: "http://svc.invalid", Topic: "ups", Token: key},
		&GotifyConfig{Common: common("gotify"), Server: "http://svc.invalid", Token: key},
		&BarkConfig{Common: common("bark"), Server: "http://svc.invalid", DeviceKey: key},
		&PushoverConfig{Common: common("pushover"), Token: key, User: "u", APIURL: "http://svc.invalid/1/messages.json"},
		&SlackConfig{Common: common("slack"), URL: config.Secret("http://svc.invalid/services/T/B/" + key)},
		&DiscordConfig{Common: common("discord"), URL: config.Secret("http://svc.invalid/api/webhooks/1/" + key)},
		&WebhookConfig{Common: common("webhook"), URL: config.Secret("http://svc.invalid/hook?token=" + key)},
	}
	var sinks []*engine.Sink
	for _, sp := range specs {
		sinks = append(sinks, build(f, sp))
	}
	saved := engine.HTTPClient.Transport
	f.Cleanup(func() { engine.HTTPClient.Transport = saved })
	f.Fuzz(func(t *testing.T, status uint16, body []byte) {
		if status < 100 || status > 999 {
			status = 200
		}
		engine.HTTPClient.Transport = cannedTransport{int(status), body}
		for _, s := range sinks {
			err := s.Attempt(context.Background(), testMsg)
			if err == nil {
				continue
			}
			if !engine.Classified(err) {
				if kind, _ := engine.Classify(err); kind != engine.KindTransient {
					t.Fatalf("%s: unclassified error %v", s.Name(), err)
				}
			}
			if bytes.Contains([]byte(err.Error()), []byte(key)) {
				t.Fatalf("%s: the key leaks into %v", s.Name(), err)
			}
		}
	})
}
