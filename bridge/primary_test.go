package bridge

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

// primarySource is a scripted source that says whether the bridge is the
// primary of its UPSes.
type primarySource struct {
	scripted
	primary bool
	fsd     []string // SetFSD calls at the source
}

func (s *primarySource) IsPrimary(string) bool { return s.primary }

func (s *primarySource) SetFSD(_ context.Context, ups string) error {
	s.fsd = append(s.fsd, ups)
	return nil
}

func countEvents(evs []Event, typ EventType) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestFSDBelongsToThePrimary: as a secondary the bridge never latches FSD
// (no FSD in its states, no FSD event, nothing sent to the server) even on
// OB LB, and relays the FSD its server reports; as the primary SetFSD
// latches FSD, tells the server and emits one FSD event.
func TestFSDBelongsToThePrimary(t *testing.T) {
	for _, tc := range []struct {
		name    string
		primary bool
	}{{"secondary", false}, {"primary", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				src := &primarySource{scripted: scripted{id: "s", in: make(chan Update)}, primary: tc.primary}
				rec := &recorder{}
				b := New(Options{})
				b.AddSource(src)
				b.AddSink(rec)
				done := make(chan struct{})
				go func() { b.Run(ctx); close(done) }()
				send := func(status string) {
					src.in <- Update{Source: "s", UPS: "u", Kind: Reading, Vars: Vars{"ups.status": status}}
					synctest.Wait()
				}
				send("OB LB")
				if !b.Snapshot()[0].Critical {
					t.Fatal("OB LB is not critical")
				}
				if got := b.IsPrimary("u"); got != tc.primary {
					t.Fatalf("IsPrimary = %v, want %v", got, tc.primary)
				}
				err := b.SetFSD(ctx, "u")
				synctest.Wait()
				states, events := rec.snapshot()
				last := states[len(states)-1]
				if !tc.primary {
					if !errors.Is(err, ErrNotPrimary) {
						t.Fatalf("SetFSD as secondary: %v, want ErrNotPrimary", err)
					}
					if b.FSDLatched("u") || last.Status.Has(FSD) || countEvents(events, EventFSD) != 0 || len(src.fsd) != 0 {
						t.Fatalf("secondary invented FSD: latched %v, status %q, events %+v, at source %v", b.FSDLatched("u"), last.Status.Raw, events, src.fsd)
					}
					// upsd's primary sets FSD: relayed as read.
					send("OB LB FSD")
					states, events = rec.snapshot()
					if last := states[len(states)-1]; !last.Status.Has(FSD) || !last.Critical {
						t.Fatalf("upsd's FSD not relayed: %+v", last.Status)
					}
					if n := countEvents(events, EventFSD); n != 1 {
						t.Fatalf("%d FSD events for upsd's FSD, want 1", n)
					}
				} else {
					if err != nil {
						t.Fatalf("SetFSD as primary: %v", err)
					}
					if !b.FSDLatched("u") || !last.Status.Has(FSD) || countEvents(events, EventFSD) != 1 || len(src.fsd) != 1 {
						t.Fatalf("primary FSD: latched %v, status %q, events %+v, at source %v", b.FSDLatched("u"), last.Status.Raw, events, src.fsd)
					}
					// Mains back: the latch is released.
					send("OL CHRG")
					if b.FSDLatched("u") || b.Snapshot()[0].Status.Has(FSD) {
						t.Fatal("FSD latch kept on mains")
					}
				}
				cancel()
				<-done
			})
		})
	}
}

// TestForceFSDFromANUTPrimary: an authenticated NUT primary (logged in to
// the bridge's own NUT server) latches FSD even where the bridge is a
// secondary of its UPS; the FSD then stays local (never sent upstream,
// where the bridge has no right), and where the bridge is the primary it
// goes upstream too.
func TestForceFSDFromANUTPrimary(t *testing.T) {
	for _, primary := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			src := &primarySource{scripted: scripted{id: "s", in: make(chan Update)}, primary: primary}
			rec := &recorder{}
			b := New(Options{})
			b.AddSource(src)
			b.AddSink(rec)
			done := make(chan struct{})
			go func() { b.Run(ctx); close(done) }()
			src.in <- Update{Source: "s", UPS: "u", Kind: Reading, Vars: Vars{"ups.status": "OB"}}
			synctest.Wait()
			if err := b.ForceFSD(ctx, "u"); err != nil {
				t.Fatalf("ForceFSD (primary %v): %v", primary, err)
			}
			synctest.Wait()
			states, events := rec.snapshot()
			last := states[len(states)-1]
			if !b.FSDLatched("u") || !last.Status.Has(FSD) || !last.Critical || countEvents(events, EventFSD) != 1 {
				t.Fatalf("primary %v: FSD not latched: %q critical %v events %d", primary, last.Status.Raw, last.Critical, countEvents(events, EventFSD))
			}
			if want := map[bool]int{false: 0, true: 1}[primary]; len(src.fsd) != want {
				t.Fatalf("primary %v: %d FSD sent upstream, want %d", primary, len(src.fsd), want)
			}
			cancel()
			<-done
		})
	}
}
