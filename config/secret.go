package config

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"sort"
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

// SecretRef is a secret given one of three ways, as the keys x, x_file and
// x_env of a configuration section: the value itself, a file holding it
// (such as a Docker or systemd credential), or an environment variable
// holding it. A struct field of this type tagged `koanf:"x"` accepts all
// three keys. Load resolves every SecretRef once, after decoding and before
// validation, so validation and building never read files again.
type SecretRef struct {
	Value Secret // x
	File  string // x_file
	Env   string // x_env

	resolved Secret
	done     bool
}

var secretRefType = reflect.TypeOf(SecretRef{})

// SecretValue returns a SecretRef holding the value itself (for code and
// tests that build configurations).
func SecretValue(v string) SecretRef { return SecretRef{Value: Secret(v)} }

// IsSet reports whether any of the three keys is set.
func (r *SecretRef) IsSet() bool { return r.Value != "" || r.File != "" || r.Env != "" }

// Secret returns the resolved value: Value itself, or what the file or
// environment variable held once Resolve has run.
func (r *SecretRef) Secret() Secret {
	if r.done {
		return r.resolved
	}
	return r.Value
}

// Reveal returns the resolved value as a string.
func (r *SecretRef) Reveal() string { return r.Secret().Reveal() }

// String redacts.
func (r SecretRef) String() string { return r.Secret().String() }

// GoString redacts for %#v; where the secret comes from is not secret.
func (r SecretRef) GoString() string {
	return fmt.Sprintf("config.SecretRef{Value:%s, File:%q, Env:%q}", r.Value.String(), r.File, r.Env)
}

// LogValue redacts for slog.
func (r SecretRef) LogValue() slog.Value { return slog.StringValue(r.String()) }

// Check reports a SecretRef set more than one way; key is the secret's key
// ("password"). It reads nothing.
func (r *SecretRef) Check(key string) []FieldError {
	n := 0
	for _, set := range []bool{r.Value != "", r.File != "", r.Env != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return []FieldError{Errorf(key, "set only one of %s, %s_file and %s_env", key, key, key)}
	}
	return nil
}

// Resolve reads the secret's file or environment variable, once: later
// calls return nothing and change nothing. lookupEnv is os.LookupEnv when
// nil. Errors name the key and the file or variable, never the content.
func (r *SecretRef) Resolve(key string, lookupEnv func(string) (string, bool)) []FieldError {
	if r.done {
		return nil
	}
	if errs := r.Check(key); len(errs) > 0 {
		return errs
	}
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	v := r.Value
	switch {
	case r.File != "":
		s, err := ReadSecretFile(r.File)
		if err != nil {
			return []FieldError{Errorf(key+"_file", "%v", err)}
		}
		v = s
	case r.Env != "":
		s, ok := lookupEnv(r.Env)
		if !ok || s == "" {
			return []FieldError{Errorf(key+"_env", "environment variable %s is not set", r.Env)}
		}
		v = Secret(s)
	}
	r.resolved, r.done = v, true
	return nil
}

// ResolveSecrets resolves every SecretRef in v (a pointer to a
// configuration struct, typed list entries included), each once. Errors
// carry the key path under prefix.
func ResolveSecrets(prefix string, v any, lookupEnv func(string) (string, bool)) []FieldError {
	var errs []FieldError
	resolveIn(prefix, reflect.ValueOf(v), lookupEnv, &errs)
	return errs
}

func resolveIn(path string, v reflect.Value, lookupEnv func(string) (string, bool), errs *[]FieldError) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			resolveIn(path, v.Elem(), lookupEnv, errs)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			resolveIn(fmt.Sprintf("%s[%d]", path, i), v.Index(i), lookupEnv, errs)
		}
	case reflect.Struct:
		if v.Type() == sourceEntryType || v.Type() == notifierEntryType {
			resolveIn(path, v.FieldByName("Spec"), lookupEnv, errs)
			return
		}
		fs := fields(v.Type())
		keys := make([]string, 0, len(fs))
		for k := range fs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			f := v.FieldByIndex(fs[key])
			if f.Type() == secretRefType {
				if f.CanAddr() {
					ref := f.Addr().Interface().(*SecretRef)
					rerrs := ref.Resolve(key, lookupEnv)
					if path != "" {
						rerrs = Prefix(path, rerrs)
					}
					*errs = append(*errs, rerrs...)
				}
				continue
			}
			if f.Kind() == reflect.Struct && f.Type() != durationType || f.Kind() == reflect.Pointer || f.Kind() == reflect.Slice || f.Kind() == reflect.Interface {
				resolveIn(join(path, key), f, lookupEnv, errs)
			}
		}
	}
}
