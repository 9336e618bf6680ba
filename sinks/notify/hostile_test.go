package notify

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// TestHostileEndpoint: a notifier endpoint that hangs, answers 1 GB or
// redirects elsewhere costs bounded time and memory, and a redirect is not
// followed.
func TestHostileEndpoint(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		_, _ = w.Write([]byte(`{"errcode":0,"errmsg":"ok"}`))
	}))
	defer other.Close()
	stop := make(chan struct{})
	defer close(stop)                                                // before the servers close: their handlers return
	chunk := []byte(strings.Repeat(`{"errcode":0,"errmsg":"`, 2800)) // ~64 KB
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string // in the error
		kind    engine.Kind
	}{
		{"hangs", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		}, "context deadline exceeded", engine.KindTransient},
		{"answers 1 GB", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for sent := 0; sent < 1<<30; sent += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, "unexpected answer", engine.KindTransient},
		{"redirects to another host", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/cgi-bin/webhook/send?key=K", http.StatusTemporaryRedirect)
		}, "redirects are not followed", engine.KindRefused},
		{"redirects to itself", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, "HTTP 302, a redirect to http://127.0.0.1", engine.KindRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			defer srv.CloseClientConnections()
			c := common("wecom")
			c.Timeout = time.Second
			s := build(t, &WeComConfig{Common: c, URL: config.Secret(srv.URL + "/cgi-bin/webhook/send?key=SECRETKEY"), MsgType: "markdown"})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			err := s.Attempt(context.Background(), testMsg)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if kind, _ := engine.Classify(err); kind != tt.kind {
				t.Errorf("error kind of %v is not %v", err, tt.kind)
			}
			if strings.Contains(err.Error(), "SECRETKEY") {
				t.Errorf("the key leaks into %v", err)
			}
			if took > 3*time.Second {
				t.Errorf("took %v with a 1 s timeout", took)
			}
			if grown := int64(after.TotalAlloc - before.TotalAlloc); grown > 4<<20 {
				t.Errorf("allocated %d bytes for one attempt", grown)
			}
			if elsewhere.Load() != 0 {
				t.Errorf("the redirect was followed")
			}
			t.Logf("%v, %d bytes allocated: %v", took.Round(time.Millisecond), after.TotalAlloc-before.TotalAlloc, err)
		})
	}
}
