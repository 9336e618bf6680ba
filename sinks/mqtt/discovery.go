package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/hass"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// DiscoveryOptions configure Home Assistant discovery.
type DiscoveryOptions struct {
	HASS hass.Options
	// ScanTimeout bounds the scan when the broker never echoes its marker
	// (default 10 s).
	ScanTimeout time.Duration
	// UnknownGrace: retained configs of devices of this bridge that no
	// source has reported since start-up are removed after it (default
	// 5 min), so a UPS that is merely slow to appear keeps its entities.
	UnknownGrace time.Duration
	// RemoveAfter: an entity whose variable the UPS stopped reporting is
	// removed after this long (default 10 min), so a variable that drops out
	// for a few readings does not delete the entity and its settings.
	RemoveAfter time.Duration
	Logger      *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Discovery is the sink Extension that publishes Home Assistant discovery:
// configs on every (re)connect and on HA's birth message, changed configs
// when a UPS's variable or command set changes, removals for what is no
// longer generated, and an energy counter per UPS. Create it with
// NewDiscovery. As a Scanner it reads, over the sink's connection, the
// configs left by earlier runs and removes the stale ones.
type Discovery struct {
	o     DiscoveryOptions
	log   *slog.Logger
	start time.Time

	// Owned by the sink's publishing goroutine. Only hashes and keys are
	// kept, never the configs themselves: at 1,000 UPSes of ~50 entities the
	// payloads alone were 35 MB of live heap.
	published map[string]uint64       // config topic -> hash of the payload last published
	devices   map[string]*discoDevice // device id -> what was derived last
	known     map[string]bool         // device ids of UPSes read this run
	pending   map[string][]string     // device id -> key prefixes not derivable yet
	energy    map[string]*energyAcc
	applied   bool // the scan's stale list was acted on

	// scanMu guards the scan under way, fed by Tap on the connection's
	// receiving goroutine, which must not wait for the publishing one.
	scanMu   sync.Mutex
	scanning *scanRun

	mu       sync.Mutex // guards the fields below (scan goroutine, command goroutines)
	scanned  bool
	stale    map[string]retainedConfig // topic -> config found by the scan
	baseline map[string]float64        // ups -> energy kWh found by the scan
	infos    map[string]*bridge.Info
}

// discoDevice is what discovery remembers of one device between states.
// A UPS's entities follow from a few inputs (hass.UPSDeviceSignature and
// the Info), so a state with the same inputs is not derived again: a
// steady UPS costs a hash of its variable names per state, not a build
// and encoding of every config.
type discoDevice struct {
	built bool
	sig   uint64
	info  *bridge.Info
	// last is the state the device was last seen in. Its entities are
	// those of the last derivation (same inputs), so when the inputs change
	// the entities that disappeared are derived again from it, with their
	// configs, instead of keeping every config in memory.
	last *bridge.State
	// lastAt is when last was handled: the last time the entities derived
	// from it were generated, which starts an entity's RemoveAfter.
	lastAt time.Time
	// keys are the entity keys published for the device (generated or in
	// grace), for the scan's cleanup of device payloads.
	keys map[string]bool
	// grace holds entities no longer generated, still published until
	// RemoveAfter (the variable may come back), by ref.
	grace map[string]graceEntity
	// graceDue is when the oldest grace entity expires (zero: none).
	graceDue time.Time
	// removed are components to remove (device mode): each payload carries
	// them as bare {"platform": ...}.
	removed []hass.Entity
}

type graceEntity struct {
	entity hass.Entity
	since  time.Time
}

func entityRef(e hass.Entity) string { return e.Component + "/" + e.Key }

func (d *Discovery) deviceState(id string) *discoDevice {
	ds := d.devices[id]
	if ds == nil {
		ds = &discoDevice{keys: map[string]bool{}, grace: map[string]graceEntity{}}
		d.devices[id] = ds
	}
	return ds
}

// payloadSeed keys the payload hashes; they are compared in-process only.
var payloadSeed = maphash.MakeSeed()

type retainedConfig struct {
	device     string
	uniqueID   string
	components map[string]string // device mode: component id -> platform
}

type energyAcc struct {
	last      time.Time
	lastPower float64
	kwh       float64
	estimated bool
}

// NewDiscovery returns the extension.
func NewDiscovery(o DiscoveryOptions) *Discovery {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ScanTimeout <= 0 {
		o.ScanTimeout = 10 * time.Second
	}
	if o.UnknownGrace <= 0 {
		o.UnknownGrace = 5 * time.Minute
	}
	if o.RemoveAfter <= 0 {
		o.RemoveAfter = 10 * time.Minute
	}
	return &Discovery{
		o: o, log: o.Logger.With("component", "hass"), start: o.Now(),
		published: map[string]uint64{}, devices: map[string]*discoDevice{},
		known: map[string]bool{}, pending: map[string][]string{},
		energy: map[string]*energyAcc{}, baseline: map[string]float64{}, infos: map[string]*bridge.Info{},
	}
}

var (
	_ Extension = (*Discovery)(nil)
	_ Scanner   = (*Discovery)(nil)
)

// scanTopic carries the scan's marker and its "done" notice.
func (d *Discovery) scanTopic() string {
	return mqttwire.Topics{Prefix: d.o.HASS.TopicPrefix}.HASSScan(d.o.HASS.BridgeID)
}

// Subscriptions implements Extension: HA's birth topic and the scan notice.
func (d *Discovery) Subscriptions() []string {
	return []string{d.o.HASS.BirthTopic(), d.scanTopic()}
}

// OnMessage implements Extension: HA's "online" birth asks for everything
// again; the scan's "done" asks for a pass that removes stale configs.
func (d *Discovery) OnMessage(topic string, payload []byte) bool {
	switch topic {
	case d.o.HASS.BirthTopic():
		if strings.TrimSpace(string(payload)) == "online" {
			d.log.Info("Home Assistant came online; publishing discovery again")
			return true
		}
	case d.scanTopic():
		if string(payload) == "done" {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.scanned && !d.applied
		}
	}
	return false
}

// OnConnect implements Extension: every config, then removals of stale ones.
func (d *Discovery) OnConnect(states []*bridge.State) []Message {
	now := d.o.Now()
	clear(d.published)
	bdev := hass.BridgeDevice(d.o.HASS)
	out := d.device(d.deviceState(bdev.ID), bdev, nil, now, now, true)
	for _, st := range states {
		out = append(out, d.ups(st, now, true)...)
	}
	return append(out, d.cleanup(now)...)
}

// OnState implements Extension: changed configs and the energy counter.
func (d *Discovery) OnState(st *bridge.State) []Message {
	now := d.o.Now()
	out := d.ups(st, now, false)
	if m, ok := d.energyMessage(st); ok {
		out = append(out, m)
	}
	return append(out, d.cleanup(now)...)
}

// AllowCommand is the command policy for Options.AllowCommand: only
// commands the UPS offers that the policy (HASS.Policy) allows.
func (d *Discovery) AllowCommand(ups, command string) bool {
	if d.o.HASS.Policy.CheckCommand(command) != nil {
		return false
	}
	d.mu.Lock()
	info := d.infos[ups]
	d.mu.Unlock()
	return info != nil && info.HasCommand(command)
}

func (d *Discovery) ups(st *bridge.State, now time.Time, all bool) []Message {
	if st.Info != nil {
		d.mu.Lock()
		d.infos[st.UPS] = st.Info
		d.mu.Unlock()
	}
	if st.Time.IsZero() || len(st.Vars) == 0 {
		// Never read (or nothing read): publish nothing yet rather than a
		// device without entities; keep whatever exists.
		return nil
	}
	id := hass.UPSDeviceID(d.o.HASS.BridgeID, st.UPS)
	d.known[id] = true
	ds := d.deviceState(id)
	sig := hass.UPSDeviceSignature(st.Vars)
	changed := !ds.built || sig != ds.sig || st.Info != ds.info
	prev, prevAt := ds.last, ds.lastAt
	ds.last, ds.lastAt, ds.sig, ds.info = st, now, sig, st.Info
	graceDue := !ds.graceDue.IsZero() && !now.Before(ds.graceDue)
	if !all && !changed && !graceDue {
		return nil
	}
	dev := hass.UPSDevice(d.o.HASS, st)
	d.pending[id] = dev.Pending
	var old *hass.Device
	if changed && ds.built && prev != nil {
		old = hass.UPSDevice(d.o.HASS, prev)
	}
	return d.device(ds, dev, old, prevAt, now, all)
}

// device returns the configs of a device that changed (all of them when
// all is set) and removals of entities it stopped generating. old is the
// device as derived before (nil when its inputs did not change): entities
// it had and dev lacks are kept published for RemoveAfter from oldAt, the
// last time they were generated, then removed.
func (d *Discovery) device(ds *discoDevice, dev *hass.Device, old *hass.Device, oldAt, now time.Time, all bool) []Message {
	ds.built = true
	current := make(map[string]bool, len(dev.Entities))
	clear(ds.keys)
	for _, e := range dev.Entities {
		r := entityRef(e)
		current[r] = true
		delete(ds.grace, r)
		ds.keys[e.Key] = true
	}
	if old != nil {
		for _, e := range old.Entities {
			r := entityRef(e)
			if current[r] || dev.IsPending(e.Key) {
				continue
			}
			if _, ok := ds.grace[r]; !ok {
				ds.grace[r] = graceEntity{entity: e, since: oldAt}
			}
		}
	}
	var gone []hass.Entity
	ds.graceDue = time.Time{}
	for r, g := range ds.grace {
		due := g.since.Add(d.o.RemoveAfter)
		if now.Before(due) {
			// Keep it published for now: the variable may come back.
			dev.Entities = append(dev.Entities, g.entity)
			ds.keys[g.entity.Key] = true
			if ds.graceDue.IsZero() || due.Before(ds.graceDue) {
				ds.graceDue = due
			}
			continue
		}
		gone = append(gone, g.entity)
		delete(ds.grace, r)
	}
	sort.Slice(dev.Entities, func(i, j int) bool {
		a, b := dev.Entities[i], dev.Entities[j]
		if a.Component != b.Component {
			return a.Component < b.Component
		}
		return a.Key < b.Key
	})
	sort.Slice(gone, func(i, j int) bool { return entityRef(gone[i]) < entityRef(gone[j]) })
	var out []Message
	for _, e := range gone {
		d.log.Info("removing Home Assistant entity no longer reported", "device", dev.ID, "entity", e.Key)
		if d.o.HASS.DeviceMode {
			ds.removed = append(ds.removed, hass.Entity{Component: e.Component, Key: e.Key})
			continue
		}
		topic := hass.ConfigTopic(d.o.HASS, dev, e)
		out = append(out, Message{Topic: topic, Retain: true, QoS: 1})
		delete(d.published, topic)
	}
	dev.Removed = ds.removed
	for _, m := range hass.Messages(d.o.HASS, dev) {
		h := maphash.Bytes(payloadSeed, m.Payload)
		if last, ok := d.published[m.Topic]; ok && last == h && !all {
			continue
		}
		d.published[m.Topic] = h
		out = append(out, Message{Topic: m.Topic, Payload: m.Payload, Retain: true, QoS: 1})
	}
	return out
}

// cleanup removes configs the scan found that this bridge no longer
// generates: at once for the bridge and UPSes read this run, after
// UnknownGrace for devices not seen (yet).
func (d *Discovery) cleanup(now time.Time) []Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.scanned || d.applied {
		return nil
	}
	graceOver := now.Sub(d.start) >= d.o.UnknownGrace
	bridgeDev := hass.BridgeDeviceID(d.o.HASS.BridgeID)
	var out []Message
	topics := make([]string, 0, len(d.stale))
	for t := range d.stale {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, topic := range topics {
		rc := d.stale[topic]
		knownDev := rc.device == bridgeDev || d.known[rc.device]
		if !knownDev && !graceOver {
			continue
		}
		if _, ours := d.published[topic]; ours {
			if len(rc.components) > 0 {
				// A device payload we still publish: components it had
				// and we no longer generate are removed explicitly.
				d.removeComponents(topic, rc)
			}
			delete(d.stale, topic)
			continue
		}
		if knownDev && d.isPending(rc) {
			continue
		}
		d.log.Info("removing stale Home Assistant config", "topic", topic, "unique_id", rc.uniqueID)
		out = append(out, Message{Topic: topic, Retain: true, QoS: 1})
		delete(d.stale, topic)
	}
	if len(d.stale) == 0 {
		d.applied = true
	}
	return out
}

func (d *Discovery) isPending(rc retainedConfig) bool {
	for _, p := range d.pending[rc.device] {
		if strings.HasPrefix(rc.uniqueID, rc.device+"_"+p) {
			return true
		}
	}
	return false
}

// removeComponents marks components of a retained device payload that we
// do not publish as removed; the next publication of the device carries
// them as bare {"platform": ...}. Called with d.mu held.
func (d *Discovery) removeComponents(topic string, rc retainedConfig) {
	var have map[string]bool
	ds := d.devices[rc.device]
	if ds != nil {
		have = ds.keys
	}
	changed := false
	for id, platform := range rc.components {
		if have[id] {
			continue
		}
		if ds == nil {
			ds = d.deviceState(rc.device)
		}
		ds.removed = append(ds.removed, hass.Entity{Component: platform, Key: id})
		changed = true
	}
	if changed {
		// Force the device's payload out again on its next state.
		delete(d.published, topic)
		ds.built = false
	}
}

// energyMessage integrates the UPS's power (real, or estimated from load)
// into a kWh counter. It is published only after the scan has read the
// previous run's value, so the counter never goes back (HA would take a
// drop for a meter reset and a later rise for consumption).
func (d *Discovery) energyMessage(st *bridge.State) (Message, bool) {
	p, estimated, ok := upsPower(st.Vars)
	acc := d.energy[st.UPS]
	if acc == nil {
		acc = &energyAcc{}
		d.energy[st.UPS] = acc
	}
	if !ok || !st.Comm || st.Time.IsZero() {
		acc.last = time.Time{}
		return Message{}, false
	}
	if dt := st.Time.Sub(acc.last); !acc.last.IsZero() && dt > 0 && dt <= 5*time.Minute {
		acc.kwh += (acc.lastPower + p) / 2 * dt.Hours() / 1000
	}
	if st.Time.After(acc.last) {
		acc.last, acc.lastPower = st.Time, p
	}
	acc.estimated = estimated
	d.mu.Lock()
	scanned, base := d.scanned, d.baseline[st.UPS]
	d.mu.Unlock()
	if !scanned {
		return Message{}, false
	}
	payload, _ := json.Marshal(map[string]any{
		"ts": bridge.FormatTime(st.Time), "energy_kwh": roundTo(base+acc.kwh, 6), "estimated": acc.estimated,
	})
	return Message{Topic: d.o.HASS.EnergyTopic(st.UPS), Payload: payload, Retain: true, QoS: 1}, true
}

func roundTo(f float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(f*p+0.5)) / p
}

// upsPower is the UPS's output power in W: ups.realpower, or ups.load% of
// ups.realpower.nominal (estimated).
func upsPower(v bridge.Vars) (w float64, estimated, ok bool) {
	if p, ok := v.Number("ups.realpower"); ok {
		return p, false, true
	}
	if _, present := v["ups.realpower"]; present {
		return 0, false, false
	}
	load, ok1 := v.Number(bridge.VarLoad)
	nom, ok2 := v.Number("ups.realpower.nominal")
	if ok1 && ok2 {
		return load * nom / 100, true, true
	}
	return 0, false, false
}

// scanRun is one scan's collection of retained messages.
type scanRun struct {
	marker  string
	configs map[string]retainedConfig
	energy  map[string]float64
	synced  chan struct{} // closed when the marker came back
}

// configFilter and energyFilter are what the scan subscribes to.
func (d *Discovery) configFilter() string { return d.o.HASS.DiscoveryPrefix + "/+/+/config" }
func (d *Discovery) energyFilter() string { return d.o.HASS.TopicPrefix + "/ups/+/energy" }

// Tap implements Scanner: it keeps the scan's messages (retained
// configs, energy counters, its marker) from the sink's routing, and
// collects them while a scan runs. Configs and counters arriving after the
// scan (in flight when it unsubscribed, or this bridge's own echoed) are
// dropped here too.
func (d *Discovery) Tap(topic string, payload []byte, retained bool) bool {
	wire := mqttwire.Topics{Prefix: d.o.HASS.TopicPrefix}.Parse(topic)
	isConfig := false
	if rest, ok := strings.CutPrefix(topic, d.o.HASS.DiscoveryPrefix+"/"); ok {
		isConfig = strings.HasSuffix(rest, "/config") && strings.Count(rest, "/") == 2
	}
	if wire.Kind != mqttwire.KindEnergy && wire.Kind != mqttwire.KindHASSScan && !isConfig {
		return false
	}
	d.scanMu.Lock()
	defer d.scanMu.Unlock()
	sc := d.scanning
	switch {
	case wire.Kind == mqttwire.KindHASSScan:
		if wire.ID != d.o.HASS.BridgeID || sc == nil || string(payload) != sc.marker {
			return false // "done" and other bridges' markers go on to OnMessage
		}
		select {
		case <-sc.synced:
		default:
			close(sc.synced)
		}
	case sc == nil || !retained || len(payload) == 0:
	case wire.Kind == mqttwire.KindEnergy:
		var e struct {
			KWh float64 `json:"energy_kwh"`
		}
		if json.Unmarshal(payload, &e) == nil && e.KWh >= 0 {
			sc.energy[wire.ID] = e.KWh
		}
	default:
		if rc, ok := d.owned(payload); ok {
			sc.configs[topic] = rc
		}
	}
	return true
}

// Scan implements Scanner: it reads the retained discovery configs and
// energy counters on the broker once, and hands those of this bridge's
// devices to the sink goroutine, which removes the configs it no longer
// generates. Its error is only logged: discovery works without it.
func (d *Discovery) Scan(ctx context.Context, s Session) error {
	if err := d.scan(ctx, s); err != nil {
		d.log.Warn("scan for stale Home Assistant configs failed; none removed", "err", err)
		d.scanMu.Lock()
		d.scanning = nil
		d.scanMu.Unlock()
		d.mu.Lock()
		d.stale, d.scanned = nil, true
		d.mu.Unlock()
	}
	return nil
}

func (d *Discovery) scan(ctx context.Context, s Session) error {
	ctx, cancel := context.WithTimeout(ctx, d.o.ScanTimeout)
	defer cancel()
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	sc := &scanRun{
		marker:  "sync " + hex.EncodeToString(nonce),
		configs: map[string]retainedConfig{},
		energy:  map[string]float64{},
		synced:  make(chan struct{}),
	}
	d.scanMu.Lock()
	d.scanning = sc
	d.scanMu.Unlock()
	filters := []string{d.configFilter(), d.energyFilter()}
	defer func() {
		// Every config change under the prefix would come to the bridge
		// otherwise.
		uctx, c := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer c()
		if err := s.Unsubscribe(uctx, filters...); err != nil {
			d.log.Warn("hass scan: unsubscribe", "err", err)
		}
	}()
	// The sink is subscribed to the scan topic already (Subscriptions).
	if err := s.Subscribe(ctx, filters...); err != nil {
		return fmt.Errorf("hass scan: %w", err)
	}
	// Retained messages are queued to us on subscribe, before anything
	// published after the SUBACK; our own marker coming back means they
	// have all arrived. The timeout covers brokers that reorder.
	if err := s.Publish(ctx, d.scanTopic(), []byte(sc.marker)); err != nil {
		return fmt.Errorf("hass scan: marker: %w", err)
	}
	select {
	case <-sc.synced:
	case <-ctx.Done():
		return fmt.Errorf("hass scan: marker not seen within %s", d.o.ScanTimeout)
	}
	d.scanMu.Lock()
	d.scanning = nil // Tap collects no more
	d.scanMu.Unlock()
	d.mu.Lock()
	// configs belongs to the sink goroutine once handed over: count first.
	ours, counters := len(sc.configs), len(sc.energy)
	d.stale, d.scanned = sc.configs, true
	for k, v := range sc.energy {
		d.baseline[k] = v
	}
	d.mu.Unlock()
	// Tell the sink's publishing goroutine (OnMessage) the list is ready.
	pctx, c := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer c()
	if err := s.Publish(pctx, d.scanTopic(), []byte("done")); err != nil {
		d.log.Warn("hass scan: publish done notice", "err", err)
	}
	d.log.Debug("scan of retained discovery configs done", "ours", ours, "energy_counters", counters)
	return nil
}

// owned parses a retained config and reports whether it belongs to this
// bridge: its device is the bridge device or a device via it. Exact
// matches only, so bridge "home" never claims bridge "home_2"'s configs.
func (d *Discovery) owned(payload []byte) (retainedConfig, bool) {
	var raw map[string]json.RawMessage
	if json.Unmarshal(payload, &raw) != nil {
		return retainedConfig{}, false
	}
	pick := func(keys ...string) json.RawMessage {
		for _, k := range keys {
			if v, ok := raw[k]; ok {
				return v
			}
		}
		return nil
	}
	var dev map[string]json.RawMessage
	if json.Unmarshal(pick("device", "dev"), &dev) != nil {
		return retainedConfig{}, false
	}
	var ids []string
	if v, ok := dev["identifiers"]; ok || dev["ids"] != nil {
		if !ok {
			v = dev["ids"]
		}
		if json.Unmarshal(v, &ids) != nil {
			var one string
			if json.Unmarshal(v, &one) == nil {
				ids = []string{one}
			}
		}
	}
	var via string
	_ = json.Unmarshal(dev["via_device"], &via)
	bridgeDev := hass.BridgeDeviceID(d.o.HASS.BridgeID)
	if len(ids) == 0 || ids[0] == "" || (via != bridgeDev && ids[0] != bridgeDev) {
		return retainedConfig{}, false
	}
	rc := retainedConfig{device: ids[0]}
	_ = json.Unmarshal(pick("unique_id", "uniq_id"), &rc.uniqueID)
	var cmps map[string]map[string]any
	if json.Unmarshal(pick("components", "cmps"), &cmps) == nil && len(cmps) > 0 {
		rc.components = map[string]string{}
		for id, c := range cmps {
			p, _ := c["platform"].(string)
			if p == "" {
				p, _ = c["p"].(string)
			}
			if len(c) > 1 {
				rc.components[id] = p
			}
		}
	}
	return rc, true
}
