package metricname

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/upsbridge/upsbridge/internal/datadir"
)

func parse(t testing.TB, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%q", err, text)
	}
	return mfs
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestSeries(t *testing.T) {
	tests := []struct {
		name   string
		labels []string
		want   string
	}{
		{"a_total", nil, "a_total"},
		{"a_total", []string{"odd"}, "a_total"},
		{"a", []string{"k", "v"}, `a{k="v"}`},
		{"a", []string{"k", `q"b\n` + "\n"}, `a{k="q\"b\\n\n"}`},
		{"a", []string{"k", "bad\xff", "z", ""}, "a{k=\"bad\uFFFD\",z=\"\"}"},
	}
	for _, tt := range tests {
		if got := Series(tt.name, tt.labels...); got != tt.want {
			t.Errorf("Series(%q, %q) = %q, want %q", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestWriteFamily pins the text of a scrape-time family: HELP with its
// escapes, TYPE, series sorted, a repeated series once, special values.
func TestWriteFamily(t *testing.T) {
	f := Family{Name: "x_seconds", Type: "gauge", Help: "back\\slash\nnewline"}
	f.Add(math.Inf(1), "k", "b")
	f.Add(1.5, "k", "a")
	f.Add(2, "k", "a")
	f.Add(math.NaN(), "k", "c")
	var b bytes.Buffer
	WriteFamily(&b, &f)
	want := "# HELP x_seconds back\\\\slash\\nnewline\n# TYPE x_seconds gauge\n" +
		"x_seconds{k=\"a\"} 1.5\nx_seconds{k=\"b\"} +Inf\nx_seconds{k=\"c\"} NaN\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	mf := parse(t, b.String())["x_seconds"]
	if mf.GetHelp() != "back\\slash\nnewline" || len(mf.GetMetric()) != 3 {
		t.Errorf("parsed %v", mf)
	}
	b.Reset()
	WriteFamily(&b, &Family{Name: "empty", Type: "gauge"})
	if b.Len() != 0 {
		t.Errorf("an empty family wrote %q", b.String())
	}
}

// realLabels returns the variable names and values of the curated device
// dumps: what UPSes put in label values.
func realLabels(tb testing.TB) []string {
	var out []string
	for _, path := range datadir.CuratedDDL(tb) {
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if name, value, ok := strings.Cut(strings.TrimRight(l, "\r"), ": "); ok && !strings.HasPrefix(name, "#") {
				out = append(out, name, value)
			}
		}
	}
	return out
}

// FuzzSeries: whatever a component id or a UPS sends as a label value,
// the library accepts the series name (it panics on one it cannot parse),
// the scrape parses with Prometheus' own parser, and the value comes back:
// unchanged when it is valid UTF-8, with U+FFFD for bad bytes otherwise.
func FuzzSeries(f *testing.F) {
	for _, s := range []string{"battery.charge", "nas-ups", `say "hi"\` + "\n", "bad\xff", "x\"} 1\n# HELP a", "ünï", "", "\\", "{}=,"} {
		f.Add(s, s)
	}
	// Variable names with their values, from real devices (one pair in 20,
	// to keep the seed corpus quick to run).
	seeds := realLabels(f)
	for i := 0; i+1 < len(seeds); i += 40 {
		f.Add(seeds[i], seeds[i+1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		set := metrics.NewSet()
		set.GetOrCreateCounter(Series("fuzz_total", "a", a, "b", b)).Add(3)
		fam := Family{Name: "fuzz_scrape", Type: "gauge", Help: a}
		fam.Add(1, "a", a)
		fam.Add(2, "a", b)
		var buf bytes.Buffer
		set.WritePrometheus(&buf)
		WriteFamily(&buf, &fam)
		mfs := parse(t, buf.String())
		wantA, wantB := strings.ToValidUTF8(a, "\uFFFD"), strings.ToValidUTF8(b, "\uFFFD")
		ms := mfs["fuzz_total"].GetMetric()
		if len(ms) != 1 || labels(ms[0])["a"] != wantA || labels(ms[0])["b"] != wantB || ms[0].GetCounter().GetValue() != 3 {
			t.Fatalf("fuzz_total: %v\n%q", ms, buf.String())
		}
		got := map[string]bool{}
		for _, m := range mfs["fuzz_scrape"].GetMetric() {
			got[labels(m)["a"]] = true
		}
		if !got[wantA] || !got[wantB] {
			t.Fatalf("fuzz_scrape: %v\n%q", got, buf.String())
		}
	})
}
