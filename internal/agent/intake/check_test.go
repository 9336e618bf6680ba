package intake

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/mqttwire"
)

var (
	testPub, testPriv, _ = signing.GenerateKey()
	_, otherPriv, _      = signing.GenerateKey()
	t0                   = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

const epoch1 = 1_770_000_000_000

// st builds a state payload of ups1 from bridge b1 in epoch1, published at
// t0, with the changes of mods applied.
func st(mods ...func(*mqttwire.StatePayload)) mqttwire.StatePayload {
	s := &bridge.State{UPS: "ups1", Seq: 1, Status: bridge.ParseStatus("OB DISCHRG"), Vars: bridge.Vars{"ups.status": "OB DISCHRG", "battery.charge": "80"}, Comm: true, Time: t0}
	p := mqttwire.NewStatePayload(s, "b1", epoch1, t0)
	for _, m := range mods {
		m(&p)
	}
	return p
}

func seq(n uint64) func(*mqttwire.StatePayload) { return func(p *mqttwire.StatePayload) { p.Seq = n } }
func epoch(e uint64) func(*mqttwire.StatePayload) {
	return func(p *mqttwire.StatePayload) { p.Epoch = e }
}
func from(b string) func(*mqttwire.StatePayload) {
	return func(p *mqttwire.StatePayload) { p.Bridge = b }
}
func at(ts time.Time) func(*mqttwire.StatePayload) {
	return func(p *mqttwire.StatePayload) { p.TS = mqttwire.FormatTime(ts) }
}

// enc signs p with key (nil: unsigned) and encodes it.
func enc(t testing.TB, p mqttwire.StatePayload, key []byte) []byte {
	t.Helper()
	if key != nil {
		if err := signing.NewSigner(key).SignState(&p); err != nil {
			t.Fatal(err)
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type msg struct {
	topic    string
	payload  []byte
	retained bool
	at       time.Duration // after t0, on the agent's clock
}

const stateTopic = "ub/ups/ups1/state"

func live(p []byte) msg    { return msg{topic: stateTopic, payload: p} }
func history(p []byte) msg { return msg{topic: stateTopic, payload: p, retained: true} }

// TestChecks feeds each case's messages to an intake (no broker) and
// checks the reason the last one was dropped, or that it was accepted.
func TestChecks(t *testing.T) {
	priv := []byte(testPriv)
	signed := func(mods ...func(*mqttwire.StatePayload)) []byte { return enc(t, st(mods...), priv) }
	unsigned := func(mods ...func(*mqttwire.StatePayload)) []byte { return enc(t, st(mods...), nil) }
	tampered := strings.Replace(string(signed(seq(2))), `"status":"OB DISCHRG"`, `"status":"OB LB"`, 1)

	tests := []struct {
		name     string
		required bool
		verify   bool
		pin      string
		known    *mqttwire.Order
		maxAge   time.Duration
		before   []msg
		last     msg
		want     Reason
		wantLive bool
	}{
		{name: "live signed accepted", required: true, last: live(signed()), want: ReasonNone, wantLive: true},
		{name: "retained is history", required: true, last: history(signed()), want: ReasonNone, wantLive: false},
		{name: "unsigned accepted without signing", last: live(unsigned()), want: ReasonNone, wantLive: true},
		{name: "topic of another ups", last: msg{topic: "ub/ups/ups2/state", payload: signed()}, want: ReasonMalformed},
		{name: "topic outside the contract", last: msg{topic: "ub/ups/ups1/energy", payload: []byte("{}")}, want: ReasonMalformed},
		{name: "garbage", last: live([]byte("\x00\xff garbage")), want: ReasonMalformed},
		{name: "garbage with require_signed", required: true, last: live([]byte("\x00\xff garbage")), want: ReasonMalformed},
		{name: "empty (cleared topic)", last: live(nil), want: ReasonMalformed},
		{name: "huge", last: live([]byte(`{"ups":"ups1","x":"` + strings.Repeat("a", mqttwire.MaxPayload) + `"}`)), want: ReasonMalformed},
		{name: "json of another ups", last: live(enc(t, st(func(p *mqttwire.StatePayload) { p.UPS = "ups2" }), priv)), want: ReasonMalformed},
		{name: "no bridge", last: live(unsigned(from(""))), want: ReasonMalformed},
		{name: "bad ts", last: live(unsigned(func(p *mqttwire.StatePayload) { p.TS = "yesterday" })), want: ReasonMalformed},
		{name: "unsigned with require_signed", required: true, last: live(unsigned()), want: ReasonUnsigned},
		{name: "empty sig with require_signed", required: true, last: live([]byte(strings.Replace(string(unsigned()), `"vars"`, `"sig":"","vars"`, 1))), want: ReasonUnsigned},
		{name: "other key", required: true, last: live(enc(t, st(), otherPriv)), want: ReasonBadSignature},
		{name: "tampered", required: true, last: live([]byte(tampered)), want: ReasonBadSignature},
		{name: "bad sig dropped without require_signed", verify: true, last: live([]byte(tampered)), want: ReasonBadSignature},
		{name: "older seq replayed", required: true, before: []msg{live(signed(seq(5)))}, last: live(signed(seq(4))), want: ReasonReplay},
		{name: "same seq replayed live", required: true, before: []msg{live(signed(seq(5)))}, last: live(signed(seq(5))), want: ReasonReplay},
		{name: "same state again as history", required: true, before: []msg{live(signed(seq(5)))}, last: history(signed(seq(5))), want: ReasonNone},
		{name: "older epoch replayed", required: true, before: []msg{live(signed(seq(5)))}, last: live(signed(epoch(epoch1-1), seq(99))), want: ReasonReplay},
		{name: "older than the state file", required: true, known: &mqttwire.Order{Epoch: epoch1, Seq: 9}, last: live(signed(seq(8))), want: ReasonReplay},
		{name: "older history than the state file", required: true, known: &mqttwire.Order{Epoch: epoch1, Seq: 9}, last: history(signed(seq(8))), want: ReasonReplay},
		{name: "new epoch after restart", required: true, before: []msg{live(signed(seq(5)))}, last: live(signed(epoch(epoch1+1), seq(1))), want: ReasonNone, wantLive: true},
		{name: "unknown epoch 10 min ahead held", required: true, maxAge: time.Minute, last: live(signed(at(t0.Add(10 * time.Minute)))), want: ReasonSkew},
		{name: "unknown epoch 10 min behind held", required: true, maxAge: time.Minute, last: live(signed(at(t0.Add(-10 * time.Minute)))), want: ReasonSkew},
		{name: "unknown epoch 10 min behind unsigned held", maxAge: time.Minute, last: live(unsigned(at(t0.Add(-10 * time.Minute)))), want: ReasonSkew},
		{name: "unknown epoch within max age", required: true, maxAge: time.Minute, last: live(signed(at(t0.Add(30 * time.Second)))), want: ReasonNone, wantLive: true},
		{name: "epoch from history, skew ignored", required: true, maxAge: time.Minute, before: []msg{history(signed(at(t0.Add(-10 * time.Minute))))}, last: live(signed(seq(2), at(t0.Add(10*time.Minute)))), want: ReasonNone, wantLive: true},
		{name: "epoch from state file, skew ignored", required: true, maxAge: time.Minute, known: &mqttwire.Order{Epoch: epoch1, Seq: 1}, last: live(signed(seq(2), at(t0.Add(-10*time.Minute)))), want: ReasonNone, wantLive: true},
		{name: "skewed history teaches", required: true, maxAge: time.Minute, last: history(signed(at(t0.Add(10 * time.Minute)))), want: ReasonNone},
		{name: "pinned to another bridge", required: true, pin: "b2", last: live(signed()), want: ReasonConflict},
		{name: "pinned bridge accepted", required: true, pin: "b1", last: live(signed()), want: ReasonNone, wantLive: true},
		{name: "second live bridge, older epoch", required: true, before: []msg{live(signed(seq(5)))}, last: live(signed(from("b2"), epoch(epoch1-5))), want: ReasonConflict},
		{name: "bridge availability of a publisher", before: []msg{live(signed())}, last: msg{topic: "ub/bridge/b1/availability", payload: []byte("offline")}, want: ReasonNone, wantLive: true},
		{name: "bridge availability, retained", before: []msg{live(signed())}, last: msg{topic: "ub/bridge/b1/availability", payload: []byte("online"), retained: true}, want: ReasonNone},
		{name: "unknown bridge availability", before: []msg{live(signed())}, last: msg{topic: "ub/bridge/zz/availability", payload: []byte("offline")}, want: ReasonUnknownBridge},
		{name: "pinned bridge availability", pin: "b9", last: msg{topic: "ub/bridge/b9/availability", payload: []byte("online")}, want: ReasonNone, wantLive: true},
		{name: "ups availability", last: msg{topic: "ub/ups/ups1/availability", payload: []byte("offline")}, want: ReasonNone, wantLive: true},
		{name: "ups availability garbage", last: msg{topic: "ub/ups/ups1/availability", payload: []byte("maybe")}, want: ReasonMalformed},
		{name: "ups availability huge", last: msg{topic: "ub/ups/ups1/availability", payload: []byte(strings.Repeat("x", 100))}, want: ReasonMalformed},
		{name: "ups availability with require_signed", required: true, last: msg{topic: "ub/ups/ups1/availability", payload: []byte("offline")}, want: ReasonUnsigned},
		{name: "bridge availability with require_signed", required: true, pin: "b1", last: msg{topic: "ub/bridge/b1/availability", payload: []byte("offline")}, want: ReasonUnsigned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1", Bridge: tc.pin}, {UPS: "ups3"}}, RequireSigned: tc.required, MaxStateAge: tc.maxAge}
			if tc.required || tc.verify {
				o.Verifier = signing.NewVerifier(testPub)
			}
			if tc.known != nil {
				o.Known = map[string]mqttwire.Order{"ups1": *tc.known}
			}
			now := t0
			o.Now = func() time.Time { return now }
			in, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range tc.before {
				now = t0.Add(m.at)
				in.Handle(m.topic, m.payload, m.retained)
				if c := in.Counts(); c.Accepted != uint64(i+1) {
					t.Fatalf("setup message %d not accepted: %+v", i, c.Dropped)
				}
			}
			in.Take(nil)
			now = t0.Add(tc.last.at)
			before := in.Counts()
			in.Handle(tc.last.topic, tc.last.payload, tc.last.retained)
			c := in.Counts()
			got := ReasonNone
			if c.Accepted == before.Accepted {
				for r := Reason(1); r < numReasons; r++ {
					if c.Dropped[r] > before.Dropped[r] {
						got = r
					}
				}
			}
			if got != tc.want {
				t.Fatalf("reason %s, want %s", got, tc.want)
			}
			ns := in.Take(nil)
			if tc.want != ReasonNone {
				for _, n := range ns {
					if n.Kind != news.KindConflict {
						t.Fatalf("a dropped message made news: %+v", n)
					}
				}
				return
			}
			if len(ns) != 1 {
				t.Fatalf("accepted, but %d news: %+v", len(ns), ns)
			}
			if ns[0].Live != tc.wantLive {
				t.Fatalf("Live %v, want %v", ns[0].Live, tc.wantLive)
			}
			if ns[0].At != now {
				t.Fatalf("At %v, want the agent's clock %v", ns[0].At, now)
			}
		})
	}
}

// TestConflictNews: a second bridge publishing a supply raises conflict
// news (rate-limited), whether its states win the order or not; with a pin
// the other bridge's states never count.
func TestConflictNews(t *testing.T) {
	priv := []byte(testPriv)
	for _, pin := range []string{"", "b1"} {
		t.Run("pin="+pin, func(t *testing.T) {
			now := t0
			in, err := New(Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1", Bridge: pin}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true,
				Now: func() time.Time { return now }, RateLimit: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			in.Handle(stateTopic, enc(t, st(seq(1)), priv), false)
			in.Take(nil)
			var conflicts, b2states int
			for i := range 30 {
				now = t0.Add(time.Duration(i+1) * time.Second)
				in.Handle(stateTopic, enc(t, st(from("b2"), epoch(epoch1+100), seq(uint64(i+1))), priv), false)
				in.Handle(stateTopic, enc(t, st(seq(uint64(i+2))), priv), false)
				for _, n := range in.Take(nil) {
					switch {
					case n.Kind == news.KindConflict:
						conflicts++
						if !strings.Contains(n.Detail, "b2") {
							t.Fatalf("conflict detail %q does not name b2", n.Detail)
						}
					case n.Kind == news.KindState && n.Reading.Bridge == "b2":
						b2states++
					}
				}
			}
			if conflicts < 2 || conflicts > 4 {
				t.Fatalf("%d conflict news in 30 s, want one per 10 s", conflicts)
			}
			if pin != "" && b2states != 0 {
				t.Fatalf("%d states of the unpinned bridge accepted", b2states)
			}
			if pin == "" && b2states == 0 {
				t.Fatalf("the bridge with the newer epoch never won the order")
			}
			if c := in.Counts(); c.Dropped[ReasonConflict] == 0 {
				t.Fatalf("no conflict counted: %+v", c)
			}
		})
	}
}

// TestLatestWinsJunkCannotPushOut: any amount of junk leaves the real
// state in its slot; news of one key keeps only its latest value.
func TestLatestWinsJunkCannotPushOut(t *testing.T) {
	priv := []byte(testPriv)
	in, err := New(Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1"}, {UPS: "ups2"}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	in.Handle(stateTopic, enc(t, st(seq(1)), priv), false)
	in.Handle(stateTopic, enc(t, st(seq(2)), priv), false)
	junk := [][]byte{[]byte("garbage"), enc(t, st(seq(3)), nil), enc(t, st(seq(99)), otherPriv), []byte(strings.Repeat("{", 1000))}
	for i := range 20000 {
		in.Handle(stateTopic, junk[i%len(junk)], false)
		in.Handle("ub/bridge/x"+string(rune('a'+i%26))+"/availability", []byte("offline"), false)
	}
	ns := in.Take(nil)
	if len(ns) != 1 || ns[0].Reading.Order.Seq != 2 {
		t.Fatalf("news after the junk: %+v, want the state of seq 2 only", ns)
	}
	if len(in.slots) > 8 {
		t.Fatalf("%d slots after junk", len(in.slots))
	}
	select {
	case <-in.Notify():
	default:
		t.Fatal("no notification")
	}
	if o := in.Orders(); o["ups1"] != (mqttwire.Order{Epoch: epoch1, Seq: 2}) || len(o) != 1 {
		t.Fatalf("orders %v", o)
	}
}

// TestTakeOrder: news comes out oldest first across keys.
func TestTakeOrder(t *testing.T) {
	in, err := New(Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1"}, {UPS: "ups2"}}})
	if err != nil {
		t.Fatal(err)
	}
	in.Handle("ub/ups/ups2/availability", []byte("online"), false)
	in.Handle(stateTopic, enc(t, st(), nil), false)
	in.Handle("ub/ups/ups2/availability", []byte("offline"), false)
	ns := in.Take(nil)
	if len(ns) != 2 || ns[0].Kind != news.KindState || ns[1].Kind != news.KindUPSAvailability || ns[1].Online {
		t.Fatalf("news %+v", ns)
	}
}

// TestBridgeSetBounded: without signing, states naming ever new bridges
// keep the set of read bridges to one per supply.
func TestBridgeSetBounded(t *testing.T) {
	in, err := New(Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1"}}, ConflictWindow: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		in.Handle(stateTopic, enc(t, st(from("b"+string(rune('a'+i%26))+string(rune('a'+i/26))), seq(uint64(i+1))), nil), false)
	}
	if n := len(in.chk.bridges); n != 1 {
		t.Fatalf("%d bridges remembered", n)
	}
	if n := len(in.subscriptions()); n != 3 {
		t.Fatalf("%d subscriptions", n)
	}
}

func TestNewRejects(t *testing.T) {
	for name, o := range map[string]Options{
		"require_signed without key": {Supplies: []Supply{{UPS: "u"}}, RequireSigned: true},
		"no supplies":                {},
		"bad ups":                    {Supplies: []Supply{{UPS: "U/x"}}},
		"bad pin":                    {Supplies: []Supply{{UPS: "u", Bridge: "B+"}}},
		"qos 2":                      {Supplies: []Supply{{UPS: "u"}}, QoS: 2},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// BenchmarkHandle measures the cost of one message on the intake's decode
// path, by kind of message.
func BenchmarkHandle(b *testing.B) {
	old := enc(b, st(seq(1)), testPriv)
	cases := []struct {
		name    string
		topic   string
		payload func(i int) []byte
	}{
		{"garbage", stateTopic, func(int) []byte { return []byte("\x00garbage\x00garbage\x00garbage") }},
		{"unsigned_json", stateTopic, func(int) []byte { return enc(b, st(seq(1<<40)), nil) }},
		{"replayed_signed", stateTopic, func(int) []byte { return old }},
		{"other_bridge_availability", "ub/bridge/other/availability", func(int) []byte { return []byte("offline") }},
		{"bad_signature_new_order", stateTopic, func(int) []byte { return enc(b, st(seq(1<<40)), otherPriv) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			in, err := New(Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true})
			if err != nil {
				b.Fatal(err)
			}
			in.Handle(stateTopic, enc(b, st(seq(2)), testPriv), false)
			p := c.payload(0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				in.Handle(c.topic, p, false)
			}
		})
	}
	b.Run("signed_accepted", func(b *testing.B) {
		in, err := New(Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true})
		if err != nil {
			b.Fatal(err)
		}
		ps := make([][]byte, 1000)
		for i := range ps {
			ps[i] = enc(b, st(seq(uint64(i+1))), testPriv)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%len(ps) == 0 {
				in.chk.supplies["ups1"].order = mqttwire.Order{}
			}
			in.Handle(stateTopic, ps[i%len(ps)], false)
		}
	})
}

func TestStats(t *testing.T) {
	in, err := New(Options{TopicPrefix: "ub", Supplies: []Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(testPub), RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	in.Handle(stateTopic, enc(t, st(seq(2)), testPriv), false)
	in.Handle(stateTopic, enc(t, st(seq(1)), testPriv), false)
	in.Handle(stateTopic, []byte("junk"), false)
	st := in.Stats()
	want := map[string]uint64{"intake_accepted_total": 1, "intake_dropped_replay_total": 1, "intake_dropped_malformed_total": 1, "intake_dropped_skew_total": 0}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("%s = %v, want %d (all: %v)", k, st[k], v, st)
		}
	}
	if len(st) != int(numReasons) {
		t.Errorf("%d keys, want one per reason and accepted: %v", len(st), st)
	}
}
