package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/upsbridge/upsbridge/bridge"
)

type fakeSource struct{ id string }

func (f fakeSource) ID() string                                            { return f.id }
func (f fakeSource) Run(ctx context.Context, _ chan<- bridge.Update) error { <-ctx.Done(); return nil }

type fakeSink struct {
	name  string
	stats map[string]any
}

func (f fakeSink) Name() string                                   { return f.name }
func (f fakeSink) Run(ctx context.Context, _ *bridge.Queue) error { return nil }
func (f fakeSink) Stats() map[string]any                          { return f.stats }

type fakeBridge struct {
	sources []bridge.Source
	sinks   []bridge.SinkQueue
	owner   map[string]string
}

func (f *fakeBridge) Sources() []bridge.Source   { return f.sources }
func (f *fakeBridge) Sinks() []bridge.SinkQueue  { return f.sinks }
func (f *fakeBridge) SourceOf(ups string) string { return f.owner[ups] }

func state(ups, status string, comm bool) *bridge.State {
	return &bridge.State{UPS: ups, Time: time.Unix(1700000000, 0), Status: bridge.ParseStatus(status), Comm: comm,
		Vars: bridge.Vars{"battery.charge": "87", "ups.status": status, "device.model": "X"}}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		name      string
		mqtt      bool
		problem   string // the agent sink's stats key "problem"
		states    []*bridge.State
		wantCode  int
		wantLines []string
	}{
		{"all good", true, "", []*bridge.State{state("a", "OL", true), state("b", "OB", true)}, 200, []string{"ready"}},
		{"agent unprotected", true, "agent web01 unprotected: ups nas: no live state since start", []*bridge.State{state("a", "OL", true), state("b", "OB", true)}, 503,
			[]string{"agent web01 unprotected: ups nas: no live state since start"}},
		{"broker down", false, "", []*bridge.State{state("a", "OL", true), state("b", "OL", true)}, 503, []string{"mqtt: not connected to the broker"}},
		{"ups lost", true, "", []*bridge.State{state("a", "OL", false), state("b", "OL", true)}, 503, []string{"ups a (source s1): not communicating"}},
		{"source silent", true, "", []*bridge.State{state("a", "OL", true)}, 503, []string{"source s2: no UPS read yet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := &fakeBridge{
				sources: []bridge.Source{fakeSource{"s1"}, fakeSource{"s2"}},
				owner:   map[string]string{"a": "s1", "b": "s2"},
			}
			fb.sinks = []bridge.SinkQueue{{Sink: fakeSink{"mqtt", map[string]any{"connected": tt.mqtt, "queue_depth": 3}}, Queue: bridge.NewQueue("mqtt", 0, nil)},
				{Sink: fakeSink{"agent-web01", map[string]any{"agent": "web01", "status": "idle", "protected": tt.problem == "", "problem": tt.problem}}, Queue: bridge.NewQueue("agent-web01", 0, nil)}}
			s, err := New(Options{Listen: "127.0.0.1:0", BridgeID: "t", Version: "test", Bridge: fb})
			if err != nil {
				t.Fatal(err)
			}
			defer s.ln.Close()
			for _, st := range tt.states {
				s.accept(bridge.Message{Kind: bridge.MessageState, State: st})
			}
			code, body := get(t, s.Handler(), "/readyz")
			if code != tt.wantCode {
				t.Errorf("code %d, want %d (%q)", code, tt.wantCode, body)
			}
			for _, l := range tt.wantLines {
				if !strings.Contains(body, l) {
					t.Errorf("body %q lacks %q", body, l)
				}
			}
		})
	}
}

func TestMetricsParse(t *testing.T) {
	fb := &fakeBridge{sources: []bridge.Source{fakeSource{"s1"}}, owner: map[string]string{"a": "s1"},
		sinks: []bridge.SinkQueue{{Sink: fakeSink{"wecom-ops", map[string]any{
			"queue_depth": 2, "failures_total": uint64(5), "last_error": "45009", "agent": "web01", "status": "staging",
			"stage": "shed-load", "next_stage": "poweroff", "next_stage_in_s": 42.5, "Bad Key": 1, "queue_length": 9,
		}}, Queue: bridge.NewQueue("wecom-ops", 0, nil)}}}
	s, err := New(Options{Listen: "127.0.0.1:0", BridgeID: "t", Version: "test", Bridge: fb})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	s.accept(bridge.Message{Kind: bridge.MessageState, State: state("a", "OB LB", true)})
	ev := bridge.NewEvent("a", time.Now(), bridge.EventOnBatt, "OB")
	s.accept(bridge.Message{Kind: bridge.MessageEvent, Event: &ev})
	code, body := get(t, s.Handler(), "/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	for _, name := range []string{"upsbridge_ups_variable", "upsbridge_ups_status_flag", "upsbridge_events_total",
		"upsbridge_component_info", "upsbridge_sink_queue_length", "upsbridge_build_info", "go_goroutines",
		"process_resident_memory_bytes"} {
		if mfs[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	if mf := mfs["upsbridge_ups_variable"]; mf != nil && len(mf.GetMetric()) != 1 {
		t.Errorf("only numeric variables are exported: %v", mf.GetMetric())
	}
	// Stats keys never become metric names: a component's numbers are its
	// own typed metrics.
	for _, name := range []string{"upsbridge_sink_queue_depth", "upsbridge_sink_failures_total", "upsbridge_agent_status"} {
		if mfs[name] != nil {
			t.Errorf("%s made from a stats map", name)
		}
	}
	for _, m := range mfs["upsbridge_sink_queue_length"].GetMetric() {
		if m.GetGauge().GetValue() == 9 {
			t.Error("a stat named queue_length overrode the bridge's queue length")
		}
	}
	code, body = get(t, s.Handler(), "/api/state")
	if code != 200 || !strings.Contains(body, `"agent": "web01"`) || !strings.Contains(body, `"type": "ONBATT"`) {
		t.Errorf("/api/state %d %s", code, body)
	}
}

func TestServeStops(t *testing.T) {
	s, err := New(Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
	// The port is free again once Serve returned.
	s2, err := New(Options{Listen: s.Addr().String()})
	if err != nil {
		t.Fatalf("listen again on %s: %v", s.Addr(), err)
	}
	s2.ln.Close()
}

// Stats with NaN or infinities (JSON has none) still give a valid document,
// with null in their place, never an empty 200.
func TestStateDocumentWithNaNStats(t *testing.T) {
	s := fixtureServer(t)
	code, body := get(t, s.Handler(), "/api/state")
	if code != 200 {
		t.Fatalf("/api/state: %d %s", code, body)
	}
	var doc struct {
		Sources []struct {
			ID    string         `json:"id"`
			Stats map[string]any `json:"stats"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/api/state is not JSON: %v\n%s", err, body)
	}
	for _, src := range doc.Sources {
		if src.ID != "s1" {
			continue
		}
		for _, k := range []string{"limit", "floor", "unknown"} {
			if v, ok := src.Stats[k]; !ok || v != nil {
				t.Errorf("stats[%q] = %v (present %v), want null", k, v, ok)
			}
		}
		if src.Stats["ratio"] != 0.5 {
			t.Errorf("a finite stat changed: ratio = %v", src.Stats["ratio"])
		}
		return
	}
	t.Fatalf("source s1 missing from %s", body)
}
