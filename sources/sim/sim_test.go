package sim

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

// observe runs a source of scenario at scale with 1 s polls for real (fake,
// in the bubble) time d and returns what it sent: the status of each
// reading, or "COMMLOST".
func observe(t *testing.T, scenario string, scale float64, d time.Duration) []bridge.Update {
	t.Helper()
	var got []bridge.Update
	synctest.Test(t, func(t *testing.T) {
		src, err := (&Config{Scenario: scenario, TimeScale: scale, PollInterval: time.Second}).NewSource(bridge.Env{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		out := make(chan bridge.Update)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = src.Run(ctx, out)
		}()
		for {
			select {
			case u := <-out:
				got = append(got, u)
			case <-done:
				return
			}
		}
	})
	return got
}

func label(u bridge.Update) string {
	if u.Kind == bridge.CommLost {
		return "COMMLOST"
	}
	return u.Vars[bridge.VarStatus]
}

// phasesOf returns the distinct consecutive labels of a sequence.
func phasesOf(labels []string) []string {
	var out []string
	for _, l := range labels {
		if len(out) == 0 || out[len(out)-1] != l {
			out = append(out, l)
		}
	}
	return out
}

// reference samples a scenario every simulated second over length.
func reference(scenario string, length time.Duration) []string {
	sc := scenarios[scenario]
	var labels []string
	for at := time.Duration(0); at <= length; at += time.Second {
		p := sc.at(at)
		if p.commLost {
			labels = append(labels, "COMMLOST")
		} else {
			labels = append(labels, p.vars()[bridge.VarStatus])
		}
	}
	return phasesOf(labels)
}

// TestEveryPhaseAtAnyScale: at any time_scale, a source with 1 s polls
// sends a reading in every phase of its scenario, in order, as a fine
// sampling of the scenario sees them.
func TestEveryPhaseAtAnyScale(t *testing.T) {
	for _, scenario := range []string{"outage", "comm_loss", "flapping"} {
		length := scenarios[scenario].length
		if length == 0 {
			length = 2 * time.Minute // four blips
		}
		want := reference(scenario, length)
		for _, scale := range []float64{1, 60, 120, 1000, 1e6} {
			t.Run(fmt.Sprintf("%s/x%g", scenario, scale), func(t *testing.T) {
				// Real time for one pass of the scenario, and a poll more.
				d := time.Duration(float64(length)/scale) + time.Second
				var labels []string
				for _, u := range observe(t, scenario, scale, d) {
					labels = append(labels, label(u))
				}
				got := phasesOf(labels)
				if len(got) > len(want) {
					got = got[:len(want)] // the next pass of an endless scenario
				}
				if !slices.Equal(got, want) {
					t.Errorf("phases seen %q, want %q", got, want)
				}
			})
		}
	}
}

// TestOutageEventsFast: the outage at time_scale 120 with 1 s polls gives
// the tracker ONBATT, LOWBATT and ONLINE, in that order.
func TestOutageEventsFast(t *testing.T) {
	updates := observe(t, "outage", 120, 21*time.Second)
	tr := bridge.NewTracker("sim", bridge.DefaultRules())
	var evs []bridge.EventType
	for _, u := range updates {
		if u.Kind != bridge.Reading {
			continue
		}
		got, _ := tr.Reading(u.Time, u.Vars, u.Info)
		for _, e := range got {
			evs = append(evs, e.Type)
		}
	}
	var seq []bridge.EventType
	for _, e := range evs {
		switch e {
		case bridge.EventOnBatt, bridge.EventLowBatt, bridge.EventOnline:
			seq = append(seq, e)
		}
	}
	want := []bridge.EventType{bridge.EventOnBatt, bridge.EventLowBatt, bridge.EventOnline}
	if !slices.Equal(seq, want) {
		t.Errorf("events %v, want %v (all: %v)", seq, want, evs)
	}
}

// TestPhaseStartsChangeState: every listed phase start is a real change of
// status or link, so the lists stay true to the scenarios.
func TestPhaseStartsChangeState(t *testing.T) {
	for name, sc := range scenarios {
		for _, b := range sc.phases {
			before, after := sc.at(b-time.Second), sc.at(b)
			lb, la := before.commLost, after.commLost
			sb, sa := "", ""
			if !lb {
				sb = before.vars()[bridge.VarStatus]
			}
			if !la {
				sa = after.vars()[bridge.VarStatus]
			}
			if lb == la && sb == sa {
				t.Errorf("%s: phase start %s changes nothing (%q)", name, b, sa)
			}
		}
	}
}

// TestBoundariesBounded: an endless scenario at a huge scale yields at most
// maxBoundaries readings per poll.
func TestBoundariesBounded(t *testing.T) {
	sc := scenarios["flapping"]
	if n := len(sc.boundaries(0, 1000*time.Hour)); n != maxBoundaries {
		t.Errorf("%d boundaries, want %d", n, maxBoundaries)
	}
	if got := sc.boundaries(20*time.Second, 65*time.Second); !slices.Equal(got, []time.Duration{25 * time.Second, 30 * time.Second, 55 * time.Second, 60 * time.Second}) {
		t.Errorf("boundaries(20s, 65s) = %v", got)
	}
}
