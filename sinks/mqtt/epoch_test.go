package mqtt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChooseEpoch(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	clock := uint64(now.UnixMilli())
	for _, tc := range []struct {
		name             string
		stored, retained uint64
		now              time.Time
		want             uint64
	}{
		{"first start: the clock", 0, 0, now, clock},
		{"restart: the clock is ahead of the stored epoch", clock - 5000, 0, now, clock},
		{"clock stepped back: stored + 1", clock + 100, 0, now, clock + 101},
		{"restart within the same millisecond: stored + 1", clock, clock, now, clock + 1},
		{"state dir lost, clock behind: retained + 1", 0, clock + 7, now, clock + 8},
		{"state dir lost, no clock (1970): retained + 1", 0, 42, time.Unix(0, 0), 43},
		{"stored older than retained: retained + 1", 10, 20, time.Unix(0, 0), 21},
		{"retained older than stored: stored + 1", 20, 10, time.Unix(0, 0), 21},
		{"clock before 1970, nothing known", 0, 0, time.Unix(-100, 0), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ChooseEpoch(tc.stored, tc.retained, tc.now); got != tc.want {
				t.Fatalf("ChooseEpoch(%d, %d, %v) = %d, want %d", tc.stored, tc.retained, tc.now, got, tc.want)
			}
			if tc.stored > 0 && ChooseEpoch(tc.stored, tc.retained, tc.now) <= tc.stored {
				t.Fatal("epoch did not grow past the stored one")
			}
		})
	}
}

func TestEpochFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "epoch")
	if e, err := LoadEpoch(path); err != nil || e != 0 {
		t.Fatalf("missing file: %d, %v; want 0, nil", e, err)
	}
	if err := SaveEpoch(path, 1_800_000_000_123); err != nil {
		t.Fatal(err)
	}
	if e, err := LoadEpoch(path); err != nil || e != 1_800_000_000_123 {
		t.Fatalf("LoadEpoch = %d, %v", e, err)
	}
	if err := SaveEpoch(path, 1_800_000_000_124); err != nil {
		t.Fatal(err)
	}
	if e, _ := LoadEpoch(path); e != 1_800_000_000_124 {
		t.Fatalf("overwritten epoch = %d", e)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	for _, bad := range []string{"", "abc", "-1", "18446744073709551616", strings.Repeat("1", 100)} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadEpoch(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadEpoch(%q) = %v, want an error naming the file", bad, err)
		}
	}
}
