package engine

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"text/template"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

// Record is one event as kept in a notifier's disk queue. Its JSON form is
// the queue's on-disk format.
type Record struct {
	Seq      int64             `json:"seq"`
	Queued   time.Time         `json:"queued"` // local clock when queued (flap window)
	Type     string            `json:"type"`
	Severity int               `json:"severity"`
	UPS      string            `json:"ups,omitempty"`
	Host     string            `json:"host,omitempty"`
	Time     time.Time         `json:"time"`
	Message  string            `json:"message,omitempty"`
	Status   string            `json:"status,omitempty"`
	Vars     map[string]string `json:"vars,omitempty"`
	OBSince  time.Time         `json:"ob_since,omitzero"`
	Test     bool              `json:"test,omitempty"`
}

// keptVars are the variables a record keeps for its message.
var keptVars = []string{bridge.VarBatteryCharge, bridge.VarRuntime, bridge.VarLoad, bridge.VarInputVoltage, "ups.model", "device.model"}

func newRecord(e *bridge.Event, seq int64, now time.Time) Record {
	r := Record{Seq: seq, Queued: now, Type: string(e.Type), Severity: int(e.Severity()), UPS: e.UPS, Host: e.Host,
		Time: e.Time, Message: e.Message, Status: e.Status}
	if st := e.State; st != nil {
		r.OBSince = st.OnBatterySince
		for _, k := range keptVars {
			if v, ok := st.Vars[k]; ok {
				if r.Vars == nil {
					r.Vars = map[string]string{}
				}
				r.Vars[k] = v
			}
		}
	}
	return r
}

// Data is what a message template sees.
type Data struct {
	// Event is the upsmon event name (ONBATT, ONLINE, ...; BLIP for a
	// suppressed flap, TEST for notify-test).
	Event    string
	Severity string // info | warning | critical
	UPS      string
	Host     string // the agent's host, for agent events
	Time     time.Time
	// TimeText is Time formatted in local time.
	TimeText string
	// Summary is the event's short name in the notifier's language.
	Summary string
	// Message is the bridge's one-line English description.
	Message string
	Status  string
	// Charge, Runtime, Load and OutageFor are formatted, or "" if unknown.
	Charge    string
	Runtime   string
	Load      string
	OnBattery bool
	OutageFor string
	// BlipFor is how long a suppressed flap lasted (BLIP only).
	BlipFor string
	Vars    map[string]string
	Bridge  string
}

// sampleData is used to check templates at config time.
var sampleData = Data{Event: "ONBATT", Severity: "warning", UPS: "ups", Time: time.Unix(0, 0), TimeText: "1970-01-01 00:00:00",
	Summary: "on battery", Message: "m", Status: "OB", Charge: "90%", Runtime: "20 min", Load: "30%", OnBattery: true,
	OutageFor: "1s", Vars: map[string]string{}, Bridge: "b"}

type templates struct {
	title, body *template.Template
}

func parseTemplates(title, body string) (templates, error) {
	var t templates
	var err error
	if title != "" {
		if t.title, err = template.New("title").Option("missingkey=error").Parse(title); err != nil {
			return t, config.Errorf("title", "bad template: %v", err)
		}
		if err := t.title.Execute(&bytes.Buffer{}, sampleData); err != nil {
			return t, config.Errorf("title", "template fails on a sample event: %v", err)
		}
	}
	if body != "" {
		if t.body, err = template.New("template").Option("missingkey=error").Parse(body); err != nil {
			return t, config.Errorf("template", "bad template: %v", err)
		}
		if err := t.body.Execute(&bytes.Buffer{}, sampleData); err != nil {
			return t, config.Errorf("template", "template fails on a sample event: %v", err)
		}
	}
	return t, nil
}

// texts are the built-in texts of one language.
type texts struct {
	summaries map[string]string
	blip      string // %s: duration
	digest    string // %d: count
	test      string
	fields    [6]string // time, charge, runtime, load, on battery for, host
	minutes   string    // %d
	levels    map[string]string
}

var builtin = map[string]texts{
	"en": {
		summaries: map[string]string{
			"ONLINE": "back on mains power", "ONBATT": "on battery: mains power failed", "LOWBATT": "battery low",
			"FSD": "forced shutdown in progress", "COMMOK": "communication restored", "COMMBAD": "communication lost",
			"NOCOMM": "unavailable: no communication", "REPLBATT": "battery needs replacing", "CAL": "calibrating battery",
			"NOTCAL": "calibration finished", "OFF": "off: the load is not powered", "NOTOFF": "no longer off",
			"BYPASS": "on bypass: the load is not protected", "NOTBYPASS": "left bypass", "OVER": "overloaded",
			"NOTOVER": "no longer overloaded", "TRIM": "trimming high input voltage", "NOTTRIM": "stopped trimming",
			"BOOST": "boosting low input voltage", "NOTBOOST": "stopped boosting", "ALARM": "alarm active",
			"NOTALARM": "alarms cleared", "ECO": "entered ECO mode", "NOTECO": "left ECO mode",
			"SHUTDOWN": "host is shutting down", "STAGE": "shutdown stage started",
			"STAGE_FAILED": "shutdown stage command failed", "UNDO": "shutdown stage undone: mains returned",
			"POWERING_OFF": "host is powering off", "POWEROFF_FAILED": "power-off failed, retrying",
			"HOSTSYNC": "forced shutdown: waiting for hosts to power off", "HOST_DOWN": "a host it feeds is down",
			"HOSTS_DOWN": "every host it feeds is down", "HOSTSYNC_TIMEOUT": "gave up waiting for hosts (max_wait)",
			"KILLPOWER": "cutting the load; it returns with mains", "KILLPOWER_FAILED": "could not cut the load",
			"KILLPOWER_SKIPPED": "mains returned: the load is not cut",
			"BLIP":              "power blip", "TEST": "test message",
		},
		blip:    "Power blip: mains failed and came back within %s.",
		digest:  "%d events",
		test:    "This is a test message from upsbridge. If you can read it, this notifier works.",
		fields:  [6]string{"Time", "Charge", "Runtime", "Load", "On battery for", "Host"},
		minutes: "%d min",
		levels:  map[string]string{"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"},
	},
	"zh": {
		summaries: map[string]string{
			"ONLINE": "市电已恢复", "ONBATT": "市电中断，正在使用电池供电", "LOWBATT": "电池电量低",
			"FSD": "正在强制关机", "COMMOK": "通信已恢复", "COMMBAD": "通信中断",
			"NOCOMM": "无法通信，UPS 不可用", "REPLBATT": "电池需要更换", "CAL": "正在校准电池",
			"NOTCAL": "电池校准完成", "OFF": "已关闭输出，负载未供电", "NOTOFF": "已恢复输出",
			"BYPASS": "处于旁路模式，负载不受保护", "NOTBYPASS": "已退出旁路模式", "OVER": "负载过载",
			"NOTOVER": "过载已解除", "TRIM": "正在降压（输入电压过高）", "NOTTRIM": "已停止降压",
			"BOOST": "正在升压（输入电压过低）", "NOTBOOST": "已停止升压", "ALARM": "有告警",
			"NOTALARM": "告警已清除", "ECO": "进入节能模式", "NOTECO": "退出节能模式",
			"SHUTDOWN": "主机正在关机", "STAGE": "已开始关机阶段",
			"STAGE_FAILED": "关机阶段命令执行失败", "UNDO": "市电恢复，已撤销关机阶段",
			"POWERING_OFF": "主机正在断电关机", "POWEROFF_FAILED": "主机断电失败，正在重试",
			"HOSTSYNC": "强制关机：正在等待各主机关机", "HOST_DOWN": "一台受供电主机已关机",
			"HOSTS_DOWN": "所有受供电主机均已关机", "HOSTSYNC_TIMEOUT": "等待主机关机超时（max_wait）",
			"KILLPOWER": "正在切断输出，市电恢复后自动来电", "KILLPOWER_FAILED": "切断输出失败",
			"KILLPOWER_SKIPPED": "市电已恢复，不切断输出",
			"BLIP":              "短暂停电", "TEST": "测试消息",
		},
		blip:    "短暂停电：市电中断后在 %s 内恢复。",
		digest:  "%d 条事件",
		test:    "这是来自 upsbridge 的测试消息。能看到这条消息，说明此通知渠道工作正常。",
		fields:  [6]string{"时间", "电量", "剩余时间", "负载", "电池供电时长", "主机"},
		minutes: "%d 分钟",
		levels:  map[string]string{"info": "信息", "warning": "警告", "critical": "严重"},
	},
}

func (tx texts) summary(ev string) string {
	if s, ok := tx.summaries[ev]; ok {
		return s
	}
	return strings.ToLower(ev)
}

// data builds a record's template data.
func (r *Record) data(lang, bridgeID string) Data {
	tx := builtin[lang]
	d := Data{Event: r.Type, Severity: bridge.Severity(r.Severity).String(), UPS: r.UPS, Host: r.Host, Time: r.Time,
		TimeText: r.Time.Local().Format("2006-01-02 15:04:05"), Summary: tx.summary(r.Type), Message: r.Message,
		Status: r.Status, Vars: r.Vars, Bridge: bridgeID}
	if d.Vars == nil {
		d.Vars = map[string]string{}
	}
	num := func(k string) (float64, bool) { return bridge.Vars(r.Vars).Number(k) }
	if v, ok := num(bridge.VarBatteryCharge); ok {
		d.Charge = fmt.Sprintf("%.0f%%", v)
	}
	if v, ok := num(bridge.VarRuntime); ok {
		d.Runtime = fmt.Sprintf(tx.minutes, int(math.Round(v/60)))
	}
	if v, ok := num(bridge.VarLoad); ok {
		d.Load = fmt.Sprintf("%.0f%%", v)
	}
	if !r.OBSince.IsZero() {
		d.OnBattery = true
		if dur := r.Time.Sub(r.OBSince); dur >= 0 {
			d.OutageFor = dur.Round(time.Second).String()
		}
	}
	return d
}

// builtinTitle and builtinBody render the built-in texts.
func builtinTitle(d Data, lang string) string {
	tx := builtin[lang]
	who := d.UPS
	if d.Host != "" {
		who = d.Host
	}
	if who == "" {
		who = "upsbridge"
	}
	return fmt.Sprintf("[%s] %s: %s", tx.levels[d.Severity], who, d.Summary)
}

func builtinBody(d Data, lang string) string {
	tx := builtin[lang]
	var b strings.Builder
	switch d.Event {
	case "BLIP":
		fmt.Fprintf(&b, tx.blip, d.BlipFor)
	case "TEST":
		b.WriteString(tx.test)
	default:
		if lang == "en" && d.Message != "" {
			b.WriteString(d.Message)
		} else {
			who := d.UPS
			if d.Host != "" {
				who = d.Host
			}
			fmt.Fprintf(&b, "UPS %s: %s", who, d.Summary)
			if d.Host != "" {
				b.Reset()
				fmt.Fprintf(&b, "%s: %s", who, d.Summary)
			}
		}
	}
	line := func(i int, v string) {
		if v != "" {
			fmt.Fprintf(&b, "\n%s: %s", tx.fields[i], v)
		}
	}
	if d.Host != "" && d.UPS != "" {
		b.WriteString("\nUPS: " + d.UPS)
	}
	line(0, d.TimeText)
	line(1, d.Charge)
	line(2, d.Runtime)
	line(3, d.Load)
	// ONBATT starts the outage: "on battery for 0s" would say nothing.
	if d.OnBattery && d.Event != "BLIP" && d.Event != "ONBATT" {
		line(4, d.OutageFor)
	}
	return b.String()
}

// Message is one rendered notification, ready for a service.
type Message struct {
	Title    string
	Body     string
	Event    string // NOTIFYTYPE; for a digest, the first event's
	Severity bridge.Severity
	UPS      string
	Host     string
	Time     time.Time
	// Records are the queue records this message delivers (several for a
	// blip or a digest); services that send structured data use them.
	Records []Record
}

// renderer turns records into messages.
type renderer struct {
	lang     string
	bridgeID string
	tpl      templates
	warn     func(msg string, args ...any)
	// esc escapes external text for the service's markup (nil: as is).
	esc func(string) string
}

// render renders one unit (one record, or an ONBATT+ONLINE blip pair).
func (rn *renderer) render(recs []Record) Message {
	r := recs[0]
	d := r.data(rn.lang, rn.bridgeID)
	if rn.esc != nil {
		d = d.escaped(rn.esc)
	}
	if len(recs) == 2 { // blip
		d.Event = "BLIP"
		d.Summary = builtin[rn.lang].summary("BLIP")
		d.Severity = bridge.SeverityWarning.String()
		d.BlipFor = recs[1].Queued.Sub(r.Queued).Round(100 * time.Millisecond).String()
	}
	if r.Test {
		d.Event, d.Summary = "TEST", builtin[rn.lang].summary("TEST")
	}
	m := Message{Event: d.Event, UPS: r.UPS, Host: r.Host, Time: r.Time, Records: recs}
	m.Severity, _ = bridge.ParseSeverity(d.Severity)
	m.Title = rn.exec(rn.tpl.title, d, builtinTitle)
	m.Body = rn.exec(rn.tpl.body, d, builtinBody)
	return m
}

func (rn *renderer) exec(t *template.Template, d Data, fallback func(Data, string) string) string {
	if t != nil {
		var b bytes.Buffer
		if err := t.Execute(&b, d); err == nil {
			return b.String()
		} else if rn.warn != nil {
			rn.warn("notification template failed; using the built-in text", "template", t.Name(), "event", d.Event, "ups", d.UPS, "err", err)
		}
	}
	return fallback(d, rn.lang)
}

// digest combines messages into one: the title counts them, the body has
// one line per message (its title, then its body's first line).
func digest(msgs []Message, lang string, esc func(string) string) Message {
	tx := builtin[lang]
	d := Message{Event: msgs[0].Event, UPS: msgs[0].UPS, Host: msgs[0].Host, Time: msgs[0].Time}
	ups := map[string]bool{}
	for _, m := range msgs {
		if m.Severity > d.Severity {
			d.Severity = m.Severity
		}
		ups[m.UPS] = true
		d.Records = append(d.Records, m.Records...)
	}
	d.Title = fmt.Sprintf("[%s] upsbridge: "+tx.digest, tx.levels[d.Severity.String()], len(msgs))
	if len(ups) == 1 && msgs[0].UPS != "" {
		name := msgs[0].UPS
		if esc != nil {
			name = esc(name)
		}
		d.Title = fmt.Sprintf("[%s] %s: "+tx.digest, tx.levels[d.Severity.String()], name, len(msgs))
	}
	d.Body = digestBody(msgs)
	return d
}

func digestLine(m Message) string {
	first, _, _ := strings.Cut(m.Body, "\n")
	return "• " + m.Time.Local().Format("15:04:05") + " " + first
}

func digestBody(msgs []Message) string {
	var b strings.Builder
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(digestLine(m))
	}
	return b.String()
}

// Truncate cuts s to at most max bytes without splitting a UTF-8 sequence,
// marking the cut with "…".
func Truncate(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	const ell = "…"
	cut := max - len(ell)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
