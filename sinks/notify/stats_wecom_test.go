package notify

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// TestStatsWeComScrubsKey goes through the real WeCom service: the
// endpoint fails with a body that echoes the key, and last_error must not
// carry it (nor any log line).
func TestNotifierStatsWeComScrubsKey(t *testing.T) {
	const key = "wecom-robot-key-0042"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "overloaded; retry key="+r.URL.Query().Get("key"), http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	wc := &WeComConfig{Common: common("wecom"), MsgType: "markdown", URL: config.Secret(srv.URL + "/cgi-bin/webhook/send?key=" + key)}
	wc.FlapWindow, wc.RetryMin, wc.RetryMax = 0, 5*time.Millisecond, 10*time.Millisecond
	lb := &logBuf{}
	sink, err := wc.NewSink(bridge.Env{Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := sink.(*engine.Sink)
	r := newStatsRig(t, s, lb)
	r.q.PutEvent(ev("a", bridge.EventLowBatt))
	st := waitStats(t, s, "failures against the endpoint", func(st map[string]any) bool { return num(st, "failures_total") >= 2 })
	le, _ := st["last_error"].(string)
	if !strings.Contains(le, "HTTP 503") || !strings.Contains(le, "[redacted]") {
		t.Errorf("last_error %q: want the 503 with the echoed key redacted", le)
	}
	for what, text := range map[string]string{"last_error": le, "logs": lb.String()} {
		if strings.Contains(text, key) {
			t.Errorf("%s carries the WeCom key: %s", what, text)
		}
	}
	if num(st, "queue_depth") != 1 {
		t.Errorf("queue_depth = %v while failing, want 1", num(st, "queue_depth"))
	}
}
