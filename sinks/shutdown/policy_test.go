package shutdown

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	srcmqtt "github.com/upsbridge/upsbridge/sources/mqtt"
)

// recorder is a fake executor: it records what ran and when (offset from
// the bubble's start).
type recorder struct {
	mu    sync.Mutex
	start time.Time
	log   []string
	fail  map[string]bool
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("%s@%s", s, time.Since(r.start).Round(time.Second)))
}

func (r *recorder) Run(_ context.Context, what string, argv []string) error {
	r.add("run:" + strings.Join(argv, " "))
	if r.fail[argv[0]] {
		return fmt.Errorf("%s failed", argv[0])
	}
	return nil
}

func (r *recorder) Poweroff(context.Context) error { r.add("POWEROFF"); return nil }

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// step is one scripted input: at offset `at`, news (or nothing: just time).
type step struct {
	at   time.Duration
	news []srcmqtt.News
	// kill restarts the agent here (same state_file).
	restart bool
}

func ob(ups string, charge float64, flags ...string) srcmqtt.News {
	r := srcmqtt.Reading{Status: "OB DISCHRG", OnBattery: true, Charge: charge, HasCharge: charge >= 0}
	for _, f := range flags {
		r.Status += " " + f
		switch f {
		case "LB":
			r.LowBattery = true
		case "FSD":
			r.FSD = true
		case "OFF":
			r.Off = true
		case "CAL":
			r.Cal = true
		}
	}
	return srcmqtt.News{Kind: srcmqtt.KindState, UPS: ups, Reading: r}
}

func ol(ups string, flags ...string) srcmqtt.News {
	n := ob(ups, 100, flags...)
	n.Reading.OnBattery = false
	n.Reading.Status = strings.Replace(n.Reading.Status, "OB DISCHRG", "OL", 1)
	return n
}

func withAge(n srcmqtt.News, age time.Duration) srcmqtt.News {
	n.UPS = n.UPS + "|" + age.String()
	return n
}

func conn(up bool) srcmqtt.News { return srcmqtt.News{Kind: srcmqtt.KindConnection, Online: up} }

func avail(ups string, up bool) srcmqtt.News {
	return srcmqtt.News{Kind: srcmqtt.KindUPSAvailability, UPS: ups, Online: up}
}

var stdStages = []Stage{
	{Name: "shed", OnBatteryFor: 2 * time.Minute, Run: []string{"stop-plex"}, Undo: []string{"start-plex"}},
	{Name: "shed2", OnBatteryFor: 5 * time.Minute, ChargeBelow: 50, Run: []string{"stop-vm"}, Undo: []string{"start-vm"}},
	{Name: "poweroff", OnBatteryFor: 15 * time.Minute, ChargeBelow: 30, RuntimeBelow: 5 * time.Minute, Run: []string{"sync-disks"}, Final: true},
}

func policyCfg(supplies ...SupplySpec) PolicyConfig {
	if len(supplies) == 0 {
		supplies = []SupplySpec{{UPS: "ups1", Power: 1}}
	}
	return PolicyConfig{Supplies: supplies, MinSupplies: 1, DeadTime: 15 * time.Second, MaxStateAge: 90 * time.Second, Stages: stdStages}
}

// runScript runs an agent in a synctest bubble through the steps and
// returns what the executor saw. A state's TS is its At (fresh) unless the
// UPS field carries "|age".
func runScript(t *testing.T, cfg PolicyConfig, steps []step, until time.Duration) []string {
	t.Helper()
	var out []string
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{start: time.Now(), fail: map[string]bool{"failing": true}}
		stateFile := filepath.Join(t.TempDir(), "agent.json")
		start := func() (context.CancelFunc, chan srcmqtt.News, chan struct{}) {
			a, err := NewAgent(Options{ID: "host1", TopicPrefix: "ub", Policy: cfg, FinalDelay: 5 * time.Second, StateFile: stateFile, BootID: "boot1", Exec: rec})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			ch := make(chan srcmqtt.News, 16)
			done := make(chan struct{})
			go func() { _ = a.Run(ctx, ch); close(done) }()
			return cancel, ch, done
		}
		cancel, ch, done := start()
		t0 := time.Now()
		for _, s := range steps {
			if d := time.Until(t0.Add(s.at)); d > 0 {
				time.Sleep(d)
			}
			if s.restart {
				cancel()
				<-done
				cancel, ch, done = start()
			}
			for _, n := range s.news {
				n.At = time.Now()
				age := time.Duration(0)
				if ups, a, ok := strings.Cut(n.UPS, "|"); ok {
					n.UPS = ups
					age, _ = time.ParseDuration(a)
				}
				if n.Kind == srcmqtt.KindState {
					n.Reading.TS = n.At.Add(-age)
				}
				ch <- n
			}
			synctest.Wait()
		}
		if d := time.Until(t0.Add(until)); d > 0 {
			time.Sleep(d)
		}
		synctest.Wait()
		cancel()
		<-done
		out = rec.got()
	})
	return out
}

// every returns steps sending n every interval from `from` to `to`.
func every(from, to, interval time.Duration, n func(at time.Duration) srcmqtt.News) []step {
	var s []step
	for at := from; at < to; at += interval {
		s = append(s, step{at: at, news: []srcmqtt.News{n(at)}})
	}
	return s
}

func cat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestPolicy(t *testing.T) {
	onBatt := func(charge float64) func(time.Duration) srcmqtt.News {
		return func(time.Duration) srcmqtt.News { return ob("ups1", charge) }
	}
	mains := func(time.Duration) srcmqtt.News { return ol("ups1") }
	tests := []struct {
		name  string
		cfg   PolicyConfig
		steps []step
		until time.Duration
		want  []string
	}{
		{
			name:  "steady mains: nothing",
			steps: every(0, 5*time.Minute, 30*time.Second, mains),
			until: 5 * time.Minute,
			want:  nil,
		},
		{
			name:  "stages fire in order at their times, final after final_delay",
			steps: every(0, 20*time.Minute, 5*time.Second, onBatt(90)),
			until: 20 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:stop-vm@5m0s", "run:sync-disks@15m0s", "POWEROFF@15m5s"},
		},
		{
			name: "mains returns: pending cancelled, undo in reverse",
			steps: cat(every(0, 6*time.Minute, 5*time.Second, onBatt(90)),
				every(6*time.Minute, 30*time.Minute, 5*time.Second, mains)),
			until: 30 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:stop-vm@5m0s", "run:start-vm@6m0s", "run:start-plex@6m0s"},
		},
		{
			name: "each stage once per outage, again in the next outage",
			steps: cat(every(0, 3*time.Minute, 5*time.Second, onBatt(90)),
				every(3*time.Minute, 4*time.Minute, 5*time.Second, mains),
				every(4*time.Minute, 6*time.Minute+30*time.Second, 5*time.Second, onBatt(90)),
				every(6*time.Minute+30*time.Second, 8*time.Minute, 5*time.Second, mains)),
			until: 8 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:start-plex@3m0s", "run:stop-plex@6m0s", "run:start-plex@6m30s"},
		},
		{
			name:  "charge condition fires earlier stages first, in order",
			steps: cat(every(0, time.Minute, 5*time.Second, onBatt(90)), every(time.Minute, 3*time.Minute, 5*time.Second, onBatt(40))),
			until: 90 * time.Second,
			want:  []string{"run:stop-plex@1m0s", "run:stop-vm@1m0s"},
		},
		{
			name:  "OB+LB is critical: straight to the final stage",
			steps: cat(every(0, 30*time.Second, 5*time.Second, onBatt(90)), []step{{at: 30 * time.Second, news: []srcmqtt.News{ob("ups1", 90, "LB")}}}),
			until: time.Minute,
			want:  []string{"run:sync-disks@30s", "POWEROFF@35s"},
		},
		{
			name:  "FSD is critical even on mains",
			steps: []step{{at: time.Second, news: []srcmqtt.News{ol("ups1", "FSD")}}},
			until: time.Minute,
			want:  []string{"run:sync-disks@1s", "POWEROFF@6s"},
		},
		{
			name:  "OB+LB while calibrating is not critical",
			steps: every(0, 60*time.Second, 5*time.Second, func(time.Duration) srcmqtt.News { return ob("ups1", 90, "LB", "CAL") }),
			until: 60 * time.Second,
			want:  nil,
		},
		{
			name:  "OFF for more than 30s is critical",
			steps: every(0, 60*time.Second, 5*time.Second, func(time.Duration) srcmqtt.News { return ol("ups1", "OFF") }),
			until: 60 * time.Second,
			want:  []string{"run:sync-disks@30s", "POWEROFF@35s"},
		},
		{
			name: "final stage is not cancelled by mains returning",
			steps: cat([]step{{at: 0, news: []srcmqtt.News{ob("ups1", 90, "LB")}}},
				every(2*time.Second, time.Minute, 2*time.Second, mains)),
			until: time.Minute,
			want:  []string{"run:sync-disks@0s", "POWEROFF@5s"},
		},
		{
			name:  "silence while on battery: critical after dead_time, counted from the last state",
			steps: every(0, 40*time.Second, 5*time.Second, onBatt(90)),
			until: 2 * time.Minute,
			want:  []string{"run:sync-disks@50s", "POWEROFF@55s"},
		},
		{
			name: "broker connection lost on battery for less than dead_time: nothing",
			steps: cat(every(0, 30*time.Second, 5*time.Second, onBatt(90)),
				[]step{{at: 27 * time.Second, news: []srcmqtt.News{conn(false)}}, {at: 35 * time.Second, news: []srcmqtt.News{conn(true)}}},
				every(36*time.Second, 100*time.Second, 5*time.Second, onBatt(90))),
			until: 100 * time.Second,
			want:  nil,
		},
		{
			name:  "silence on mains: warn only, never shut down",
			steps: []step{{at: 0, news: []srcmqtt.News{ol("ups1")}}},
			until: 30 * time.Minute,
			want:  nil,
		},
		{
			name:  "no state since start: hold",
			until: 30 * time.Minute,
			want:  nil,
		},
		{
			name:  "retained stale FSD at start does nothing",
			steps: []step{{at: 0, news: []srcmqtt.News{withAge(ol("ups1", "FSD"), 10*time.Minute), withAge(ob("ups1", 5, "LB"), 91*time.Second)}}},
			until: 10 * time.Minute,
			want:  nil,
		},
		{
			name: "UPS availability offline on battery: dead time after the loss was seen",
			steps: cat(every(0, 20*time.Second, 5*time.Second, onBatt(90)),
				[]step{{at: 20 * time.Second, news: []srcmqtt.News{avail("ups1", false)}}}),
			until: time.Minute,
			want:  []string{"run:sync-disks@35s", "POWEROFF@40s"},
		},
		{
			name: "broker connection lost on battery: dead time after the loss was seen",
			steps: cat(every(0, 20*time.Second, 5*time.Second, onBatt(90)),
				[]step{{at: 18 * time.Second, news: []srcmqtt.News{conn(false)}}}),
			until: time.Minute,
			want:  []string{"run:sync-disks@33s", "POWEROFF@38s"},
		},
		{
			name: "two supplies, min_supplies 1: one on battery is no outage, both critical is",
			cfg:  func() PolicyConfig { c := policyCfg(SupplySpec{"ups1", 1}, SupplySpec{"ups2", 1}); return c }(),
			steps: cat(every(0, 5*time.Minute, 5*time.Second, func(time.Duration) srcmqtt.News { return ob("ups1", 80) }),
				every(0, 5*time.Minute, 5*time.Second, func(time.Duration) srcmqtt.News { return ol("ups2") }),
				[]step{{at: 5 * time.Minute, news: []srcmqtt.News{ob("ups1", 10, "LB")}}},
				every(5*time.Minute, 6*time.Minute, 5*time.Second, func(time.Duration) srcmqtt.News { return ol("ups2") })),
			until: 6 * time.Minute,
			want:  nil,
		},
		{
			name: "min_supplies 2: one critical supply shuts down",
			cfg: func() PolicyConfig {
				c := policyCfg(SupplySpec{"ups1", 1}, SupplySpec{"ups2", 1})
				c.MinSupplies = 2
				return c
			}(),
			steps: []step{{at: 0, news: []srcmqtt.News{ol("ups2"), ob("ups1", 10, "LB")}}},
			until: time.Minute,
			want:  []string{"run:sync-disks@0s", "POWEROFF@5s"},
		},
		{
			name: "power value 0 monitors only",
			cfg: func() PolicyConfig {
				c := policyCfg(SupplySpec{"ups1", 1}, SupplySpec{"mon", 0})
				return c
			}(),
			steps: []step{{at: 0, news: []srcmqtt.News{ol("ups1"), ob("mon", 5, "LB", "FSD")}}},
			until: time.Minute,
			want:  nil,
		},
		{
			name: "restart mid-outage resumes without re-running a stage, still undoes",
			steps: cat(every(0, 3*time.Minute, 5*time.Second, onBatt(90)),
				[]step{{at: 3 * time.Minute, restart: true}},
				every(3*time.Minute, 6*time.Minute, 5*time.Second, onBatt(90)),
				every(6*time.Minute, 7*time.Minute, 5*time.Second, mains)),
			until: 7 * time.Minute,
			want:  []string{"run:stop-plex@2m0s", "run:stop-vm@5m0s", "run:start-vm@6m0s", "run:start-plex@6m0s"},
		},
		{
			name: "restart mid-outage with no news yet: hold, no undo on silence",
			steps: cat(every(0, 3*time.Minute, 5*time.Second, onBatt(90)),
				[]step{{at: 3 * time.Minute, restart: true}}),
			until: 30 * time.Minute,
			want:  []string{"run:stop-plex@2m0s"},
		},
		{
			name: "a failing stage command does not block the final stage",
			cfg: func() PolicyConfig {
				c := policyCfg()
				c.Stages = []Stage{{Name: "bad", OnBatteryFor: time.Minute, Run: []string{"failing"}}, {Name: "off", OnBatteryFor: 2 * time.Minute, Final: true}}
				return c
			}(),
			steps: every(0, 3*time.Minute, 5*time.Second, onBatt(90)),
			until: 3 * time.Minute,
			want:  []string{"run:failing@1m0s", "POWEROFF@2m5s"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.Supplies == nil {
				cfg = policyCfg()
			}
			got := runScript(t, cfg, tc.steps, tc.until)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("executor saw\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := NewPolicy(policyCfg(), t0, Progress{})
	if s := p.Snapshot(t0).Status; s != StatusIdle {
		t.Fatalf("status %q", s)
	}
	n := ob("ups1", 90)
	n.At, n.Reading.TS = t0, t0
	p.Observe(n)
	p.Evaluate(t0)
	sn := p.Snapshot(t0.Add(10 * time.Second))
	if sn.Status != StatusOnBattery || sn.NextStage != "shed" || sn.NextStageIn == nil || *sn.NextStageIn != 110*time.Second {
		t.Fatalf("snapshot %+v", sn)
	}
	if len(sn.Supplies) != 1 || !sn.Supplies[0].OnBattery || sn.Supplies[0].Critical {
		t.Fatalf("supplies %+v", sn.Supplies)
	}
}
