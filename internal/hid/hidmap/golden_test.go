package hidmap

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/internal/datadir"
	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
)

// corpusDir holds the USB HID descriptors and captures of the repository.
var corpusDir = datadir.HID()

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tsvReports turns NUT's capture (`*.reports.tsv`) into reports in the order
// NUT received them.
func tsvReports(t testing.TB, name string) []Report {
	t.Helper()
	var out []Report
	sc := bufio.NewScanner(strings.NewReader(readFile(t, name)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		b, err := hidparse.ParseHex(c[1])
		if err != nil {
			t.Fatal(err)
		}
		typ := hidparse.Feature
		if c[3] == "Input" {
			typ = hidparse.Input
		}
		out = append(out, Report{Type: typ, Data: b})
	}
	return out
}

func upscVars(t testing.TB, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(readFile(t, name), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok {
			out[k] = v
		}
	}
	return out
}

// diff explains a variable where our value is meant to differ from NUT's.
type diff struct {
	ours   string // "" = we do not publish it
	reason string
}

func TestGoldenAgainstNUT(t *testing.T) {
	tests := []struct {
		unit string
		dev  DeviceInfo
		// String descriptors are not in the captures; these are the
		// strings NUT's output shows for the unit.
		strs  map[int]string
		diffs map[string]diff
	}{
		{
			unit: "apc-back-ups-bk650m2-ch",
			dev:  DeviceInfo{VendorID: 0x051d, ProductID: 0x0002, Manufacturer: "American Power Conversion", Product: "BK650M2-CH", Serial: "9B2019A14274"},
			strs: map[int]string{1: "American Power Conversion", 2: "BK650M2-CH", 3: "9B2019A14274", 4: "PbAc"},
			diffs: map[string]diff{
				"driver.name": {"", "driver.* describes NUT's driver process; upsbridge has none"},
				"ups.serial":  {"9B2019A14274", "the published dump has ups.serial redacted to xxxx while device.serial kept the USB serial; both come from the same USB string"},
				"ups.load":    {"0", "the captured PercentLoad report (0x50) is 00; NUT's upsc was taken at another moment with 5 %"},
			},
		},
		{
			unit: "apc-back-ups-cs500",
			dev:  DeviceInfo{VendorID: 0x051d, ProductID: 0x0002, Manufacturer: "American Power Conversion", Product: "Back-UPS 500 FW: 6.5.I USB FW: c1 ", Serial: "AB0427******"},
			strs: map[int]string{1: "Back-UPS 500 FW: 6.5.I USB FW: c1 ", 2: "AB0427******", 3: "American Power Conversion", 4: "PbAc"},
			diffs: map[string]diff{
				"driver.name": {"", "driver.* describes NUT's driver process; upsbridge has none"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			desc, err := hidparse.ParseHex(readFile(t, tt.unit+".hex"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(desc, tsvReports(t, tt.unit+".reports.tsv"), tt.dev, tt.strs)
			if err != nil {
				t.Fatal(err)
			}
			want := upscVars(t, tt.unit+".upsc.txt")
			for k, d := range tt.diffs {
				if d.ours == "" {
					delete(want, k)
				} else {
					want[k] = d.ours
				}
			}
			var keys []string
			for k := range want {
				keys = append(keys, k)
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				w, wok := want[k]
				g, gok := got[k]
				switch {
				case !gok:
					t.Errorf("%s: missing, NUT has %q", k, w)
				case !wok:
					t.Errorf("%s: we publish %q, NUT does not", k, g)
				case g != w:
					t.Errorf("%s = %q, NUT has %q", k, g, w)
				}
			}
		})
	}
}
