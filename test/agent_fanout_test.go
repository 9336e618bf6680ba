package test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/mqttconn"

	"github.com/upsbridge/upsbridge/agent"
	"github.com/upsbridge/upsbridge/internal/agent/intake"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
)

// nopExec records nothing and runs nothing: the fan-out measures decisions.
type nopExec struct{}

func (nopExec) Run(context.Context, string, []string) error { return nil }
func (nopExec) PoweroffMethods() []string                   { return []string{"none"} }
func (nopExec) Poweroff(context.Context, string) error      { return nil }

// fanout starts n in-process agents (each with its own MQTT connection to
// a real mosquitto), publishes one critical state and returns each agent's
// delay from publish to its decision to power off.
func fanout(t testing.TB, r *agentRig, n int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	decided := make(chan time.Time, n)
	ready := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("a%03d", i)
		// OnUp runs once the writing connection is up and once the
		// reading one has subscribed: an agent is ready after both (a
		// state published before its subscription would reach it as
		// retained history, which never powers a host off).
		var ups atomic.Int32
		w, err := intake.New(intake.Options{
			Conn: mqttconn.ConnOptions{URL: r.mq.URL(), ClientID: "fanout-" + id}, TopicPrefix: "ub", Supplies: []intake.Supply{{UPS: "ups1"}},
			MaxStateAge: time.Minute, OnUp: func(context.Context) {
				if ups.Add(1) == 2 {
					ready <- struct{}{}
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ag, err := agent.New(agent.Options{
			ID: id, TopicPrefix: "ub", Exec: nopExec{},
			Policy: policy.Config{Supplies: []policy.Supply{{UPS: "ups1", Power: 1}}, MinSupplies: 1, DeadTime: time.Minute, MaxStateAge: time.Minute, OffDuration: 30 * time.Second},
			OnDecision: func(a policy.Action, _ policy.Now) {
				if a.Kind == policy.ActPoweroff {
					decided <- time.Now()
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); _ = w.Run(ctx) }()
		go func() { defer wg.Done(); _ = ag.Run(ctx, w) }()
	}
	for i := 0; i < n; i++ {
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			t.Fatalf("only %d of %d agents subscribed", i, n)
		}
	}
	published := time.Now()
	r.state("OB DISCHRG LB", published, 5)
	delays := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		select {
		case at := <-decided:
			delays = append(delays, at.Sub(published))
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d agents decided", i, n)
		}
	}
	slices.Sort(delays)
	return delays
}

// TestAgentFanout200 measures one state change reaching 200 agents through
// a real mosquitto: the delay from publish to every agent's decision.
func TestAgentFanout200(t *testing.T) {
	if testing.Short() {
		t.Skip("fan-out measurement")
	}
	r := newAgentRig(t)
	d := fanout(t, r, 200)
	t.Logf("fan-out to %d agents: median %s, p90 %s, worst %s", len(d), d[len(d)/2], d[len(d)*9/10], d[len(d)-1])
	if d[len(d)-1] > 5*time.Second {
		t.Errorf("worst delay %s", d[len(d)-1])
	}
}

// BenchmarkAgentFanout200 repeats the fan-out with a fresh broker each
// time and reports the median and worst delay as metrics.
func BenchmarkAgentFanout200(b *testing.B) {
	var med, worst time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := newAgentRig(b)
		b.StartTimer()
		d := fanout(b, r, 200)
		med += d[len(d)/2]
		worst = max(worst, d[len(d)-1])
	}
	b.ReportMetric(float64(med.Microseconds())/float64(b.N)/1000, "median_ms")
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst_ms")
}
