package intake

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/internal/mqttconn"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// recorder runs an intake against a broker and keeps every news it takes.
type recorder struct {
	t  *testing.T
	in *Intake
	mu sync.Mutex
	ns []news.News
}

func startIntake(t *testing.T, brokerURL string, o Options) *recorder {
	t.Helper()
	o.Conn = mqttconn.ConnOptions{URL: brokerURL, ClientID: fmt.Sprintf("agent-%d", time.Now().UnixNano())}
	o.TopicPrefix = "ub"
	in, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{t: t, in: in}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = in.Run(ctx) }()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-in.Notify():
				r.mu.Lock()
				r.ns = in.Take(r.ns)
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	r.waitFor("connected", func(n news.News) bool { return n.Kind == news.KindConnection && n.Online })
	return r
}

func (r *recorder) news() []news.News {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]news.News(nil), r.ns...)
}

func (r *recorder) waitFor(what string, cond func(news.News) bool) news.News {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, n := range r.news() {
			if cond(n) {
				return n
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no news %s within 10 s; news: %+v; counts %+v", what, r.news(), r.in.Counts())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCount waits until the intake has read n messages in all.
func (r *recorder) waitCount(n uint64) Counts {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := r.in.Counts()
		if c.Total() >= n {
			return c
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("intake read %d messages, want %d: %+v", c.Total(), n, c)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func states(ns []news.News) []news.News {
	var out []news.News
	for _, n := range ns {
		if n.Kind == news.KindState {
			out = append(out, n)
		}
	}
	return out
}

func isState(seq uint64) func(news.News) bool {
	return func(n news.News) bool { return n.Kind == news.KindState && n.Reading.Order.Seq == seq }
}

// TestLiveRetainedIsHistory: the state retained on the broker before the
// agent subscribes arrives as history (Live false); a state published
// afterwards, retained like every bridge state, arrives live.
func TestLiveRetainedIsHistory(t *testing.T) {
	mq := harness.StartMosquitto(t)
	pub := harness.NewPublisher(t, mq.URL(), "bridge")
	now := time.Now()
	pub.MustPublish(stateTopic, enc(t, st(seq(1), at(now)), testPriv), true)
	pub.MustPublish("ub/ups/ups1/availability", []byte("online"), true)
	r := startIntake(t, mq.URL(), Options{Supplies: []Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(testPub), MaxStateAge: time.Minute})
	if n := r.waitFor("retained state", isState(1)); n.Live {
		t.Fatalf("the retained state came as live news: %+v", n)
	}
	if n := r.waitFor("retained availability", func(n news.News) bool { return n.Kind == news.KindUPSAvailability }); n.Live || !n.Online {
		t.Fatalf("retained availability: %+v", n)
	}
	// The bridge's availability topic is read once a state names it.
	pub.MustPublish("ub/bridge/b1/availability", []byte("online"), true)
	r.waitFor("bridge availability", func(n news.News) bool { return n.Kind == news.KindBridgeAvailability && n.Bridge == "b1" })
	pub.MustPublish(stateTopic, enc(t, st(seq(2), at(time.Now())), testPriv), true)
	if n := r.waitFor("live state", isState(2)); !n.Live || !n.Reading.Signed {
		t.Fatalf("the live state: %+v", n)
	}
	if o := r.in.Orders()["ups1"]; o.Seq != 2 {
		t.Fatalf("orders %+v", o)
	}
}

// TestLiveForgedChangesNothing: with require_signed, unsigned availability
// and states (as any client of the broker can publish) and states signed
// with another key change nothing but counters.
func TestLiveForgedChangesNothing(t *testing.T) {
	mq := harness.StartMosquitto(t)
	pub := harness.NewPublisher(t, mq.URL(), "bridge")
	evil := harness.NewPublisher(t, mq.URL(), "evil")
	pub.MustPublish(stateTopic, enc(t, st(seq(1), at(time.Now())), testPriv), true)
	r := startIntake(t, mq.URL(), Options{Supplies: []Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true, MaxStateAge: time.Minute})
	r.waitFor("retained state", isState(1))
	base := r.in.Counts()
	evil.MustPublish("ub/ups/ups1/availability", []byte("offline"), true)
	evil.MustPublish("ub/bridge/b1/availability", []byte("offline"), true)
	evil.MustPublish(stateTopic, enc(t, st(seq(50), at(time.Now()), func(p *mqttwire.StatePayload) { p.Status = "OB LB FSD"; p.Critical = true }), nil), false)
	evil.MustPublish(stateTopic, enc(t, st(seq(51), at(time.Now())), otherPriv), false)
	c := r.waitCount(base.Total() + 4)
	if c.Accepted != base.Accepted {
		t.Fatalf("forged messages accepted: %+v", c)
	}
	if got := c.Dropped[ReasonUnsigned] - base.Dropped[ReasonUnsigned]; got != 3 {
		t.Fatalf("%d unsigned dropped, want 3 (two availability, one state)", got)
	}
	if got := c.Dropped[ReasonBadSignature] - base.Dropped[ReasonBadSignature]; got != 1 {
		t.Fatalf("%d bad signatures, want 1", got)
	}
	// Only the real state ever made news, and a real one still does.
	pub.MustPublish(stateTopic, enc(t, st(seq(2), at(time.Now())), testPriv), true)
	r.waitFor("real state", isState(2))
	for _, n := range r.news() {
		if n.Kind != news.KindConnection && !(n.Kind == news.KindState && n.Reading.Signed && n.Reading.Order.Seq <= 2) {
			t.Fatalf("forged news: %+v", n)
		}
	}
}

// TestLiveReplayDropped: signed states of an older epoch or an older seq,
// published live (a recorded message played back), are dropped.
func TestLiveReplayDropped(t *testing.T) {
	mq := harness.StartMosquitto(t)
	pub := harness.NewPublisher(t, mq.URL(), "bridge")
	evil := harness.NewPublisher(t, mq.URL(), "evil")
	now := time.Now()
	oldEpoch := enc(t, st(epoch(epoch1-1), seq(900), at(now), func(p *mqttwire.StatePayload) { p.Status = "OB LB"; p.Critical = true }), testPriv)
	oldSeq := enc(t, st(seq(3), at(now)), testPriv)
	r := startIntake(t, mq.URL(), Options{Supplies: []Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true, MaxStateAge: time.Minute})
	pub.MustPublish(stateTopic, enc(t, st(seq(5), at(now)), testPriv), true)
	r.waitFor("live state", isState(5))
	base := r.in.Counts()
	evil.MustPublish(stateTopic, oldSeq, false)
	evil.MustPublish(stateTopic, oldEpoch, false)
	evil.MustPublish(stateTopic, enc(t, st(seq(5), at(now)), testPriv), false)
	c := r.waitCount(base.Total() + 3)
	if got := c.Dropped[ReasonReplay] - base.Dropped[ReasonReplay]; got != 3 || c.Accepted != base.Accepted {
		t.Fatalf("replays: %d dropped, want 3; counts %+v", got, c)
	}
	if s := states(r.news()); len(s) != 1 {
		t.Fatalf("states taken %+v", s)
	}
}

// TestLiveSkew: states dated ten minutes ahead of and behind this host's
// clock. With the epoch known (from the retained state), they are accepted
// by order and their ts is ignored; with no epoch known, the first live one
// is held (skew or replay) until the retained state, asked for again,
// teaches the epoch.
func TestLiveSkew(t *testing.T) {
	for _, off := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		for _, signed := range []bool{true, false} {
			t.Run(fmt.Sprintf("offset=%s/signed=%v", off, signed), func(t *testing.T) {
				key := []byte(nil)
				o := Options{Supplies: []Supply{{UPS: "ups1"}}, MaxStateAge: time.Minute, RateLimit: 200 * time.Millisecond}
				if signed {
					key = testPriv
					o.Verifier, o.RequireSigned = signing.NewVerifier(testPub), true
				}
				mq := harness.StartMosquitto(t)
				pub := harness.NewPublisher(t, mq.URL(), "bridge")

				// Known epoch: the retained state teaches it.
				pub.MustPublish(stateTopic, enc(t, st(seq(1), at(time.Now().Add(off))), key), true)
				r := startIntake(t, mq.URL(), o)
				r.waitFor("history", isState(1))
				pub.MustPublish(stateTopic, enc(t, st(seq(2), at(time.Now().Add(off))), key), true)
				if n := r.waitFor("live skewed state, epoch known", isState(2)); !n.Live {
					t.Fatalf("%+v", n)
				}

				// Unknown epoch: a second agent starts on an empty broker.
				mq2 := harness.StartMosquitto(t)
				pub2 := harness.NewPublisher(t, mq2.URL(), "bridge")
				r2 := startIntake(t, mq2.URL(), o)
				pub2.MustPublish(stateTopic, enc(t, st(seq(7), at(time.Now().Add(off))), key), true)
				// Held: counted as skew; then the retained copy is asked for
				// again and arrives as history, teaching the epoch.
				n := r2.waitFor("the held state as history", isState(7))
				if n.Live {
					t.Fatalf("the skewed first state was accepted as live news: %+v", n)
				}
				if c := r2.in.Counts(); c.Dropped[ReasonSkew] == 0 {
					t.Fatalf("no skew counted: %+v", c)
				}
				pub2.MustPublish(stateTopic, enc(t, st(seq(8), at(time.Now().Add(off))), key), true)
				if n := r2.waitFor("the next live state", isState(8)); !n.Live {
					t.Fatalf("%+v", n)
				}
			})
		}
	}
}

// TestLiveTwoBridgesOneUPS: a second bridge publishing the same UPS id is
// reported as conflict news.
func TestLiveTwoBridgesOneUPS(t *testing.T) {
	mq := harness.StartMosquitto(t)
	b1 := harness.NewPublisher(t, mq.URL(), "b1")
	b2 := harness.NewPublisher(t, mq.URL(), "b2")
	r := startIntake(t, mq.URL(), Options{Supplies: []Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true, MaxStateAge: time.Minute})
	b1.MustPublish(stateTopic, enc(t, st(seq(1), at(time.Now())), testPriv), true)
	r.waitFor("b1's state", isState(1))
	b2.MustPublish(stateTopic, enc(t, st(from("b2"), epoch(epoch1+1000), seq(1), at(time.Now())), testPriv), true)
	n := r.waitFor("conflict", func(n news.News) bool { return n.Kind == news.KindConflict })
	if !strings.Contains(n.Detail, "b1") || !strings.Contains(n.Detail, "b2") {
		t.Fatalf("conflict detail %q", n.Detail)
	}
}
