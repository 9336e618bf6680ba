package bridge

import (
	"fmt"
	"time"
)

// EventType is an event name with upsmon's meaning (NOTIFYTYPE in upsmon).
type EventType string

// The events the bridge derives, named as upsmon names its notifications.
const (
	EventOnline    EventType = "ONLINE"
	EventOnBatt    EventType = "ONBATT"
	EventLowBatt   EventType = "LOWBATT"
	EventFSD       EventType = "FSD"
	EventCommOK    EventType = "COMMOK"
	EventCommBad   EventType = "COMMBAD"
	EventNoComm    EventType = "NOCOMM"
	EventReplBatt  EventType = "REPLBATT"
	EventCal       EventType = "CAL"
	EventNotCal    EventType = "NOTCAL"
	EventOff       EventType = "OFF"
	EventNotOff    EventType = "NOTOFF"
	EventBypass    EventType = "BYPASS"
	EventNotBypass EventType = "NOTBYPASS"
	EventOver      EventType = "OVER"
	EventNotOver   EventType = "NOTOVER"
	EventTrim      EventType = "TRIM"
	EventNotTrim   EventType = "NOTTRIM"
	EventBoost     EventType = "BOOST"
	EventNotBoost  EventType = "NOTBOOST"
	EventAlarm     EventType = "ALARM"
	EventNotAlarm  EventType = "NOTALARM"
	EventEco       EventType = "ECO"
	EventNotEco    EventType = "NOTECO"
	// EventShutdown is emitted by a host that is about to power off (agents).
	EventShutdown EventType = "SHUTDOWN"
	// EventStage is emitted by an agent that started a shutdown stage.
	EventStage EventType = "STAGE"
	// EventStageFailed is emitted by an agent whose stage or undo command failed.
	EventStageFailed EventType = "STAGE_FAILED"
	// EventUndo is emitted by an agent that undid a stage when mains returned.
	EventUndo EventType = "UNDO"
	// EventPoweringOff is emitted by an agent that is asking its OS to power
	// off: its final commands and final_delay are done.
	EventPoweringOff EventType = "POWERING_OFF"
	// EventPoweroffFailed is emitted by an agent whose power-off failed; it
	// retries.
	EventPoweroffFailed EventType = "POWEROFF_FAILED"

	// The primary's handshake after FSD (sinks/primary), each step an event.

	// EventHostSync: FSD is set; the primary waits for the hosts the UPS feeds.
	EventHostSync EventType = "HOSTSYNC"
	// EventHostDown: one host fed by the UPS is done (offline, powering
	// off for host_sync, or silent for host_sync).
	EventHostDown EventType = "HOST_DOWN"
	// EventHostsDown: every host fed by the UPS is done.
	EventHostsDown EventType = "HOSTS_DOWN"
	// EventHostSyncTimeout: max_wait passed with hosts still shutting down.
	EventHostSyncTimeout EventType = "HOSTSYNC_TIMEOUT"
	// EventKillPower: the primary asked the UPS to cut its load and return
	// with mains (shutdown.return).
	EventKillPower EventType = "KILLPOWER"
	// EventKillPowerFailed: the UPS did not accept the kill-power command.
	EventKillPowerFailed EventType = "KILLPOWER_FAILED"
	// EventKillPowerSkipped: mains returned before the kill; the load stays on.
	EventKillPowerSkipped EventType = "KILLPOWER_SKIPPED"
)

// Severity orders events for routing (notifier min_severity).
type Severity int

// Severities, lowest first.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityCritical
)

func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "info"
	case SeverityWarning:
		return "warning"
	case SeverityCritical:
		return "critical"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// ParseSeverity parses "info", "warning" or "critical".
func ParseSeverity(s string) (Severity, error) {
	switch s {
	case "info":
		return SeverityInfo, nil
	case "warning":
		return SeverityWarning, nil
	case "critical":
		return SeverityCritical, nil
	}
	return 0, fmt.Errorf("unknown severity %q (want info, warning or critical)", s)
}

type eventInfo struct {
	severity Severity
	format   string // %s is the UPS id (the host's id for host events)
}

// hostEvents are the events of a host's agent rather than of a UPS.
var hostEvents = map[EventType]bool{
	EventShutdown: true, EventStage: true, EventStageFailed: true, EventUndo: true,
	EventPoweringOff: true, EventPoweroffFailed: true,
}

var eventTable = map[EventType]eventInfo{
	EventOnline:      {SeverityInfo, "UPS %s is back on mains power"},
	EventOnBatt:      {SeverityWarning, "UPS %s is on battery: mains power failed"},
	EventLowBatt:     {SeverityCritical, "UPS %s battery is low"},
	EventFSD:         {SeverityCritical, "UPS %s: forced shutdown in progress"},
	EventCommOK:      {SeverityInfo, "Communication with UPS %s restored"},
	EventCommBad:     {SeverityWarning, "Communication with UPS %s lost"},
	EventNoComm:      {SeverityWarning, "UPS %s is unavailable: no communication"},
	EventReplBatt:    {SeverityWarning, "UPS %s battery needs to be replaced"},
	EventCal:         {SeverityInfo, "UPS %s is calibrating its battery"},
	EventNotCal:      {SeverityInfo, "UPS %s finished calibrating"},
	EventOff:         {SeverityWarning, "UPS %s is off: the load is not powered"},
	EventNotOff:      {SeverityInfo, "UPS %s is no longer off"},
	EventBypass:      {SeverityWarning, "UPS %s is on bypass: the load is not protected"},
	EventNotBypass:   {SeverityInfo, "UPS %s left bypass"},
	EventOver:        {SeverityWarning, "UPS %s is overloaded"},
	EventNotOver:     {SeverityInfo, "UPS %s is no longer overloaded"},
	EventTrim:        {SeverityInfo, "UPS %s is trimming high input voltage"},
	EventNotTrim:     {SeverityInfo, "UPS %s stopped trimming input voltage"},
	EventBoost:       {SeverityInfo, "UPS %s is boosting low input voltage"},
	EventNotBoost:    {SeverityInfo, "UPS %s stopped boosting input voltage"},
	EventAlarm:       {SeverityWarning, "UPS %s has an active alarm"},
	EventNotAlarm:    {SeverityInfo, "UPS %s alarms cleared"},
	EventEco:         {SeverityInfo, "UPS %s entered ECO mode"},
	EventNotEco:      {SeverityInfo, "UPS %s left ECO mode"},
	EventShutdown:    {SeverityCritical, "Host %s is shutting down"},
	EventStage:       {SeverityWarning, "Host %s started a shutdown stage"},
	EventStageFailed: {SeverityWarning, "Host %s: a shutdown stage command failed"},
	EventUndo:        {SeverityInfo, "Host %s undid a shutdown stage: mains returned"},

	EventPoweringOff:      {SeverityCritical, "Host %s is powering off"},
	EventPoweroffFailed:   {SeverityCritical, "Host %s: power-off failed; retrying"},
	EventHostSync:         {SeverityWarning, "UPS %s: forced shutdown; waiting for the hosts it feeds to power off"},
	EventHostDown:         {SeverityInfo, "UPS %s: a host it feeds is down"},
	EventHostsDown:        {SeverityWarning, "UPS %s: every host it feeds is down"},
	EventHostSyncTimeout:  {SeverityWarning, "UPS %s: max_wait passed while hosts were still shutting down"},
	EventKillPower:        {SeverityCritical, "UPS %s: cutting the load (shutdown.return); it returns with mains"},
	EventKillPowerFailed:  {SeverityCritical, "UPS %s: could not cut the load"},
	EventKillPowerSkipped: {SeverityInfo, "UPS %s is back on mains: the load is not cut"},
}

// KnownEvent reports whether t is an event name upsbridge produces.
func KnownEvent(t EventType) bool {
	_, ok := eventTable[t]
	return ok
}

// EventTypes lists every event name upsbridge produces.
func EventTypes() []EventType {
	out := make([]EventType, 0, len(eventTable))
	for t := range eventTable {
		out = append(out, t)
	}
	return out
}

// HostEvent reports whether t is an event of a host's agent (STAGE,
// SHUTDOWN, POWERING_OFF...), published on the agent's topic, never on a
// UPS's.
func HostEvent(t EventType) bool { return hostEvents[t] }

// Severity returns the event type's severity.
func (t EventType) Severity() Severity { return eventTable[t].severity }

// Event is one derived power event for a UPS.
type Event struct {
	UPS     string
	Time    time.Time
	Type    EventType
	Message string
	Status  string // raw ups.status when the event was derived
	// Host is set on events of a host's agent (stage started, SHUTDOWN);
	// UPS then names the supply concerned, if any.
	Host string
	// State is the UPS state the event was derived with (for templates:
	// charge, runtime, load, outage start). It may be nil.
	State *State
}

// Severity returns the event's severity.
func (e Event) Severity() Severity { return e.Type.Severity() }

// NewEvent builds an event with the standard message for its type.
func NewEvent(ups string, t time.Time, typ EventType, status string) Event {
	msg := string(typ)
	if info, ok := eventTable[typ]; ok {
		msg = fmt.Sprintf(info.format, ups)
	}
	return Event{UPS: ups, Time: t, Type: typ, Message: msg, Status: status}
}
