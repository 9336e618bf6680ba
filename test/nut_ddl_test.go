package test

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/datadir"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/sources/nut"
)

// The curated device dumps of the repository served by dummy-ups through
// the real upsd: the vars the source publishes for each dump equal what upsc
// reports, and nothing panics on the oddities they were chosen for (no or
// empty ups.status, a 314-digit load, an mm:ss runtime, non-ASCII, an
// unbalanced quote, values of '#', 581 variables of a PDU).
func TestNUTDDLCurated(t *testing.T) {
	checkDDLChunk(t, datadir.Curated(), 0, datadir.CuratedDDL(t))
}

// The whole nut-ddl corpus (when present; see package datadir), likewise.
// The files are spread over several upsd instances run in parallel, each
// read by one source with ups: "*".
func TestNUTDDLCorpus(t *testing.T) {
	files := datadir.CorpusDDL(t)
	if testing.Short() {
		files = files[:60]
	}
	const perUPSD = 140
	for start := 0; start < len(files); start += perUPSD {
		chunk := files[start:min(start+perUPSD, len(files))]
		t.Run(fmt.Sprintf("files%03d-%03d", start, start+len(chunk)-1), func(t *testing.T) {
			t.Parallel()
			checkDDLChunk(t, datadir.CorpusDir(), start, chunk)
		})
	}
}

func checkDDLChunk(t *testing.T, root string, offset int, files []string) {
	devs := make([]harness.NUTDevice, len(files))
	byName := map[string]string{}
	for i, f := range files {
		name := fmt.Sprintf("ddl%03d", offset+i)
		devs[i] = harness.NUTDevice{Name: name, File: f}
		byName[name] = f
	}
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: devs})
	_, ups := runSource(t, func(c *nut.Config) { c.ID = "ddl"; c.Address = u.Addr(); c.UPS = "*" })

	// The latest reading of every UPS.
	latest := map[string]bridge.Vars{}
	deadline := time.Now().Add(60 * time.Second)
	for seen := 0; len(latest) < len(devs); {
		for _, up := range ups.since(seen) {
			seen++
			if up.Kind == bridge.Reading {
				latest[up.UPS] = up.Vars
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("readings for %d of %d UPSes within 60s", len(latest), len(devs))
		}
		if len(latest) < len(devs) {
			select {
			case <-ups.wake:
			case <-time.After(time.Second):
			}
		}
	}
	rel := func(p string) string { r, _ := filepath.Rel(root, p); return r }
	for _, d := range devs {
		want, err := u.Upsc(d.Name)
		if err != nil {
			t.Errorf("%s: %v", rel(byName[d.Name]), err)
			continue
		}
		got := latest["ddl_"+d.Name]
		if !bridge.Vars(want).Equal(got) {
			t.Errorf("%s: published vars differ from upsc:\n%s", rel(byName[d.Name]), diffVars(want, got))
		}
		// What the bridge derives from it must not panic either.
		tr := bridge.NewTracker(d.Name, bridge.DefaultRules())
		tr.Reading(time.Now(), got, nil)
		_ = tr.State()
	}
}

func diffVars(want, got map[string]string) string {
	var b strings.Builder
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		w, wok := want[k]
		g, gok := got[k]
		if w != g || wok != gok {
			fmt.Fprintf(&b, "  %s: upsc %q (%v), published %q (%v)\n", k, w, wok, g, gok)
		}
	}
	return b.String()
}
