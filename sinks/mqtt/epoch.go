package mqtt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ChooseEpoch returns this run's epoch: the largest of the stored epoch
// plus one, the epoch found in the bridge's own retained states plus one,
// and the current Unix time in milliseconds. So the epoch only grows: across
// restarts (the stored one), when the state directory was lost (the
// retained one), and when both were lost (the clock). A zero stored or
// retained epoch means none is known.
func ChooseEpoch(stored, retained uint64, now time.Time) uint64 {
	e := uint64(0)
	if ms := now.UnixMilli(); ms > 0 {
		e = uint64(ms)
	}
	if stored > 0 && stored+1 > e {
		e = stored + 1
	}
	if retained > 0 && retained+1 > e {
		e = retained + 1
	}
	return e
}

// maxEpochFile bounds what LoadEpoch reads.
const maxEpochFile = 64

// LoadEpoch reads the stored epoch. A missing file is 0 without error (a
// first start, or a lost state directory).
func LoadEpoch(path string) (uint64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read epoch file %s: %w", path, err)
	}
	defer f.Close()
	buf := make([]byte, maxEpochFile+1)
	n, _ := f.Read(buf)
	if n > maxEpochFile {
		return 0, fmt.Errorf("read epoch file %s: longer than %d bytes", path, maxEpochFile)
	}
	e, err := strconv.ParseUint(strings.TrimSpace(string(buf[:n])), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read epoch file %s: not a decimal number: %w", path, err)
	}
	return e, nil
}

// SaveEpoch stores the epoch atomically: a temporary file in the same
// directory, synced, then renamed over the old one, and the directory
// synced, so a crash leaves the old epoch or the new one, never a torn one.
func SaveEpoch(path string, epoch uint64) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save epoch: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".epoch-*")
	if err != nil {
		return fmt.Errorf("save epoch: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.WriteString(strconv.FormatUint(epoch, 10) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("save epoch to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save epoch to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save epoch to %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save epoch: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
