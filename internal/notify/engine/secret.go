package engine

import (
	"os"

	"github.com/upsbridge/upsbridge/config"
)

// SecretRef resolves a secret from its value, a file (*_file) or an
// environment variable (*_env). Validate may run more than once on a spec
// (config.Load, then NewSink); the first resolution is kept.
type SecretRef struct {
	done bool
}

// Resolve fills s from file or the environment variable env (key names the
// config key in errors); required makes an empty secret an error.
func (r *SecretRef) Resolve(s *config.Secret, file, env, key string, required bool) []config.FieldError {
	if r.done {
		return nil
	}
	var errs []config.FieldError
	set := 0
	for _, v := range []bool{*s != "", file != "", env != ""} {
		if v {
			set++
		}
	}
	switch {
	case set > 1:
		errs = append(errs, config.Errorf(key, "set only one of %s, %s_file and %s_env", key, key, key))
	case file != "":
		errs = append(errs, config.ResolveSecret(s, file, key)...)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			errs = append(errs, config.Errorf(key+"_env", "environment variable %s is not set", env))
		}
		*s = config.Secret(v)
	}
	if len(errs) == 0 && required && *s == "" {
		errs = append(errs, config.Errorf(key, "is required (or %s_file, %s_env)", key, key))
	}
	if len(errs) == 0 {
		r.done = true
	}
	return errs
}
