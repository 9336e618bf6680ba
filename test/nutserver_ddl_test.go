package test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/datadir"
	"github.com/upsbridge/upsbridge/internal/harness"
)

// Equality over the curated device dumps of the repository: each served by
// real upsd with dummy-ups, read by a nut source (ups: "*") and served again
// by upsbridge's NUT server: upsc prints the same variables and values, byte
// for byte, on both.
func TestNUTServerDDLCurated(t *testing.T) {
	harness.NeedUpsc(t)
	checkServedDDLChunk(t, datadir.Curated(), 0, datadir.CuratedDDL(t))
}

// Likewise over the whole nut-ddl corpus (when present; see package
// datadir). With -short every 8th dump is checked.
func TestNUTServerDDLEquality(t *testing.T) {
	harness.NeedUpsc(t)
	files := datadir.CorpusDDL(t)
	if testing.Short() {
		var sub []string
		for i := 0; i < len(files); i += 8 {
			sub = append(sub, files[i])
		}
		files = sub
	}
	const perUPSD = 140
	for start := 0; start < len(files); start += perUPSD {
		chunk := files[start:min(start+perUPSD, len(files))]
		t.Run(fmt.Sprintf("files%03d-%03d", start, start+len(chunk)-1), func(t *testing.T) {
			t.Parallel()
			checkServedDDLChunk(t, datadir.CorpusDir(), start, chunk)
		})
	}
}

func checkServedDDLChunk(t *testing.T, root string, offset int, files []string) {
	devs := make([]harness.NUTDevice, len(files))
	byName := map[string]string{}
	for i, f := range files {
		name := fmt.Sprintf("ddl%03d", offset+i)
		devs[i] = harness.NUTDevice{Name: name, File: f}
		byName[name] = f
	}
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: devs})
	mq := harness.StartMosquitto(t)
	port := harness.FreePort(t)
	addr := harness.Addr(port)
	harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: %s}
bridge: {id: ddl%d, state_dir: %s}
hass: {enabled: false}
sources:
  - {id: d, type: nut, address: "%s", ups: "*", poll_interval: 2s}
nut_server:
  listen: ["%s"]
`, mq.URL(), offset, t.TempDir(), u.Addr(), addr))
	rel := func(p string) string { r, _ := filepath.Rel(root, p); return r }
	// Wait until every UPS is served.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := upsc(t, "-l", addr)
		if n := len(strings.Fields(out)); n == len(devs) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d of %d UPSes served within 60 s", n, len(devs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, d := range devs {
		want, err := upsc(t, d.Name+"@"+u.Addr())
		if err != nil {
			t.Errorf("%s on upsd: %v", rel(byName[d.Name]), err)
			continue
		}
		var got string
		for tries := 0; tries < 50; tries++ {
			if got, err = upsc(t, "d_"+d.Name+"@"+addr); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the first reading is on its way
		}
		if err == nil && got != want {
			got = criticalFSD(want, got)
		}
		if err != nil || got != want {
			t.Errorf("%s: upsc through upsbridge differs (%v):\n%s", rel(byName[d.Name]), err, lineDiff(want, got))
		}
	}
}

// criticalFSD undoes the FSD the bridge's primary latches on a critical
// UPS (OB and LB), which upsbridge serves as upsd serves a primary's FSD:
// "FSD " before the status. Any other difference stays.
func criticalFSD(want, got string) string {
	var st string
	for _, l := range strings.Split(want, "\n") {
		if v, ok := strings.CutPrefix(l, "ups.status: "); ok {
			st = v
		}
	}
	f := " " + st + " "
	if !strings.Contains(f, " OB ") || !strings.Contains(f, " LB ") {
		return got
	}
	return strings.Replace(got, "ups.status: FSD "+st+"\n", "ups.status: "+st+"\n", 1)
}

// lineDiff lists the lines only one side has.
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "  upsd only:      %q\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "  upsbridge only: %q\n", l)
		}
	}
	if b.Len() == 0 {
		b.WriteString("  (same lines, different order)\n")
	}
	return b.String()
}
