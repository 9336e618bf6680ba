// Package mqttwire is upsbridge's MQTT wire contract: every topic the bridge
// and agents publish or read, the payloads on them, their encoding and the
// canonical form that signatures cover. Publisher, agent, Home Assistant
// discovery and the primary all build and parse topics here, and nowhere
// else, so the contract has one definition.
//
//	<prefix>/bridge/<bridge>/availability   retained online|offline (Will: offline)
//	<prefix>/bridge/<bridge>/hass/scan      discovery scan marker (Home Assistant)
//	<prefix>/ups/<ups>/availability         retained online|offline (communication with the UPS)
//	<prefix>/ups/<ups>/state                retained StatePayload, QoS 1
//	<prefix>/ups/<ups>/event                EventPayload, QoS 1
//	<prefix>/ups/<ups>/energy               retained EnergyPayload
//	<prefix>/ups/<ups>/command              in: CommandRequest or a bare command name
//	<prefix>/ups/<ups>/set                  in: SetRequest
//	<prefix>/ups/<ups>/command/result       out: CommandResponse
//	<prefix>/agent/<agent>/state            retained AgentState (Will: offline)
//	<prefix>/agent/<agent>/event            AgentEvent
package mqttwire

import (
	"regexp"
	"strings"
)

// IDPattern is what UPS, bridge and agent ids must match: they are topic
// levels and Home Assistant ids.
var IDPattern = regexp.MustCompile(`^[a-z0-9_-]+$`)

// ValidID reports whether s is a valid id. It is IDPattern without the
// regexp engine, for the hot path of reading topics.
func ValidID(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// MaxIDLen bounds an id read from a topic or payload.
const MaxIDLen = 128

// Availability payloads. An agent's Will is Offline on its state topic.
const (
	Online  = "online"
	Offline = "offline"
)

// Topics builds and parses the contract's topic names under one prefix.
type Topics struct{ Prefix string }

func (t Topics) join(parts ...string) string { return t.Prefix + "/" + strings.Join(parts, "/") }

// BridgeAvailability is <prefix>/bridge/<id>/availability.
func (t Topics) BridgeAvailability(bridge string) string {
	return t.join("bridge", bridge, "availability")
}

// HASSScan is <prefix>/bridge/<id>/hass/scan.
func (t Topics) HASSScan(bridge string) string { return t.join("bridge", bridge, "hass", "scan") }

// UPSAvailability is <prefix>/ups/<id>/availability.
func (t Topics) UPSAvailability(ups string) string { return t.join("ups", ups, "availability") }

// State is <prefix>/ups/<id>/state.
func (t Topics) State(ups string) string { return t.join("ups", ups, "state") }

// Event is <prefix>/ups/<id>/event.
func (t Topics) Event(ups string) string { return t.join("ups", ups, "event") }

// Energy is <prefix>/ups/<id>/energy.
func (t Topics) Energy(ups string) string { return t.join("ups", ups, "energy") }

// Command is <prefix>/ups/<id>/command.
func (t Topics) Command(ups string) string { return t.join("ups", ups, "command") }

// Set is <prefix>/ups/<id>/set.
func (t Topics) Set(ups string) string { return t.join("ups", ups, "set") }

// CommandResult is <prefix>/ups/<id>/command/result.
func (t Topics) CommandResult(ups string) string { return t.join("ups", ups, "command", "result") }

// AgentState is <prefix>/agent/<id>/state.
func (t Topics) AgentState(agent string) string { return t.join("agent", agent, "state") }

// AgentEvent is <prefix>/agent/<id>/event.
func (t Topics) AgentEvent(agent string) string { return t.join("agent", agent, "event") }

// Wildcard subscriptions.
func (t Topics) AllBridgeAvailability() string { return t.join("bridge", "+", "availability") }

// AllCommands matches every UPS's command topic.
func (t Topics) AllCommands() string { return t.join("ups", "+", "command") }

// AllSets matches every UPS's set topic.
func (t Topics) AllSets() string { return t.join("ups", "+", "set") }

// AllAgentStates matches every agent's state topic.
func (t Topics) AllAgentStates() string { return t.join("agent", "+", "state") }

// AllAgentEvents matches every agent's event topic.
func (t Topics) AllAgentEvents() string { return t.join("agent", "+", "event") }

// Kind says which topic of the contract a name is.
type Kind int

// The topic kinds. KindNone is a name outside the contract.
const (
	KindNone Kind = iota
	KindBridgeAvailability
	KindHASSScan
	KindUPSAvailability
	KindState
	KindEvent
	KindEnergy
	KindCommand
	KindSet
	KindCommandResult
	KindAgentState
	KindAgentEvent
)

var kindNames = [...]string{"none", "bridge_availability", "hass_scan", "ups_availability", "state", "event", "energy", "command", "set", "command_result", "agent_state", "agent_event"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Topic is a parsed topic name: its kind and the id it names (a bridge, a
// UPS or an agent, by kind).
type Topic struct {
	Kind Kind
	ID   string
}

// Parse classifies a topic name. Anything outside the contract, or with an
// id that is not valid, is KindNone. It does not allocate.
func (t Topics) Parse(name string) Topic {
	rest, ok := strings.CutPrefix(name, t.Prefix)
	if !ok || len(rest) == 0 || rest[0] != '/' {
		return Topic{}
	}
	rest = rest[1:]
	class, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return Topic{}
	}
	id, leaf, ok := strings.Cut(rest, "/")
	if !ok || !ValidID(id) {
		return Topic{}
	}
	var k Kind
	switch class {
	case "bridge":
		switch leaf {
		case "availability":
			k = KindBridgeAvailability
		case "hass/scan":
			k = KindHASSScan
		}
	case "ups":
		switch leaf {
		case "availability":
			k = KindUPSAvailability
		case "state":
			k = KindState
		case "event":
			k = KindEvent
		case "energy":
			k = KindEnergy
		case "command":
			k = KindCommand
		case "set":
			k = KindSet
		case "command/result":
			k = KindCommandResult
		}
	case "agent":
		switch leaf {
		case "state":
			k = KindAgentState
		case "event":
			k = KindAgentEvent
		}
	}
	if k == KindNone {
		return Topic{}
	}
	return Topic{Kind: k, ID: id}
}

// ParseAvailability reads an availability payload. An empty payload (a
// cleared retained topic) is offline. ok is false for anything else.
func ParseAvailability(p []byte) (online, ok bool) {
	switch strings.TrimSpace(string(p)) {
	case Online:
		return true, true
	case Offline, "":
		return false, true
	}
	return false, false
}
