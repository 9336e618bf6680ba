package httpapi

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseExposition parses text with Prometheus' own parser (UTF-8
// validation on, as a current Prometheus scrapes).
func parseExposition(t testing.TB, text string) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(text))
}

// render writes m and returns the text.
func render(t testing.TB, m *metricSet) string {
	t.Helper()
	var b bytes.Buffer
	if err := m.write(&b); err != nil {
		t.Fatalf("write: %v", err)
	}
	return b.String()
}

// labelsOf returns a sample's labels as a map.
func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// sampleValue returns the value of a gauge, counter or untyped sample.
func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return m.GetUntyped().GetValue()
}

func sameFloat(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

// TestWriterFormat pins the exact text for the format's corner cases.
func TestWriterFormat(t *testing.T) {
	g := newDesc("t_gauge", "A gauge.", gaugeType, "b", "a")
	tests := []struct {
		name  string
		build func(m *metricSet)
		want  string
		skips int
	}{
		{"labels written by name, samples sorted by value", func(m *metricSet) {
			m.add(g, 1, "y", "2")
			m.add(g, 2, "x", "2")
			m.add(g, 3, "z", "1")
		}, "# HELP t_gauge A gauge.\n# TYPE t_gauge gauge\n" +
			"t_gauge{a=\"1\",b=\"z\"} 3\nt_gauge{a=\"2\",b=\"x\"} 2\nt_gauge{a=\"2\",b=\"y\"} 1\n", 0},
		{"floats as Prometheus writes them", func(m *metricSet) {
			d := newDesc("t_f", "F.", gaugeType, "v")
			for i, v := range []float64{0, 1, -1, 0.1, 1e-7, 1.5e21, 1709294390.25, math.Inf(1), math.Inf(-1), math.NaN(), math.MaxFloat64, 5e-324} {
				m.add(d, v, string(rune('a'+i)))
			}
		}, "# HELP t_f F.\n# TYPE t_f gauge\n" +
			"t_f{v=\"a\"} 0\nt_f{v=\"b\"} 1\nt_f{v=\"c\"} -1\nt_f{v=\"d\"} 0.1\nt_f{v=\"e\"} 1e-07\nt_f{v=\"f\"} 1.5e+21\n" +
			"t_f{v=\"g\"} 1.70929439025e+09\nt_f{v=\"h\"} +Inf\nt_f{v=\"i\"} -Inf\nt_f{v=\"j\"} NaN\n" +
			"t_f{v=\"k\"} 1.7976931348623157e+308\nt_f{v=\"l\"} 5e-324\n", 0},
		{"escaping of label values and HELP", func(m *metricSet) {
			m.add(newDesc("t_e", "back\\slash \"quoted\"\nnext", gaugeType, "v"), 1, "q\"b\\n\nend")
		}, "# HELP t_e back\\\\slash \"quoted\"\\nnext\n# TYPE t_e gauge\nt_e{v=\"q\\\"b\\\\n\\nend\"} 1\n", 0},
		{"no labels, counter", func(m *metricSet) {
			m.add(newDesc("t_total", "", counterType), 7)
		}, "# HELP t_total \n# TYPE t_total counter\nt_total 7\n", 0},
		{"families sorted, duplicates dropped (first kept)", func(m *metricSet) {
			m.add(newDesc("t_b", "B.", gaugeType), 1)
			m.add(newDesc("t_a", "A.", gaugeType), 2)
			m.add(newDesc("t_b", "B.", gaugeType), 3)
		}, "# HELP t_a A.\n# TYPE t_a gauge\nt_a 2\n# HELP t_b B.\n# TYPE t_b gauge\nt_b 1\n", 1},
		{"a family's first HELP and TYPE win", func(m *metricSet) {
			m.add(newDesc("t_c", "C.", gaugeType, "x"), 1, "a")
			m.add(newDesc("t_c", "Other.", gaugeType, "x"), 2, "b")
			m.add(newDesc("t_c", "C.", counterType, "x"), 3, "c")
			m.add(newDesc("t_c", "C.", gaugeType, "y"), 4, "d")
		}, "# HELP t_c C.\n# TYPE t_c gauge\nt_c{x=\"a\"} 1\n", 3},
		{"bad names and values skipped, never written", func(m *metricSet) {
			for _, name := range []string{"", "9lives", "has space", "dash-ed", "dot.ted", "ünï", "quo\"te", "new\nline"} {
				m.add(newDesc(name, "X.", gaugeType), 1)
			}
			for _, label := range []string{"", "__reserved", "9x", "a-b", "a.b", "é"} {
				m.add(newDesc("t_l", "L.", gaugeType, label), 1, "v")
			}
			m.add(newDesc("t_dup", "D.", gaugeType, "x", "x"), 1, "a", "b")
			m.add(newDesc("t_u", "U.", gaugeType, "v"), 1, "bad\xff")
			m.add(newDesc("t_u", "U.", gaugeType, "v"), 1, "a", "extra")
			m.add(newDesc("t_h", "bad\xfe", gaugeType), 1)
			m.add(newDesc("t_ok:colon_ok", "Ok.", gaugeType, "_under"), 1, "")
		}, "# HELP t_ok:colon_ok Ok.\n# TYPE t_ok:colon_ok gauge\nt_ok:colon_ok{_under=\"\"} 1\n", 18},
		{"summary with quantiles, sum, count; clashing names left out", func(m *metricSet) {
			d := newDesc("t_s", "S.", summaryType)
			m.addSummary(d, []float64{0, 0.5, 1}, []float64{0.001, 0.002, 0.003}, 0.5, 100)
			m.addSummary(d, []float64{0}, []float64{1}, 1, 1)
			m.add(newDesc("t_s_count", "Clash.", counterType), 1)
			m.add(newDesc("t_s_sum", "Clash.", gaugeType), 1)
			m.add(d, 1)
			m.add(newDesc("t_q", "Q.", summaryType, "quantile"), 1)
		}, "# HELP t_s S.\n# TYPE t_s summary\nt_s{quantile=\"0\"} 0.001\nt_s{quantile=\"0.5\"} 0.002\nt_s{quantile=\"1\"} 0.003\n" +
			"t_s_sum 0.5\nt_s_count 100\n", 5},
		{"nothing", func(*metricSet) {}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMetricSet()
			tt.build(m)
			got := render(t, m)
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if len(m.skipped) != tt.skips {
				t.Errorf("%d samples skipped, want %d: %v", len(m.skipped), tt.skips, m.skipped)
			}
			if _, err := parseExposition(t, got); err != nil {
				t.Errorf("Prometheus' parser rejects the output: %v\n%s", err, got)
			}
		})
	}
}

// TestWriterHostileLabelValues checks that whatever a UPS sends as a label
// value either comes back unchanged through Prometheus' parser or is left
// out (invalid UTF-8), without spoiling the rest.
func TestWriterHostileLabelValues(t *testing.T) {
	tests := []struct {
		name  string
		value string
		kept  bool
	}{
		{"double quote", `say "hi"`, true},
		{"backslash", `C:\ups\`, true},
		{"backslash n literally", `\n`, true},
		{"newline", "line1\nline2\n", true},
		{"carriage return and tab", "a\r\tb", true},
		{"closing brace and comma", `x"},y="z`, true},
		{"hash and HELP look-alike", "\n# HELP evil x\nevil 1", true},
		{"NUL", "a\x00b", true},
		{"empty", "", true},
		{"non-ASCII UTF-8", "Sécurité ⚡ 電源", true},
		{"invalid UTF-8 byte", "bad\xffbyte", false},
		{"truncated UTF-8 sequence", "\xe2\x9a", false},
		{"UTF-16 surrogate as UTF-8", "\xed\xa0\x80", false},
	}
	d := newDesc("t_hostile", "H.", gaugeType, "ups", "var")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMetricSet()
			m.add(d, 42, "ups1", tt.value)
			m.add(d, 7, "ups1", "battery.charge")
			text := render(t, m)
			mfs, err := parseExposition(t, text)
			if err != nil {
				t.Fatalf("parse: %v\n%q", err, text)
			}
			found, other := false, false
			for _, s := range mfs["t_hostile"].GetMetric() {
				l := labelsOf(s)
				switch {
				case l["var"] == tt.value && sampleValue(s) == 42:
					found = true
				case l["var"] == "battery.charge" && sampleValue(s) == 7:
					other = true
				}
			}
			if found != tt.kept {
				t.Errorf("value %q exported: %v, want %v\n%q", tt.value, found, tt.kept, text)
			}
			if !other {
				t.Errorf("the well-formed sample is missing\n%q", text)
			}
			if skipped := len(m.skipped) == 1; skipped == tt.kept {
				t.Errorf("skip notes %v, kept %v", m.skipped, tt.kept)
			}
		})
	}
}

func TestAcceptsGzip(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"", false},
		{"gzip", true},
		{"GZIP", true},
		{"deflate, gzip;q=1.0, *;q=0.5", true},
		{"gzip;q=0", false},
		{"gzip; q=0.0", false},
		{"gzip;q=0.001", true},
		{"gzip;q=junk", false},
		{"identity", false},
		{"x-gzip", false},
		{"br, zstd", false},
	}
	for _, tt := range tests {
		if got := acceptsGzip(tt.header); got != tt.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

// FuzzWriter: any label value, HELP text, metric name and value give an
// exposition Prometheus' parser accepts; a valid label value comes back
// unchanged, an invalid one is left out.
func FuzzWriter(f *testing.F) {
	f.Add("battery.charge", "Numeric UPS variable.", "upsbridge_ups_variable", 87.0)
	f.Add("say \"hi\"\\\n", "back\\slash\nnewline", "a:b_c", math.Inf(1))
	f.Add("bad\xff", "bad\xfe", "9bad", math.NaN())
	for _, v := range ddlSeeds(f) {
		f.Add(v, "Reported by the source as \"x\".", "upsbridge_source_x", 1.5)
	}
	f.Fuzz(func(t *testing.T, label, help, name string, v float64) {
		if name == "fuzz_other" {
			t.Skip("the name of the control family")
		}
		m := newMetricSet()
		d := newDesc(name, help, gaugeType, "l")
		m.add(d, v, label)
		m.add(newDesc("fuzz_other", help, counterType, "a", "b"), v, label, label)
		text := render(t, m)
		mfs, err := parseExposition(t, text)
		if err != nil {
			t.Fatalf("parse: %v\n%q", err, text)
		}
		want := utf8.ValidString(label) && utf8.ValidString(help)
		if got := mfs["fuzz_other"] != nil; got != want {
			t.Fatalf("fuzz_other present: %v, want %v\n%q", got, want, text)
		}
		if want {
			s := mfs["fuzz_other"].GetMetric()[0]
			if l := labelsOf(s); l["a"] != label || l["b"] != label || !sameFloat(sampleValue(s), v) {
				t.Fatalf("round trip: labels %q value %v, want %q %v", l, sampleValue(s), label, v)
			}
			// The parser skips the blanks between "HELP name" and the text,
			// so leading blanks of a HELP text cannot come back.
			if got, want := mfs["fuzz_other"].GetHelp(), strings.TrimLeft(help, " \t"); got != want {
				t.Fatalf("HELP %q, want %q", got, want)
			}
		}
		if validMetricName(name) && want {
			mf := mfs[name]
			if mf == nil || labelsOf(mf.GetMetric()[0])["l"] != label {
				t.Fatalf("family %q missing or wrong\n%q", name, text)
			}
		}
	})
}
