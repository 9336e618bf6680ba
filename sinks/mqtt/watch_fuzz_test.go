package mqtt

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzWatchState feeds anything published on a state topic (anyone can
// publish there) to the state watch, seeded from the contract's golden
// state and this bridge's own encoding: it never panics, its memory stays
// bounded, and the bridge's own states are never duplicates.
func FuzzWatchState(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("..", "..", "mqttwire", "testdata", "state.golden.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden, true)
	f.Add(statePayload(f, "b1", 7, 3), false)
	f.Add(statePayload(f, "b2", 7, 3), false)
	f.Add([]byte(`{"ups":"u1","bridge":"b1","epoch":7,`), false)
	f.Add([]byte(`{"bridge":["x"],"epoch":-1}`), true)
	f.Add([]byte(``), true)
	f.Fuzz(func(t *testing.T, payload []byte, retained bool) {
		s := newWatchSink(t)
		s.watch.setEpoch(7, "b1")
		s.watch.addOwn("u1", s)
		s.watchState("u1", payload, retained)
		s.watchState("u2", payload, retained)
		if len(s.watch.foreign) > maxForeign || len(s.watch.warned) > maxForeign {
			t.Fatal("unbounded maps")
		}
		before := s.stats.duplicates.Get()
		s.watchState("u1", statePayload(t, "b1", 7, 3), false)
		if s.stats.duplicates.Get() != before {
			t.Fatal("own state counted as a duplicate")
		}
	})
}
