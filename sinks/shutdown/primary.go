package shutdown

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/mqttwire"
	mqttsink "github.com/upsbridge/upsbridge/sinks/mqtt"
)

// PrimaryBridge is what the primary needs of the bridge.
type PrimaryBridge interface {
	SetFSD(ctx context.Context, ups string) error
	InstCmd(ctx context.Context, ups, command, arg string) (bridge.CommandResult, error)
}

// PrimaryOptions configure a [Primary].
type PrimaryOptions struct {
	Bridge      PrimaryBridge
	HostSync    time.Duration
	KillPower   bool
	Conn        mqttsink.ConnOptions
	TopicPrefix string
	Logger      *slog.Logger
}

// Primary is the bridge's side of the FSD handshake, as a sink: when a UPS
// turns critical it latches FSD (published in state and event), waits until
// every agent fed by that UPS is shutting_down or offline, or host_sync
// passes, and with kill_power asks the UPS to cut the load after its delay
// (shutdown.return) so hosts restart when mains returns.
type Primary struct {
	opts PrimaryOptions
	log  *slog.Logger

	mu     sync.Mutex
	agents map[string]agentSeen
	wake   chan struct{}
}

type agentSeen struct {
	status   string // "offline" or the agent's status
	supplies map[string]int
}

// NewPrimary returns the primary sink.
func NewPrimary(opts PrimaryOptions) *Primary {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Primary{opts: opts, log: opts.Logger.With("sink", "primary"), agents: map[string]agentSeen{}, wake: make(chan struct{}, 1)}
}

// Name implements bridge.Sink.
func (p *Primary) Name() string { return "primary" }

// Run implements bridge.Sink.
func (p *Primary) Run(ctx context.Context, q *bridge.Queue) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Waiting for agents matters only before cutting the power; without
	// kill_power the primary just latches FSD and needs no connection of
	// its own.
	var err error
	if p.opts.KillPower {
		_, err = mqttsink.Connect(cctx, p.opts.Conn, mqttsink.Handlers{
			OnUp: func(cm *autopaho.ConnectionManager) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sctx, c := context.WithTimeout(cctx, 10*time.Second)
					defer c()
					if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: p.opts.TopicPrefix + "/agent/+/state", QoS: 1}}}); err != nil && cctx.Err() == nil {
						p.log.Error("subscribe to agent states", "err", err)
					}
				}()
			},
			OnPublish: p.onAgentState,
		})
	}
	if err != nil {
		return fmt.Errorf("primary: %w", err)
	}
	active := map[string]bool{}
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return nil
		}
		if m.Kind != bridge.MessageState {
			continue
		}
		st := m.State
		switch {
		case st.Critical && !active[st.UPS]:
			active[st.UPS] = true
			wg.Add(1)
			go func(ups string) {
				defer wg.Done()
				p.handshake(cctx, ups)
			}(st.UPS)
		case !st.Critical && !st.OnBattery():
			active[st.UPS] = false
		}
	}
}

func (p *Primary) onAgentState(topic string, payload []byte, _ bool) {
	rest, ok := strings.CutPrefix(topic, p.opts.TopicPrefix+"/agent/")
	if !ok {
		return
	}
	id, tail, _ := strings.Cut(rest, "/")
	if tail != "state" || !bridge.IDPattern.MatchString(id) || len(payload) > mqttwire.MaxPayload {
		return
	}
	seen := agentSeen{supplies: map[string]int{}}
	switch strings.TrimSpace(string(payload)) {
	case "offline", "":
		p.mu.Lock()
		if prev, ok := p.agents[id]; ok {
			seen.supplies = prev.supplies
		}
		seen.status = "offline"
		p.agents[id] = seen
		p.mu.Unlock()
	default:
		var st AgentState
		if err := json.Unmarshal(payload, &st); err != nil {
			p.log.Warn("malformed agent state ignored", "agent", id, "err", err)
			return
		}
		seen.status = st.Status
		for _, s := range st.Supplies {
			seen.supplies[s.UPS] = s.PowerValue
		}
		p.mu.Lock()
		p.agents[id] = seen
		p.mu.Unlock()
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// waiting lists the agents fed by ups that are neither shutting down nor
// offline.
func (p *Primary) waiting(ups string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id, a := range p.agents {
		if a.supplies[ups] > 0 && a.status != StatusShuttingDown && a.status != "offline" {
			out = append(out, id)
		}
	}
	return out
}

func (p *Primary) handshake(ctx context.Context, ups string) {
	if err := p.opts.Bridge.SetFSD(ctx, ups); err != nil {
		p.log.Error("set FSD", "ups", ups, "err", err)
	}
	if !p.opts.KillPower {
		return
	}
	deadline := time.NewTimer(p.opts.HostSync)
	defer deadline.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	start := time.Now()
	for {
		w := p.waiting(ups)
		if len(w) == 0 {
			p.log.Warn("every agent fed by the UPS is shutting down or offline", "ups", ups, "waited", time.Since(start).Round(time.Millisecond))
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			p.log.Warn("host_sync passed; not waiting for agents any longer", "ups", ups, "host_sync", p.opts.HostSync, "agents", w)
			w = nil
		case <-p.wake:
		case <-poll.C:
		}
		if w == nil {
			break
		}
	}
	if !p.opts.KillPower {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := p.opts.Bridge.InstCmd(cctx, ups, "shutdown.return", "")
	if err != nil {
		p.log.Error("kill power: shutdown.return failed", "ups", ups, "err", err)
		return
	}
	p.log.Warn("kill power: the UPS will cut the load after its delay and return with mains", "ups", ups, "result", res.Status)
}
