package engine

import (
	"strings"
	"testing"
	"time"
)

// TestBuiltinBodyOutageLength: the outage's length is news on the events
// that follow ONBATT, never on ONBATT itself ("on battery for 0s").
func TestBuiltinBodyOutageLength(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		event string
		at    time.Time
		want  string // "" : no such line
	}{
		{"ONBATT", start, ""},
		{"LOWBATT", start.Add(90 * time.Second), "On battery for: 1m30s"},
		{"FSD", start.Add(2 * time.Minute), "On battery for: 2m0s"},
	} {
		r := Record{Type: tc.event, UPS: "nas-ups", Time: tc.at, OBSince: start, Vars: map[string]string{"battery.charge": "80"}}
		body := builtinBody(r.data("en", "b"), "en")
		got := ""
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "On battery for") {
				got = l
			}
		}
		if got != tc.want {
			t.Errorf("%s: outage line %q, want %q; body:\n%s", tc.event, got, tc.want, body)
		}
	}
}
