package mqtt

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
)

func newWatchSink(t testing.TB) *Sink {
	// The spool is opened only by Run: no directory is needed here.
	s, err := New(Options{BridgeID: "b1", TopicPrefix: "ub", SpoolDir: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func statePayload(t testing.TB, bridgeID string, epoch uint64, nvars int) []byte {
	vars := bridge.Vars{"ups.status": "OL"}
	for i := range nvars {
		vars[fmt.Sprintf("outlet.%d.voltage", i)] = "230.0"
	}
	st := &bridge.State{UPS: "u1", Time: time.Now(), Seq: 1, Status: bridge.ParseStatus("OL"), Vars: vars, Comm: true}
	data, err := json.Marshal(mqttwire.NewStatePayload(st, bridgeID, epoch, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestWatchStates: the epoch window takes the largest epoch of the
// bridge's own states; afterwards its own echoes are not duplicates, and
// another bridge's states on its UPS ids are, retained or live, whether
// they came before the UPS was known or after.
func TestWatchStates(t *testing.T) {
	s := newWatchSink(t)
	s.watchState("u1", statePayload(t, "b1", 100, 0), true)
	s.watchState("u2", statePayload(t, "b1", 250, 0), true)
	s.watchState("u3", statePayload(t, "b9", 999, 0), true) // another bridge's UPS
	s.watchState("u1", []byte("garbage"), true)
	s.watchState("u1", []byte(strings.Repeat("x", mqttwire.MaxPayload+1)), true)
	if s.watch.retained != 250 || !s.watch.seen["u1"] || !s.watch.seen["u2"] || s.watch.seen["u3"] {
		t.Fatalf("window: retained %d, seen %v", s.watch.retained, s.watch.seen)
	}
	s.watch.setEpoch(ChooseEpoch(0, s.watch.retained, time.Unix(0, 0)), "b1")
	if s.watch.epoch != 251 {
		t.Fatalf("epoch %d, want 251", s.watch.epoch)
	}
	s.watch.addOwn("u1", s)
	s.watchState("u1", statePayload(t, "b1", 251, 0), false) // own echo
	s.watchState("u1", statePayload(t, "b1", 100, 0), true)  // own earlier run, retained
	if n := s.stats.duplicates.Get(); n != 0 {
		t.Fatalf("own states counted as duplicates: %d", n)
	}
	s.watchState("u1", statePayload(t, "b2", 5, 0), false)   // another bridge, live
	s.watchState("u1", statePayload(t, "b1", 300, 0), false) // a twin with this bridge's id
	s.watchState("u1", statePayload(t, "b1", 100, 0), false) // an older twin, live
	if n := s.stats.duplicates.Get(); n != 3 {
		t.Fatalf("duplicates %d, want 3", n)
	}
	s.watch.addOwn("u3", s) // seen from b9 before it was known as own
	if n := s.stats.duplicates.Get(); n != 4 {
		t.Fatalf("duplicates %d after a foreign UPS became own, want 4", n)
	}
}

// BenchmarkWatchOwnEcho: the cost of reading back one of the bridge's own
// states (every publication comes back from the broker), for a small UPS
// and for an ePDU-sized state.
func BenchmarkWatchOwnEcho(b *testing.B) {
	for _, nvars := range []int{30, 300} {
		b.Run(fmt.Sprintf("vars=%d", nvars), func(b *testing.B) {
			s := newWatchSink(b)
			s.watch.setEpoch(7, "b1")
			s.watch.addOwn("u1", s)
			data := statePayload(b, "b1", 7, nvars)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				s.watchState("u1", data, false)
			}
		})
	}
}
