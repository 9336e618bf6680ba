// Package signing signs and verifies the bridge's state and event payloads
// with Ed25519, so that agents, which power machines off on a message, act
// only on what the bridge said.
//
// The signature covers the wire contract's canonical form
// (mqttwire.CanonicalState and CanonicalEvent).
//
// Replay protection is [Guard]: per UPS, a message must be newer than the
// last accepted one (ts, then seq), and not older than a maximum age.
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Errors returned by verification.
var (
	ErrUnsigned = errors.New("payload is not signed")
	ErrBadSig   = errors.New("signature does not verify")
	ErrReplay   = errors.New("replayed or out-of-order message")
	ErrTooOld   = errors.New("message is older than the maximum age")
)

// Signer signs payloads with a private key. It implements sinks/mqtt.Signer.
type Signer struct{ key ed25519.PrivateKey }

// NewSigner returns a signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// SignState sets p.Sig.
func (s *Signer) SignState(p *mqttwire.StatePayload) error {
	msg, err := mqttwire.CanonicalState(*p)
	if err != nil {
		return err
	}
	p.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, msg))
	return nil
}

// SignEvent sets p.Sig.
func (s *Signer) SignEvent(p *mqttwire.EventPayload) error {
	msg, err := mqttwire.CanonicalEvent(*p)
	if err != nil {
		return err
	}
	p.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, msg))
	return nil
}

// Verifier checks signatures with a public key.
type Verifier struct{ key ed25519.PublicKey }

// NewVerifier returns a verifier for key.
func NewVerifier(key ed25519.PublicKey) *Verifier { return &Verifier{key: key} }

func (v *Verifier) check(sig string, msg []byte) error {
	if sig == "" {
		return ErrUnsigned
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: malformed sig", ErrBadSig)
	}
	if !ed25519.Verify(v.key, msg, raw) {
		return ErrBadSig
	}
	return nil
}

// VerifyState checks a decoded state payload's signature.
func (v *Verifier) VerifyState(p mqttwire.StatePayload) error {
	msg, err := mqttwire.CanonicalState(p)
	if err != nil {
		return err
	}
	if err := v.check(p.Sig, msg); err != nil {
		return fmt.Errorf("state of %q: %w", p.UPS, err)
	}
	return nil
}

// VerifyEvent checks a decoded event payload's signature.
func (v *Verifier) VerifyEvent(p mqttwire.EventPayload) error {
	msg, err := mqttwire.CanonicalEvent(p)
	if err != nil {
		return err
	}
	if err := v.check(p.Sig, msg); err != nil {
		return fmt.Errorf("event %s of %q: %w", p.Type, p.UPS, err)
	}
	return nil
}

// Guard rejects replayed messages: per key (a UPS id), each accepted message
// must be newer than the last, by ts and then by seq, and no older than
// MaxAge. A bridge restart resets seq, but its ts moves on, so it is
// accepted. It is safe for concurrent use.
type Guard struct {
	MaxAge time.Duration
	mu     sync.Mutex
	last   map[string]mark
}

type mark struct {
	ts  time.Time
	seq uint64
}

// Check accepts or rejects a message and, if accepted, remembers it.
func (g *Guard) Check(key string, ts time.Time, seq uint64, now time.Time) error {
	if g.MaxAge > 0 && now.Sub(ts) > g.MaxAge {
		return fmt.Errorf("%s: ts %s: %w (%s)", key, bridge.FormatTime(ts), ErrTooOld, g.MaxAge)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil {
		g.last = map[string]mark{}
	}
	if l, ok := g.last[key]; ok {
		if ts.Before(l.ts) || (ts.Equal(l.ts) && seq <= l.seq) {
			return fmt.Errorf("%s: ts %s seq %d after ts %s seq %d: %w", key, bridge.FormatTime(ts), seq, bridge.FormatTime(l.ts), l.seq, ErrReplay)
		}
	}
	g.last[key] = mark{ts: ts, seq: seq}
	return nil
}

// GenerateKey returns a new key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// EncodePrivateKey returns the key as PEM (PKCS #8).
func EncodePrivateKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EncodePublicKey returns the key as PEM (PKIX).
func EncodePublicKey(k ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a PEM private key written by EncodePrivateKey.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("private key: no PEM \"PRIVATE KEY\" block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key: %T is not Ed25519", k)
	}
	return ek, nil
}

// ParsePublicKey reads a PEM public key written by EncodePublicKey.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("public key: no PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: %T is not Ed25519", k)
	}
	return ek, nil
}

// LoadSigner reads a private key file.
func LoadSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return NewSigner(k), nil
}

// LoadVerifier reads a public key file.
func LoadVerifier(path string) (*Verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	k, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return NewVerifier(k), nil
}
