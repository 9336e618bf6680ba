package usbhid

import (
	"context"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

func testConfig() Config {
	return Config{SourceCommon: config.SourceCommon{ID: "ups1", Type: "usbhid"}, VendorID: 0x051d, PollInterval: time.Hour}
}

// next waits for the next update of a kind, failing after a deadline.
func next(t *testing.T, ch <-chan bridge.Update, kind bridge.UpdateKind) bridge.Update {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case u := <-ch:
			if u.Kind == kind {
				return u
			}
		case <-deadline:
			t.Fatalf("no update of kind %d within 5s", kind)
		}
	}
}

func startSource(t *testing.T, cfg Config, d *fakeDevice) (*Source, chan bridge.Update) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := New(cfg, fakeOpener{d}, nil)
	ch := make(chan bridge.Update, 16)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx, ch) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, ch
}

func TestSourceReadingInterruptAndReplug(t *testing.T) {
	d := newFakeBK650(t)
	_, ch := startSource(t, testConfig(), d)

	u := next(t, ch, bridge.Reading)
	for k, want := range map[string]string{
		"ups.status": "OL DISCHRG", "battery.charge": "100", "battery.runtime": "3618",
		"input.voltage": "232.0", "ups.model": "Back-UPS BK650M2-CH", "ups.firmware": "294803G -292804G",
		"ups.serial": "EMULATED0001",
	} {
		if u.Vars[k] != want {
			t.Errorf("%s = %q, want %q", k, u.Vars[k], want)
		}
	}
	if u.UPS != "ups1" || u.Info == nil || !u.Info.HasCommand("beeper.mute") {
		t.Errorf("UPS %q info %+v", u.UPS, u.Info)
	}

	// AC lost, pushed on the interrupt pipe: a reading at once, no poll.
	d.intr <- []byte{0x16, 0x0a, 0x00}
	u = next(t, ch, bridge.Reading)
	if u.Vars["ups.status"] != "OB DISCHRG" {
		t.Errorf("after interrupt status = %q, want OB DISCHRG", u.Vars["ups.status"])
	}

	d.pull()
	if u := next(t, ch, bridge.CommLost); u.Err == nil {
		t.Error("CommLost without an error")
	}
	d.setFeature([]byte{0x16, 0x0c, 0x00})
	d.setFeature([]byte{0x13, 0x01})
	d.setFeature([]byte{0x7a, 0x0c})
	d.plug()
	u = next(t, ch, bridge.Reading)
	if u.Vars["ups.status"] != "OL" {
		t.Errorf("after replug status = %q, want OL", u.Vars["ups.status"])
	}
}

func TestSourceCommLostAtStart(t *testing.T) {
	d := newFakeBK650(t)
	d.pull()
	_, ch := startSource(t, testConfig(), d)
	next(t, ch, bridge.CommLost)
	d.plug()
	next(t, ch, bridge.Reading)
}

func TestSourceInstCmd(t *testing.T) {
	d := newFakeBK650(t)
	s, ch := startSource(t, testConfig(), d)
	next(t, ch, bridge.Reading)
	tests := []struct {
		cmd, arg string
		want     []byte
		err      error
	}{
		{"beeper.mute", "", []byte{0x18, 0x03}, nil},
		{"test.battery.start.quick", "", []byte{0x21, 0x01}, nil},
		{"load.off.delay", "30", []byte{0x15, 30, 0}, nil},
		{"shutdown.stop", "", []byte{0x15, 0xff, 0xff}, nil},
		{"no.such.command", "", nil, bridge.ErrCommandUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			res, err := s.InstCmd(context.Background(), "ups1", tt.cmd, tt.arg)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || res.Status != "SUCCESS" {
				t.Fatalf("res %+v err %v", res, err)
			}
			sets := d.setReports()
			if got := sets[len(sets)-1]; !slices.Equal(got, tt.want) {
				t.Errorf("SET_REPORT % x, want % x", got, tt.want)
			}
		})
	}
	if _, err := s.InstCmd(context.Background(), "other", "beeper.mute", ""); !errors.Is(err, bridge.ErrUnknownUPS) {
		t.Errorf("other UPS: err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	var h HexID
	if err := h.UnmarshalText([]byte("0x051D")); err != nil || h != 0x051d {
		t.Errorf("HexID = %v, %v", h, err)
	}
	if err := h.UnmarshalText([]byte("zz")); err == nil {
		t.Error("HexID accepted zz")
	}
	tests := []struct {
		name string
		mod  func(*Config)
		key  string
	}{
		{"ok", func(*Config) {}, ""},
		{"poll", func(c *Config) { c.PollInterval = 0 }, "poll_interval"},
		{"bus", func(c *Config) { c.Bus = 300 }, "bus"},
		{"port", func(c *Config) { c.Port = "1.x" }, "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mod(&c)
			errs := c.Validate()
			if tt.key == "" && len(errs) != 0 || tt.key != "" && (len(errs) != 1 || errs[0].Key != tt.key) {
				t.Errorf("errors %v, want key %q", errs, tt.key)
			}
		})
	}
}

// recSink records when each event leaves the bridge.
type recSink struct{ events chan time.Time }

func (r *recSink) Name() string { return "rec" }

func (r *recSink) Run(ctx context.Context, q *bridge.Queue) error {
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return nil
		}
		if m.Kind == bridge.MessageEvent && (m.Event.Type == bridge.EventOnBatt || m.Event.Type == bridge.EventOnline) {
			r.events <- time.Now()
		}
	}
}

// BenchmarkInterruptToEvent measures from an interrupt report arriving at
// the transport to the ONBATT/ONLINE event leaving the bridge for a sink.
func BenchmarkInterruptToEvent(b *testing.B) {
	d := newFakeBK650(b)
	src := New(testConfig(), fakeOpener{d}, nil)
	br := bridge.New(bridge.Options{})
	br.AddSource(src)
	sink := &recSink{events: make(chan time.Time, 16)}
	br.AddSink(sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = br.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Wait for the first reading to be applied (no event on OL start).
	for deadline := time.Now().Add(5 * time.Second); len(br.Snapshot()) == 0; {
		if time.Now().After(deadline) {
			b.Fatal("no state within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	reports := [][]byte{{0x16, 0x0a, 0x00}, {0x16, 0x0e, 0x00}} // AC lost, AC back
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		d.intr <- reports[i%2]
		select {
		case t1 := <-sink.events:
			lat = append(lat, t1.Sub(t0))
		case <-time.After(5 * time.Second):
			b.Fatalf("no event for report %d", i)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "median-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
