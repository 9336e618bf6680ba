// Package agent is the shutdown agent: it takes the news its intake
// accepted (internal/agent/intake, through a [news.Source]), feeds it to the
// policy (internal/agent/policy), persists progress
// (internal/agent/statefile), carries out the decisions
// (internal/agent/executor) and publishes its state and events.
//
// Time is the agent's own: every duration the policy sees is measured on
// the agent's monotonic clock ([Clock]) from the moment news was received.
// Neither a payload's ts nor a step of the wall clock changes a decision.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/internal/agent/executor"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/internal/agent/statefile"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// Options configure an [Agent].
type Options struct {
	ID          string
	TopicPrefix string
	Policy      policy.Config
	FinalDelay  time.Duration
	// DryRun: a rehearsal. The executor should then be a
	// executor.DryRunExecutor; the agent asks it once to power off and its
	// final stage ends when mains returns.
	DryRun    bool
	StateFile string
	BootID    string
	Exec      executor.Executor
	// Publish sends an MQTT message (nil: nothing is published).
	Publish func(ctx context.Context, topic string, payload []byte, retain bool) error
	// Orders returns the (epoch, seq) the intake has accepted per UPS, to
	// persist in state_file (nil: none are persisted).
	Orders func() map[string]mqttwire.Order
	// OnDecision is called with every action as it is decided (for
	// measurements and tests); it must not block.
	OnDecision func(policy.Action, policy.Now)
	// Heartbeat re-publishes the state this often while idle (default
	// 30 s); otherwise it is re-published every
	// mqttwire.AgentHeartbeatActive.
	Heartbeat time.Duration
	// PoweroffBackoff is the wait after the first failed power off
	// (default 5 s), doubling up to PoweroffBackoffMax (default 1 min).
	PoweroffBackoff, PoweroffBackoffMax time.Duration
	// PoweroffRecheck: a host still running this long after the OS
	// accepted the power off is asked again (default 2 min).
	PoweroffRecheck time.Duration
	// Clock is the agent's clock (nil: SystemClock()).
	Clock  Clock
	Logger *slog.Logger
	// Metrics is the process's metrics set, where the agent registers its
	// own (nil: a set of its own).
	Metrics *metrics.Set
}

// Agent runs the policy: it feeds it news, persists its progress, executes
// its actions and publishes its status.
type Agent struct {
	opts  Options
	log   *slog.Logger
	clock Clock
	pol   *policy.Policy
	start time.Duration
	known map[string]mqttwire.Order // orders loaded from state_file

	work  chan policy.Action // stage and undo commands, run in order by one worker
	pubs  chan pubMsg        // publications, sent by one goroutine so a hung broker never stalls the policy
	marks chan chan struct{} // the final stage asks the loop to record powering_off
	wg    sync.WaitGroup

	// loop-owned
	finalCancel    context.CancelFunc
	lastOrdersSave time.Duration
	unprotected    string // why the host is unprotected, "" when it is not
	unprotLogged   time.Duration
	loud           bool // the loss of protection was logged and published

	mu          sync.Mutex
	lastPayload []byte
	lastSnap    policy.Snapshot
	lastPub     time.Duration
	lastAction  string

	st agentStats // numbers for Stats (stats.go)
}

type pubMsg struct {
	topic   string
	payload []byte
	retain  bool
	done    chan struct{} // closed once sent (or failed), when not nil
}

// New returns an agent, resuming the progress in state_file.
func New(opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 30 * time.Second
	}
	if opts.PoweroffBackoff <= 0 {
		opts.PoweroffBackoff = 5 * time.Second
	}
	if opts.PoweroffBackoffMax <= 0 {
		opts.PoweroffBackoffMax = time.Minute
	}
	if opts.PoweroffRecheck <= 0 {
		opts.PoweroffRecheck = 2 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock()
	}
	if opts.Exec == nil {
		return nil, fmt.Errorf("shutdown agent %s: no executor", opts.ID)
	}
	if len(opts.Exec.PoweroffMethods()) == 0 {
		return nil, fmt.Errorf("shutdown agent %s: the executor has no power-off method", opts.ID)
	}
	opts.Policy.DryRun = opts.DryRun
	log := opts.Logger.With("agent", opts.ID)
	mode := statefile.Mode(opts.DryRun)
	loaded, err := statefile.Load(opts.StateFile, opts.ID, opts.BootID, mode)
	if err != nil {
		// A corrupt file must not stop the agent protecting the host.
		log.Error("state_file unreadable; starting without progress", "err", err)
	}
	if loaded.Discarded != "" {
		log.Warn("state_file progress discarded", "state_file", opts.StateFile, "why", loaded.Discarded)
	}
	prog := loaded.Progress
	if prog.Outage {
		log.Warn("resuming an outage after a restart", "outage_start", prog.OutageStartWall, "ran", prog.Ran, "final_started", prog.Final)
	}
	now := opts.Clock.Now()
	a := &Agent{opts: opts, log: log, clock: opts.Clock, start: now.Mono, known: loaded.Orders,
		work: make(chan policy.Action, 64), pubs: make(chan pubMsg, 256), marks: make(chan chan struct{})}
	a.pol = policy.New(opts.Policy, now, prog)
	if err != nil || loaded.Discarded != "" {
		// Rewrite the file so the discarded progress cannot come back.
		a.save(prog)
	}
	a.setView(a.pol.Snapshot(now.Mono), now)
	a.initMetrics(opts.Metrics)
	return a, nil
}

// Known returns the (epoch, seq) per UPS id that state_file remembers, for
// the intake's replay check.
func (a *Agent) Known() map[string]mqttwire.Order { return maps.Clone(a.known) }

// save writes progress and the known orders to state_file.
func (a *Agent) save(prog policy.Progress) {
	orders := maps.Clone(a.known)
	if a.opts.Orders != nil {
		if orders == nil {
			orders = map[string]mqttwire.Order{}
		}
		for k, o := range a.opts.Orders() {
			if o.After(orders[k]) {
				orders[k] = o
			}
		}
	}
	a.known = orders
	f := statefile.File{Agent: a.opts.ID, BootID: a.opts.BootID, Mode: statefile.Mode(a.opts.DryRun), Progress: prog, Orders: orders}
	if err := statefile.Save(a.opts.StateFile, f); err != nil {
		a.log.Error("persist progress", "err", err)
	}
}

// ordersSaveEvery is how often changed orders are written to state_file
// outside of progress changes.
const ordersSaveEvery = time.Minute

// Run feeds news from src to the policy until ctx ends.
func (a *Agent) Run(ctx context.Context, src news.Source) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer a.wg.Wait()
	a.wg.Add(2)
	go a.worker(ctx)
	go a.publisher(ctx)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	var buf []news.News
	a.step(ctx)
	for {
		now := a.clock.Now().Mono
		if d, ok := a.pol.NextDeadline(now); ok {
			deadline.Reset(d - now)
		}
		select {
		case <-ctx.Done():
			prog, _ := a.pol.TakeProgress()
			a.save(prog)
			return nil
		case <-src.Notify():
			buf = src.Take(buf[:0])
			for _, n := range buf {
				for _, act := range a.pol.Observe(n, a.clock.MonoOf(n.At)) {
					a.do(ctx, act, a.clock.Now())
				}
			}
			clear(buf)
			a.step(ctx)
		case <-tick.C:
			a.step(ctx)
		case <-deadline.C:
			a.step(ctx)
		case done := <-a.marks:
			now := a.clock.Now()
			a.pol.PoweringOff(now)
			a.persist()
			a.publishState(now, true, done)
		}
	}
}

// persist writes progress when it changed.
func (a *Agent) persist() {
	if prog, changed := a.pol.TakeProgress(); changed {
		a.save(prog)
		a.lastOrdersSave = a.clock.Now().Mono
	}
}

// step evaluates the policy, persists progress before acting (a crash
// never re-runs a stage), acts, and publishes the status.
func (a *Agent) step(ctx context.Context) {
	now := a.clock.Now()
	acts := a.pol.Evaluate(now)
	a.persist()
	if a.opts.Orders != nil && now.Mono-a.lastOrdersSave >= ordersSaveEvery {
		a.lastOrdersSave = now.Mono
		prog, _ := a.pol.TakeProgress()
		a.save(prog)
	}
	for _, act := range acts {
		a.do(ctx, act, now)
	}
	a.publishState(now, false, nil)
	a.reportProtection(now)
}

// unprotectedLogEvery is how often an unprotected host is logged.
const unprotectedLogEvery = time.Minute

// reportProtection makes an unprotected host loud: an error log every
// minute and a WARN event when protection is lost, and an event when it
// returns. Right after start live news needs a moment to arrive: the state
// and /readyz say "unprotected" at once, the log and the event wait until
// the agent has run for max_state_age.
func (a *Agent) reportProtection(now policy.Now) {
	ok, reason := a.pol.Protected(now.Mono)
	if ok {
		if a.loud {
			a.log.Info("protected again: live news of every supply", "was", a.unprotected)
			a.event(now, mqttwire.AgentEventWarn, "", "", fmt.Sprintf("Host %s is protected again: live news of every supply", a.opts.ID))
		}
		a.unprotected, a.loud = "", false
		return
	}
	a.unprotected = reason
	if now.Mono-a.start < a.opts.Policy.MaxStateAge {
		return
	}
	if !a.loud || now.Mono-a.unprotLogged >= unprotectedLogEvery {
		a.log.Error("host unprotected: the agent cannot tell when to power off", "reason", reason)
		a.unprotLogged = now.Mono
	}
	if !a.loud {
		a.loud = true
		a.event(now, mqttwire.AgentEventWarn, "", "", fmt.Sprintf("Host %s is unprotected: %s", a.opts.ID, reason))
	}
}

func (a *Agent) do(ctx context.Context, act policy.Action, now policy.Now) {
	if a.opts.OnDecision != nil {
		a.opts.OnDecision(act, now)
	}
	if act.Kind == policy.ActWarn {
		a.st.warnings.Inc()
	} else {
		a.st.decisions.Inc()
		last := act.Kind.String()
		if act.Stage != "" {
			last += " " + act.Stage
		}
		a.mu.Lock()
		a.lastAction = last + ": " + act.Reason
		a.mu.Unlock()
	}
	id := a.opts.ID
	switch act.Kind {
	case policy.ActWarn:
		a.log.Warn("agent warning", "ups", act.UPS, "reason", act.Reason)
		a.event(now, mqttwire.AgentEventWarn, "", act.UPS, "Host "+id+": "+act.Reason)
	case policy.ActOutageStart:
		a.log.Warn("host on battery: outage started", "ups", act.UPS, "reason", act.Reason)
		a.event(now, mqttwire.AgentEventOutageStart, "", act.UPS, "Host "+id+" is on battery: "+act.Reason)
	case policy.ActOutageEnd:
		a.log.Info("mains returned: pending stages cancelled", "reason", act.Reason)
		a.event(now, mqttwire.AgentEventOutageEnd, "", "", "Host "+id+": "+act.Reason+"; pending stages cancelled")
	case policy.ActCancelFinal:
		if a.finalCancel != nil {
			a.finalCancel()
			a.finalCancel = nil
		}
		a.log.Error("final stage cancelled", "reason", act.Reason)
		a.event(now, mqttwire.AgentEventWarn, "", "", "Host "+id+": "+act.Reason)
	case policy.ActStage:
		a.log.Warn("stage started", "stage", act.Stage, "reason", act.Reason)
		a.event(now, mqttwire.AgentEventStage, act.Stage, act.UPS, fmt.Sprintf("Host %s started stage %s: %s", id, act.Stage, act.Reason))
		a.enqueue(act)
	case policy.ActUndo:
		a.enqueue(act)
	case policy.ActPoweroff:
		a.log.Warn("final stage: shutting down", "stage", act.Stage, "reason", act.Reason, "resumed", act.Resumed)
		a.event(now, mqttwire.AgentEventShutdown, act.Stage, act.UPS, fmt.Sprintf("Host %s started final stage %s and is shutting down: %s", id, act.Stage, act.Reason))
		a.publishState(now, true, nil)
		fctx, cancel := context.WithCancel(ctx)
		a.finalCancel = cancel
		a.wg.Add(1)
		go a.final(fctx, act)
	}
}

func (a *Agent) enqueue(act policy.Action) {
	select {
	case a.work <- act:
	default:
		a.st.actionsFailed.Inc()
		a.log.Error("command queue full; command skipped", "stage", act.Stage, "kind", act.Kind.String())
	}
}

// worker runs stage and undo commands in order. The final stage does not
// wait for it: a slow or failing stage never blocks the power off.
func (a *Agent) worker(ctx context.Context) {
	defer a.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case act := <-a.work:
			what := "stage " + act.Stage
			if act.Kind == policy.ActUndo {
				what = "undo " + act.Stage
			}
			err := a.opts.Exec.Run(ctx, what, act.Command)
			switch {
			case err != nil:
				a.st.actionsFailed.Inc()
				a.event(a.clock.Now(), mqttwire.AgentEventStageFailed, act.Stage, "", fmt.Sprintf("Host %s: %s failed: %v", a.opts.ID, what, err))
			case act.Kind == policy.ActUndo:
				a.event(a.clock.Now(), mqttwire.AgentEventUndo, act.Stage, "", fmt.Sprintf("Host %s undid stage %s: mains returned", a.opts.ID, act.Stage))
			}
		}
	}
}

// publishWait bounds how long the power off waits for powering_off to
// reach the broker.
const publishWait = 2 * time.Second

// final is the final stage: its command, final_delay, powering_off, then
// the power off, retried until the host is down or ctx ends.
func (a *Agent) final(ctx context.Context, act policy.Action) {
	defer a.wg.Done()
	id := a.opts.ID
	if len(act.Command) > 0 {
		if err := a.opts.Exec.Run(ctx, "stage "+act.Stage, act.Command); err != nil {
			a.st.actionsFailed.Inc()
			a.event(a.clock.Now(), mqttwire.AgentEventStageFailed, act.Stage, "", fmt.Sprintf("Host %s: final stage command failed (powering off anyway): %v", id, err))
		}
	}
	if !sleep(ctx, a.opts.FinalDelay) {
		return
	}
	// Record and publish powering_off before asking the OS.
	done := make(chan struct{})
	select {
	case a.marks <- done:
	case <-ctx.Done():
		return
	}
	t := time.NewTimer(publishWait)
	select {
	case <-done:
	case <-t.C:
		a.log.Warn("powering_off not confirmed by the broker; powering off anyway")
	case <-ctx.Done():
		t.Stop()
		return
	}
	t.Stop()
	a.event(a.clock.Now(), mqttwire.AgentEventPoweringOff, act.Stage, act.UPS, fmt.Sprintf("Host %s is powering off: %s", id, act.Reason))
	methods := a.opts.Exec.PoweroffMethods()
	backoff := a.opts.PoweroffBackoff
	for attempt := 0; ; attempt++ {
		m := methods[attempt%len(methods)]
		err := a.opts.Exec.Poweroff(ctx, m)
		if ctx.Err() != nil {
			return
		}
		wait := backoff
		if err == nil {
			if a.opts.DryRun {
				a.log.Warn("dry run: the host would power off now")
				return
			}
			a.log.Warn("the OS accepted the power off", "method", m)
			if !sleep(ctx, a.opts.PoweroffRecheck) {
				return
			}
			err = fmt.Errorf("the host is still up %s after %s accepted the power off", a.opts.PoweroffRecheck, m)
			wait = 0
		} else {
			backoff = min(backoff*2, a.opts.PoweroffBackoffMax)
		}
		a.st.poweroffFailed.Inc()
		next := methods[(attempt+1)%len(methods)]
		a.log.Error("power off failed; retrying", "method", m, "err", err, "retry_in", wait, "next_method", next)
		a.event(a.clock.Now(), mqttwire.AgentEventPoweroffFailed, act.Stage, "", fmt.Sprintf("Host %s: power off by %s failed: %v; retrying by %s in %s", id, m, err, next, wait))
		if !sleep(ctx, wait) {
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// event publishes an agent event on the agent's event topic. Notifiers
// learn of it from there: the bridge subscribes to agents' events, also
// those of an agent in its own process.
func (a *Agent) event(now policy.Now, typ, stage, ups, msg string) {
	a.st.events.Inc()
	if a.opts.Publish == nil {
		return
	}
	data, err := json.Marshal(mqttwire.AgentEvent{Agent: a.opts.ID, TS: mqttwire.FormatTime(now.Wall), Type: typ, Stage: stage, UPS: ups, Message: msg, DryRun: a.opts.DryRun})
	if err != nil {
		a.log.Error("encode agent event", "err", err)
		return
	}
	a.send(pubMsg{topic: a.topics().AgentEvent(a.opts.ID), payload: data})
}

func (a *Agent) topics() mqttwire.Topics { return mqttwire.Topics{Prefix: a.opts.TopicPrefix} }

func (a *Agent) send(m pubMsg) {
	if a.opts.Publish == nil {
		if m.done != nil {
			close(m.done)
		}
		return
	}
	select {
	case a.pubs <- m:
	default:
		a.log.Warn("publication dropped: broker too slow", "topic", m.topic)
		if m.done != nil {
			close(m.done)
		}
	}
}

// publisher sends publications in order, off the policy's goroutine.
func (a *Agent) publisher(ctx context.Context) {
	defer a.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.pubs:
			if err := a.opts.Publish(ctx, m.topic, m.payload, m.retain); err != nil {
				a.log.Warn("publish failed", "topic", m.topic, "err", err)
			}
			if m.done != nil {
				close(m.done)
			}
		}
	}
}

// publishState publishes the agent's status when it changed, on the
// heartbeat (every mqttwire.AgentHeartbeatActive while not idle), or when
// forced (before the final stage, before powering off).
func (a *Agent) publishState(now policy.Now, force bool, done chan struct{}) {
	sn := a.pol.Snapshot(now.Mono)
	a.setView(sn, now)
	a.mu.Lock()
	cmp := sn
	cmp.NextStageIn = nil
	prev := a.lastSnap
	prev.NextStageIn = nil
	every := a.opts.Heartbeat
	if sn.Status != mqttwire.AgentIdle {
		every = min(every, mqttwire.AgentHeartbeatActive)
	}
	due := force || !reflect.DeepEqual(cmp, prev) || now.Mono-a.lastPub >= every || a.lastPayload == nil
	if !due {
		a.mu.Unlock()
		return
	}
	a.lastSnap, a.lastPub = sn, now.Mono
	st := mqttwire.AgentState{Agent: a.opts.ID, TS: mqttwire.FormatTime(now.Wall), Status: sn.Status, Stage: sn.Stage, NextStage: sn.NextStage,
		Supplies: sn.Supplies, DryRun: a.opts.DryRun, Protected: sn.Protected, Reason: sn.Reason, LastAction: a.lastAction}
	if st.Supplies == nil {
		st.Supplies = []mqttwire.SupplyStatus{}
	}
	if sn.NextStageIn != nil {
		s := math.Round(sn.NextStageIn.Seconds())
		st.NextStageInS = &s
	}
	if sn.Outage && !sn.OutageStart.IsZero() {
		st.OutageStartTS = mqttwire.FormatTime(sn.OutageStart)
	}
	data, err := json.Marshal(st)
	if err != nil {
		a.mu.Unlock()
		a.log.Error("encode agent state", "err", err)
		return
	}
	a.lastPayload = data
	a.mu.Unlock()
	a.send(pubMsg{topic: a.topics().AgentState(a.opts.ID), payload: data, retain: true, done: done})
}

// Republish publishes the last agent state again (after a reconnect: the
// broker may have lost it, and the Will may have replaced it).
func (a *Agent) Republish() {
	a.mu.Lock()
	data := a.lastPayload
	a.mu.Unlock()
	if data == nil {
		return
	}
	a.send(pubMsg{topic: a.topics().AgentState(a.opts.ID), payload: data, retain: true})
}
