package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/internal/agent/intake"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/internal/mqttconn"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// The flood runs in a child process (this test binary, re-run with
// floodEnv set) so the agent's memory is measured without the flooder's.
const floodEnv = "UPSBRIDGE_TEST_FLOOD"

type floodSpec struct {
	Addr     string
	Seconds  float64
	Rate     int // per connection
	Conns    int
	QoS      byte
	Replayed []byte // a genuine signed state of an older seq
	// Forged, when set, replaces the replays: a state of a future order
	// with a signature that does not verify (each costs the agent a
	// signature check).
	Forged []byte
}

// TestFloodProcess is the flooder when run as a child; otherwise it does
// nothing.
func TestFloodProcess(t *testing.T) {
	raw := os.Getenv(floodEnv)
	if raw == "" {
		return
	}
	var s floodSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	tp := mqttwire.Topics{Prefix: "ub"}
	unsigned := &bridge.State{UPS: "ups1", Seq: 1 << 40, Status: bridge.ParseStatus("OB LB"), Vars: bridge.Vars{"ups.status": "OB LB", "battery.charge": "5"}, Comm: true, Time: time.Now()}
	unsignedJSON, _ := json.Marshal(mqttwire.NewStatePayload(unsigned, "b1", 1<<62, time.Now()))
	huge := make([]byte, intake.MaxPacket+100)
	for i := range huge {
		huge[i] = 'x'
	}
	msgs := []harness.FloodMsg{}
	for i := range 1024 {
		var m harness.FloodMsg
		switch {
		case i == 0:
			m = harness.FloodMsg{Topic: tp.State("ups1"), Payload: huge}
		case i%4 == 0:
			m = harness.FloodMsg{Topic: tp.State("ups1"), Payload: []byte(strings.Repeat("\x00garbage", 8+i%5))}
		case i%4 == 1:
			m = harness.FloodMsg{Topic: tp.BridgeAvailability(fmt.Sprintf("other%d", i%50)), Payload: []byte("offline")}
		case i%4 == 2:
			m = harness.FloodMsg{Topic: tp.State("ups1"), Payload: unsignedJSON}
		case s.Forged != nil:
			m = harness.FloodMsg{Topic: tp.State("ups1"), Payload: s.Forged}
		default:
			m = harness.FloodMsg{Topic: tp.State("ups1"), Payload: s.Replayed}
		}
		m.QoS = s.QoS
		msgs = append(msgs, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.Seconds*float64(time.Second)))
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total uint64
	start := time.Now()
	for c := range s.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := harness.Flood(ctx, s.Addr, fmt.Sprintf("evil-%d", c), msgs, s.Rate)
			if err != nil {
				fmt.Fprintf(os.Stderr, "flood: %v\n", err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("FLOOD sent=%d seconds=%.2f\n", total, time.Since(start).Seconds())
}

func rss(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return -1
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestAgentFlood: a hostile client floods the agent's topics (garbage and
// oversized payloads on the state topic, other bridges' availability,
// valid-JSON unsigned states, a replayed genuine signed state) for 10 s
// while a bridge-like publisher sends a signed live state every 500 ms. No
// real state may be lost; the test reports the rate absorbed, the worst
// delay from publish to Take, and the memory before and after.
//
// UPSBRIDGE_FLOOD_SECONDS, _RATE (per connection), _CONNS and _QOS (the
// flood's and the agent's subscription QoS, "0/0") change the defaults;
// UPSBRIDGE_FLOOD_FORGED=1 replaces the replays with states signed by
// another key (the costliest junk: a signature check each).
func TestAgentFlood(t *testing.T) {
	seconds := envFloat("UPSBRIDGE_FLOOD_SECONDS", 10)
	rate := int(envFloat("UPSBRIDGE_FLOOD_RATE", 0))
	conns := int(envFloat("UPSBRIDGE_FLOOD_CONNS", 2))
	floodQoS, subQoS := byte(0), byte(0)
	if q := os.Getenv("UPSBRIDGE_FLOOD_QOS"); q != "" {
		fmt.Sscanf(q, "%d/%d", &floodQoS, &subQoS)
	}
	mq := harness.StartMosquitto(t)
	pubKey, priv, _ := signing.GenerateKey()
	signer := signing.NewSigner(priv)
	epoch := uint64(time.Now().UnixMilli())
	mk := func(seq uint64) []byte {
		s := &bridge.State{UPS: "ups1", Seq: seq, Status: bridge.ParseStatus("OB DISCHRG"), Vars: bridge.Vars{"ups.status": "OB DISCHRG", "battery.charge": "80"}, Comm: true, Time: time.Now()}
		p := mqttwire.NewStatePayload(s, "b1", epoch, time.Now())
		if err := signer.SignState(&p); err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(p)
		return data
	}
	bridgePub := harness.NewPublisher(t, mq.URL(), "b1")
	bridgePub.MustPublish("ub/ups/ups1/state", mk(1), true)

	in, err := intake.New(intake.Options{
		Conn: mqttconn.ConnOptions{URL: mq.URL(), ClientID: "agent"}, TopicPrefix: "ub",
		Supplies: []intake.Supply{{UPS: "ups1"}}, Verifier: signing.NewVerifier(pubKey), RequireSigned: true,
		MaxStateAge: time.Minute, QoS: subQoS,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var mu sync.Mutex
	taken := map[uint64]time.Time{}
	wg.Add(2)
	go func() { defer wg.Done(); _ = in.Run(ctx) }()
	go func() {
		defer wg.Done()
		var buf []news.News
		for {
			select {
			case <-ctx.Done():
				return
			case <-in.Notify():
			}
			buf = in.Take(buf[:0])
			now := time.Now()
			mu.Lock()
			for _, n := range buf {
				if n.Kind == news.KindState && n.Live {
					taken[n.Reading.Order.Seq] = now
				}
			}
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(in.Orders()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent never read the retained state")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rssBefore, heapBefore := rss(t), heap()

	fs := floodSpec{Addr: harness.Addr(mq.Port), Seconds: seconds, Rate: rate, Conns: conns, QoS: floodQoS, Replayed: mk(1)}
	if os.Getenv("UPSBRIDGE_FLOOD_FORGED") == "1" {
		// Signed by another key: passes every cheap check.
		_, otherKey, _ := signing.GenerateKey()
		s := &bridge.State{UPS: "ups1", Seq: 1 << 40, Status: bridge.ParseStatus("OB LB"), Vars: bridge.Vars{"ups.status": "OB LB"}, Comm: true, Time: time.Now()}
		p := mqttwire.NewStatePayload(s, "b1", epoch, time.Now())
		if err := signing.NewSigner(otherKey).SignState(&p); err != nil {
			t.Fatal(err)
		}
		fs.Forged, _ = json.Marshal(p)
	}
	spec, _ := json.Marshal(fs)
	flood := exec.Command(os.Args[0], "-test.run=^TestFloodProcess$", "-test.v")
	flood.Env = append(os.Environ(), floodEnv+"="+string(spec))
	out := &harness.SafeBuffer{}
	flood.Stdout, flood.Stderr = out, out
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	floodDone := make(chan struct{})
	go func() { _ = flood.Wait(); close(floodDone) }()
	startCount := in.Counts().Total()
	start := time.Now()

	// The bridge: a signed live state every 500 ms during the flood.
	published := map[uint64]time.Time{}
	var peakRSS int64
	var peakHeap uint64
	var peakGoroutines int
	seq := uint64(1)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-floodDone:
			running = false
		case <-tick.C:
			seq++
			data := mk(seq)
			published[seq] = time.Now()
			if err := bridgePub.Publish("ub/ups/ups1/state", data, true); err != nil {
				t.Errorf("bridge publish of seq %d: %v", seq, err)
			}
			peakRSS = max(peakRSS, rss(t))
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			peakGoroutines = max(peakGoroutines, runtime.NumGoroutine())
		}
	}
	elapsed := time.Since(start)
	absorbed := in.Counts().Total() - startCount
	t.Logf("flooder: %s", strings.TrimSpace(lastLine(out.String(), "FLOOD")))
	// Let what is queued drain (until the intake reads nothing for 500 ms),
	// then check every real state arrived.
	drainStart := time.Now()
	for last := in.Counts().Total(); time.Since(drainStart) < 60*time.Second; {
		time.Sleep(500 * time.Millisecond)
		n := in.Counts().Total()
		if n == last {
			break
		}
		last = n
	}
	t.Logf("backlog drained %s after the flood", time.Since(drainStart).Round(time.Millisecond))
	c := in.Counts()
	mu.Lock()
	var delays []time.Duration
	var lost []uint64
	for s, p := range published {
		if at, ok := taken[s]; ok {
			delays = append(delays, at.Sub(p))
		} else {
			lost = append(lost, s)
		}
	}
	mu.Unlock()
	slices.Sort(delays)
	slices.Sort(lost)
	rssAfter, heapAfter := rss(t), heap()
	t.Logf("flood QoS %d, agent subscription QoS %d, %d connection(s): agent absorbed %d messages in %s (%.0f/s); counts %+v",
		floodQoS, subQoS, conns, absorbed, elapsed.Round(time.Millisecond), float64(absorbed)/elapsed.Seconds(), c)
	if len(delays) > 0 {
		t.Logf("real states: %d published, %d taken; delay publish->Take median %s, worst %s",
			len(published), len(delays), delays[len(delays)/2].Round(time.Microsecond), delays[len(delays)-1].Round(time.Microsecond))
	}
	t.Logf("agent process RSS before %.1f MiB, peak during %.1f MiB, after %.1f MiB; Go heap before %.1f MiB, peak in use during %.1f MiB, after %.1f MiB; goroutines peak %d",
		mib(rssBefore), mib(peakRSS), mib(rssAfter), float64(heapBefore)/(1<<20), float64(peakHeap)/(1<<20), float64(heapAfter)/(1<<20), peakGoroutines)
	// Inside the agent, nothing is lost: every real state the broker
	// delivered was accepted and taken, whatever junk came with it.
	if c.Accepted-1 != uint64(len(delays)) {
		t.Errorf("the intake accepted %d real states but the consumer took %d: junk pushed real states out", c.Accepted-1, len(delays))
	}
	if heapAfter > heapBefore+16<<20 {
		t.Errorf("Go heap grew from %d to %d bytes under the flood", heapBefore, heapAfter)
	}
	if absorbed < uint64(seconds)*1000 {
		t.Errorf("the agent read almost nothing of the flood (%d messages): the flood did not happen\n%s", absorbed, out.String())
	}
	// The broker drops messages for a client whose queue is full
	// (mosquitto's max_queued_messages, 1000 by default, counts the packets
	// waiting for the client's socket, whatever their QoS): when the flood
	// outruns the agent's reading, real states are among them. That is a
	// measurement here (see docs/agent.md); UPSBRIDGE_FLOOD_STRICT=1 makes
	// it a failure.
	if len(lost) > 0 {
		t.Logf("real states the broker did not deliver during the flood: seq %v", lost)
		if os.Getenv("UPSBRIDGE_FLOOD_STRICT") == "1" {
			t.Errorf("%d of %d real states lost", len(lost), len(published))
		}
	}
	// After the flood, real news flows again at once: the connection and
	// its subscription survived (with QoS 1 a lost delivery could hold an
	// in-flight slot for good).
	for i := range 3 {
		seq++
		sent := time.Now()
		bridgePub.MustPublish("ub/ups/ups1/state", mk(seq), true)
		for {
			mu.Lock()
			at, ok := taken[seq]
			mu.Unlock()
			if ok {
				t.Logf("after the flood, state %d taken %s after publish", i+1, at.Sub(sent).Round(time.Microsecond))
				break
			}
			if time.Since(sent) > 5*time.Second {
				t.Fatalf("after the flood, a real state did not reach the agent within 5 s: counts %+v", in.Counts())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func lastLine(s, prefix string) string {
	var out string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = l
		}
	}
	return out
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}
