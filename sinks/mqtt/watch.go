package mqtt

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/upsbridge/upsbridge/mqttwire"
)

// receive routes a message from the broker; it runs on the connection's
// receiving goroutine and never blocks. States are read here (epoch at
// start, duplicate publishers), agents' topics go to the listeners, and
// commands and everything else to the publishing goroutine.
func (s *Sink) receive(topic string, payload []byte, retained bool) {
	for _, sc := range s.scanners {
		if sc.Tap(topic, payload, retained) {
			return
		}
	}
	t := s.wire.Parse(topic)
	switch t.Kind {
	case mqttwire.KindState:
		s.watchState(t.ID, payload, retained)
		return
	case mqttwire.KindAgentState, mqttwire.KindAgentEvent:
		for _, l := range s.opts.Listeners {
			l.OnReceive(topic, payload, retained)
		}
		return
	case mqttwire.KindCommand, mqttwire.KindSet:
	default:
		for _, l := range s.opts.Listeners {
			l.OnReceive(topic, payload, retained)
		}
	}
	select {
	case s.inbox <- inbound{topic, payload}:
	default:
		// A flood must not become a flood of log lines: one warning per
		// 10 s with the count since start.
		s.stats.inboundDropped.Inc()
		n := s.stats.inboundDropped.Get()
		now := time.Now().UnixNano()
		if last := s.dropLogAt.Load(); now-last >= int64(10*time.Second) && s.dropLogAt.CompareAndSwap(last, now) {
			s.log.Warn("incoming messages dropped: handler busy", "topic", topic, "dropped_total", n)
		}
	}
}

// maxForeign bounds the UPS ids of other bridges remembered while this
// bridge does not know (yet) whether they are its own.
const maxForeign = 1024

// watchState is what the receiving goroutine and the publishing goroutine
// share about states seen on the broker.
type watchState struct {
	mu       sync.Mutex
	seen     map[string]bool   // own retained states seen in the window, by UPS
	retained uint64            // the largest epoch among them
	epoch    uint64            // this run's epoch once chosen
	echoTail []byte            // `","bridge":"<id>","epoch":<epoch>,` once chosen
	own      map[string]bool   // UPS ids this bridge publishes
	foreign  map[string]string // UPS id -> another bridge that published it
	warned   map[string]time.Time
	answered chan struct{} // wakes the publishing goroutine in the window
}

func newWatchState() watchState {
	return watchState{
		seen: map[string]bool{}, own: map[string]bool{}, foreign: map[string]string{},
		warned: map[string]time.Time{}, answered: make(chan struct{}, 1),
	}
}

func (w *watchState) setEpoch(e uint64, bridgeID string) {
	w.mu.Lock()
	w.setEpochLocked(e, bridgeID)
	w.mu.Unlock()
}

func (w *watchState) setEpochLocked(e uint64, bridgeID string) {
	w.epoch = e
	w.echoTail = []byte(`","bridge":"` + bridgeID + `","epoch":` + strconv.FormatUint(e, 10) + `,`)
}

// isEcho is the fast path for the bridge's own states coming back from the
// broker (every publication does): they begin exactly as this run encodes
// them, {"ups":"<ups>","bridge":"<id>","epoch":<epoch>, (the fields'
// order in mqttwire.StatePayload). Called with w.mu held.
func (w *watchState) isEcho(ups string, p []byte) bool {
	const head = `{"ups":"`
	if w.echoTail == nil || len(p) < len(head)+len(ups)+len(w.echoTail) {
		return false
	}
	rest, ok := bytes.CutPrefix(p, []byte(head))
	if !ok || string(rest[:len(ups)]) != ups {
		return false
	}
	return bytes.HasPrefix(rest[len(ups):], w.echoTail)
}

// addOwn records a UPS this bridge publishes, and warns if another bridge
// was seen publishing it.
func (w *watchState) addOwn(ups string, s *Sink) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.own[ups] = true
	if other, ok := w.foreign[ups]; ok {
		delete(w.foreign, ups)
		s.duplicateLocked(ups, other, true)
	}
}

// stateHeader is the part of a state payload the watch reads.
type stateHeader struct {
	Bridge string `json:"bridge"`
	Epoch  uint64 `json:"epoch"`
}

// watchState reads a state published on the broker.
func (s *Sink) watchState(ups string, payload []byte, retained bool) {
	if len(payload) == 0 || len(payload) > mqttwire.MaxPayload {
		return // a cleared retained state, or not one of ours
	}
	w := &s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.isEcho(ups, payload) {
		return
	}
	var h stateHeader
	if err := json.Unmarshal(payload, &h); err != nil || !mqttwire.ValidID(h.Bridge) {
		return
	}
	if h.Bridge == s.opts.BridgeID && w.epoch == 0 {
		// Before this run published anything, a state under this
		// bridge's id is an earlier run's (or a twin's).
		if h.Epoch > w.retained {
			w.retained = h.Epoch
		}
		w.seen[ups] = true
		select {
		case w.answered <- struct{}{}:
		default:
		}
		return
	}
	if h.Bridge == s.opts.BridgeID && (h.Epoch == w.epoch || (h.Epoch < w.epoch && retained)) {
		return // this run's own, echoed; or an earlier run's retained one
	}
	if !w.own[ups] {
		if h.Bridge != s.opts.BridgeID && (len(w.foreign) < maxForeign || w.foreign[ups] != "") {
			w.foreign[ups] = h.Bridge
		}
		return
	}
	s.duplicateLocked(ups, h.Bridge, retained)
}

// duplicateLocked counts and warns (at most once a minute per UPS) about
// another publisher of one of this bridge's UPS ids (per UPS and other
// bridge). Called with
// s.watch.mu held.
func (s *Sink) duplicateLocked(ups, other string, retained bool) {
	s.stats.duplicates.Inc()
	now := time.Now()
	key := ups + "\x00" + other
	if last, ok := s.watch.warned[key]; ok && now.Sub(last) < time.Minute {
		return
	}
	if len(s.watch.warned) >= maxForeign {
		clear(s.watch.warned) // hostile ids cannot grow it without bound
	}
	s.watch.warned[key] = now
	if other == s.opts.BridgeID {
		s.log.Error("ANOTHER PROCESS PUBLISHES THIS BRIDGE'S STATES: two bridges run with the same bridge id; agents will see states out of order",
			"ups", ups, "bridge", other)
		return
	}
	if retained {
		s.log.Error("A RETAINED STATE OF ANOTHER BRIDGE IS ON ONE OF THIS BRIDGE'S UPS IDS: agents may follow either; give the UPSes distinct ids, or clear the old retained state (mosquitto_pub -r -n -t TOPIC) if that bridge is gone",
			"ups", ups, "other_bridge", other, "topic", s.wire.State(ups))
		return
	}
	s.log.Error("ANOTHER BRIDGE PUBLISHES ONE OF THIS BRIDGE'S UPS IDS: agents may follow either; give the UPSes distinct ids or pin agents' supplies to a bridge",
		"ups", ups, "other_bridge", other, "topic", s.wire.State(ups))
}

// tryChooseEpoch chooses the epoch once the window has passed or every
// UPS the sink knows has answered with a retained state. Run by the
// publishing goroutine.
func (s *Sink) tryChooseEpoch() {
	w := &s.watch
	w.mu.Lock()
	ready := !time.Now().Before(s.epochDue)
	if !ready && len(s.states) > 0 {
		ready = true
		for ups := range s.states {
			if !w.seen[ups] {
				ready = false
				break
			}
		}
	}
	if !ready {
		w.mu.Unlock()
		return
	}
	retained := w.retained
	e := ChooseEpoch(s.stored, retained, time.Now())
	w.setEpochLocked(e, s.opts.BridgeID)
	w.mu.Unlock()
	s.epoch = e
	s.stats.epoch.Store(e)
	if s.opts.EpochFile != "" {
		if err := SaveEpoch(s.opts.EpochFile, e); err != nil {
			s.log.Error("epoch not stored; the next run relies on the broker and the clock", "err", err)
		}
	}
	s.log.Info("epoch chosen", "epoch", e, "stored", s.stored, "retained", retained)
}
