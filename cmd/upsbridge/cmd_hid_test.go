package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/internal/datadir"
)

func TestHIDDecode(t *testing.T) {
	corpus := datadir.HID()
	feats, err := os.ReadFile(filepath.Join(corpus, "apc-back-ups-bk650m2-ch.features.hex"))
	if err != nil {
		t.Fatal(err)
	}
	var reps strings.Builder
	reps.WriteString("# BK650M2-CH feature table, then AC lost on the interrupt pipe\n")
	for _, l := range strings.Split(strings.TrimSpace(string(feats)), "\n") {
		reps.WriteString("feature " + l + "\n")
	}
	reps.WriteString("input 16 0a 00 # AC lost\n")
	repFile := filepath.Join(t.TempDir(), "reports.txt")
	if err := os.WriteFile(repFile, []byte(reps.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("output 01\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	desc := filepath.Join(corpus, "apc-back-ups-bk650m2-ch.hex")
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"decode", []string{"hid", "decode", "--descriptor", desc, "--reports", repFile, "--vendor-id", "051d"}, exitOK,
			[]string{"battery.charge: 100\n", "ups.status: OB DISCHRG\n", "input.voltage: 232.0\n", "input.sensitivity: low\n", "ups.vendorid: 051d\n"}},
		{"generic table without vendor id", []string{"hid", "decode", "--descriptor", desc, "--reports", repFile}, exitOK,
			[]string{"battery.charge: 100\n"}},
		{"missing flag", []string{"hid", "decode", "--descriptor", desc}, exitConfig, nil},
		{"bad reports", []string{"hid", "decode", "--descriptor", desc, "--reports", bad}, exitFail, nil},
		{"bad vendor id", []string{"hid", "decode", "--descriptor", desc, "--reports", repFile, "--vendor-id", "xyz"}, exitConfig, nil},
		{"unknown sub-command", []string{"hid", "frob"}, exitConfig, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := dispatch(context.Background(), tt.args, stdio{Stdout: &out, Stderr: &errb})
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, errb.String())
			}
			for _, c := range tt.contains {
				if !strings.Contains(out.String(), c) {
					t.Errorf("output lacks %q:\n%s", c, out.String())
				}
			}
		})
	}
}
