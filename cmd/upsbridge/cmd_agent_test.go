package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/bridge/signing"
)

func TestDrillAndKeygen(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte(`agent:
  id: web01
  supplies: [{ups: nas-ups}]
  stages:
    - {name: shed-load, on_battery_for: 2m, run: [docker, stop, plex], undo: [docker, start, plex]}
    - {name: poweroff, battery_charge_below: 30, on_battery_for: 15m, action: poweroff}
`), 0o600)
	var out, errb bytes.Buffer
	io := stdio{Stdout: &out, Stderr: &errb}
	if code := dispatch(context.Background(), []string{"drill", "-c", cfg}, io); code != exitOK {
		t.Fatalf("drill exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"T+1m0s     outage starts", "T+3m0s     stage shed-load", "T+16m0s    final stage poweroff", "T+16m5s    would publish powering_off"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("drill output lacks %q:\n%s", want, out.String())
		}
	}
	key := filepath.Join(dir, "bridge.key")
	if code := dispatch(context.Background(), []string{"keygen", "-o", key}, io); code != exitOK {
		t.Fatalf("keygen exit %d: %s", code, errb.String())
	}
	if _, err := signing.LoadSigner(key); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.LoadVerifier(key + ".pub"); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", st.Mode())
	}
	if code := dispatch(context.Background(), []string{"keygen", "-o", key}, io); code != exitFail {
		t.Fatalf("keygen over an existing key: exit %d", code)
	}
}
