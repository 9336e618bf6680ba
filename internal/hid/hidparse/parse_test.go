package hidparse

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/internal/datadir"
)

// corpusDir holds the USB HID descriptors and captures of the repository.
var corpusDir = datadir.HID()

func readCorpus(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatalf("read corpus: %v", err)
	}
	b, err := ParseHex(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func corpusDescriptors(t testing.TB) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(corpusDir, "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range all {
		b := filepath.Base(f)
		if strings.Count(b, ".") == 1 { // descriptors, not *.features.hex
			out = append(out, b)
		}
	}
	if len(out) < 4 {
		t.Fatalf("found %d descriptors in %s, want at least 4", len(out), corpusDir)
	}
	return out
}

func TestParseCorpus(t *testing.T) {
	want := map[string]struct{ bytes, minFields int }{
		"apc-back-ups-bk650m2-ch.hex":         {743, 71},
		"apc-back-ups-cs500.hex":              {374, 35},
		"cyberpower-cst135uc2.hex":            {726, 40},
		"cypress-cy7c63001-reference-ups.hex": {624, 20},
	}
	for _, name := range corpusDescriptors(t) {
		t.Run(name, func(t *testing.T) {
			b := readCorpus(t, name)
			d, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			w, ok := want[name]
			if !ok {
				return // a new descriptor: parsing without error is enough
			}
			if len(b) != w.bytes {
				t.Errorf("descriptor has %d bytes, want %d", len(b), w.bytes)
			}
			if len(d.Fields) < w.minFields {
				t.Errorf("got %d fields, want at least %d", len(d.Fields), w.minFields)
			}
			if !d.UsesIDs {
				t.Errorf("UsesIDs = false, want true")
			}
		})
	}
}

// TestLayoutMatchesNUT checks path, type, report id, offset and size of every
// field NUT listed in its debug dump of the same descriptor.
func TestLayoutMatchesNUT(t *testing.T) {
	for _, unit := range []string{"apc-back-ups-bk650m2-ch", "apc-back-ups-cs500"} {
		t.Run(unit, func(t *testing.T) {
			d, err := Parse(readCorpus(t, unit+".hex"))
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for i := range d.Fields {
				f := &d.Fields[i]
				have[layoutKey(PathString(f.Path, apcNames), f.Type.String(), f.ReportID, f.Offset, f.Size)] = true
			}
			fh, err := os.Open(filepath.Join(corpusDir, unit+".reports.tsv"))
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			sc := bufio.NewScanner(fh)
			n := 0
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "#") || line == "" {
					continue
				}
				c := strings.Split(line, "\t")
				id, _ := strconv.ParseUint(strings.TrimPrefix(c[4], "0x"), 16, 8)
				off, _ := strconv.Atoi(c[5])
				size, _ := strconv.Atoi(c[6])
				k := layoutKey(c[2], c[3], uint8(id), off, size)
				n++
				if !have[k] {
					t.Errorf("NUT field not found in our layout: %s", k)
				}
			}
			if n == 0 {
				t.Fatal("no rows read")
			}
		})
	}
}

// apcNames leaves APC's vendor usages in hex, as NUT's dump prints them.
func apcNames(Usage) (string, bool) { return "", false }

func layoutKey(path, typ string, id uint8, off, size int) string {
	return path + " " + typ + " " + strconv.Itoa(int(id)) + " " + strconv.Itoa(off) + " " + strconv.Itoa(size)
}

func TestParseTolerance(t *testing.T) {
	tests := []struct {
		name  string
		desc  []byte
		check func(t *testing.T, d *Descriptor)
	}{
		{
			name: "logmax encoded too short is taken unsigned",
			desc: []byte{0x05, 0x84, 0x09, 0x04, 0xa1, 0x01, 0x85, 0x01, 0x09, 0x30, 0x75, 0x08, 0x95, 0x01, 0x15, 0x00, 0x25, 0xff, 0xb1, 0x02, 0xc0},
			check: func(t *testing.T, d *Descriptor) {
				f := d.Fields[0]
				if f.LogMax != 255 || !f.LogMaxAssumed || f.Signed() {
					t.Errorf("LogMax=%d assumed=%v signed=%v, want 255 true false", f.LogMax, f.LogMaxAssumed, f.Signed())
				}
				if v, _ := f.Raw([]byte{1, 0xf0}, true); v != 240 {
					t.Errorf("raw = %d, want 240", v)
				}
			},
		},
		{
			name: "signed range and nibble exponent",
			desc: []byte{0x05, 0x84, 0x09, 0x04, 0xa1, 0x01, 0x85, 0x02, 0x09, 0x57, 0x75, 0x10, 0x95, 0x01, 0x16, 0xff, 0xff, 0x26, 0xff, 0x7f, 0x66, 0x01, 0x10, 0x55, 0x0e, 0xb1, 0xa2, 0xc0},
			check: func(t *testing.T, d *Descriptor) {
				f := d.Fields[0]
				if f.UnitExp != -2 {
					t.Errorf("UnitExp = %d, want -2", f.UnitExp)
				}
				if v, _ := f.Raw([]byte{2, 0xff, 0xff}, true); v != -1 {
					t.Errorf("raw = %d, want -1", v)
				}
			},
		},
		{
			name: "indexed collection and constant data with a usage",
			desc: []byte{0x05, 0x84, 0x09, 0x04, 0xa1, 0x01, 0x09, 0x1a, 0xa1, 0x81, 0x85, 0x03, 0x09, 0x30, 0x75, 0x08, 0x95, 0x01, 0xb1, 0x03, 0x75, 0x08, 0xb1, 0x03, 0xc0, 0xc0},
			check: func(t *testing.T, d *Descriptor) {
				if len(d.Fields) != 1 {
					t.Fatalf("got %d fields, want 1 (padding has no usage)", len(d.Fields))
				}
				if got := PathString(d.Fields[0].Path, nil); got != "UPS.Input.[1].Voltage" {
					t.Errorf("path = %q", got)
				}
				if got := d.ReportLen(ReportKey{Feature, 3}); got != 3 {
					t.Errorf("report length = %d, want 3", got)
				}
			},
		},
		{
			name: "push pop and missing end collection",
			desc: []byte{0x05, 0x84, 0x09, 0x04, 0xa1, 0x01, 0x85, 0x04, 0x75, 0x04, 0xa4, 0x75, 0x08, 0xb4, 0x09, 0x35, 0x95, 0x01, 0x81, 0x02},
			check: func(t *testing.T, d *Descriptor) {
				if d.Fields[0].Size != 4 {
					t.Errorf("size = %d, want 4 (popped)", d.Fields[0].Size)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(tt.desc)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, d)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		desc []byte
		want string
	}{
		{"truncated item", []byte{0x05, 0x84, 0x26, 0xff}, "offset 2"},
		{"end without collection", []byte{0xc0}, "without an open collection"},
		{"pop empty", []byte{0xb4}, "empty stack"},
		{"report id zero", []byte{0x85, 0x00}, "report id 0"},
		{"huge count", []byte{0x96, 0xff, 0xff}, "too large"},
		{"long item truncated", []byte{0xfe, 0x10, 0x00, 0x01}, "long item"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.desc)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range corpusDescriptors(f) {
		f.Add(readCorpus(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			return
		}
		report := make([]byte, 64)
		for i := range d.Fields {
			fl := &d.Fields[i]
			raw, _ := fl.Raw(report, d.UsesIDs)
			_ = fl.Value(raw)
			_ = fl.Put(report, d.UsesIDs, raw)
			_ = PathString(fl.Path, nil)
		}
	})
}

func BenchmarkParseLargest(b *testing.B) {
	var largest []byte
	for _, name := range corpusDescriptors(b) {
		if d := readCorpus(b, name); len(d) > len(largest) {
			largest = d
		}
	}
	b.SetBytes(int64(len(largest)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(largest); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReportLengthBound: a descriptor cannot declare a report longer than
// USB can carry, in one item or summed over many, and the error names the
// report; the largest accepted report stays within MaxReportBytes.
func TestReportLengthBound(t *testing.T) {
	head := []byte{0x05, 0x84, 0x09, 0x04, 0xA1, 0x01, 0x85, 0x07, 0x09, 0x30}
	item := func(size, count int) []byte {
		return []byte{0x75, byte(size), 0x96, byte(count), byte(count >> 8), 0xB1, 0x02}
	}
	rep := func(n int, it []byte) []byte {
		b := append([]byte(nil), head...)
		for range n {
			b = append(b, it...)
		}
		return b
	}
	tests := []struct {
		name    string
		desc    []byte
		wantErr bool
	}{
		{"one item of 1 Mbit", append(append([]byte(nil), head...), 0x76, 0x00, 0x01, 0x96, 0x00, 0x10, 0xB1, 0x02), true},
		{"16 items of 4 KiB", rep(16, item(8, 4096)), true},
		{"15 items of 4 KiB", rep(15, item(8, 4096)), false},
		{"64 KiB descriptor of 2 KiB items", rep(65536/len(item(8, 2048)), item(8, 2048)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(tt.desc)
			if tt.wantErr {
				if !errors.Is(err, ErrReportTooLong) || !strings.Contains(err.Error(), "Feature report 7") {
					t.Fatalf("err = %v, want ErrReportTooLong naming Feature report 7", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := d.ReportLen(ReportKey{Feature, 7}); n > MaxReportBytes || n < 15*4096 {
				t.Fatalf("ReportLen = %d", n)
			}
		})
	}
}
