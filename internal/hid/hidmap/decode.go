package hidmap

import (
	"fmt"
	"strings"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
)

// Report is one captured report: its type and its bytes, report id first.
type Report struct {
	Type hidparse.ReportType
	Data []byte
}

// ParseReports reads the reports file format of `upsbridge hid decode` and
// `hid dump`: one report per line, "feature <hex bytes>" or "input <hex
// bytes>" with the report id first; '#' starts a comment; blank lines are
// skipped.
func ParseReports(text string) ([]Report, error) {
	var out []Report
	for n, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		kind, rest, _ := strings.Cut(line, " ")
		var t hidparse.ReportType
		switch strings.ToLower(kind) {
		case "feature":
			t = hidparse.Feature
		case "input":
			t = hidparse.Input
		default:
			return nil, fmt.Errorf("reports line %d: %q is not \"feature\" or \"input\"", n+1, kind)
		}
		b, err := hidparse.ParseHex(rest)
		if err != nil {
			return nil, fmt.Errorf("reports line %d: %w", n+1, err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("reports line %d: no bytes", n+1)
		}
		out = append(out, Report{Type: t, Data: b})
	}
	return out, nil
}

// Decode parses a descriptor, applies captured reports in order and returns
// the NUT variables. strs supplies string descriptors by index (may be nil).
func Decode(desc []byte, reports []Report, dev DeviceInfo, strs map[int]string) (bridge.Vars, error) {
	d, err := hidparse.Parse(desc)
	if err != nil {
		return nil, fmt.Errorf("parse descriptor: %w", err)
	}
	m := New(d, dev, Options{})
	for _, r := range reports {
		m.Apply(r.Type, r.Data)
	}
	for i, s := range strs {
		m.SetString(i, s)
	}
	return m.Vars(), nil
}
