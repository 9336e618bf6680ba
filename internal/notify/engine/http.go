package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// userAgent identifies the bridge to services.
const userAgent = "upsbridge"

// HTTPClient is shared by the HTTP services: it honours HTTPS_PROXY (needed
// for Telegram, Discord and Slack from mainland China). Timeouts come from
// the context of each attempt. Redirects are never followed: a webhook
// that redirects is misconfigured or hijacked, and following it would send
// the message (and any key in the URL) somewhere else.
var HTTPClient = &http.Client{
	Transport:     http.DefaultTransport,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// maxResponseBytes is all of an answer that is read: services answer with a
// few hundred bytes of JSON, and an endpoint that answers more (a hostile
// or broken one) must not cost memory.
const maxResponseBytes = 64 << 10

// Response is an HTTP answer read in full (bounded).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// RetryAfter is the answer's Retry-After (0 if none).
	RetryAfter time.Duration
}

// Do sends one request. Network failures are transient errors. The URL is
// never part of the error text (it may hold a key): errors name the
// service and the redacted URL.
func Do(ctx context.Context, service, method, rawURL string, header http.Header, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, bytes.NewReader(body))
	if err != nil {
		return nil, Refused(fmt.Errorf("%s: bad URL %s", service, RedactURL(rawURL)))
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := HTTPClient.Do(req)
	if err != nil {
		// *url.Error's text carries the full URL: rebuild it without.
		cause := err
		if ue, ok := err.(interface{ Unwrap() error }); ok && ue.Unwrap() != nil {
			cause = ue.Unwrap()
		}
		return nil, Transient(fmt.Errorf("%s: %s %s: %w", service, method, RedactURL(rawURL), cause), 0)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		where := "another place"
		if loc, err := resp.Location(); err == nil {
			where = loc.Scheme + "://" + loc.Host // no path or query: they may hold a key
		}
		return nil, Refused(fmt.Errorf("%s: %s %s answered HTTP %d, a redirect to %s: redirects are not followed; check the URL", service, method, RedactURL(rawURL), resp.StatusCode, where))
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(ra)); err == nil && n >= 0 {
			r.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			r.RetryAfter = time.Until(t)
		}
	}
	return r, nil
}

// PostJSON marshals v and POSTs it.
func PostJSON(ctx context.Context, service, rawURL string, header http.Header, v any) (*Response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, Rejected(fmt.Errorf("%s: encode request: %w", service, err))
	}
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "application/json; charset=utf-8")
	return Do(ctx, service, http.MethodPost, rawURL, header, body)
}

// OK2xx returns nil for 2xx, else the classified status error.
func (r *Response) OK2xx(service string) error {
	if r.Status >= 200 && r.Status < 300 {
		return nil
	}
	return HTTPStatusError(service, r.Status, string(r.Body), r.RetryAfter)
}
