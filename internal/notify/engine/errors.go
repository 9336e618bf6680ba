package engine

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/config"
)

// Kind classifies a delivery failure.
type Kind int

const (
	// KindTransient: retry with backoff (network errors, 5xx, 429, vendor
	// rate-limit and "busy" codes).
	KindTransient Kind = iota
	// KindRefused: the notifier itself is unusable (bad key, token, URL):
	// report once, keep the queue, try again rarely.
	KindRefused
	// KindRejected: this message is refused (too long, bad format); retrying
	// it cannot help, so it is dropped with an error.
	KindRejected
)

func (k Kind) String() string {
	switch k {
	case KindRefused:
		return "refused"
	case KindRejected:
		return "rejected"
	}
	return "transient"
}

// sendError is a classified delivery failure.
type sendError struct {
	kind       Kind
	retryAfter time.Duration // the service's hint, 0 if none
	err        error
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// Transient marks err as a passing failure: retry with backoff, waiting at
// least retryAfter (the service's hint; 0 if none).
func Transient(err error, retryAfter time.Duration) error {
	return &sendError{kind: KindTransient, retryAfter: retryAfter, err: err}
}

// Refused marks err as the service refusing the notifier itself (bad URL,
// key or token): reported once, the queue is kept and retried rarely.
func Refused(err error) error { return &sendError{kind: KindRefused, err: err} }

// Rejected marks err as the service refusing this message: it is dropped.
func Rejected(err error) error { return &sendError{kind: KindRejected, err: err} }

// Classified reports whether err (or an error it wraps) was classified with
// Transient, Refused or Rejected, so a service can pass it on as it is.
func Classified(err error) bool {
	var se *sendError
	return errors.As(err, &se)
}

// Classify returns an error's kind and retry hint; unclassified errors
// (network) are transient.
func Classify(err error) (Kind, time.Duration) {
	var se *sendError
	if errors.As(err, &se) {
		return se.kind, se.retryAfter
	}
	return KindTransient, 0
}

// redactor removes secrets from error texts, in the raw form and in the
// escaped forms they take in URLs.
type redactor struct{ secrets []string }

func newRedactor(secrets ...string) redactor {
	var r redactor
	for _, s := range secrets {
		if len(s) < 3 {
			continue // too short to redact without mangling text; such secrets are refused elsewhere
		}
		r.secrets = append(r.secrets, s, url.QueryEscape(s), url.PathEscape(s))
	}
	return r
}

func (r redactor) text(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	return s
}

// scrubbed is an error whose text has had secrets removed; it keeps the
// classification of the original.
type scrubbed struct {
	msg  string
	kind Kind
	ra   time.Duration
}

func (e *scrubbed) Error() string { return e.msg }

// err returns err with secrets removed from its text, keeping its kind.
func (r redactor) err(err error) error {
	if err == nil {
		return nil
	}
	k, ra := Classify(err)
	msg := r.text(err.Error())
	return &sendError{kind: k, retryAfter: ra, err: &scrubbed{msg: msg, kind: k, ra: ra}}
}

// CheckURL checks that raw, the value of config key, is an http(s) URL; the
// error shows the URL with its query values and user info hidden.
func CheckURL(key, raw string) []config.FieldError {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return []config.FieldError{config.Errorf(key, "must be an http(s) URL, got %q", RedactURL(raw))}
	}
	return nil
}

// RedactURL hides the query values and any user info of a URL for logs.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparsable URL]"
	}
	if u.User != nil {
		u.User = url.User("[redacted]")
	}
	q := u.Query()
	for k := range q {
		q.Set(k, "[redacted]")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// HTTPStatusError builds the error for an HTTP answer, classified by status:
// 408, 425, 429 and 5xx are transient; 401, 403 and 404 mean the notifier's
// URL or credentials are wrong; other 4xx reject the message.
func HTTPStatusError(service string, status int, body string, retryAfter time.Duration) error {
	err := fmt.Errorf("%s: HTTP %d: %s", service, status, Shorten(body, 300))
	switch {
	case status == 408 || status == 425 || status == 429 || status >= 500:
		return Transient(err, retryAfter)
	case status == 401 || status == 403 || status == 404 || status == 410:
		return Refused(err)
	}
	return Rejected(err)
}

// Shorten trims s and cuts it to at most n bytes, for quoting an answer.
func Shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return Truncate(s, n)
	}
	return s
}
