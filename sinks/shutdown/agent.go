package shutdown

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sync"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	srcmqtt "github.com/upsbridge/upsbridge/sources/mqtt"
)

// Options configure an [Agent].
type Options struct {
	ID          string
	TopicPrefix string
	Policy      PolicyConfig
	FinalDelay  time.Duration
	DryRun      bool
	StateFile   string
	BootID      string
	// CommandTimeout bounds the final stage's own command.
	CommandTimeout time.Duration
	Exec           Executor
	// Publish sends an MQTT message (nil: nothing is published).
	Publish func(ctx context.Context, topic string, payload []byte, retain bool) error
	// Emit routes agent events to notifiers (nil: none).
	Emit func(bridge.Event)
	// OnDecision is called with every action as it is decided (for
	// measurements and tests); it must not block.
	OnDecision func(Action, time.Time)
	// Heartbeat re-publishes the agent state this often (default 30 s).
	Heartbeat time.Duration
	Logger    *slog.Logger
}

// Agent runs the policy: it feeds it news, persists its progress, executes
// its actions and publishes its status.
type Agent struct {
	opts Options
	log  *slog.Logger
	pol  *Policy

	work chan Action // stage and undo commands, run in order by one worker
	pubs chan pubMsg // publications, sent by one goroutine so a hung broker never stalls the policy
	wg   sync.WaitGroup

	mu          sync.Mutex
	lastPayload []byte
	lastSnap    Snapshot
	lastPub     time.Time
	lastAction  string

	st agentStats // numbers for Stats (stats.go)
}

type pubMsg struct {
	topic   string
	payload []byte
	retain  bool
}

// AgentState is the JSON published retained on <prefix>/agent/<id>/state.
// Its fields are public API.
type AgentState struct {
	Agent         string         `json:"agent"`
	TS            string         `json:"ts"`
	Status        string         `json:"status"`
	Stage         string         `json:"stage"`
	NextStage     string         `json:"next_stage"`
	NextStageInS  *float64       `json:"next_stage_in_s"`
	Supplies      []SupplyStatus `json:"supplies"`
	DryRun        bool           `json:"dry_run"`
	OutageStartTS string         `json:"outage_start,omitempty"`
	// LastAction describes the agent's last decision ("stage shed-load started").
	LastAction string `json:"last_action,omitempty"`
}

// AgentEvent is the JSON published on <prefix>/agent/<id>/event.
type AgentEvent struct {
	Agent   string `json:"agent"`
	TS      string `json:"ts"`
	Type    string `json:"type"` // OUTAGE_START | STAGE | STAGE_FAILED | UNDO | OUTAGE_END | SHUTDOWN | WARN
	Stage   string `json:"stage,omitempty"`
	UPS     string `json:"ups,omitempty"`
	Message string `json:"message"`
	DryRun  bool   `json:"dry_run"`
}

// StateTopic is <prefix>/agent/<id>/state.
func StateTopic(prefix, id string) string { return prefix + "/agent/" + id + "/state" }

// EventTopic is <prefix>/agent/<id>/event.
func EventTopic(prefix, id string) string { return prefix + "/agent/" + id + "/event" }

// NewAgent returns an agent, resuming the progress in state_file.
func NewAgent(opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 30 * time.Second
	}
	if opts.Exec == nil {
		return nil, fmt.Errorf("shutdown agent %s: no executor", opts.ID)
	}
	log := opts.Logger.With("agent", opts.ID)
	prog, otherBoot, err := loadProgress(opts.StateFile, opts.ID, opts.BootID)
	if err != nil {
		// A corrupt file must not stop the agent protecting the host.
		log.Error("state_file unreadable; starting without progress", "err", err)
	}
	if otherBoot {
		log.Info("state_file is from a previous boot; its progress is void", "state_file", opts.StateFile)
		if err := saveProgress(opts.StateFile, opts.ID, opts.BootID, Progress{}); err != nil {
			log.Error("reset state_file", "err", err)
		}
	}
	if !prog.OutageStart.IsZero() {
		log.Warn("resuming an outage after a restart", "outage_start", prog.OutageStart, "ran", prog.Ran, "final_started", prog.Final)
	}
	a := &Agent{opts: opts, log: log, work: make(chan Action, 64), pubs: make(chan pubMsg, 256)}
	now := time.Now()
	a.pol = NewPolicy(opts.Policy, now, prog)
	a.setView(a.pol.Snapshot(now), now, a.pol.prog.OutageStart)
	return a, nil
}

// Run feeds news to the policy until ctx ends.
func (a *Agent) Run(ctx context.Context, news <-chan srcmqtt.News) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer a.wg.Wait()
	a.wg.Add(2)
	go a.worker(ctx)
	go a.publisher(ctx)

	prog, _ := a.pol.TakeProgress()
	if prog.Final {
		// Killed between deciding and powering off: finish the job.
		a.log.Warn("the final stage had started before the restart; continuing the power off")
		a.wg.Add(1)
		go a.poweroff(ctx, Action{Kind: ActPoweroff, Stage: "resume", Reason: "resumed after restart"})
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	a.step(ctx, time.Now())
	for {
		now := time.Now()
		if d := a.pol.NextDeadline(now); !d.IsZero() {
			deadline.Reset(d.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case n := <-news:
			for _, act := range a.pol.Observe(n) {
				a.do(ctx, act, n.At)
			}
			a.step(ctx, time.Now())
		case now := <-tick.C:
			a.step(ctx, now)
		case now := <-deadline.C:
			a.step(ctx, now)
		}
	}
}

// step evaluates the policy, persists progress before acting (a crash
// never re-runs a stage), acts, and publishes the status.
func (a *Agent) step(ctx context.Context, now time.Time) {
	acts := a.pol.Evaluate(now)
	if prog, changed := a.pol.TakeProgress(); changed {
		if err := saveProgress(a.opts.StateFile, a.opts.ID, a.opts.BootID, prog); err != nil {
			a.log.Error("persist progress", "err", err)
		}
	}
	for _, act := range acts {
		a.do(ctx, act, now)
	}
	a.publishState(ctx, now, false)
}

func (a *Agent) do(ctx context.Context, act Action, now time.Time) {
	if a.opts.OnDecision != nil {
		a.opts.OnDecision(act, now)
	}
	if act.Kind == ActWarn {
		a.st.warnings.Add(1)
	} else {
		a.st.decisions.Add(1)
		last := act.Kind.String()
		if act.Stage != "" {
			last += " " + act.Stage
		}
		a.mu.Lock()
		a.lastAction = last + ": " + act.Reason
		a.mu.Unlock()
	}
	switch act.Kind {
	case ActWarn:
		a.log.Warn("agent warning", "ups", act.UPS, "reason", act.Reason)
	case ActOutageStart:
		a.log.Warn("host on battery: outage started", "ups", act.UPS, "reason", act.Reason)
		a.event(ctx, "OUTAGE_START", "", act.UPS, "Host "+a.opts.ID+" is on battery: "+act.Reason, "")
	case ActOutageEnd:
		a.log.Info("mains returned: pending stages cancelled", "reason", act.Reason)
		a.event(ctx, "OUTAGE_END", "", "", "Host "+a.opts.ID+": "+act.Reason+"; pending stages cancelled", "")
	case ActStage:
		a.log.Warn("stage started", "stage", act.Stage, "reason", act.Reason)
		a.event(ctx, string(bridge.EventStage), act.Stage, act.UPS, fmt.Sprintf("Host %s started stage %s: %s", a.opts.ID, act.Stage, act.Reason), bridge.EventStage)
		a.enqueue(act)
	case ActUndo:
		a.enqueue(act)
	case ActPoweroff:
		a.log.Warn("final stage: shutting down", "stage", act.Stage, "reason", act.Reason)
		a.event(ctx, string(bridge.EventStage), act.Stage, act.UPS, fmt.Sprintf("Host %s started final stage %s: %s", a.opts.ID, act.Stage, act.Reason), bridge.EventStage)
		a.publishState(ctx, now, true)
		a.wg.Add(1)
		go a.poweroff(ctx, act)
	}
}

func (a *Agent) enqueue(act Action) {
	select {
	case a.work <- act:
	default:
		a.st.actionsFailed.Add(1)
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
			if act.Kind == ActUndo {
				what = "undo " + act.Stage
			}
			err := a.opts.Exec.Run(ctx, what, act.Command)
			switch {
			case err != nil:
				a.st.actionsFailed.Add(1)
				a.event(ctx, string(bridge.EventStageFailed), act.Stage, "", fmt.Sprintf("Host %s: %s failed: %v", a.opts.ID, what, err), bridge.EventStageFailed)
			case act.Kind == ActUndo:
				a.event(ctx, string(bridge.EventUndo), act.Stage, "", fmt.Sprintf("Host %s undid stage %s: mains returned", a.opts.ID, act.Stage), bridge.EventUndo)
			}
		}
	}
}

// poweroff is the final stage: its command, final_delay, SHUTDOWN, power off.
func (a *Agent) poweroff(ctx context.Context, act Action) {
	defer a.wg.Done()
	if len(act.Command) > 0 {
		if err := a.opts.Exec.Run(ctx, "stage "+act.Stage, act.Command); err != nil {
			a.st.actionsFailed.Add(1)
			a.event(ctx, string(bridge.EventStageFailed), act.Stage, "", fmt.Sprintf("Host %s: final stage command failed (powering off anyway): %v", a.opts.ID, err), bridge.EventStageFailed)
		}
	}
	select {
	case <-time.After(a.opts.FinalDelay):
	case <-ctx.Done():
		return
	}
	a.event(ctx, string(bridge.EventShutdown), act.Stage, act.UPS, fmt.Sprintf("Host %s is shutting down: %s", a.opts.ID, act.Reason), bridge.EventShutdown)
	if err := a.opts.Exec.Poweroff(ctx); err != nil {
		a.st.actionsFailed.Add(1)
		a.log.Error("power off failed", "err", err)
		a.event(ctx, string(bridge.EventStageFailed), act.Stage, "", fmt.Sprintf("Host %s: power off failed: %v", a.opts.ID, err), bridge.EventStageFailed)
	}
}

// event publishes an agent event and routes it to notifiers.
func (a *Agent) event(ctx context.Context, typ, stage, ups, msg string, notify bridge.EventType) {
	now := time.Now()
	if a.opts.Emit != nil && notify != "" {
		a.opts.Emit(bridge.Event{Host: a.opts.ID, UPS: ups, Time: now, Type: notify, Message: msg})
	}
	if a.opts.Publish == nil {
		return
	}
	data, _ := json.Marshal(AgentEvent{Agent: a.opts.ID, TS: bridge.FormatTime(now), Type: typ, Stage: stage, UPS: ups, Message: msg, DryRun: a.opts.DryRun})
	a.send(pubMsg{EventTopic(a.opts.TopicPrefix, a.opts.ID), data, false})
}

func (a *Agent) send(m pubMsg) {
	if a.opts.Publish == nil {
		return
	}
	select {
	case a.pubs <- m:
	default:
		a.log.Warn("publication dropped: broker too slow", "topic", m.topic)
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
		}
	}
}

// publishState publishes the agent's status when it changed, on the
// heartbeat, or when forced (after a reconnect, before powering off).
func (a *Agent) publishState(ctx context.Context, now time.Time, force bool) {
	sn := a.pol.Snapshot(now)
	a.setView(sn, now, a.pol.prog.OutageStart)
	a.mu.Lock()
	cmp := sn
	cmp.NextStageIn = nil
	prev := a.lastSnap
	prev.NextStageIn = nil
	due := force || !reflect.DeepEqual(cmp, prev) || now.Sub(a.lastPub) >= a.opts.Heartbeat || a.lastPayload == nil
	if !due {
		a.mu.Unlock()
		return
	}
	a.lastSnap, a.lastPub = sn, now
	st := AgentState{Agent: a.opts.ID, TS: bridge.FormatTime(now), Status: sn.Status, Stage: sn.Stage, NextStage: sn.NextStage, Supplies: sn.Supplies, DryRun: a.opts.DryRun, LastAction: a.lastAction}
	if st.Supplies == nil {
		st.Supplies = []SupplyStatus{}
	}
	if sn.NextStageIn != nil {
		s := math.Round(sn.NextStageIn.Seconds())
		st.NextStageInS = &s
	}
	if !a.pol.prog.OutageStart.IsZero() {
		st.OutageStartTS = bridge.FormatTime(a.pol.prog.OutageStart)
	}
	data, _ := json.Marshal(st)
	a.lastPayload = data
	a.mu.Unlock()
	a.send(pubMsg{StateTopic(a.opts.TopicPrefix, a.opts.ID), data, true})
}

// Republish publishes the last agent state again (after a reconnect: the
// broker may have lost it, and the Will may have replaced it).
func (a *Agent) Republish(ctx context.Context) {
	a.mu.Lock()
	data := a.lastPayload
	a.mu.Unlock()
	if data == nil {
		return
	}
	a.send(pubMsg{StateTopic(a.opts.TopicPrefix, a.opts.ID), data, true})
}
