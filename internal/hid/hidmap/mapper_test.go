package hidmap

import (
	"testing"

	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
)

func mapperFor(t testing.TB, unit string, dev DeviceInfo) *Mapper {
	t.Helper()
	desc, err := hidparse.ParseHex(readFile(t, unit+".hex"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := hidparse.Parse(desc)
	if err != nil {
		t.Fatal(err)
	}
	return New(d, dev, Options{})
}

var bk650 = DeviceInfo{VendorID: 0x051d, ProductID: 0x0002, Manufacturer: "American Power Conversion", Product: "BK650M2-CH", Serial: "X"}

func TestCyberPowerInputReports(t *testing.T) {
	m := mapperFor(t, "cyberpower-cst135uc2", DeviceInfo{VendorID: 0x0764, ProductID: 0x0501})
	reports, err := ParseReports("# CP900EPFCLCD\n" + inputLines(readFile(t, "cyberpower-cp900epfclcd.input-reports.hex")))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		if m.Apply(r.Type, r.Data) == 0 {
			t.Errorf("report % x: no mapped field", r.Data)
		}
	}
	v := m.Vars()
	want := map[string]string{
		"battery.charge": "100", "battery.runtime": "2520", "battery.runtime.low": "300",
		"ups.status": "OL", "ups.delay.shutdown": "60", "ups.delay.start": "120",
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q", k, v[k], w)
		}
	}
}

func inputLines(hex string) string {
	var out string
	for _, l := range splitLines(hex) {
		if l != "" && l[0] != '#' {
			out += "input " + l + "\n"
		}
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// TestStatusFromInterrupt: the latest report wins across the three reports
// that carry ACPresent on the BK650M2-CH.
func TestStatusFromInterrupt(t *testing.T) {
	tests := []struct {
		name    string
		reports []Report
		want    string
		alarm   string
	}{
		{"on line", []Report{{hidparse.Feature, []byte{0x13, 1}}, {hidparse.Feature, []byte{0x16, 0x0c, 0}}}, "OL", ""},
		{"ac lost by interrupt after a poll", []Report{{hidparse.Feature, []byte{0x13, 1}}, {hidparse.Input, []byte{0x16, 0x0a, 0}}}, "OB DISCHRG", ""},
		{"low battery", []Report{{hidparse.Input, []byte{0x16, 0x1a, 0}}}, "OB DISCHRG LB", "Shutdown imminent!"},
		{"replace battery and overload", []Report{{hidparse.Input, []byte{0x16, 0xcc, 0}}}, "OL OVER RB", "Replace battery!"},
		{"charging below full", []Report{{hidparse.Feature, []byte{0x0c, 50}}, {hidparse.Input, []byte{0x16, 0x0d, 0}}}, "OL CHRG", ""},
		{"no battery", []Report{{hidparse.Input, []byte{0x16, 0x04, 0}}}, "OL RB", "No battery installed!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mapperFor(t, "apc-back-ups-bk650m2-ch", bk650)
			for _, r := range tt.reports {
				m.Apply(r.Type, r.Data)
			}
			v := m.Vars()
			want := tt.want
			if tt.alarm != "" {
				want = "ALARM " + want
			}
			if v["ups.status"] != want || v["ups.alarm"] != tt.alarm {
				t.Errorf("status %q alarm %q, want %q %q", v["ups.status"], v["ups.alarm"], want, tt.alarm)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	m := mapperFor(t, "apc-back-ups-bk650m2-ch", bk650)
	tests := []struct {
		cmd, arg string
		id       uint8
		raw      int64
		wantErr  bool
	}{
		{"beeper.mute", "", 0x18, 3, false},
		{"beeper.enable", "", 0x18, 2, false},
		{"test.battery.start.quick", "", 0x21, 1, false},
		{"load.off.delay", "", 0x15, 20, false},
		{"load.off.delay", "45", 0x15, 45, false},
		{"shutdown.return", "", 0x15, 20, false},
		{"shutdown.stop", "", 0x15, -1, false},
		{"load.off.delay", "soon", 0, 0, true},
		{"load.on.delay", "", 0, 0, true}, // no DelayBeforeStartup on this unit
	}
	for _, tt := range tests {
		t.Run(tt.cmd+tt.arg, func(t *testing.T) {
			ws, err := m.Command(tt.cmd, tt.arg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %v", ws)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := ws[len(ws)-1]
			if w.Field.ReportID != tt.id || w.Raw != tt.raw {
				t.Errorf("write report 0x%02x raw %d, want 0x%02x %d", w.Field.ReportID, w.Raw, tt.id, tt.raw)
			}
			buf := make([]byte, m.Descriptor().ReportLen(hidparse.ReportKey{Type: hidparse.Feature, ID: tt.id}))
			buf[0] = tt.id
			if !w.Field.Put(buf, true, w.Raw) {
				t.Fatal("Put failed")
			}
			if got, _ := w.Field.Raw(buf, true); got != tt.raw {
				t.Errorf("round trip %d, want %d", got, tt.raw)
			}
		})
	}
	if !m.Info().HasCommand("beeper.disable") || m.Info().HasCommand("load.on.delay") {
		t.Errorf("Info commands wrong: %+v", m.Info().Commands)
	}
}

func TestParseReportsErrors(t *testing.T) {
	for _, in := range []string{"output 01 02", "feature 1", "input", "feature zz"} {
		if _, err := ParseReports(in); err == nil {
			t.Errorf("ParseReports(%q) = nil error", in)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, unit := range []string{"apc-back-ups-bk650m2-ch", "apc-back-ups-cs500"} {
		for _, r := range tsvReports(f, unit+".reports.tsv") {
			f.Add(unit, byte(r.Type), r.Data)
		}
	}
	f.Add("cyberpower-cst135uc2", byte(1), []byte{0x08, 0x64, 0xf6, 0x09, 0x2c, 0x01})
	mappers := map[string]*Mapper{}
	f.Fuzz(func(t *testing.T, unit string, typ byte, report []byte) {
		switch unit {
		case "apc-back-ups-bk650m2-ch", "apc-back-ups-cs500", "cyberpower-cst135uc2", "cypress-cy7c63001-reference-ups":
		default:
			unit = "apc-back-ups-bk650m2-ch"
		}
		m := mappers[unit]
		if m == nil {
			m = mapperFor(t, unit, DeviceInfo{VendorID: 0x051d, ProductID: 2})
			mappers[unit] = m
		}
		m.Apply(hidparse.ReportType(typ%4), report)
		_ = m.Vars()
		_ = m.StringIndexes()
	})
}
