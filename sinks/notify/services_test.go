package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// captured is one request the fake service saw.
type captured struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// fakeService answers with the queued answers in turn (the last repeats).
type fakeService struct {
	mu      sync.Mutex
	reqs    []captured
	answers []answer
	srv     *httptest.Server
}

type answer struct {
	status int
	body   string
	header map[string]string
}

func newFake(t *testing.T, answers ...answer) *fakeService {
	f := &fakeService{answers: answers}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, captured{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), b})
		a := f.answers[0]
		if len(f.answers) > 1 {
			f.answers = f.answers[1:]
		}
		f.mu.Unlock()
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeService) last(t *testing.T) captured {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the service got no request")
	}
	return f.reqs[len(f.reqs)-1]
}

var testMsg = engine.Message{Title: "[WARNING] ups1: on battery", Body: "UPS ups1 is on battery\nCharge: 90%", Event: "ONBATT",
	Severity: bridge.SeverityWarning, UPS: "ups1", Time: time.Unix(1700000000, 0),
	Records: []engine.Record{{Seq: 1, Type: "ONBATT", Severity: 1, UPS: "ups1", Time: time.Unix(1700000000, 0).UTC(), Status: "OB DISCHRG",
		Vars: map[string]string{"battery.charge": "90"}}}}

func build(t testing.TB, spec bridge.SinkSpec) *engine.Sink {
	t.Helper()
	if v, ok := spec.(config.Validator); ok {
		if errs := v.Validate(); len(errs) > 0 {
			t.Fatalf("validate: %v", errs)
		}
	}
	s, err := spec.NewSink(bridge.Env{BridgeID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	return s.(*engine.Sink)
}

func jsonBody(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, b)
	}
	return m
}

func common(typ string) engine.Common {
	c := engine.Defaults(typ, engine.ServiceDefaults{})
	c.Name = "n1"
	return c
}

func TestServices(t *testing.T) {
	fixed := func() time.Time { return time.UnixMilli(1700000000000) }
	type errCase struct {
		ans  answer
		kind engine.Kind
	}
	tests := []struct {
		name  string
		ok    answer
		spec  func(base string) bridge.SinkSpec
		check func(t *testing.T, r captured)
		errs  []errCase
		// secret must never appear in an error
		secret string
	}{
		{
			name: "wecom markdown", ok: answer{200, `{"errcode":0,"errmsg":"ok"}`, nil}, secret: "KEY-123",
			spec: func(base string) bridge.SinkSpec {
				return &WeComConfig{Common: common("wecom"), URL: config.Secret(base + "/cgi-bin/webhook/send?key=KEY-123"), MsgType: "markdown", MentionedList: []string{"alice"}}
			},
			check: func(t *testing.T, r captured) {
				if r.method != "POST" || r.path != "/cgi-bin/webhook/send" || r.query.Get("key") != "KEY-123" {
					t.Errorf("request %s %s?%s", r.method, r.path, r.query.Encode())
				}
				if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
					t.Errorf("content type %q", r.header.Get("Content-Type"))
				}
				b := jsonBody(t, r.body)
				md := b["markdown"].(map[string]any)["content"].(string)
				if b["msgtype"] != "markdown" || !strings.Contains(md, `<font color="warning">[WARNING] ups1: on battery</font>`) || !strings.HasSuffix(md, "<@alice>") {
					t.Errorf("body %s", r.body)
				}
			},
			errs: []errCase{
				{answer{200, `{"errcode":45009,"errmsg":"api freq out of limit, hint: [1700000000_1_abc], from ip: 1.2.3.4, more info at https://open.work.weixin.qq.com/devtool/query?e=45009"}`, nil}, engine.KindTransient},
				{answer{200, `{"errcode":93000,"errmsg":"invalid webhook url, hint: [x], from ip: 1.2.3.4, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}`, nil}, engine.KindRefused},
				{answer{200, `{"errcode":45002,"errmsg":"content exceed max length"}`, nil}, engine.KindRejected},
				{answer{200, `{"errcode":-1,"errmsg":"system busy"}`, nil}, engine.KindTransient},
				{answer{502, `bad gateway`, nil}, engine.KindTransient},
			},
		},
		{
			name: "wecom text with mentions", ok: answer{200, `{"errcode":0,"errmsg":"ok"}`, nil}, secret: "K2",
			spec: func(base string) bridge.SinkSpec {
				return &WeComConfig{Common: common("wecom"), URL: config.Secret(base + "/cgi-bin/webhook/send?key=K2"), MsgType: "text",
					MentionedList: []string{"@all"}, MentionedMobileList: []string{"13800000000"}}
			},
			check: func(t *testing.T, r captured) {
				b := jsonBody(t, r.body)
				tx := b["text"].(map[string]any)
				if b["msgtype"] != "text" || tx["content"] != testMsg.Title+"\n"+testMsg.Body ||
					tx["mentioned_list"].([]any)[0] != "@all" || tx["mentioned_mobile_list"].([]any)[0] != "13800000000" {
					t.Errorf("body %s", r.body)
				}
			},
		},
		{
			name: "dingtalk signed", ok: answer{200, `{"errcode":0,"errmsg":"ok"}`, nil}, secret: "SECtest",
			spec: func(base string) bridge.SinkSpec {
				return &DingTalkConfig{Common: common("dingtalk"), AccessToken: "TOK", Secret: "SECtest", URL: base + "/robot/send", MsgType: "markdown",
					AtMobiles: []string{"13800000000"}, now: fixed}
			},
			check: func(t *testing.T, r captured) {
				mac := hmac.New(sha256.New, []byte("SECtest"))
				mac.Write([]byte("1700000000000\nSECtest"))
				want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
				if want != "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g=" {
					t.Fatalf("test's own signature %s differs from the reference vector", want)
				}
				if r.path != "/robot/send" || r.query.Get("access_token") != "TOK" || r.query.Get("timestamp") != "1700000000000" || r.query.Get("sign") != want {
					t.Errorf("query %v", r.query)
				}
				b := jsonBody(t, r.body)
				md := b["markdown"].(map[string]any)
				at := b["at"].(map[string]any)
				if b["msgtype"] != "markdown" || md["title"] != testMsg.Title || !strings.Contains(md["text"].(string), "@13800000000") || at["atMobiles"].([]any)[0] != "13800000000" {
					t.Errorf("body %s", r.body)
				}
			},
			errs: []errCase{
				{answer{200, `{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}`, nil}, engine.KindTransient},
				{answer{200, `{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}`, nil}, engine.KindRefused},
				{answer{200, `{"errcode":300001,"errmsg":"token is not exist"}`, nil}, engine.KindRefused},
				{answer{200, `{"status":1111,"wait":5,"punish":"deny"}`, nil}, engine.KindTransient},
			},
		},
		{
			name: "feishu signed", ok: answer{200, `{"code":0,"msg":"success","data":{}}`, nil}, secret: "HOOKTOKEN",
			spec: func(base string) bridge.SinkSpec {
				return &FeishuConfig{Common: common("feishu"), URL: config.Secret(base + "/open-apis/bot/v2/hook/HOOKTOKEN"), Secret: "demo",
					now: func() time.Time { return time.Unix(1599360473, 0) }}
			},
			check: func(t *testing.T, r captured) {
				mac := hmac.New(sha256.New, []byte("1599360473\ndemo"))
				want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
				if want != "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=" {
					t.Fatalf("test's own signature %s differs from the reference vector", want)
				}
				b := jsonBody(t, r.body)
				if r.path != "/open-apis/bot/v2/hook/HOOKTOKEN" || b["timestamp"] != "1599360473" || b["sign"] != want || b["msg_type"] != "text" ||
					b["content"].(map[string]any)["text"] != testMsg.Title+"\n"+testMsg.Body {
					t.Errorf("request %s %s", r.path, r.body)
				}
			},
			errs: []errCase{
				{answer{200, `{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}`, nil}, engine.KindRefused},
				{answer{200, `{"StatusCode":19001,"StatusMessage":"param invalid: incoming webhook access token invalid"}`, nil}, engine.KindRefused},
				{answer{200, `{"code":9499,"msg":"Bad Request"}`, nil}, engine.KindRejected},
				{answer{200, `{"code":11232,"msg":"frequency limited"}`, nil}, engine.KindTransient},
			},
		},
		{
			name: "telegram", ok: answer{200, `{"ok":true,"result":{"message_id":1}}`, nil}, secret: "123:ABC",
			spec: func(base string) bridge.SinkSpec {
				return &TelegramConfig{Common: common("telegram"), BotToken: "123:ABC", ChatID: "-100200", APIURL: base}
			},
			check: func(t *testing.T, r captured) {
				b := jsonBody(t, r.body)
				if r.method != "POST" || r.path != "/bot123:ABC/sendMessage" || b["chat_id"] != "-100200" || b["text"] != testMsg.Title+"\n\n"+testMsg.Body {
					t.Errorf("request %s %s", r.path, r.body)
				}
			},
			errs: []errCase{
				{answer{429, `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}`, nil}, engine.KindTransient},
				{answer{401, `{"ok":false,"error_code":401,"description":"Unauthorized"}`, nil}, engine.KindRefused},
				{answer{400, `{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}`, nil}, engine.KindRefused},
				{answer{400, `{"ok":false,"error_code":400,"description":"Bad Request: message text is empty"}`, nil}, engine.KindRejected},
			},
		},
		{
			name: "ntfy", ok: answer{200, `{"id":"x","time":1,"event":"message","topic":"ups"}`, nil}, secret: "tk_secret",
			spec: func(base string) bridge.SinkSpec {
				return &NtfyConfig{Common: common("ntfy"), Server: base, Topic: "ups", Token: "tk_secret"}
			},
			check: func(t *testing.T, r captured) {
				b := jsonBody(t, r.body)
				if r.path != "/" || r.header.Get("Authorization") != "Bearer tk_secret" || b["topic"] != "ups" || b["title"] != testMsg.Title ||
					b["message"] != testMsg.Body || b["priority"] != float64(4) {
					t.Errorf("request %s %v %s", r.path, r.header, r.body)
				}
			},
			errs: []errCase{
				{answer{403, `{"code":40301,"http":403,"error":"forbidden","link":"https://ntfy.sh/docs/publish/#authentication"}`, nil}, engine.KindRefused},
				{answer{429, `{"code":42901,"http":429,"error":"limit reached: too many requests"}`, nil}, engine.KindTransient},
				{answer{400, `{"code":40057,"http":400,"error":"invalid request: title too long"}`, nil}, engine.KindRejected},
			},
		},
		{
			name: "gotify", ok: answer{200, `{"id":1}`, nil}, secret: "AppTok",
			spec: func(base string) bridge.SinkSpec {
				return &GotifyConfig{Common: common("gotify"), Server: base, Token: "AppTok"}
			},
			check: func(t *testing.T, r captured) {
				b := jsonBody(t, r.body)
				if r.path != "/message" || r.header.Get("X-Gotify-Key") != "AppTok" || b["title"] != testMsg.Title || b["message"] != testMsg.Body || b["priority"] != float64(6) {
					t.Errorf("request %s %v %s", r.path, r.header, r.body)
				}
			},
			errs: []errCase{{answer{401, `{"error":"Unauthorized","errorCode":401,"errorDescription":"you need to provide a valid access token"}`, nil}, engine.KindRefused}},
		},
		{
			name: "bark", ok: answer{200, `{"code":200,"message":"success","timestamp":1}`, nil}, secret: "DEVKEY",
			spec: func(base string) bridge.SinkSpec {
				return &BarkConfig{Common: common("bark"), Server: base, DeviceKey: "DEVKEY", Group: "upsbridge"}
			},
			check: func(t *testing.T, r captured) {
				b := jsonBody(t, r.body)
				if r.path != "/push" || b["device_key"] != "DEVKEY" || b["title"] != testMsg.Title || b["body"] != testMsg.Body || b["level"] != "timeSensitive" || b["group"] != "upsbridge" {
					t.Errorf("request %s %s", r.path, r.body)
				}
			},
			errs: []errCase{
				{answer{400, `{"code":400,"message":"failed to get device token: failed to get [DEVKEY] device token from database","timestamp":1}`, nil}, engine.KindRefused},
				{answer{500, `{"code":500,"message":"push failed","timestamp":1}`, nil}, engine.KindTransient},
			},
		},
		{
			name: "pushover", ok: answer{200, `{"status":1,"request":"abc"}`, nil}, secret: "apptoken1",
			spec: func(base string) bridge.SinkSpec {
				return &PushoverConfig{Common: common("pushover"), Token: "apptoken1", User: "userkey1", APIURL: base + "/1/messages.json"}
			},
			check: func(t *testing.T, r captured) {
				f, _ := url.ParseQuery(string(r.body))
				if r.path != "/1/messages.json" || r.header.Get("Content-Type") != "application/x-www-form-urlencoded" || f.Get("token") != "apptoken1" ||
					f.Get("user") != "userkey1" || f.Get("message") != testMsg.Body || f.Get("title") != testMsg.Title || f.Get("priority") != "0" {
					t.Errorf("request %s %s", r.path, r.body)
				}
			},
			errs: []errCase{
				{answer{400, `{"token":"invalid","errors":["application token is invalid"],"status":0,"request":"x"}`, nil}, engine.KindRefused},
				{answer{400, `{"message":"cannot be blank","errors":["message cannot be blank"],"status":0,"request":"x"}`, nil}, engine.KindRejected},
				{answer{500, `oops`, nil}, engine.KindTransient},
			},
		},
		{
			name: "slack", ok: answer{200, `ok`, nil}, secret: "T000/B000/XXXX",
			spec: func(base string) bridge.SinkSpec {
				return &SlackConfig{Common: common("slack"), URL: config.Secret(base + "/services/T000/B000/XXXX")}
			},
			check: func(t *testing.T, r captured) {
				b := jsonBody(t, r.body)
				if r.path != "/services/T000/B000/XXXX" || b["text"] != "*"+testMsg.Title+"*\n"+testMsg.Body {
					t.Errorf("request %s %s", r.path, r.body)
				}
			},
			errs: []errCase{
				{answer{404, `no_service`, nil}, engine.KindRefused},
				{answer{400, `invalid_payload`, nil}, engine.KindRejected},
				{answer{429, `rate_limited`, map[string]string{"Retry-After": "7"}}, engine.KindTransient},
			},
		},
		{
			name: "discord", ok: answer{204, ``, nil}, secret: "wh-token",
			spec: func(base string) bridge.SinkSpec {
				return &DiscordConfig{Common: common("discord"), URL: config.Secret(base + "/api/webhooks/1/wh-token"), Username: "ups"}
			},
			check: func(t *testing.T, r captured) {
				b := jsonBody(t, r.body)
				am := b["allowed_mentions"].(map[string]any)["parse"].([]any)
				if r.path != "/api/webhooks/1/wh-token" || b["content"] != "**"+testMsg.Title+"**\n"+testMsg.Body || b["username"] != "ups" || len(am) != 0 {
					t.Errorf("request %s %s", r.path, r.body)
				}
			},
			errs: []errCase{
				{answer{429, `{"message":"You are being rate limited.","retry_after":1.5,"global":false}`, nil}, engine.KindTransient},
				{answer{401, `{"message":"Invalid Webhook Token","code":50027}`, nil}, engine.KindRefused},
				{answer{400, `{"code":50006,"message":"Cannot send an empty message"}`, nil}, engine.KindRejected},
			},
		},
		{
			name: "webhook signed", ok: answer{200, `{}`, nil}, secret: "hmac-secret",
			spec: func(base string) bridge.SinkSpec {
				return &WebhookConfig{Common: common("webhook"), URL: config.Secret(base + "/hook"), Secret: "hmac-secret",
					Headers: map[string]config.Secret{"Authorization": "Bearer xyz"}, now: func() time.Time { return time.Unix(1700000000, 0) }}
			},
			check: func(t *testing.T, r captured) {
				mac := hmac.New(sha256.New, []byte("hmac-secret"))
				mac.Write([]byte("1700000000." + string(r.body)))
				want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
				if r.path != "/hook" || r.header.Get("X-Timestamp") != "1700000000" || r.header.Get("X-Signature-256") != want || r.header.Get("Authorization") != "Bearer xyz" {
					t.Errorf("request %s %v", r.path, r.header)
				}
				b := jsonBody(t, r.body)
				if b["schema"] != float64(1) || b["event"] != "ONBATT" || b["severity"] != "warning" || b["ups"] != "ups1" || b["time"] != "2023-11-14T22:13:20.000Z" ||
					b["values"].(map[string]any)["battery_charge"] != float64(90) || b["status"].([]any)[0] != "OB" || b["message"] != testMsg.Body {
					t.Errorf("body %s", r.body)
				}
			},
			errs: []errCase{
				{answer{500, `x`, nil}, engine.KindTransient},
				{answer{408, `x`, nil}, engine.KindTransient},
				{answer{422, `x`, nil}, engine.KindRejected},
				{answer{401, `x`, nil}, engine.KindRefused},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.ok)
			s := build(t, tc.spec(f.srv.URL))
			if err := s.Attempt(context.Background(), testMsg); err != nil {
				t.Fatalf("send: %v", err)
			}
			tc.check(t, f.last(t))
			for _, ec := range tc.errs {
				f.mu.Lock()
				f.answers = []answer{ec.ans}
				f.mu.Unlock()
				err := s.Attempt(context.Background(), testMsg)
				if err == nil {
					t.Fatalf("answer %d %s: no error", ec.ans.status, ec.ans.body)
				}
				if k, _ := engine.Classify(err); k != ec.kind {
					t.Errorf("answer %d %s: kind %v, want %v (err %v)", ec.ans.status, ec.ans.body, k, ec.kind, err)
				}
				if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
					t.Errorf("error leaks the secret: %v", err)
				}
			}
		})
	}
}

func TestNetworkErrorHidesSecret(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens: connection refused
	s := build(t, &WeComConfig{Common: common("wecom"), URL: config.Secret(base + "/cgi-bin/webhook/send?key=SUPERSECRETKEY"), MsgType: "text"})
	err := s.Attempt(context.Background(), testMsg)
	if err == nil || strings.Contains(err.Error(), "SUPERSECRETKEY") {
		t.Fatalf("err = %v", err)
	}
	if k, _ := engine.Classify(err); k != engine.KindTransient {
		t.Fatalf("kind %v", k)
	}
	tg := build(t, &TelegramConfig{Common: common("telegram"), BotToken: "999:TOKENVALUE", ChatID: "1", APIURL: base})
	if err := tg.Attempt(context.Background(), testMsg); err == nil || strings.Contains(err.Error(), "TOKENVALUE") {
		t.Fatalf("telegram err = %v", err)
	}
}

func TestWeComByteLimitsUTF8(t *testing.T) {
	f := newFake(t, answer{200, `{"errcode":0,"errmsg":"ok"}`, nil})
	s := build(t, &WeComConfig{Common: common("wecom"), URL: config.Secret(f.srv.URL + "/send?key=k"), MsgType: "text"})
	long := testMsg
	long.Body = strings.Repeat("市电中断", 1000) // 12 000 bytes
	if err := s.Attempt(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	c := jsonBody(t, f.last(t).body)["text"].(map[string]any)["content"].(string)
	if len(c) > 2048 || !strings.HasSuffix(c, "…") || !utf8Valid(c) {
		t.Fatalf("text content %d bytes, valid UTF-8 %v", len(c), utf8Valid(c))
	}
	s = build(t, &WeComConfig{Common: common("wecom"), URL: config.Secret(f.srv.URL + "/send?key=k"), MsgType: "markdown"})
	if err := s.Attempt(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	c = jsonBody(t, f.last(t).body)["markdown"].(map[string]any)["content"].(string)
	if len(c) > 4096 || !utf8Valid(c) {
		t.Fatalf("markdown content %d bytes", len(c))
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestSecretsFromFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/key"
	if err := writeFile(p, "FILEKEY\n"); err != nil {
		t.Fatal(err)
	}
	c := &WeComConfig{Common: common("wecom"), KeyFile: p, MsgType: "text"}
	if errs := c.Validate(); len(errs) > 0 || c.Key.Reveal() != "FILEKEY" {
		t.Fatalf("key_file: %v %q", errs, c.Key.Reveal())
	}
	if errs := c.Validate(); len(errs) > 0 { // validated twice (Load, then NewSink)
		t.Fatalf("second Validate: %v", errs)
	}
	t.Setenv("UPSB_TEST_TOKEN", "ENVTOKEN")
	tg := &TelegramConfig{Common: common("telegram"), BotTokenEnv: "UPSB_TEST_TOKEN", ChatID: "1", APIURL: "https://api.telegram.org"}
	if errs := tg.Validate(); len(errs) > 0 || tg.BotToken.Reveal() != "ENVTOKEN" {
		t.Fatalf("bot_token_env: %v", errs)
	}
	bad := &TelegramConfig{Common: common("telegram"), BotToken: "x", BotTokenEnv: "UPSB_TEST_TOKEN", ChatID: "1", APIURL: "https://api.telegram.org"}
	if errs := bad.Validate(); len(errs) != 1 || errs[0].Key != "bot_token" {
		t.Fatalf("both set: %v", errs)
	}
}

func TestClassifyUnwrapped(t *testing.T) {
	if k, _ := engine.Classify(errors.New("x")); k != engine.KindTransient {
		t.Fatal(k)
	}
}
