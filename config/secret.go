package config

import (
	"fmt"
	"log/slog"
	"strings"
)

// Secret is a string that never prints: String, slog and %v show "[redacted]".
// Use Reveal where the value is really needed.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts for %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue redacts for slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts, so a config dumped as JSON or YAML carries no secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText takes the value as given.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// MaxSecretFileBytes bounds a secret file (a password, a key, a token).
const MaxSecretFileBytes = 64 << 10

// ReadSecretFile reads a secret from a file (such as a Docker or systemd
// credential), dropping one trailing newline. Errors name the file, never
// the content.
func ReadSecretFile(path string) (Secret, error) {
	b, err := readBounded(path, MaxSecretFileBytes)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return Secret(s), nil
}

// ResolveSecret fills *s from file when file is set. Setting both is an
// error. key names the secret's key for the error.
func ResolveSecret(s *Secret, file, key string) []FieldError {
	if file == "" {
		return nil
	}
	if *s != "" {
		return []FieldError{Errorf(key, "set either %s or %s_file, not both", key, key)}
	}
	v, err := ReadSecretFile(file)
	if err != nil {
		return []FieldError{Errorf(key+"_file", "%v", err)}
	}
	*s = v
	return nil
}
