package mqttwire

import (
	"fmt"
	"strings"
	"time"
)

// Agent statuses, published in AgentState.Status, in the order of the
// shutdown handshake. The agent's Will (and a clean stop) publishes Offline
// on its state topic instead of a JSON state.
const (
	// AgentIdle: mains, nothing to do.
	AgentIdle = "idle"
	// AgentOnBattery: an outage began, no stage has run.
	AgentOnBattery = "on_battery"
	// AgentStaging: at least one non-final stage ran.
	AgentStaging = "staging"
	// AgentShuttingDown: the final stage's commands are running.
	AgentShuttingDown = "shutting_down"
	// AgentPoweringOff: the final commands and final_delay are done; the
	// agent is asking the OS to power off (published right before).
	AgentPoweringOff = "powering_off"
)

// AgentHeartbeatActive is how often an agent that is not idle re-publishes its
// state at least, so a primary can tell a working agent from a dead one.
const AgentHeartbeatActive = 5 * time.Second

// AgentState is the JSON published retained on <prefix>/agent/<id>/state.
// Its fields are public API.
type AgentState struct {
	Agent        string         `json:"agent"`
	TS           string         `json:"ts"`
	Status       string         `json:"status"`
	Stage        string         `json:"stage"`
	NextStage    string         `json:"next_stage"`
	NextStageInS *float64       `json:"next_stage_in_s"`
	Supplies     []SupplyStatus `json:"supplies"`
	DryRun       bool           `json:"dry_run"`
	// Protected is false while some supply has had no live state since
	// start, or none for longer than max_state_age: the agent cannot
	// protect the host. Reason says why.
	Protected     bool   `json:"protected"`
	Reason        string `json:"reason,omitempty"`
	OutageStartTS string `json:"outage_start,omitempty"`
	// LastAction describes the agent's last decision ("stage shed-load started").
	LastAction string `json:"last_action,omitempty"`
}

// SupplyStatus is one supply in an agent's state.
type SupplyStatus struct {
	UPS        string `json:"ups"`
	Bridge     string `json:"bridge,omitempty"`
	PowerValue int    `json:"power_value"`
	Status     string `json:"status"` // ups.status, "" when unknown
	OnBattery  bool   `json:"on_battery"`
	Critical   bool   `json:"critical"`
	// Current: live news keeps arriving and the bridge talks to the UPS.
	Current bool `json:"current"`
}

// Agent event types, published in AgentEvent.Type.
const (
	AgentEventOutageStart    = "OUTAGE_START"
	AgentEventStage          = "STAGE"
	AgentEventStageFailed    = "STAGE_FAILED"
	AgentEventUndo           = "UNDO"
	AgentEventOutageEnd      = "OUTAGE_END"
	AgentEventShutdown       = "SHUTDOWN"
	AgentEventPoweringOff    = "POWERING_OFF"
	AgentEventPoweroffFailed = "POWEROFF_FAILED"
	AgentEventWarn           = "WARN"
)

// AgentEvent is the JSON published on <prefix>/agent/<id>/event.
type AgentEvent struct {
	Agent   string `json:"agent"`
	TS      string `json:"ts"`
	Type    string `json:"type"`
	Stage   string `json:"stage,omitempty"`
	UPS     string `json:"ups,omitempty"`
	Message string `json:"message"`
	DryRun  bool   `json:"dry_run"`
}

// DecodeAgentState reads what is on an agent's state topic: offline is
// true for the Will (or an empty, cleared topic), otherwise the state.
func DecodeAgentState(data []byte) (st AgentState, offline bool, err error) {
	if s := strings.TrimSpace(string(data)); s == Offline || s == "" {
		return st, true, nil
	}
	if err := decodeStrict("agent state", data, &st); err != nil {
		return st, false, err
	}
	if !ValidID(st.Agent) {
		return st, false, fmt.Errorf("agent state payload: field agent: bad id %q", st.Agent)
	}
	return st, false, nil
}

// DecodeAgentEvent reads an agent event.
func DecodeAgentEvent(data []byte) (AgentEvent, error) {
	var ev AgentEvent
	if err := decodeStrict("agent event", data, &ev); err != nil {
		return ev, err
	}
	if !ValidID(ev.Agent) {
		return ev, fmt.Errorf("agent event payload: field agent: bad id %q", ev.Agent)
	}
	if ev.Type == "" {
		return ev, fmt.Errorf("agent event payload: field type: empty")
	}
	return ev, nil
}
