package signing

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

func signedState(t *testing.T, s *Signer) []byte {
	t.Helper()
	st := &bridge.State{UPS: "nas-ups", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seq: 7,
		Status: bridge.ParseStatus("OB DISCHRG"), Vars: bridge.Vars{"ups.status": "OB DISCHRG", "battery.charge": "87", "ups.model": "Back-UPS <\"x\">"}, Comm: true}
	p := mqttwire.NewStatePayload(st, "test", 1, time.Now())
	if err := s.SignState(&p); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestStateRoundTripAndForgery(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := GenerateKey()
	v := NewVerifier(pub)
	good := signedState(t, NewSigner(priv))
	tests := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"signed", good, nil},
		{"forged status", []byte(strings.Replace(string(good), `"status":"OB DISCHRG"`, `"status":"OB DISCHRG LB FSD"`, 1)), ErrBadSig},
		{"forged var", []byte(strings.Replace(string(good), `"battery.charge":87`, `"battery.charge":5`, 1)), ErrBadSig},
		{"other key", signedState(t, NewSigner(otherPriv)), ErrBadSig},
		{"unsigned", []byte(strings.Replace(string(good), `"sig":`, `"nosig":`, 1)), ErrUnsigned},
		{"garbage sig", []byte(strings.Replace(string(good), `"sig":"`, `"sig":"!!`, 1)), ErrBadSig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, err := mqttwire.DecodeState(tc.payload)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			err = v.VerifyState(p)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("VerifyState = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEvent(t *testing.T) {
	pub, priv, _ := GenerateKey()
	p := mqttwire.EventPayload{UPS: "u", TS: "2026-01-01T00:00:00.000Z", Type: "ONBATT", Message: "m", Status: "OB"}
	if err := NewSigner(priv).SignEvent(&p); err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(pub)
	if err := v.VerifyEvent(p); err != nil {
		t.Fatal(err)
	}
	p.Type = "FSD"
	if err := v.VerifyEvent(p); !errors.Is(err, ErrBadSig) {
		t.Fatalf("forged event: %v", err)
	}
}

func TestGuard(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := &Guard{MaxAge: time.Minute}
	steps := []struct {
		name string
		ts   time.Time
		seq  uint64
		now  time.Time
		want error
	}{
		{"first", t0, 5, t0, nil},
		{"newer seq", t0, 6, t0, nil},
		{"same again", t0, 6, t0, ErrReplay},
		{"seq backwards same ts", t0, 4, t0, ErrReplay},
		{"older ts", t0.Add(-time.Second), 9, t0, ErrReplay},
		{"bridge restarted: newer ts, seq reset", t0.Add(time.Second), 1, t0.Add(time.Second), nil},
		{"too old", t0.Add(2 * time.Second), 2, t0.Add(2 * time.Minute), ErrTooOld},
	}
	for _, s := range steps {
		err := g.Check("u", s.ts, s.seq, s.now)
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("%s: Check = %v, want %v", s.name, err, s.want)
		}
	}
}

func TestKeyPEM(t *testing.T) {
	pub, priv, _ := GenerateKey()
	pp, err := EncodePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := EncodePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParsePrivateKey(pp)
	if err != nil || !p2.Equal(priv) {
		t.Fatalf("private round trip: %v", err)
	}
	b2, err := ParsePublicKey(pb)
	if err != nil || !b2.Equal(pub) {
		t.Fatalf("public round trip: %v", err)
	}
	if _, err := ParsePublicKey(pp); err == nil {
		t.Fatal("a private key parsed as public")
	}
	if _, err := ParsePrivateKey([]byte("junk")); err == nil {
		t.Fatal("junk parsed")
	}
}
