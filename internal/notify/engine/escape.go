package engine

import (
	"strings"
)

// Text from outside the configuration (a device's variables and alarms, a
// UPS or host name, anything that came over MQTT) is hostile: it must not
// become a link, a mention or markup in a chat message. Each service names
// its markup; render escapes every such value for it before the built-in
// texts or a template see it, so templates get escaped values by default.
// Mentions come only from the configuration and are added by the service
// after escaping.

// Escaper is implemented by services whose messages people read; services
// that hand data to programs (webhook, exec) do not, and get values as they
// are. Most services return one of the Markup values' Escape.
type Escaper interface {
	// Escape makes one external value inert in the service's markup.
	Escape(s string) string
}

// Markup is a way to escape external text.
type Markup int

// The markups of the services.
const (
	// MarkupPlain is for services that show plain text (Telegram without
	// parse_mode, Feishu and WeCom text, ntfy, Gotify, Bark, Pushover,
	// email): only links and mentions are defused.
	MarkupPlain Markup = iota
	// MarkupChatMarkdown is WeCom and DingTalk markdown, which have no
	// escape character: markup characters become their full-width forms.
	MarkupChatMarkdown
	// MarkupSlack is Slack mrkdwn: &, < and > as entities (Slack's own
	// escaping), emphasis characters as full-width forms.
	MarkupSlack
	// MarkupDiscord is Discord markdown: markup characters backslash-escaped.
	MarkupDiscord
	// MarkupHTML is HTML (Telegram's HTML parse mode, email HTML).
	MarkupHTML
	// MarkupFeishuText is Feishu's text message, which still parses
	// <at user_id="..."> tags: angle brackets become full-width forms.
	MarkupFeishuText
)

// defang is common to every markup: no line breaks (a value is one line, so
// it cannot start a heading or a quote), no scheme a client would turn into
// a link, no '@' a client would turn into a mention.
var defang = strings.NewReplacer(
	"\r\n", " ", "\r", " ", "\n", " ", "\u2028", " ", "\u2029", " ",
	"://", "\uFF1A//", // full-width colon: http：//host is no link
	"@", "\uFF20", // full-width commercial at: ＠all mentions no one
)

var (
	chatMarkdown = strings.NewReplacer(
		"[", "\uFF3B", "]", "\uFF3D", "(", "\uFF08", ")", "\uFF09",
		"<", "\uFF1C", ">", "\uFF1E", "*", "\uFF0A", "`", "\uFF40",
		"#", "\uFF03", "~", "\uFF5E", "!", "\uFF01", "|", "\uFF5C",
	)
	slackMarkup = strings.NewReplacer(
		"&", "&amp;", "<", "&lt;", ">", "&gt;",
		"*", "\uFF0A", "`", "\uFF40", "~", "\uFF5E",
	)
	discordMarkup = strings.NewReplacer(
		`\`, `\\`, "*", `\*`, "_", `\_`, "~", `\~`, "`", "\\`", "|", `\|`,
		"[", `\[`, "]", `\]`, "(", `\(`, ")", `\)`, "<", `\<`, ">", `\>`,
		"#", `\#`,
	)
	feishuText = strings.NewReplacer("<", "\uFF1C", ">", "\uFF1E")
	htmlMarkup = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")
)

// Escape makes s inert in markup m.
func (m Markup) Escape(s string) string {
	s = defang.Replace(s)
	switch m {
	case MarkupChatMarkdown:
		return chatMarkdown.Replace(s)
	case MarkupSlack:
		return slackMarkup.Replace(s)
	case MarkupDiscord:
		return discordMarkup.Replace(s)
	case MarkupHTML:
		return htmlMarkup.Replace(s)
	case MarkupFeishuText:
		return feishuText.Replace(s)
	}
	return s
}

// escaped returns d with every text value escaped by esc (the Vars map is
// copied). Numbers formatted by the bridge pass through unchanged, since
// escaping leaves digits, '%', '.' and spaces alone.
func (d Data) escaped(esc func(string) string) Data {
	d.Event = esc(d.Event)
	d.UPS = esc(d.UPS)
	d.Host = esc(d.Host)
	d.TimeText = esc(d.TimeText)
	d.Summary = esc(d.Summary)
	d.Message = esc(d.Message)
	d.Status = esc(d.Status)
	d.Charge = esc(d.Charge)
	d.Runtime = esc(d.Runtime)
	d.Load = esc(d.Load)
	d.OutageFor = esc(d.OutageFor)
	d.BlipFor = esc(d.BlipFor)
	d.Bridge = esc(d.Bridge)
	vars := make(map[string]string, len(d.Vars))
	for k, v := range d.Vars {
		vars[k] = esc(v)
	}
	d.Vars = vars
	return d
}
