package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upsbridge/upsbridge/internal/agent/statefile"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// TestUnprotectedIsLoud: a supply that never appears (a typo) and a supply
// that falls silent make the agent report protected:false with the reason,
// in its state and its stats (the /readyz problem), log an error every
// minute and publish a WARN event; live news makes it protected again.
func TestUnprotectedIsLoud(t *testing.T) {
	const unprotected = "ERROR host unprotected: the agent cannot tell when to power off"
	warns := func(r *run, word string) int {
		r.pub.mu.Lock()
		defer r.pub.mu.Unlock()
		n := 0
		for _, e := range r.pub.events {
			if e.Type == mqttwire.AgentEventWarn && strings.Contains(e.Message, word) {
				n++
			}
		}
		return n
	}
	script{
		steps: []step{
			{at: 30 * time.Second, check: func(t *testing.T, r *run) {
				st := r.pub.last()
				if st.Protected || st.Reason != "ups ups1: no live state since start" {
					t.Errorf("state at 30 s: protected %v reason %q", st.Protected, st.Reason)
				}
				stats := r.agent.Stats()
				if stats["protected"] != false || stats["problem"] != "agent host1 unprotected: ups ups1: no live state since start" {
					t.Errorf("stats at 30 s: %v", stats)
				}
				if n := warns(r, "unprotected"); n != 0 || r.logs.count(unprotected) != 0 {
					t.Errorf("%d WARN events, %d error logs before max_state_age: a restart must not alarm", n, r.logs.count(unprotected))
				}
			}},
			{at: 5*time.Minute + 30*time.Second, check: func(t *testing.T, r *run) {
				// Logged from max_state_age (90 s) on, every minute: at
				// 1m30s, 2m30s, 3m30s, 4m30s and 5m30s.
				if n := r.logs.count(unprotected); n != 5 {
					t.Errorf("unprotected logged %d times in 5m30s, want 5 (once a minute after max_state_age)", n)
				}
				if n := warns(r, "is unprotected"); n != 1 {
					t.Errorf("%d WARN events, want 1 (after max_state_age)", n)
				}
			}},
			at(6*time.Minute, ol("ups1")),
			{at: 6*time.Minute + time.Second, check: func(t *testing.T, r *run) {
				if st := r.pub.last(); !st.Protected || st.Reason != "" {
					t.Errorf("after a live state: protected %v reason %q", st.Protected, st.Reason)
				}
				if _, ok := r.agent.Stats()["problem"]; ok {
					t.Errorf("protected agent reports a problem: %v", r.agent.Stats())
				}
				if n := warns(r, "protected again"); n != 1 {
					t.Errorf("%d 'protected again' events, want 1", n)
				}
			}},
			// On mains the bridge publishes every state_interval; silence
			// past max_state_age (90 s) is unprotected again.
			{at: 7*time.Minute + 31*time.Second, check: func(t *testing.T, r *run) {
				st := r.pub.last()
				if st.Protected || st.Reason != "ups ups1: no live state for more than max_state_age 1m30s" {
					t.Errorf("silent for 91 s: protected %v reason %q", st.Protected, st.Reason)
				}
				if st.Status != mqttwire.AgentIdle {
					t.Errorf("silence on mains changed the status to %q", st.Status)
				}
			}},
		},
		until: 8 * time.Minute,
	}.run(t)
}

// TestHeartbeat: idle, the state is re-published every Heartbeat; not
// idle, at least every mqttwire.AgentHeartbeatActive.
func TestHeartbeat(t *testing.T) {
	count := func(r *run) int { r.pub.mu.Lock(); defer r.pub.mu.Unlock(); return len(r.pub.states) }
	var idle0, ob0 int
	script{
		steps: cat(
			[]step{at(0, ol("ups1")), {at: time.Second, check: func(t *testing.T, r *run) { idle0 = count(r) }},
				{at: 61 * time.Second, check: func(t *testing.T, r *run) {
					if n := count(r) - idle0; n != 2 {
						t.Errorf("idle: %d states in 60 s, want 2 (every 30 s)", n)
					}
				}},
				at(62*time.Second, ob("ups1", "charge=90")),
				{at: 63 * time.Second, check: func(t *testing.T, r *run) { ob0 = count(r) }},
				{at: 93 * time.Second, check: func(t *testing.T, r *run) {
					if n := count(r) - ob0; n < 6 {
						t.Errorf("on battery: %d states in 30 s, want at least 6 (every 5 s)", n)
					}
				}},
			}),
		until: 95 * time.Second,
		// One OB state, then silence: dead time from it.
		want: []string{"run:sync-disks@1m17s", "POWEROFF(logind)@1m22s"},
	}.run(t)
}

// TestStateFileAtStart: a corrupt state_file does not stop the agent (it
// starts without progress and rewrites the file); orders the intake
// accepted are persisted and offered back as Known after a restart.
func TestStateFileAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.json")
		if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &logCapture{}
		orders := map[string]mqttwire.Order{"ups1": {Epoch: 7, Seq: 9}}
		opts := Options{ID: "host1", Policy: policyCfg(), StateFile: path, BootID: "b", Exec: &recorder{},
			Orders: func() map[string]mqttwire.Order { return orders }, Clock: newTestClock(), Logger: slogOf(logs)}
		a, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		if logs.count("ERROR state_file unreadable; starting without progress") != 1 {
			t.Errorf("corrupt state_file not logged: %v", logs.msgs)
		}
		var f statefile.File
		data, _ := os.ReadFile(path)
		if err := json.Unmarshal(data, &f); err != nil || f.Agent != "host1" || f.Mode != statefile.ModeReal {
			t.Fatalf("state_file not rewritten: %s (%v)", data, err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = a.Run(ctx, newMemSource()); close(done) }()
		time.Sleep(2 * time.Minute)
		cancel()
		<-done
		b, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Known()["ups1"]; got != orders["ups1"] {
			t.Errorf("Known after a restart: %v, want %v", got, orders["ups1"])
		}
	})
}
