package notify

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// hostileTexts are device, UPS-name or MQTT texts an attacker controls.
var hostileTexts = []string{
	"[Firmware fault: click to repair](http://198.51.100.7/fix) <@all>",
	"<a href=x>repair</a>",
	"*bold* _it_ ~strike~",
	"@all please check",
	"`code` ```block```",
	"line one\n# heading\n> quote\r\n<@all>",
	"<!channel> <https://198.51.100.7|click>",
	`<at user_id="all">all</at>`,
	"![img](https://198.51.100.7/x.png)",
	"||spoiler|| <@123456789>",
}

// livePatterns are markup that must never come from external text, per
// markup: a link, a mention or formatting.
var livePatterns = map[engine.Markup][]string{
	engine.MarkupPlain:        {"://", "@all", "<@", "\n# ", "\n> "},
	engine.MarkupChatMarkdown: {"://", "@all", "<@", "](", "<a", "<font", "*bold*", "`", "\n# ", "\n> ", "<at"},
	engine.MarkupFeishuText:   {"://", "@all", "<@", "<at", "<a", "\n# "},
	engine.MarkupSlack:        {"://", "@all", "<@", "<!", "<http", "<a", "*bold*", "~strike~", "`", "\n# "},
	engine.MarkupDiscord:      {"://", "@all", "<@", "](", "*bold*", "~strike~", "||spoiler", "\n# ", "\n> "},
	engine.MarkupHTML:         {"://", "@all", "<a", "<@", "<at", "\n# "},
}

// strs collects every string in a decoded JSON value.
func strs(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case map[string]any:
		for _, e := range x {
			strs(e, out)
		}
	case []any:
		for _, e := range x {
			strs(e, out)
		}
	}
}

// TestNoInjection sends events whose texts are hostile through every chat
// service (built-in texts and a template) and checks that the payload has
// no live link, mention or markup from them, while the configuration's
// mentions still reach the service.
func TestNoInjection(t *testing.T) {
	tpl := `{{.UPS}} {{.Message}} {{.Status}} {{index .Vars "ups.model"}}`
	tests := []struct {
		name   string
		markup engine.Markup
		spec   func(base string, c engine.Common) bridge.SinkSpec
		// texts returns the human-visible texts of a request body, with
		// the configuration's own mentions removed after checking them.
		texts func(t *testing.T, body []byte) []string
	}{
		{"wecom markdown", engine.MarkupChatMarkdown, func(base string, c engine.Common) bridge.SinkSpec {
			return &WeComConfig{Common: c, URL: config.Secret(base + "/cgi-bin/webhook/send?key=K"), MsgType: "markdown", MentionedList: []string{"alice"}}
		}, func(t *testing.T, body []byte) []string {
			md := jsonBody(t, body)["markdown"].(map[string]any)["content"].(string)
			if !strings.HasSuffix(md, "\n<@alice>") {
				t.Errorf("the configured mention is missing: %q", md)
			}
			md = strings.TrimSuffix(md, "\n<@alice>")
			// The service's own framing: bold title in a font tag, quoted body.
			md = strings.Replace(md, `**<font color="warning">`, "", 1)
			md = strings.Replace(md, `</font>**`, "", 1)
			return []string{strings.ReplaceAll(md, "\n> ", " ")}
		}},
		{"wecom text", engine.MarkupPlain, func(base string, c engine.Common) bridge.SinkSpec {
			return &WeComConfig{Common: c, URL: config.Secret(base + "/cgi-bin/webhook/send?key=K"), MsgType: "text", MentionedList: []string{"@all"}}
		}, func(t *testing.T, body []byte) []string {
			tx := jsonBody(t, body)["text"].(map[string]any)
			if ml, _ := tx["mentioned_list"].([]any); len(ml) != 1 || ml[0] != "@all" {
				t.Errorf("the configured mention list is %v", tx["mentioned_list"])
			}
			return []string{strings.ReplaceAll(tx["content"].(string), "\n", " ")}
		}},
		{"dingtalk markdown", engine.MarkupChatMarkdown, func(base string, c engine.Common) bridge.SinkSpec {
			return &DingTalkConfig{Common: c, AccessToken: "T", URL: base + "/robot/send", MsgType: "markdown", AtMobiles: []string{"13800000000"}}
		}, func(t *testing.T, body []byte) []string {
			b := jsonBody(t, body)
			md := b["markdown"].(map[string]any)
			text := md["text"].(string)
			if !strings.HasSuffix(text, " @13800000000") || b["at"].(map[string]any)["isAtAll"] != false {
				t.Errorf("mentions: %s", body)
			}
			text = strings.TrimPrefix(strings.TrimSuffix(text, " @13800000000"), "#### ")
			return []string{strings.ReplaceAll(text, "\n\n", " "), md["title"].(string)}
		}},
		{"feishu", engine.MarkupFeishuText, func(base string, c engine.Common) bridge.SinkSpec {
			return &FeishuConfig{Common: c, URL: config.Secret(base + "/open-apis/bot/v2/hook/T")}
		}, func(t *testing.T, body []byte) []string {
			return []string{strings.ReplaceAll(jsonBody(t, body)["content"].(map[string]any)["text"].(string), "\n", " ")}
		}},
		{"telegram", engine.MarkupPlain, func(base string, c engine.Common) bridge.SinkSpec {
			return &TelegramConfig{Common: c, BotToken: "1:A", ChatID: "-1", APIURL: base}
		}, func(t *testing.T, body []byte) []string {
			b := jsonBody(t, body)
			if _, ok := b["parse_mode"]; ok {
				t.Errorf("telegram message is no longer plain text: %s", body)
			}
			return []string{strings.ReplaceAll(b["text"].(string), "\n", " ")}
		}},
		{"slack", engine.MarkupSlack, func(base string, c engine.Common) bridge.SinkSpec {
			return &SlackConfig{Common: c, URL: config.Secret(base + "/services/T/B/X")}
		}, func(t *testing.T, body []byte) []string {
			text := jsonBody(t, body)["text"].(string)
			title, rest, _ := strings.Cut(text, "\n")
			return []string{strings.Trim(title, "*"), strings.ReplaceAll(rest, "\n", " ")}
		}},
		{"discord", engine.MarkupDiscord, func(base string, c engine.Common) bridge.SinkSpec {
			return &DiscordConfig{Common: c, URL: config.Secret(base + "/api/webhooks/1/T")}
		}, func(t *testing.T, body []byte) []string {
			text := jsonBody(t, body)["content"].(string)
			title, rest, _ := strings.Cut(text, "\n")
			return []string{strings.TrimSuffix(strings.TrimPrefix(title, "**"), "**"), strings.ReplaceAll(rest, "\n", " ")}
		}},
		{"ntfy", engine.MarkupPlain, func(base string, c engine.Common) bridge.SinkSpec {
			return &NtfyConfig{Common: c, Server: base, Topic: "ups"}
		}, func(t *testing.T, body []byte) []string {
			var out []string
			var v any
			_ = json.Unmarshal(body, &v)
			strs(v, &out)
			for i := range out {
				out[i] = strings.ReplaceAll(out[i], "\n", " ")
			}
			return out
		}},
		{"pushover", engine.MarkupPlain, func(base string, c engine.Common) bridge.SinkSpec {
			return &PushoverConfig{Common: c, Token: "a", User: "u", APIURL: base + "/1/messages.json"}
		}, func(t *testing.T, body []byte) []string {
			f, _ := url.ParseQuery(string(body))
			return []string{f.Get("title"), strings.ReplaceAll(f.Get("message"), "\n", " ")}
		}},
	}
	for _, tt := range tests {
		for _, withTpl := range []bool{false, true} {
			name := tt.name + "/built-in"
			if withTpl {
				name = tt.name + "/template"
			}
			t.Run(name, func(t *testing.T) {
				for _, h := range hostileTexts {
					f := newFake(t, answer{200, `{"errcode":0,"errmsg":"ok","code":0,"ok":true,"status":1}`, nil})
					c := common(strings.Fields(tt.name)[0])
					if withTpl {
						c.Template = tpl
					}
					s := build(t, tt.spec(f.srv.URL, c))
					r := engine.Record{Seq: 1, Type: "ONBATT", Severity: int(bridge.SeverityWarning), UPS: "nas_" + h, Time: time.Unix(1700000000, 0),
						Message: "UPS " + h + " is on battery", Status: "OB " + h,
						Vars: map[string]string{"ups.model": h, bridge.VarBatteryCharge: "90"}}
					if err := s.Attempt(context.Background(), s.Render([]engine.Record{r})); err != nil {
						t.Fatalf("send: %v", err)
					}
					for _, text := range tt.texts(t, f.last(t).body) {
						for _, p := range livePatterns[tt.markup] {
							if strings.Contains(text, p) {
								t.Errorf("hostile %q: payload text has %q: %q", h, p, text)
							}
						}
					}
				}
			})
		}
	}
}
