package bridge

import "time"

// State is what the bridge knows about one UPS at one moment. States are
// immutable once handed to sinks: sinks must not modify them.
type State struct {
	UPS    string
	Time   time.Time // time of the reading the state reflects
	Seq    uint64    // increases with every state of this UPS in this run
	Status Status
	Vars   Vars
	// Comm is true while the source talks to the UPS.
	Comm bool
	// Gone is true when the source no longer lists the UPS at all.
	Gone bool
	// Critical follows upsmon: FSD, OB with LB (not while calibrating), OFF
	// for longer than OffDuration, or communication lost while last seen on
	// battery for longer than DeadTime.
	Critical bool
	// OnBatterySince is when the current outage began (zero when on mains).
	OnBatterySince time.Time
	// Info describes the UPS's commands and writable variables; it may be nil.
	Info *Info
}

// OnBattery reports whether the UPS was last seen on battery.
func (s State) OnBattery() bool { return s.Status.Has(OB) }

// LowBattery reports whether the UPS reports a low battery.
func (s State) LowBattery() bool { return s.Status.Has(LB) }

// Info is what a source knows of a UPS beyond its variables: the instant
// commands it accepts and its writable variables.
type Info struct {
	Commands []Command
	Writable []Writable
}

// Command is an instant command a UPS accepts ("beeper.mute").
type Command struct {
	Name        string
	Description string
}

// Writable is a variable that can be set, with its constraints.
type Writable struct {
	Name        string
	Description string
	Type        string   // NUT's type: "STRING:n", "NUMBER", "ENUM", "RANGE"
	Enum        []string // allowed values for ENUM
	Ranges      [][2]float64
}

// UpdateKind says what a source reports in an [Update].
type UpdateKind int

// The update kinds.
const (
	// Reading carries a complete set of variables read from the UPS.
	Reading UpdateKind = iota
	// CommLost says the source cannot talk to the UPS (Err says why).
	CommLost
	// Gone says the UPS is no longer offered by its server.
	Gone
)

// Update is what a source emits: a reading, or news that the UPS cannot be
// reached. Vars must not be modified by the source after sending.
type Update struct {
	Source string
	UPS    string
	Kind   UpdateKind
	Time   time.Time
	Vars   Vars
	Info   *Info // optional; nil keeps what the bridge already knows
	Err    error // for CommLost
}
