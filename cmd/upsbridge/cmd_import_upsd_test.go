package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/config"
)

func TestImportUpsd(t *testing.T) {
	td := filepath.Join("..", "..", "internal", "importer", "upsd", "testdata")
	var out, errb bytes.Buffer
	io := stdio{Stdout: &out, Stderr: &errb}
	args := []string{"import-upsd", "--users", filepath.Join(td, "synology.upsd.users"), "--ups", filepath.Join(td, "synology.ups.conf")}
	if code := dispatch(context.Background(), args, io); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfgPath, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatalf("the printed section does not load: %v\n%s", err, out.String())
	}
	if n := cfg.NUTServer; len(n.Users) != 1 || n.Users[0].Name != "monuser" || n.UPS[0].Name != "ups" {
		t.Errorf("got %+v", n)
	}
	if !strings.Contains(errb.String(), "1 user(s), 1 UPS(es)") {
		t.Errorf("stderr: %s", errb.String())
	}
	for _, bad := range [][]string{
		{"import-upsd"},
		{"import-upsd", "--users", filepath.Join(td, "nope"), "--ups", filepath.Join(td, "synology.ups.conf")},
	} {
		errb.Reset()
		if code := dispatch(context.Background(), bad, io); code != exitConfig {
			t.Errorf("%q: exit %d", bad, code)
		}
	}
	if !strings.Contains(errb.String(), "nope") {
		t.Errorf("the missing file is not named: %s", errb.String())
	}
}
