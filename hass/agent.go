package hass

import "sort"

// Agent describes a shutdown agent (sinks/shutdown) for AgentDevice.
type Agent struct {
	// ID is the agent's id (agent.id).
	ID string
	// Host names the machine the agent runs on (device name); "" uses ID.
	Host string
	// SWVersion is the upsbridge version the agent runs.
	SWVersion string
	// StateTopic is where the agent publishes its retained state JSON
	// (<prefix>/agent/<id>/state): {"agent", "ts", "status":
	// idle|on_battery|staging|shutting_down, "stage", "next_stage",
	// "next_stage_in_s", "supplies", "dry_run", optionally "last_action"}.
	StateTopic string
	// AvailabilityTopic carries online/offline (the agent connection's
	// Will). When empty, availability is read from StateTopic: the Will
	// publishes the bare string "offline" there and any JSON state counts
	// as online.
	AvailabilityTopic string
}

// AgentStatuses are the options of an agent's Status enum sensor.
var AgentStatuses = []string{"idle", "on_battery", "staging", "shutting_down"}

// AgentDeviceID is an agent device's identifier.
func AgentDeviceID(agentID string) string { return "upsbridge_agent_" + Slug(agentID) }

// AgentDevice returns the device an agent publishes for itself, with its
// status, current and next stage, the countdown to the next stage, whether
// it is armed (not a dry run) and its last action. The agent publishes the
// configs itself, on its own connection, with Messages(o, AgentDevice(o,
// a)): o.DiscoveryPrefix, o.DeviceMode and o.Origin are used; o.TopicPrefix
// and o.BridgeID are not (the agent is not under a bridge). Templates read
// the state JSON defensively: a missing field renders "None" (unknown), and
// the bare "offline" Will payload makes every entity unavailable.
func AgentDevice(o Options, a Agent) *Device {
	name := a.Host
	if name == "" {
		name = a.ID
	}
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
