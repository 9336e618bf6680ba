package shutdown

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// stateFile is the JSON kept in state_file.
type stateFile struct {
	Agent string `json:"agent"`
	// BootID tells a restart of the agent (resume) from a reboot of the
	// host (the previous outage's progress is void: its stages' effects
	// are gone and a final stage already ran).
	BootID   string   `json:"boot_id"`
	Progress Progress `json:"progress"`
}

// BootID returns the kernel's boot id, or "" where there is none.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadProgress reads state_file. A missing file is no progress; a file from
// another boot is ignored (reported by the bool).
func loadProgress(path, agent, bootID string) (Progress, bool, error) {
	if path == "" {
		return Progress{}, false, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Progress{}, false, nil
	}
	if err != nil {
		return Progress{}, false, fmt.Errorf("read state_file: %w", err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return Progress{}, false, fmt.Errorf("state_file %s: %w", path, err)
	}
	if sf.Agent != agent || (bootID != "" && sf.BootID != bootID) {
		return Progress{}, true, nil
	}
	return sf.Progress, false, nil
}

// saveProgress writes state_file atomically (temp file, fsync, rename), so
// a crash leaves the old or the new progress, never half of one.
func saveProgress(path, agent, bootID string, p Progress) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(stateFile{Agent: agent, BootID: bootID, Progress: p}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state_file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state_file dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".agent-state-*")
	if err != nil {
		return fmt.Errorf("state_file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state_file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
