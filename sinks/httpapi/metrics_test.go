package httpapi

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	dto "github.com/prometheus/client_model/go"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/datadir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// ownFamilies returns the upsbridge_* lines of an exposition: the rest
// (go_*, process_*) changes from run to run.
func ownFamilies(text string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(text, "\n") {
		name := l
		if rest, ok := strings.CutPrefix(l, "# HELP "); ok {
			name = rest
		} else if rest, ok := strings.CutPrefix(l, "# TYPE "); ok {
			name = rest
		}
		if strings.HasPrefix(name, "upsbridge_") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestMetricsGolden pins /metrics for a fixed set of states, events,
// component metrics and stats: the output is a contract for dashboards and
// alerts.
func TestMetricsGolden(t *testing.T) {
	s := fixtureServer(t)
	code, body := get(t, s.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics %d", code)
	}
	got := ownFamilies(body)
	path := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("/metrics differs from %s (run with -update if the change is intended):\n%s", path, lineDiff(string(want), got))
	}
	if _, err := parseExposition(t, body); err != nil {
		t.Errorf("parse: %v", err)
	}
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		count[l]--
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if count[l] > 0 {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if count[l] < 0 {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order)"
	}
	return b.String()
}

// TestMetricsHandler checks the HTTP side (content type, gzip) and the
// runtime and process families.
func TestMetricsHandler(t *testing.T) {
	s := fixtureServer(t)
	tests := []struct {
		name     string
		encoding string
		gzipped  bool
	}{
		{"plain", "", false},
		{"gzip as Prometheus asks", "gzip", true},
		{"gzip refused", "gzip;q=0, identity", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tt.encoding != "" {
				req.Header.Set("Accept-Encoding", tt.encoding)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			res := rec.Result()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			var r io.Reader = res.Body
			if got := res.Header.Get("Content-Encoding") == "gzip"; got != tt.gzipped {
				t.Fatalf("Content-Encoding %q, want gzip: %v", res.Header.Get("Content-Encoding"), tt.gzipped)
			}
			if tt.gzipped {
				zr, err := gzip.NewReader(res.Body)
				if err != nil {
					t.Fatal(err)
				}
				r = zr
			}
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			mfs, err := parseExposition(t, string(b))
			if err != nil {
				t.Fatalf("parse: %v\n%s", err, b)
			}
			checkStandardFamilies(t, mfs)
		})
	}
}

// checkStandardFamilies checks the go_* and process_* families dashboards
// use: present, typed as the official client types them, plausible.
func checkStandardFamilies(t *testing.T, mfs map[string]*dto.MetricFamily) {
	t.Helper()
	type fam struct {
		name string
		typ  dto.MetricType
		ok   func(float64) bool
	}
	positive := func(v float64) bool { return v > 0 }
	nonNegative := func(v float64) bool { return v >= 0 }
	now := float64(time.Now().Unix())
	fams := []fam{
		{"go_goroutines", dto.MetricType_GAUGE, positive},
		{"go_threads", dto.MetricType_GAUGE, positive},
		{"go_memstats_alloc_bytes", dto.MetricType_GAUGE, positive},
		{"go_memstats_heap_inuse_bytes", dto.MetricType_GAUGE, positive},
		{"go_memstats_sys_bytes", dto.MetricType_GAUGE, func(v float64) bool { return v > 1<<20 }},
		{"go_info", dto.MetricType_GAUGE, func(v float64) bool { return v == 1 }},
	}
	if runtime.GOOS == "linux" {
		fams = append(fams,
			fam{"process_cpu_seconds_total", dto.MetricType_COUNTER, nonNegative},
			fam{"process_resident_memory_bytes", dto.MetricType_GAUGE, func(v float64) bool { return v > 1<<20 }},
			fam{"process_virtual_memory_bytes", dto.MetricType_GAUGE, func(v float64) bool { return v > 1<<20 }},
			fam{"process_open_fds", dto.MetricType_GAUGE, func(v float64) bool { return v >= 3 }},
			fam{"process_max_fds", dto.MetricType_GAUGE, func(v float64) bool { return v >= 3 }},
			fam{"process_start_time_seconds", dto.MetricType_GAUGE, func(v float64) bool { return v > now-24*3600 && v <= now+1 }},
		)
	}
	for _, f := range fams {
		mf := mfs[f.name]
		if mf == nil {
			t.Errorf("%s missing", f.name)
			continue
		}
		if mf.GetType() != f.typ || len(mf.GetMetric()) != 1 {
			t.Errorf("%s: type %v with %d samples, want one %v", f.name, mf.GetType(), len(mf.GetMetric()), f.typ)
			continue
		}
		if v := sampleValue(mf.GetMetric()[0]); !f.ok(v) {
			t.Errorf("%s = %v: implausible", f.name, v)
		}
	}
	if mf := mfs["go_info"]; mf != nil && labelsOf(mf.GetMetric()[0])["version"] != runtime.Version() {
		t.Errorf("go_info labels %v, want version %s", labelsOf(mf.GetMetric()[0]), runtime.Version())
	}
	if mf := mfs["go_gc_duration_seconds"]; mf == nil || mf.GetType() != dto.MetricType_SUMMARY ||
		len(mf.GetMetric()[0].GetSummary().GetQuantile()) != 5 {
		t.Errorf("go_gc_duration_seconds: want a summary with 5 quantiles, got %v", mf)
	}
}

// TestMetricsProcessMatchesKernel compares the process families with what
// the kernel reports otherwise.
func TestMetricsProcessMatchesKernel(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process_* families are Linux only")
	}
	var buf bytes.Buffer
	metrics.WriteProcessMetrics(&buf)
	mfs, err := parseExposition(t, buf.String())
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	rss := sampleValue(mfs["process_resident_memory_bytes"].GetMetric()[0])
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var hwmKB float64
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var n int
			for _, c := range strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")) {
				n = n*10 + int(c-'0')
			}
			hwmKB = float64(n)
		}
	}
	if rss <= 0 || hwmKB <= 0 || rss > hwmKB*1024 {
		t.Errorf("process_resident_memory_bytes %v, peak RSS %v kB: RSS must be positive and at most the peak", rss, hwmKB)
	}
}

// TestMetricsHostileInput feeds names and values a UPS or component may
// send (quotes, backslashes, newlines, invalid UTF-8) through the real
// handler: the scrape always parses, valid strings come back unchanged,
// invalid UTF-8 comes back with U+FFFD in place of the bad bytes.
func TestMetricsHostileInput(t *testing.T) {
	fb := &fakeBridge{
		sources: []bridge.Source{statsSource{fakeSource{"s1"}, map[string]any{
			"server": "a\"b\\c\nd", "garbage": "bad\xffvalue", "BAD KEY\n": "x", "ok_total": 3,
		}}},
		owner: map[string]string{"u1": "s1"},
	}
	fb.sinks = []bridge.SinkQueue{
		{Sink: fakeSink{"agent-x", map[string]any{"agent": "web\"01\n", "status": "stag\\ing", "stage": "bad\xc3\x28"}},
			Queue: bridge.NewQueue("agent-x", 0, nil)},
	}
	s, err := New(Options{Listen: "127.0.0.1:0", BridgeID: "id\"\n\\", Version: "v\xff", Bridge: fb})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	vars := bridge.Vars{
		"battery.charge":            "50",
		"in\"put.voltage":           "230",
		"out\\put.voltage":          "231",
		"new\nline.voltage":         "232",
		"bad\xff.voltage":           "233",
		"ünïcode.voltage":           "234",
		"x\"} 1\n# HELP a.voltage":  "235",
		"in\xc3\x28put.voltage":     "236",
		"device.model\n# TYPE evil": "X",
	}
	s.accept(bridge.Message{Kind: bridge.MessageState, State: &bridge.State{UPS: "u1", Time: time.Unix(1, 0), Comm: true, Vars: vars}})
	for _, host := range []string{"h\"o\\st\n", "bad\xfehost"} {
		ev := bridge.NewEvent("u1", time.Now(), bridge.EventShutdown, "")
		ev.Host = host
		s.accept(bridge.Message{Kind: bridge.MessageEvent, Event: &ev})
	}

	code, body := get(t, s.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics %d", code)
	}
	mfs, err := parseExposition(t, body)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	want := []struct {
		family string
		labels map[string]string
		value  float64
	}{
		{"upsbridge_ups_variable", map[string]string{"ups": "u1", "var": "battery.charge"}, 50},
		{"upsbridge_ups_variable", map[string]string{"var": "in\"put.voltage"}, 230},
		{"upsbridge_ups_variable", map[string]string{"var": "out\\put.voltage"}, 231},
		{"upsbridge_ups_variable", map[string]string{"var": "new\nline.voltage"}, 232},
		{"upsbridge_ups_variable", map[string]string{"var": "bad\uFFFD.voltage"}, 233},
		{"upsbridge_ups_variable", map[string]string{"var": "ünïcode.voltage"}, 234},
		{"upsbridge_ups_variable", map[string]string{"var": "x\"} 1\n# HELP a.voltage"}, 235},
		{"upsbridge_ups_variable", map[string]string{"var": "in\uFFFD(put.voltage"}, 236},
		{"upsbridge_component_info", map[string]string{"key": "server", "value": "a\"b\\c\nd"}, 1},
		{"upsbridge_component_info", map[string]string{"key": "garbage", "value": "bad\uFFFDvalue"}, 1},
		{"upsbridge_component_info", map[string]string{"key": "BAD KEY\n", "value": "x"}, 1},
		{"upsbridge_component_info", map[string]string{"key": "agent", "value": "web\"01\n"}, 1},
		{"upsbridge_component_info", map[string]string{"key": "stage", "value": "bad\uFFFD("}, 1},
		{"upsbridge_build_info", map[string]string{"bridge_id": "id\"\n\\", "version": "v\uFFFD"}, 1},
		{"upsbridge_events_total", map[string]string{"host": "h\"o\\st\n", "type": "SHUTDOWN", "ups": "u1"}, 1},
		{"upsbridge_events_total", map[string]string{"host": "bad\uFFFDhost", "type": "SHUTDOWN", "ups": "u1"}, 1},
		{"upsbridge_ups_on_battery", map[string]string{"ups": "u1"}, 0},
	}
	for _, w := range want {
		if v, ok := find(mfs, w.family, w.labels); !ok || v != w.value {
			t.Errorf("%s%q = %v (found %v), want %v", w.family, w.labels, v, ok, w.value)
		}
	}
	if n := len(mfs["upsbridge_ups_variable"].GetMetric()); n != 8 {
		t.Errorf("%d UPS variables exported, want 8 (every numeric one)", n)
	}
	// A component's numbers are its own metrics, never names made from its
	// stats keys.
	for name := range mfs {
		if strings.HasPrefix(name, "upsbridge_source_") || strings.HasPrefix(name, "upsbridge_agent_") {
			t.Errorf("family %s made from a stats map", name)
		}
	}
}

// find returns the value of the first sample of family whose labels
// include want.
func find(mfs map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	for _, m := range mfs[family].GetMetric() {
		l := labelsOf(m)
		ok := true
		for k, v := range want {
			ok = ok && l[k] == v
		}
		if ok {
			return sampleValue(m), true
		}
	}
	return 0, false
}

// TestMetricsRealDumps exports the variables of real device dumps at once
// (the curated set of the repository, and the full NUT DDL corpus when
// present): the scrape parses, and each numeric variable comes back with
// its name and value.
func TestMetricsRealDumps(t *testing.T) {
	t.Run("curated", func(t *testing.T) { checkMetricsDumps(t, datadir.CuratedDDL(t), 900) })
	t.Run("corpus", func(t *testing.T) { checkMetricsDumps(t, datadir.CorpusDDL(t), 5000) })
}

// checkMetricsDumps exports every dump of files as one UPS each; at least
// minVars numeric variables must come back.
func checkMetricsDumps(t *testing.T, files []string, minVars int) {
	s, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	want := map[[2]string]float64{}
	for i, path := range files {
		vars := parseDev(t, path)
		ups := fmt.Sprintf("u%04d", i)
		for k := range vars {
			if f, ok := vars.Number(k); ok {
				want[[2]string{ups, k}] = f
			}
		}
		s.accept(bridge.Message{Kind: bridge.MessageState, State: &bridge.State{UPS: ups, Time: time.Unix(1, 0),
			Status: bridge.ParseStatus(vars[bridge.VarStatus]), Comm: true, Vars: vars}})
	}
	code, body := get(t, s.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics %d", code)
	}
	mfs, err := parseExposition(t, body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	got := map[[2]string]float64{}
	for _, m := range mfs["upsbridge_ups_variable"].GetMetric() {
		l := labelsOf(m)
		got[[2]string{l["ups"], l["var"]}] = sampleValue(m)
	}
	if len(got) != len(want) || len(want) < minVars {
		t.Errorf("%d variables exported, want %d (from %d dumps)", len(got), len(want), len(files))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s %s = %v, want %v", k[0], k[1], got[k], v)
		}
	}
	if n := len(mfs["upsbridge_ups_status_flag"].GetMetric()); n != 16*len(files) {
		t.Errorf("%d status flags, want 16 per UPS", n)
	}
}

// parseDev reads the "name: value" lines of a .dev dump; "#" lines are
// comments and a tab starts an end-of-line flag ("#BAD", "#COMMENT").
func parseDev(t testing.TB, path string) bridge.Vars {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read dump: %v", err)
	}
	vars := bridge.Vars{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimRight(l, "\r")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.Index(l, "\t#"); i >= 0 {
			l = l[:i]
		}
		if name, value, ok := strings.Cut(l, ": "); ok {
			vars[name] = value
		}
	}
	return vars
}

// TestEventCounts checks that /api/state lists the event counters as the
// official client's registry did: by host, type, then UPS.
func TestEventCounts(t *testing.T) {
	s := fixtureServer(t)
	want := []EventCount{
		{UPS: "a", Type: "COMMOK", Count: 1},
		{UPS: "b", Type: "LOWBATT", Count: 2},
		{UPS: "b", Type: "ONBATT", Count: 1},
		{UPS: "b", Host: "web01", Type: "STAGE", Count: 1},
	}
	if got := s.Document().Events; !slices.Equal(got, want) {
		t.Errorf("events %+v, want %+v", got, want)
	}
}
