package bridge

import (
	"reflect"
	"testing"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		raw     string
		has     []Flag
		hasNot  []Flag
		tokens  []string
		unknown []string
	}{
		{raw: "OL", has: []Flag{OL}, hasNot: []Flag{OB, LB}, tokens: []string{"OL"}},
		{raw: "OB DISCHRG LB", has: []Flag{OB, DISCHRG, LB}, hasNot: []Flag{OL}, tokens: []string{"OB", "DISCHRG", "LB"}},
		{raw: "LB OL CHRG", has: []Flag{OL, LB, CHRG}, tokens: []string{"LB", "OL", "CHRG"}},
		{raw: "  ol   chrg ", has: []Flag{OL, CHRG}, tokens: []string{"OL", "CHRG"}},
		{raw: "ALARM OL FSD", has: []Flag{ALARM, OL, FSD}, tokens: []string{"ALARM", "OL", "FSD"}},
		{raw: "OL HE", has: []Flag{OL}, tokens: []string{"OL", "HE"}, unknown: []string{"HE"}},
		{raw: "WAIT", tokens: []string{"WAIT"}, unknown: []string{"WAIT"}, hasNot: []Flag{OL, OB}},
		// Substrings never match: "OLB" is not OL nor LB (upsmon's strstr bug).
		{raw: "OLB", hasNot: []Flag{OL, LB}, tokens: []string{"OLB"}, unknown: []string{"OLB"}},
		{raw: "OL OL OB", has: []Flag{OL, OB}, tokens: []string{"OL", "OB"}},
		{raw: "", tokens: nil},
		{raw: "OL LB OVER RB BOOST", has: []Flag{OL, LB, OVER, RB, BOOST}},
		{raw: "BYPASS CAL OFF TRIM ECO HB", has: []Flag{BYPASS, CAL, OFF, TRIM, ECO, HB}},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			s := ParseStatus(tt.raw)
			for _, f := range tt.has {
				if !s.Has(f) {
					t.Errorf("missing flag %s", f)
				}
			}
			for _, f := range tt.hasNot {
				if s.Has(f) {
					t.Errorf("unexpected flag %s", f)
				}
			}
			if tt.tokens != nil && !reflect.DeepEqual(s.Tokens, tt.tokens) {
				t.Errorf("tokens = %q, want %q", s.Tokens, tt.tokens)
			}
			if !reflect.DeepEqual(s.Unknown, tt.unknown) {
				t.Errorf("unknown = %q, want %q", s.Unknown, tt.unknown)
			}
			if s.Raw != tt.raw {
				t.Errorf("raw = %q", s.Raw)
			}
		})
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"100", 100, true},
		{"100.0", 100, true},
		{"0055.40", 55.4, true},
		{" 12 ", 12, true},
		{"-1", -1, true},
		{"1e3", 1000, true},
		{"", 0, false},
		{"abc", 0, false},
		{"12:30", 0, false},
		{"0x10", 0, false},
		{"Inf", 0, false},
		{"NaN", 0, false},
		{"1,5", 0, false},
		{"1_000", 0, false},
		{"#", 0, false},
		{"-", 0, false},
		{"1e999", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseNumber(tt.in)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("ParseNumber(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestIsNumeric(t *testing.T) {
	numeric := []string{"battery.charge", "battery.runtime", "battery.charge.low", "input.voltage", "input.L1-N.voltage",
		"ups.load", "ups.realpower.nominal", "ups.delay.shutdown", "ups.timer.start", "outlet.1.current",
		"input.transfer.low", "ambient.humidity", "ups.temperature", "input.frequency", "battery.packs.bad"}
	text := []string{"ups.status", "ups.alarm", "ups.model", "battery.charger.status", "input.transfer.reason",
		"battery.date", "battery.type", "driver.parameter.pollinterval", "ups.beeper.status", "device.type", "ups.test.result",
		"ups.mode.buzzwords", "input.sensitivity", "status"}
	for _, n := range numeric {
		if !IsNumeric(n) {
			t.Errorf("IsNumeric(%q) = false, want true", n)
		}
	}
	for _, n := range text {
		if IsNumeric(n) {
			t.Errorf("IsNumeric(%q) = true, want false", n)
		}
	}
}

func TestVarsNumberNeverZeroForGarbage(t *testing.T) {
	v := Vars{"battery.charge": "n/a", "ups.model": "123", "ups.load": "23"}
	if _, ok := v.Number("battery.charge"); ok {
		t.Error("garbage charge parsed as a number")
	}
	if _, ok := v.Number("ups.model"); ok {
		t.Error("text variable parsed as a number")
	}
	if n, ok := v.Number("ups.load"); !ok || n != 23 {
		t.Errorf("ups.load = %v %v", n, ok)
	}
	if _, ok := v.Number("missing"); ok {
		t.Error("missing variable is a number")
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"OL", "OB DISCHRG LB", "ALARM OL FSD", "", "OL\tCHRG", "WAIT", "ol ob"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s := ParseStatus(raw)
		if s.Raw != raw {
			t.Fatal("raw not kept")
		}
		seen := map[string]bool{}
		for _, tok := range s.Tokens {
			if seen[tok] {
				t.Fatalf("duplicate token %q", tok)
			}
			seen[tok] = true
		}
	})
}

func BenchmarkParseStatus(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = ParseStatus("OB DISCHRG LB")
	}
}
