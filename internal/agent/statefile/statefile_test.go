package statefile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/mqttwire"
)

func TestLoad(t *testing.T) {
	active := policy.Progress{Outage: true, OutageStart: 5 * time.Minute, Ran: []string{"shed"}, Final: true}
	orders := map[string]mqttwire.Order{"ups1": {Epoch: 1700000000000, Seq: 42}}
	tests := []struct {
		name          string
		file          *File  // nil: no file
		raw           string // written as is when set
		agent, boot   string
		mode          string
		wantProgress  bool
		wantOrders    bool
		wantDiscarded string // substring
		wantErr       string // substring
	}{
		{name: "no file", agent: "a", boot: "b1", mode: ModeReal},
		{name: "same boot and mode: resumed", file: &File{Agent: "a", BootID: "b1", Mode: ModeReal, Progress: active, Orders: orders},
			agent: "a", boot: "b1", mode: ModeReal, wantProgress: true, wantOrders: true},
		{name: "other boot: progress void, orders kept", file: &File{Agent: "a", BootID: "b0", Mode: ModeReal, Progress: active, Orders: orders},
			agent: "a", boot: "b1", mode: ModeReal, wantOrders: true, wantDiscarded: "another boot"},
		{name: "unknown boot id: progress void", file: &File{Agent: "a", BootID: "", Mode: ModeReal, Progress: active},
			agent: "a", boot: "", mode: ModeReal, wantDiscarded: "another boot"},
		{name: "dry run progress, real run: discarded, orders kept", file: &File{Agent: "a", BootID: "b1", Mode: ModeDryRun, Progress: active, Orders: orders},
			agent: "a", boot: "b1", mode: ModeReal, wantOrders: true, wantDiscarded: `mode "dry_run"`},
		{name: "real progress, dry run: discarded", file: &File{Agent: "a", BootID: "b1", Mode: ModeReal, Progress: active},
			agent: "a", boot: "b1", mode: ModeDryRun, wantDiscarded: `mode "real"`},
		{name: "file of a file without mode (older version): discarded", raw: `{"agent":"a","boot_id":"b1","progress":{"outage":true,"ran":["shed"],"final_started":true}}`,
			agent: "a", boot: "b1", mode: ModeReal, wantDiscarded: `mode ""`},
		{name: "another agent's file", file: &File{Agent: "b", BootID: "b1", Mode: ModeReal, Progress: active, Orders: orders},
			agent: "a", boot: "b1", mode: ModeReal, wantDiscarded: `agent "b"`},
		{name: "idle progress of another boot: nothing to discard", file: &File{Agent: "a", BootID: "b0", Mode: ModeDryRun, Orders: orders},
			agent: "a", boot: "b1", mode: ModeReal, wantOrders: true},
		{name: "corrupt file", raw: `{"agent":"a","progress":`, agent: "a", boot: "b1", mode: ModeReal, wantErr: "state_file"},
		{name: "not JSON at all", raw: "\x00\x01garbage", agent: "a", boot: "b1", mode: ModeReal, wantErr: "invalid character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "agent.json")
			switch {
			case tc.file != nil:
				if err := Save(path, *tc.file); err != nil {
					t.Fatal(err)
				}
			case tc.raw != "":
				os.MkdirAll(filepath.Dir(path), 0o750)
				if err := os.WriteFile(path, []byte(tc.raw), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Load(path, tc.agent, tc.boot, tc.mode)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want it to name the file and say %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Progress.Outage != tc.wantProgress || (tc.wantProgress && (!got.Progress.Final || got.Progress.OutageStart != 5*time.Minute || len(got.Progress.Ran) != 1)) {
				t.Errorf("progress %+v, want resumed %v", got.Progress, tc.wantProgress)
			}
			if (got.Orders["ups1"] == orders["ups1"]) != tc.wantOrders {
				t.Errorf("orders %v, want kept %v", got.Orders, tc.wantOrders)
			}
			if (tc.wantDiscarded == "") != (got.Discarded == "") || !strings.Contains(got.Discarded, tc.wantDiscarded) {
				t.Errorf("discarded %q, want %q", got.Discarded, tc.wantDiscarded)
			}
		})
	}
}

// TestSaveAtomic: a save replaces the file whole and leaves no temp file.
func TestSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.json")
	for i := range 3 {
		if err := Save(path, File{Agent: "a", BootID: "b", Mode: ModeReal, Orders: map[string]mqttwire.Order{"u": {Epoch: 1, Seq: uint64(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the state file", len(ents))
	}
	got, err := Load(path, "a", "b", ModeReal)
	if err != nil || got.Orders["u"].Seq != 2 {
		t.Fatalf("load after saves: %+v, %v", got, err)
	}
}

// FuzzLoad: whatever is in state_file, Load returns an error or a result,
// never panics, and never resumes progress of another mode or boot.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"agent":"a","boot_id":"b1","mode":"real","progress":{"outage":true,"outage_start_mono_ns":300000000000,"ran":["shed"],"final_started":true},"orders":{"ups1":{"Epoch":1700000000000,"Seq":42}}}`))
	f.Add([]byte(`{"agent":"a","boot_id":"b1","mode":"dry_run","progress":{"outage":true}}`))
	f.Add([]byte(`{}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "agent.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Load(path, "a", "b1", ModeReal)
		if err != nil {
			return
		}
		if got.Progress.Outage || got.Progress.Final {
			var raw File
			if jerr := json.Unmarshal(data, &raw); jerr != nil || raw.Mode != ModeReal || raw.BootID != "b1" || raw.Agent != "a" {
				t.Fatalf("resumed progress from %q", data)
			}
		}
	})
}
