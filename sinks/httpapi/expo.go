package httpapi

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// This file is a small writer of the Prometheus text exposition format,
// version 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/).
// It replaces the official client library, which with protobuf and procfs
// added ~3 MB of executable and init work for a dozen families (issue #8).
// The format's rules it enforces, so that no input can make a scrape
// unparseable: valid metric and label names, label values in UTF-8, one
// HELP/TYPE per family with all its samples together, no duplicate series.

// contentType is what /metrics answers with.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// metricType is a family's TYPE.
type metricType string

const (
	gaugeType   metricType = "gauge"
	counterType metricType = "counter"
	summaryType metricType = "summary"
)

// desc describes a metric family: its name, HELP, TYPE and label names.
type desc struct {
	name   string
	help   string
	typ    metricType
	labels []string // as given: the order of the values passed to metricSet.add
	// order lists indexes into labels by label name, the order in which
	// labels are written (as the official client writes them).
	order []int
	// invalid says why the description cannot be exported; "" when valid.
	invalid string
}

// newDesc describes a family. An invalid name is not a panic (names may be
// built from what components report): the family's samples are skipped with
// the reason.
func newDesc(name, help string, typ metricType, labels ...string) *desc {
	d := &desc{name: name, help: help, typ: typ, labels: labels, order: make([]int, len(labels))}
	for i := range d.order {
		d.order[i] = i
	}
	slices.SortFunc(d.order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	switch {
	case !validMetricName(name):
		d.invalid = "invalid metric name"
	case !utf8.ValidString(help):
		d.invalid = "HELP is not valid UTF-8"
	}
	for k, i := range d.order {
		l := labels[i]
		switch {
		case d.invalid != "":
		case !validLabelName(l):
			d.invalid = fmt.Sprintf("invalid label name %q", l)
		case typ == summaryType && l == "quantile":
			d.invalid = `a summary cannot have a "quantile" label`
		case k > 0 && labels[d.order[k-1]] == l:
			d.invalid = fmt.Sprintf("duplicate label name %q", l)
		}
	}
	return d
}

// validMetricName reports whether name matches [a-zA-Z_:][a-zA-Z0-9_:]*,
// the names every version of the text format accepts unquoted.
func validMetricName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validLabelName reports whether name matches [a-zA-Z_][a-zA-Z0-9_]* and
// does not start with "__" (reserved for Prometheus' internal use).
func validLabelName(name string) bool {
	if name == "" || strings.HasPrefix(name, "__") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// skipNote is a sample that was not exported, and why.
type skipNote struct {
	family string
	reason string
}

// metricSet gathers the samples of one scrape and writes them out.
type metricSet struct {
	families map[string]*family
	skipped  []skipNote
}

type family struct {
	d       *desc
	samples []sample
}

// sample is one line of a family. values are in the family's desc.order.
type sample struct {
	suffix   string // "_sum" or "_count" for a summary's totals
	quantile string // a summary's quantile label, formatted
	values   []string
	value    float64
}

func newMetricSet() *metricSet { return &metricSet{families: map[string]*family{}} }

// skip records a sample that is left out.
func (m *metricSet) skip(family, reason string) {
	m.skipped = append(m.skipped, skipNote{family, reason})
}

// family returns the family for d, or "" and why d's samples cannot join it.
func (m *metricSet) family(d *desc) (*family, string) {
	if d.invalid != "" {
		return nil, d.invalid
	}
	f := m.families[d.name]
	if f == nil {
		f = &family{d: d}
		m.families[d.name] = f
		return f, ""
	}
	if f.d == d {
		return f, ""
	}
	if f.d.help != d.help || f.d.typ != d.typ || !slices.Equal(f.d.labels, d.labels) {
		return nil, "HELP, TYPE or label names differ from the family's first sample"
	}
	return f, ""
}

// add adds a gauge or counter sample; values are d's label values in the
// order of d.labels.
func (m *metricSet) add(d *desc, v float64, values ...string) {
	if d.typ == summaryType {
		m.skip(d.name, "a summary sample needs quantiles")
		return
	}
	if len(values) != len(d.labels) {
		m.skip(d.name, fmt.Sprintf("%d label values for %d labels", len(values), len(d.labels)))
		return
	}
	for i, lv := range values {
		if !utf8.ValidString(lv) {
			m.skip(d.name, fmt.Sprintf("value of label %q is not valid UTF-8", d.labels[i]))
			return
		}
	}
	f, why := m.family(d)
	if why != "" {
		m.skip(d.name, why)
		return
	}
	s := sample{value: v}
	if len(values) > 0 {
		s.values = make([]string, len(values))
		for i, j := range d.order {
			s.values[i] = values[j]
		}
	}
	f.samples = append(f.samples, s)
}

// addSummary adds a summary without labels: one sample per quantile (in
// the order given), then _sum and _count.
func (m *metricSet) addSummary(d *desc, quantiles, values []float64, sum float64, count uint64) {
	if d.typ != summaryType || len(d.labels) != 0 || len(quantiles) != len(values) {
		m.skip(d.name, "not a summary without labels, or quantiles and values differ in number")
		return
	}
	f, why := m.family(d)
	if why != "" {
		m.skip(d.name, why)
		return
	}
	if len(f.samples) > 0 {
		m.skip(d.name, "duplicate series")
		return
	}
	for i, q := range quantiles {
		f.samples = append(f.samples, sample{quantile: string(appendFloat(nil, q)), value: values[i]})
	}
	f.samples = append(f.samples, sample{suffix: "_sum", value: sum}, sample{suffix: "_count", value: float64(count)})
}

// compareValues orders samples as the official client does: by label
// values, labels taken in name order.
func compareValues(a, b sample) int {
	for i := range a.values {
		if c := strings.Compare(a.values[i], b.values[i]); c != 0 {
			return c
		}
	}
	return 0
}

// write writes the families sorted by name, each family's samples sorted
// by label values. A series seen twice keeps its first sample; a family
// whose name is a summary's _sum or _count line is left out, since the
// parser would take it for part of the summary.
func (m *metricSet) write(w io.Writer) error {
	names := make([]string, 0, len(m.families))
	for n := range m.families {
		names = append(names, n)
	}
	slices.Sort(names)
	bw := bufio.NewWriter(w)
	var buf []byte
	for _, name := range names {
		f := m.families[name]
		if base, ok := strings.CutSuffix(name, "_sum"); ok && m.isSummary(base) {
			m.skip(name, "name clashes with summary "+base)
			continue
		}
		if base, ok := strings.CutSuffix(name, "_count"); ok && m.isSummary(base) {
			m.skip(name, "name clashes with summary "+base)
			continue
		}
		if len(f.samples) == 0 {
			continue
		}
		d := f.d
		if d.typ != summaryType {
			slices.SortStableFunc(f.samples, compareValues)
		}
		buf = append(buf[:0], "# HELP "...)
		buf = append(buf, name...)
		buf = append(buf, ' ')
		buf = appendEscaped(buf, d.help, false)
		buf = append(buf, "\n# TYPE "...)
		buf = append(buf, name...)
		buf = append(buf, ' ')
		buf = append(buf, d.typ...)
		buf = append(buf, '\n')
		for i, s := range f.samples {
			if i > 0 && d.typ != summaryType && compareValues(f.samples[i-1], s) == 0 {
				m.skip(name, "duplicate series")
				continue
			}
			buf = append(buf, name...)
			buf = append(buf, s.suffix...)
			if len(s.values) > 0 || s.quantile != "" {
				buf = append(buf, '{')
				for k, j := range d.order {
					if k > 0 {
						buf = append(buf, ',')
					}
					buf = append(buf, d.labels[j]...)
					buf = append(buf, `="`...)
					buf = appendEscaped(buf, s.values[k], true)
					buf = append(buf, '"')
				}
				if s.quantile != "" {
					if len(s.values) > 0 {
						buf = append(buf, ',')
					}
					buf = append(buf, `quantile="`...)
					buf = append(buf, s.quantile...)
					buf = append(buf, '"')
				}
				buf = append(buf, '}')
			}
			buf = append(buf, ' ')
			buf = appendFloat(buf, s.value)
			buf = append(buf, '\n')
			if len(buf) > 4096 {
				if _, err := bw.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		buf = buf[:0]
	}
	return bw.Flush()
}

func (m *metricSet) isSummary(name string) bool {
	f := m.families[name]
	return f != nil && f.d.typ == summaryType && len(f.samples) > 0
}

// appendEscaped appends s escaped as the text format wants: backslash and
// newline always, the double quote in label values only.
func appendEscaped(buf []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			buf = append(buf, `\\`...)
		case c == '\n':
			buf = append(buf, `\n`...)
		case c == '"' && quote:
			buf = append(buf, `\"`...)
		default:
			buf = append(buf, c)
		}
	}
	return buf
}

// appendFloat formats v as the official client does.
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

// gzipPool keeps gzip writers between scrapes: each one holds a few
// hundred KB of compression state that would otherwise be garbage every
// scrape. BestSpeed: the text is repetitive and compresses well anyway.
var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (present, and not with q=0).
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}
