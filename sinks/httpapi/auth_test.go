package httpapi

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// With http.token, every path but /healthz needs the bearer token; checked
// over a real socket, as a scraper would.
func TestToken(t *testing.T) {
	s, err := New(Options{Listen: "127.0.0.1:0", BridgeID: "t", Version: "test", Token: "s3cret-token"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + s.Addr().String()
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/metrics", "", 401},
		{"/readyz", "", 401},
		{"/api/state", "", 401},
		{"/api/state", "Bearer wrong", 401},
		{"/api/state", "Bearer s3cret-token-longer", 401},
		{"/api/state", "Bearer s3cret-toke", 401},
		{"/api/state", "Basic s3cret-token", 401},
		{"/api/state", "s3cret-token", 401},
		{"/api/state", "Bearer s3cret-token", 200},
		{"/api/state", "bearer s3cret-token", 200},
		{"/metrics", "Bearer s3cret-token", 200},
		{"/readyz", "Bearer s3cret-token", 200},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s (%q) = %d, want %d", tc.path, tc.auth, resp.StatusCode, tc.want)
		}
		if resp.StatusCode == 401 {
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s: 401 without WWW-Authenticate", tc.path)
			}
			if strings.Contains(string(body), "s3cret") {
				t.Errorf("GET %s: the token is in the answer", tc.path)
			}
		}
	}
}

// Without a token the endpoint stays open (it is off unless http.listen is
// set, and binds where that says).
func TestNoToken(t *testing.T) {
	s, err := New(Options{Listen: "127.0.0.1:0", BridgeID: "t", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	if code, _ := get(t, s.Handler(), "/api/state"); code != 200 {
		t.Errorf("/api/state without a token configured = %d", code)
	}
}
