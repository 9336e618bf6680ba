package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/sinks/httpapi"
)

// labelsOf returns the labels of the first sample of family name whose
// labels include want.
func labelsOf(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (map[string]string, bool) {
	for _, m := range mfs[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			return got, true
		}
	}
	return nil, false
}

// TestOpsMetricsNotifierAndAgent runs the real binary with a simulated
// outage, a WeCom notifier whose endpoint (httptest) always fails with a
// body that echoes the robot key, and a dry-run shutdown agent in the same
// process, all through a real mosquitto. /metrics must show the notifier's
// failures and queue and the agent's status, stage and countdown; the key
// must appear nowhere the endpoint serves; a failing notifier must not make
// the process unready.
func TestOpsMetricsNotifierAndAgent(t *testing.T) {
	const key = "ops-wecom-key-5f2e9c"
	var hits atomic.Int64
	wecom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("key") == key {
			hits.Add(1)
		}
		http.Error(w, "upstream overloaded, key="+r.URL.Query().Get("key"), http.StatusInternalServerError)
	}))
	defer wecom.Close()

	broker := harness.StartMosquitto(t)
	port := harness.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	dir := t.TempDir()
	// time_scale 30: on battery 2 s after start, low battery (critical, the
	// dry-run final stage) only after 40 s, long after the checks.
	p := harness.StartBridge(t, fmt.Sprintf(`
mqtt:
  url: %s
bridge:
  id: ops-metrics
  state_dir: %s
http:
  listen: 127.0.0.1:%d
hass:
  enabled: false
sources:
  - id: sim-ups
    type: sim
    scenario: outage
    time_scale: 30
    poll_interval: 200ms
notify:
  - name: ops-hook
    type: wecom
    url: %s/cgi-bin/webhook/send?key=%s
    events: [all]
    flap_window: 0s
    retry_min: 100ms
    retry_max: 300ms
agent:
  id: host1
  supplies: [{ups: sim-ups}]
  dry_run: true
  poweroff: command
  shutdown_command: [/bin/false]
  state_file: %s
  stages:
    - {name: shed, on_battery_for: 1s, run: [/bin/true]}
    - {name: later, on_battery_for: 1h, run: [/bin/true]}
    - {name: poweroff, action: poweroff, battery_charge_below: 5}
`, broker.URL(), dir, port, wecom.URL, key, filepath.Join(dir, "agent-host1.json")))

	waitHTTP(t, base+"/healthz", 20*time.Second, "/healthz answers", func(c int, b string) bool { return c == 200 })

	notifier := map[string]string{"sink": "notify-ops-hook"}
	var mfs map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		mfs = scrape(t, base)
		failures, _ := value(mfs, "upsbridge_sink_failures_total", notifier)
		_, staging := value(mfs, "upsbridge_agent_stage", map[string]string{"agent": "host1", "stage": "shed"})
		if failures >= 2 && staging {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 30s: notifier failures %v (endpoint hit %d times), agent stage shed seen %v", failures, hits.Load(), staging)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if hits.Load() == 0 {
		t.Fatal("the failing endpoint was never asked with the key; the failures are not its")
	}

	checkMetrics(t, mfs, []metricCheck{
		{"upsbridge_sink_failures_total", notifier, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"upsbridge_sink_queue_depth", notifier, func(v float64) bool { return v >= 1 }, ">= 1 (events wait on disk)"},
		{"upsbridge_sink_sent_total", notifier, func(v float64) bool { return v == 0 }, "0"},
		{"upsbridge_sink_dropped_total", notifier, func(v float64) bool { return v == 0 }, "0 (retried, not dropped)"},
		{"upsbridge_sink_last_error_seconds", notifier, func(v float64) bool {
			return v > float64(time.Now().Add(-time.Minute).Unix()) && v <= float64(time.Now().Unix()+1)
		}, "a unix time in the last minute"},
		{"upsbridge_agent_status", map[string]string{"agent": "host1", "status": "staging"}, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_agent_next_stage_seconds", map[string]string{"agent": "host1", "next_stage": "later"}, func(v float64) bool { return v > 3500 && v <= 3600 }, "just under an hour"},
		{"upsbridge_sink_decisions_total", map[string]string{"sink": "agent-host1"}, func(v float64) bool { return v >= 2 }, ">= 2 (outage start, stage shed)"},
		{"upsbridge_sink_actions_failed_total", map[string]string{"sink": "agent-host1"}, func(v float64) bool { return v == 0 }, "0"},
		{"upsbridge_sink_dry_run", map[string]string{"sink": "agent-host1"}, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_sink_protected", map[string]string{"sink": "agent-host1"}, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_agent_news_accepted_total", map[string]string{"agent": "host1"}, func(v float64) bool { return v >= 1 }, ">= 1 (the supply's states)"},
		{"upsbridge_agent_news_dropped_total", map[string]string{"agent": "host1", "reason": "replay"}, func(v float64) bool { return v == 0 }, "0"},
		{"upsbridge_mqtt_connected", nil, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_sink_connected", map[string]string{"sink": "mqtt"}, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_sink_epoch", map[string]string{"sink": "mqtt"}, func(v float64) bool { return v > 1e12 }, "this run's epoch (>= unix ms)"},
		{"upsbridge_sink_publish_failures_total", map[string]string{"sink": "mqtt"}, func(v float64) bool { return v == 0 }, "0"},
		{"upsbridge_sink_handshakes_total", map[string]string{"sink": "primary"}, func(v float64) bool { return v == 0 }, "0"},
		{"upsbridge_sink_agents_known", map[string]string{"sink": "primary"}, func(v float64) bool { return v >= 1 }, ">= 1 (host1)"},
		{"upsbridge_sink_queue_length", map[string]string{"sink": "notify-ops-hook"}, func(v float64) bool { return v >= 0 }, "present"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 1<<20 }, "> 1 MiB"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
	})
	// Every family has its TYPE: counters are counters, the rest gauges
	// (summaries for the runtime's GC pauses and the like).
	for name, mf := range mfs {
		want := dto.MetricType_GAUGE
		if strings.HasSuffix(name, "_total") {
			want = dto.MetricType_COUNTER
		}
		if strings.HasPrefix(name, "upsbridge_") && mf.GetType() != want {
			t.Errorf("%s is a %v, want a %v", name, mf.GetType(), want)
		}
		if mf.GetType() == dto.MetricType_UNTYPED {
			t.Errorf("%s has no TYPE", name)
		}
	}
	if mf := mfs["upsbridge_sink_failures_total"]; mf.GetType() != dto.MetricType_COUNTER {
		t.Errorf("upsbridge_sink_failures_total is a %v, want a counter", mf.GetType())
	}
	if n := len(mfs["upsbridge_agent_status"].GetMetric()); n != 1 {
		t.Errorf("upsbridge_agent_status has %d series, want only the current status", n)
	}
	// Error texts stay out of /metrics (a series per distinct message).
	if _, ok := labelsOf(mfs, "upsbridge_component_info", map[string]string{"kind": "sink", "name": "notify-ops-hook", "key": "last_error"}); ok {
		t.Errorf("the notifier's last_error is a label of upsbridge_component_info; error texts belong in /api/state")
	}

	// A failing notifier is not a reason to be unready.
	waitHTTP(t, base+"/readyz", 20*time.Second, "/readyz 200 with the notifier failing", func(c int, b string) bool { return c == 200 })

	code, state := httpGet(t, base+"/api/state")
	var doc httpapi.StateDoc
	if code != 200 || json.Unmarshal([]byte(state), &doc) != nil {
		t.Fatalf("/api/state: %d %s", code, state)
	}
	var agentSeen, notifierSeen bool
	for _, a := range doc.Agents {
		if a.Agent == "host1" && a.Stats["status"] != nil {
			agentSeen = true
		}
	}
	for _, s := range doc.Sinks {
		if s.Name == "notify-ops-hook" {
			f, _ := s.Stats["failures_total"].(float64)
			notifierSeen = f >= 2
			if le, _ := s.Stats["last_error"].(string); !strings.Contains(le, "HTTP 500") || !strings.Contains(le, "[redacted]") {
				t.Errorf("/api/state last_error %q: want the HTTP 500 with the echoed key redacted", le)
			}
		}
	}
	if !agentSeen || !notifierSeen {
		t.Errorf("/api/state: agent host1 with stats %v, notifier with failures %v:\n%s", agentSeen, notifierSeen, state)
	}

	// The key never leaves the process through the endpoint or its logs.
	_, metricsText := httpGet(t, base+"/metrics")
	for what, text := range map[string]string{"/metrics": metricsText, "/api/state": state, "the process's logs": p.Output.String()} {
		if strings.Contains(text, key) {
			t.Errorf("%s carries the WeCom key", what)
		}
	}
	if !strings.Contains(state, "[redacted]") {
		t.Errorf("/api/state shows no redacted error; the secret check above proved nothing")
	}

	if code := p.Stop(t, 15*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
