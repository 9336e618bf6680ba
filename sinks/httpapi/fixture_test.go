package httpapi

import (
	"math"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/metricname"
)

// fixtureNow is the fixed clock of the golden fixture.
var fixtureNow = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// statsSource is a source that reports stats.
type statsSource struct {
	fakeSource
	stats map[string]any
}

func (f statsSource) Stats() map[string]any { return f.stats }

// fixtureServer builds a Server fed with a fixed set of states, events and
// component stats covering every family upsbridge exports itself.
func fixtureServer(t testing.TB) *Server {
	t.Helper()
	fb := &fakeBridge{
		sources: []bridge.Source{
			statsSource{fakeSource{"s1"}, map[string]any{
				"polls_total": uint64(120), "poll_errors_total": 3, "poll_duration_seconds": 15 * time.Millisecond,
				"connected": true, "server": "upsd.example:3493", "Bad-Key": 1, "ratio": 0.5,
				"tiny": 1e-7, "huge": 1.5e21, "limit": math.Inf(1), "floor": math.Inf(-1), "unknown": math.NaN(),
				"negative": -2, "nested": map[string]any{"x": 1},
			}},
			fakeSource{"s2"},
		},
		owner: map[string]string{"a": "s1", "b": "s1", "c": "s2", "d": "s2"},
	}
	// The process's set, with metrics as components register them.
	set := metrics.NewSet()
	set.GetOrCreateCounter(metricname.Series("upsbridge_source_polls_total", "source", "s1")).Add(120)
	set.GetOrCreateCounter(metricname.Series("upsbridge_source_poll_errors_total", "source", "s1")).Add(3)
	set.GetOrCreateGauge(metricname.Series("upsbridge_source_connected", "source", "s1"), func() float64 { return 1 })
	set.GetOrCreateGauge(metricname.Series("upsbridge_sink_queue_depth", "sink", "mqtt"), func() float64 { return 4 })
	set.GetOrCreateGauge(metricname.Series("upsbridge_sink_queue_depth", "sink", "notify-ops \"room\""), func() float64 { return 2 })
	set.GetOrCreateGauge("upsbridge_mqtt_connected", func() float64 { return 1 })
	set.GetOrCreateGauge(metricname.Series("upsbridge_sink_last_success_seconds", "sink", "notify-ops"), func() float64 { return math.NaN() })
	s, err := New(Options{Listen: "127.0.0.1:0", BridgeID: "golden", Version: "v1.2.3", Bridge: fb, Metrics: set,
		Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	fb.sinks = []bridge.SinkQueue{
		{Sink: fakeSink{"mqtt", map[string]any{"connected": true, "queue_depth": 4, "published_total": uint64(99), "broker": "tcp://b:1883"}},
			Queue: bridge.NewQueue("mqtt", 0, nil)},
		{Sink: fakeSink{"wecom-ops", map[string]any{"queue_depth": 2, "failures_total": uint64(5),
			"last_error": "45009 \"quota\"\nline2 \\ back", "channel": "ops \"room\"\nline2 \\ back"}}, Queue: bridge.NewQueue("wecom-ops", 0, nil)},
		{Sink: fakeSink{"agent-web01", map[string]any{"agent": "web01", "status": "staging", "stage": "shed-load",
			"next_stage": "poweroff", "next_stage_in_s": 42.5, "connected": true}}, Queue: bridge.NewQueue("agent-web01", 0, nil)},
		{Sink: s, Queue: bridge.NewQueue("http", 0, nil)},
	}
	at := time.Unix(1709294390, 250*int64(time.Millisecond))
	states := []*bridge.State{
		{UPS: "a", Time: at, Status: bridge.ParseStatus("OL CHRG"), Comm: true, Vars: bridge.Vars{
			"battery.charge": "87", "battery.runtime": "1800", "ups.load": "23.5", "input.voltage": "230.1",
			"device.model": "X", "ups.status": "OL CHRG", "battery.voltage": "junk"}},
		{UPS: "b", Time: at, Status: bridge.ParseStatus("OB LB"), Comm: true, Critical: true,
			OnBatterySince: fixtureNow.Add(-90 * time.Second), Vars: bridge.Vars{"battery.charge": "9", "ups.status": "OB LB"}},
		{UPS: "c", Time: at, Status: bridge.ParseStatus("OL"), Comm: false, Gone: true},
		{UPS: "d", Comm: true},
	}
	for _, st := range states {
		s.accept(bridge.Message{Kind: bridge.MessageState, State: st})
	}
	for _, e := range []struct {
		ups, host string
		typ       bridge.EventType
	}{
		{"b", "", bridge.EventOnBatt}, {"b", "", bridge.EventLowBatt}, {"b", "", bridge.EventLowBatt},
		{"b", "web01", bridge.EventStage}, {"a", "", bridge.EventCommOK},
	} {
		ev := bridge.NewEvent(e.ups, fixtureNow, e.typ, "")
		ev.Host = e.host
		s.accept(bridge.Message{Kind: bridge.MessageEvent, Event: &ev})
	}
	return s
}
