package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/sinks/httpapi"
)

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHTTP polls url until cond holds for its status and body, or fails
// the test at the deadline.
func waitHTTP(t *testing.T, url string, timeout time.Duration, what string, cond func(code int, body string) bool) (int, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, url)
		if cond(code, body) {
			return code, body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last answer %d %q", what, timeout, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape fetches /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return mfs
}

// value returns the value of the sample of family name whose labels
// include want, and whether there is one.
// metricCheck is one expectation on a scraped series.
type metricCheck struct {
	name   string
	labels map[string]string
	check  func(float64) bool
	want   string
}

// checkMetrics reports every series that is missing or fails its check.
func checkMetrics(t *testing.T, mfs map[string]*dto.MetricFamily, checks []metricCheck) {
	t.Helper()
	for _, c := range checks {
		v, ok := value(mfs, c.name, c.labels)
		if !ok {
			t.Errorf("%s%v: missing from /metrics", c.name, c.labels)
			continue
		}
		if !c.check(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}
}

func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// TestOpsHTTPMetricsAndReadiness runs the real binary with a simulated
// outage against a real mosquitto, scrapes /metrics with Prometheus' parser,
// and watches /readyz flip when the broker is stopped and started again.
func TestOpsHTTPMetricsAndReadiness(t *testing.T) {
	broker := harness.StartMosquitto(t)
	port := harness.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`
mqtt:
  url: %s
bridge:
  id: ops-test
  state_dir: %s
http:
  listen: 127.0.0.1:%d
hass:
  enabled: false
sources:
  - id: sim-ups
    type: sim
    scenario: outage
    time_scale: 60
    poll_interval: 200ms
`, broker.URL(), t.TempDir(), port)
	p := harness.StartBridge(t, cfg)

	waitHTTP(t, base+"/healthz", 20*time.Second, "/healthz answers", func(c int, b string) bool { return c == 200 && strings.TrimSpace(b) == "ok" })
	waitHTTP(t, base+"/readyz", 20*time.Second, "/readyz ready", func(c int, b string) bool { return c == 200 })

	// The outage scenario goes on battery within a few simulated minutes.
	var mfs map[string]*dto.MetricFamily
	deadline := time.Now().Add(20 * time.Second)
	for {
		mfs = scrape(t, base)
		if v, ok := value(mfs, "upsbridge_events_total", map[string]string{"ups": "sim-ups", "type": "ONBATT"}); ok && v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ONBATT counted within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkMetrics(t, mfs, []metricCheck{
		{"upsbridge_build_info", map[string]string{"bridge_id": "ops-test"}, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_ups_variable", map[string]string{"ups": "sim-ups", "var": "battery.charge"}, func(v float64) bool { return v > 0 && v <= 100 }, "0 < charge <= 100"},
		{"upsbridge_ups_variable", map[string]string{"ups": "sim-ups", "var": "ups.load"}, func(v float64) bool { return v >= 0 }, ">= 0"},
		{"upsbridge_ups_status_flag", map[string]string{"ups": "sim-ups", "flag": "OL"}, func(v float64) bool { return v == 0 || v == 1 }, "0 or 1"},
		{"upsbridge_ups_communicating", map[string]string{"ups": "sim-ups", "source": "sim-ups"}, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_mqtt_connected", nil, func(v float64) bool { return v == 1 }, "1"},
		{"upsbridge_mqtt_queue_depth", nil, func(v float64) bool { return v >= 0 }, ">= 0"},
		{"upsbridge_sink_queue_length", map[string]string{"sink": "mqtt"}, func(v float64) bool { return v >= 0 }, ">= 0"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
	})
	if mf := mfs["upsbridge_events_total"]; mf.GetType() != dto.MetricType_COUNTER {
		t.Errorf("upsbridge_events_total is a %v, want a counter", mf.GetType())
	}

	// /api/state is the documented JSON.
	code, body := httpGet(t, base+"/api/state")
	var doc httpapi.StateDoc
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil {
		t.Fatalf("/api/state: %d %s", code, body)
	}
	if doc.BridgeID != "ops-test" || len(doc.UPS) != 1 || doc.UPS[0].UPS != "sim-ups" || doc.UPS[0].Source != "sim-ups" || !doc.UPS[0].Communicating {
		t.Errorf("/api/state: %+v", doc)
	}

	// `upsbridge health` is what the container's HEALTHCHECK runs.
	out, err := exec.Command(harness.Binary(t), "health", "--url", base, "--ready").CombinedOutput()
	if err != nil {
		t.Errorf("upsbridge health --ready: %v\n%s", err, out)
	}

	// Broker down: not ready, and the body says why; alive all the same.
	broker.Stop()
	stopped := time.Now()
	_, body = waitHTTP(t, base+"/readyz", 30*time.Second, "/readyz 503 after mosquitto stopped", func(c int, b string) bool { return c == 503 })
	t.Logf("/readyz went 503 %s after mosquitto was killed", time.Since(stopped).Round(time.Millisecond))
	if !strings.Contains(body, "mqtt: not connected") {
		t.Errorf("/readyz body does not say the broker is the problem: %q", body)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d while the broker is down; liveness must not depend on it", code)
	}
	if out, err := exec.Command(harness.Binary(t), "health", "--url", base, "--ready").CombinedOutput(); err == nil {
		t.Errorf("upsbridge health --ready succeeded with the broker down:\n%s", out)
	}
	mfs = scrape(t, base)
	if v, _ := value(mfs, "upsbridge_mqtt_connected", nil); v != 0 {
		t.Errorf("upsbridge_mqtt_connected = %v with the broker down", v)
	}

	// Broker back: ready again (autopaho reconnects with backoff of up to 30 s).
	broker.Start()
	started := time.Now()
	waitHTTP(t, base+"/readyz", 45*time.Second, "/readyz 200 after mosquitto restarted", func(c int, b string) bool { return c == 200 })
	t.Logf("/readyz went 200 %s after mosquitto restarted", time.Since(started).Round(time.Millisecond))

	if code := p.Stop(t, 15*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// TestOpsReadyzCommLost: a source that loses its UPS makes the process not
// ready, naming the UPS and its source.
func TestOpsReadyzCommLost(t *testing.T) {
	broker := harness.StartMosquitto(t)
	port := harness.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	harness.StartBridge(t, fmt.Sprintf(`
mqtt:
  url: %s
bridge:
  state_dir: %s
http:
  listen: 127.0.0.1:%d
hass:
  enabled: false
sources:
  - id: lossy
    type: sim
    scenario: comm_loss
    time_scale: 60
    poll_interval: 200ms
`, broker.URL(), t.TempDir(), port))
	_, body := waitHTTP(t, base+"/readyz", 60*time.Second, "/readyz reports the lost UPS", func(c int, b string) bool {
		return c == 503 && strings.Contains(b, "ups lossy (source lossy): not communicating")
	})
	t.Logf("/readyz: %q", body)
}
