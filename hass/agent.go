package hass

import (
	"sort"

	"github.com/upsbridge/upsbridge/mqttwire"
)

// Agent describes a shutdown agent (package agent) for AgentDevice.
type Agent struct {
	// ID is the agent's id (agent.id); the device is named after it.
	ID string
	// Host names the machine the agent runs on (shown as the device's
	// model detail, not its name: two agents on one host stay apart).
	Host string
	// SWVersion is the upsbridge version the agent runs.
	SWVersion string
	// StateTopic is where the agent publishes its retained state JSON
	// (<prefix>/agent/<id>/state): {"agent", "ts", "status":
	// idle|on_battery|staging|shutting_down|powering_off, "stage",
	// "next_stage", "next_stage_in_s", "supplies", "dry_run", "protected",
	// optionally "reason" and "last_action"}.
	StateTopic string
	// EventTopic is where the agent publishes its events
	// (<prefix>/agent/<id>/event); "" publishes no event entity.
	EventTopic string
	// AvailabilityTopic carries online/offline (the agent connection's
	// Will). When empty, availability is read from StateTopic: the Will
	// publishes the bare string "offline" there and any JSON state counts
	// as online.
	AvailabilityTopic string
}

// AgentStatuses are the options of an agent's Status enum sensor.
var AgentStatuses = []string{mqttwire.AgentIdle, mqttwire.AgentOnBattery, mqttwire.AgentStaging, mqttwire.AgentShuttingDown, mqttwire.AgentPoweringOff}

// AgentEventTypes are the event types an agent publishes on its event
// topic, and the only ones its event entity lists.
var AgentEventTypes = []string{
	mqttwire.AgentEventOutageStart, mqttwire.AgentEventStage, mqttwire.AgentEventStageFailed, mqttwire.AgentEventUndo,
	mqttwire.AgentEventOutageEnd, mqttwire.AgentEventShutdown, mqttwire.AgentEventPoweringOff,
	mqttwire.AgentEventPoweroffFailed, mqttwire.AgentEventWarn,
}

// AgentDeviceID is an agent device's identifier.
func AgentDeviceID(agentID string) string { return "upsbridge_agent_" + Slug(agentID) }

// AgentDevice returns the device an agent publishes for itself, named
// after the agent id, with its status, current and next stage, the
// countdown to the next stage, whether it is armed (not a dry run), a
// problem sensor (on while the host is unprotected), its last action and
// its events. The agent publishes the
// configs itself, on its own connection, with Messages(o, AgentDevice(o,
// a)): o.DiscoveryPrefix, o.DeviceMode and o.Origin are used; o.TopicPrefix
// and o.BridgeID are not (the agent is not under a bridge). Templates read
// the state JSON defensively: a missing field renders "None" (unknown), and
// the bare "offline" Will payload makes every entity unavailable.
func AgentDevice(o Options, a Agent) *Device {
	name := a.ID
	d := &Device{
		ID:   AgentDeviceID(a.ID),
		Slug: Slug(a.ID),
		Info: map[string]any{
			"identifiers":  []string{AgentDeviceID(a.ID)},
			"name":         name,
			"manufacturer": "upsbridge",
			"model":        "Shutdown agent",
		},
	}
	if a.Host != "" && a.Host != a.ID {
		d.Info["model"] = "Shutdown agent on " + a.Host
	}
	if a.SWVersion != "" {
		d.Info["sw_version"] = a.SWVersion
	}
	var avail []any
	if a.AvailabilityTopic != "" {
		avail = []any{map[string]any{"topic": a.AvailabilityTopic}}
	} else {
		avail = []any{map[string]any{"topic": a.StateTopic,
			"value_template": "{{ 'offline' if value | trim == 'offline' else 'online' }}"}}
	}
	// field renders a state field, or None when the payload is not a JSON
	// object (the Will) or lacks the field.
	field := func(expr string) string {
		return "{% set j = value_json if value_json is defined and value_json is mapping else {} %}" + expr
	}
	add := func(component, key string, c map[string]any) {
		c["state_topic"] = a.StateTopic
		c["availability"] = avail
		c["availability_mode"] = "all"
		c["name"] = fixName(c["name"].(string), name)
		d.Entities = append(d.Entities, Entity{Component: component, Key: key, Config: c})
	}
	add("sensor", "status", map[string]any{
		"name": "Shutdown status", "device_class": "enum", "options": append([]string(nil), AgentStatuses...),
		"icon":           "mdi:power-settings",
		"value_template": field("{{ j.status if j.status in " + pyList(AgentStatuses) + " else 'None' }}"),
	})
	add("sensor", "stage", map[string]any{
		"name": "Stage", "icon": "mdi:stairs",
		"value_template": field("{{ j.stage[:255] if j.stage is string and j.stage else 'None' }}"),
	})
	add("sensor", "next_stage", map[string]any{
		"name": "Next stage", "icon": "mdi:stairs-up",
		"value_template": field("{{ j.next_stage[:255] if j.next_stage is string and j.next_stage else 'None' }}"),
	})
	add("sensor", "next_stage_in", map[string]any{
		"name": "Next stage in", "device_class": "duration", "unit_of_measurement": "s",
		"state_class": "measurement", "suggested_display_precision": 0,
		"value_template": field("{{ j.next_stage_in_s if j.next_stage_in_s is number else 'None' }}"),
	})
	add("binary_sensor", "armed", map[string]any{
		"name": "Armed", "payload_on": "ON", "payload_off": "OFF", "icon": "mdi:shield-check",
		"value_template": field("{{ 'None' if j.dry_run is not boolean else ('OFF' if j.dry_run else 'ON') }}"),
	})
	add("binary_sensor", "problem", map[string]any{
		"name": "Unprotected", "device_class": "problem", "payload_on": "ON", "payload_off": "OFF",
		"json_attributes_topic":    a.StateTopic,
		"json_attributes_template": field("{{ {'reason': j.reason[:255] if j.reason is string else ''} | tojson }}"),
		"value_template":           field("{{ 'None' if j.protected is not boolean else ('OFF' if j.protected else 'ON') }}"),
	})
	if a.EventTopic != "" {
		add("event", "events", map[string]any{
			"name": "Shutdown events", "event_types": append([]string(nil), AgentEventTypes...),
			"icon":           "mdi:power-plug-off",
			"value_template": `{{ {"event_type": value_json.type, "message": value_json.message, "stage": value_json.stage, "ups": value_json.ups, "dry_run": value_json.dry_run, "ts": value_json.ts} | tojson }}`,
		})
		// add sets state_topic to the state topic; events come on their own.
		d.Entities[len(d.Entities)-1].Config["state_topic"] = a.EventTopic
	}
	add("sensor", "last_action", map[string]any{
		"name": "Last action", "icon": "mdi:history",
		"value_template": field("{{ j.last_action[:255] if j.last_action is string and j.last_action else 'None' }}"),
	})
	add("sensor", "last_update", map[string]any{
		"name": "Last update", "device_class": "timestamp", "entity_category": "diagnostic",
		"value_template": field("{{ j.ts if j.ts is string and j.ts else 'None' }}"),
	})
	sort.Slice(d.Entities, func(i, j int) bool {
		x, y := d.Entities[i], d.Entities[j]
		if x.Component != y.Component {
			return x.Component < y.Component
		}
		return x.Key < y.Key
	})
	return d
}

func pyList(items []string) string {
	s := "["
	for i, it := range items {
		if i > 0 {
			s += ", "
		}
		s += "'" + it + "'"
	}
	return s + "]"
}
