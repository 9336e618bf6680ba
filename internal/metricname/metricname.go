// Package metricname builds the series names that
// github.com/VictoriaMetrics/metrics takes (`family{label="value",...}`)
// and writes the families that are computed at scrape time.
//
// Label values come from configuration (component ids) and from UPSes
// (variable names, status flags), so every value is made valid UTF-8 and
// escaped as the Prometheus text format wants: the library panics on a
// name it cannot parse, and a scrape must never panic nor become
// unparseable.
package metricname

import (
	"cmp"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
)

// Series returns family{k1="v1",k2="v2"} for the label name/value pairs
// given, labels in the order given (an odd trailing label name is ignored).
// family and the label names must be valid Prometheus names: they are
// constants of the caller. Values are made valid UTF-8 and backslash,
// double quote and newline in them are escaped.
func Series(family string, labels ...string) string {
	if len(labels) < 2 {
		return family
	}
	var b strings.Builder
	b.Grow(len(family) + 16*len(labels))
	b.WriteString(family)
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i])
		b.WriteString(`="`)
		writeEscaped(&b, labels[i+1])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

func writeEscaped(b *strings.Builder, v string) {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	for j := 0; j < len(v); j++ {
		switch c := v[j]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
}

func init() {
	// HELP and TYPE lines: scrapers tell counters from gauges by TYPE. The
	// setting is the library's, process-wide; every program that registers
	// metrics through this package gets it.
	metrics.ExposeMetadata(true)
}

// Sample is one series of a family written at scrape time: its label
// name/value pairs (as for Series) and its value.
type Sample struct {
	Labels []string
	Value  float64
}

// Family is a family whose series are known only at scrape time (a UPS's
// variables, an agent's current status), written whole by WriteFamily.
type Family struct {
	Name string
	// Type is "gauge" or "counter"; Help is the HELP text.
	Type, Help string
	Samples    []Sample
}

// Add appends a sample with the label name/value pairs given.
func (f *Family) Add(v float64, labels ...string) {
	f.Samples = append(f.Samples, Sample{Labels: labels, Value: v})
}

// WriteFamily writes f to w in the text format: its HELP and TYPE once,
// then its series sorted by name, a series that appears twice only once
// (the first given wins). An empty family writes nothing.
func WriteFamily(w io.Writer, f *Family) {
	if len(f.Samples) == 0 {
		return
	}
	type line struct {
		series string
		value  float64
		order  int
	}
	lines := make([]line, len(f.Samples))
	for i, s := range f.Samples {
		lines[i] = line{Series(f.Name, s.Labels...), s.Value, i}
	}
	slices.SortFunc(lines, func(a, b line) int { return cmp.Or(strings.Compare(a.series, b.series), a.order-b.order) })
	buf := make([]byte, 0, 4096)
	buf = append(buf, "# HELP "...)
	buf = append(buf, f.Name...)
	if f.Help != "" {
		buf = append(buf, ' ')
		buf = append(buf, strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(strings.ToValidUTF8(f.Help, "\uFFFD"))...)
	}
	buf = append(buf, "\n# TYPE "...)
	buf = append(buf, f.Name...)
	buf = append(buf, ' ')
	buf = append(buf, f.Type...)
	buf = append(buf, '\n')
	prev := ""
	for i, l := range lines {
		if i > 0 && l.series == prev {
			continue
		}
		prev = l.series
		buf = append(buf, l.series...)
		buf = append(buf, ' ')
		buf = appendFloat(buf, l.value)
		buf = append(buf, '\n')
		if len(buf) > 3072 {
			_, _ = w.Write(buf)
			buf = buf[:0]
		}
	}
	_, _ = w.Write(buf)
}

// appendFloat formats v as the text format reads it.
func appendFloat(buf []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(buf, "NaN"...)
	case math.IsInf(v, 1):
		return append(buf, "+Inf"...)
	case math.IsInf(v, -1):
		return append(buf, "-Inf"...)
	}
	return strconv.AppendFloat(buf, v, 'g', -1, 64)
}

// Bool is 1 for true and 0 for false.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Set returns set, or a new set when it is nil: a component built without
// the process's set (in a unit test) still has working metrics.
func Set(set *metrics.Set) *metrics.Set {
	if set == nil {
		return metrics.NewSet()
	}
	return set
}
