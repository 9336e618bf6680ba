// Package datadir locates the test data of the repository for tests.
//
// Two sets exist. The curated set lives in the repository under testdata/
// (a few NUT device dumps chosen for their oddities, the USB HID descriptors
// with their captured reports; testdata/README.md says where each came from)
// and is always present, so a fresh clone passes. The full corpus of NUT
// device dumps is an extra: it is found in $UPSBRIDGE_CORPUS or, failing
// that, in ../shared/testdata beside the repository. Tests over the full
// corpus skip when it is absent, and fail under CI=true.
package datadir

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// CorpusEnv names the environment variable that points at the full corpus:
// a directory holding nut-ddl/<Manufacturer>/*.dev.
const CorpusEnv = "UPSBRIDGE_CORPUS"

// RepoRoot returns the repository root (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Curated returns the repository's testdata directory.
func Curated() string { return filepath.Join(RepoRoot(), "testdata") }

// HID returns the path of a file of the curated USB HID captures
// (testdata/hid/name); with no name, the directory.
func HID(name ...string) string {
	return filepath.Join(append([]string{Curated(), "hid"}, name...)...)
}

// DDL returns the path of a curated NUT device dump, rel being its path in
// the NUT device dumps library ("APC/APC__Back-UPS_CS_500__...dev").
func DDL(rel string) string { return filepath.Join(Curated(), "nut-ddl", rel) }

// CuratedDDL lists the curated NUT device dumps, sorted. It fails the test
// when there are none (the repository is incomplete).
func CuratedDDL(tb testing.TB) []string {
	tb.Helper()
	files := devFiles(filepath.Join(Curated(), "nut-ddl"))
	if len(files) == 0 {
		tb.Fatalf("no curated device dumps under %s", filepath.Join(Curated(), "nut-ddl"))
	}
	return files
}

// CorpusDir returns the full corpus directory: $UPSBRIDGE_CORPUS when set,
// else ../shared/testdata beside the repository. It does not check that the
// directory exists.
func CorpusDir() string {
	if d := os.Getenv(CorpusEnv); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "..", "shared", "testdata")
}

// CorpusDDL lists every NUT device dump of the full corpus, sorted. Without
// the corpus the test is skipped, or fails when CI=true.
func CorpusDDL(tb testing.TB) []string {
	tb.Helper()
	dir := filepath.Join(CorpusDir(), "nut-ddl")
	files := devFiles(dir)
	if len(files) == 0 {
		msg := "no full device dump corpus in " + dir + " (set " + CorpusEnv + " to a directory holding nut-ddl/)"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return files
}

// CorpusDDLIfPresent lists the full corpus's dumps, or nothing when it is
// absent; for fuzz seeds, which only gain from it.
func CorpusDDLIfPresent() []string { return devFiles(filepath.Join(CorpusDir(), "nut-ddl")) }

func devFiles(dir string) []string {
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && strings.HasSuffix(p, ".dev") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	return files
}
