// Package statefile keeps what a shutdown agent must remember across a
// restart: the progress of the current outage (which survives only within
// one boot and one mode) and the (epoch, seq) orders of the states it has
// accepted (which survive reboots, so a replayed old state stays old).
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Mode names of the state file.
const (
	ModeReal   = "real"
	ModeDryRun = "dry_run"
)

// File is the JSON kept in state_file.
type File struct {
	Agent string `json:"agent"`
	// BootID tells a restart of the agent (resume) from a reboot of the
	// host (the previous outage's progress is void: its stages' effects
	// are gone, and its monotonic instants mean nothing any more).
	BootID string `json:"boot_id"`
	// Mode is the mode the progress was made in: a dry run's progress is
	// never resumed by a real run, nor the other way round.
	Mode     string          `json:"mode"`
	Progress policy.Progress `json:"progress"`
	// Orders are the highest (epoch, seq) accepted per UPS id.
	Orders map[string]mqttwire.Order `json:"orders,omitempty"`
}

// Mode returns the mode name of dryRun.
func Mode(dryRun bool) string {
	if dryRun {
		return ModeDryRun
	}
	return ModeReal
}

// BootID returns the kernel's boot id, or "" where there is none.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Loaded is what Load found.
type Loaded struct {
	// Progress to resume (zero when there is none to resume).
	Progress policy.Progress
	// Orders known from the file (kept across boots and modes).
	Orders map[string]mqttwire.Order
	// Discarded says why progress in the file was not resumed ("" when
	// nothing was discarded): another boot, another mode, another agent.
	Discarded string
}

// Load reads path for agent in bootID and mode. A missing file is nothing
// to resume. A file that cannot be read or parsed is an error naming it; the
// caller starts without progress (a corrupt file must not stop the agent
// protecting the host).
func Load(path, agent, bootID, mode string) (Loaded, error) {
	var out Loaded
	if path == "" {
		return out, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("read state_file %s: %w", path, err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return out, fmt.Errorf("state_file %s: %w", path, err)
	}
	if f.Agent != agent {
		out.Discarded = fmt.Sprintf("the file belongs to agent %q", f.Agent)
		return out, nil
	}
	out.Orders = f.Orders
	active := f.Progress.Outage || f.Progress.Final
	switch {
	case !active:
	case bootID == "" || f.BootID != bootID:
		out.Discarded = "the progress is from another boot"
	case f.Mode != mode:
		out.Discarded = fmt.Sprintf("the progress was made in mode %q, the agent now runs in mode %q", f.Mode, mode)
	default:
		out.Progress = f.Progress
	}
	return out, nil
}

// Save writes f to path atomically (temp file, fsync, rename), so a crash
// leaves the old or the new file, never half of one.
func Save(path string, f File) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state_file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state_file dir %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".agent-state-*")
	if err != nil {
		return fmt.Errorf("state_file %s: %w", path, err)
	}
	name := tmp.Name()
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write state_file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
