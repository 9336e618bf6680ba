package bridge

import (
	"strings"
)

// Flag is one known token of NUT's ups.status, as a bit in a [Flags] set.
type Flag uint32

// The ups.status tokens NUT defines (docs/new-drivers.txt, "Status data").
const (
	OL Flag = 1 << iota
	OB
	LB
	HB
	RB
	CHRG
	DISCHRG
	BYPASS
	CAL
	OFF
	OVER
	TRIM
	BOOST
	FSD
	ALARM
	ECO
)

// flagNames lists the known tokens in a fixed order; it is the single table
// from which parsing and printing are derived.
var flagNames = []struct {
	flag Flag
	name string
}{
	{OL, "OL"}, {OB, "OB"}, {LB, "LB"}, {HB, "HB"}, {RB, "RB"}, {CHRG, "CHRG"},
	{DISCHRG, "DISCHRG"}, {BYPASS, "BYPASS"}, {CAL, "CAL"}, {OFF, "OFF"},
	{OVER, "OVER"}, {TRIM, "TRIM"}, {BOOST, "BOOST"}, {FSD, "FSD"},
	{ALARM, "ALARM"}, {ECO, "ECO"},
}

// String returns the NUT token of a single flag, or "" for a combination.
func (f Flag) String() string {
	for _, fn := range flagNames {
		if fn.flag == f {
			return fn.name
		}
	}
	return ""
}

// LookupFlag returns the flag for a NUT token, matched case-insensitively as
// upsmon does.
func LookupFlag(token string) (Flag, bool) {
	for _, fn := range flagNames {
		if strings.EqualFold(fn.name, token) {
			return fn.flag, true
		}
	}
	return 0, false
}

// Flags is a set of known status flags.
type Flags Flag

// Has reports whether every flag in f is set.
func (s Flags) Has(f Flag) bool { return Flag(s)&f == f }

// Status is a parsed ups.status: the known flags as a set and every token in
// the order the driver sent it, unknown ones (WAIT, HE, vendor tokens) kept.
type Status struct {
	Raw     string   // the value as read, untouched
	Flags   Flags    // the known tokens
	Tokens  []string // every distinct token in order; known ones upper-cased
	Unknown []string // tokens that are not NUT flags, as read
}

// ParseStatus parses a ups.status value. Tokens are matched as a set, never by
// prefix or substring, and case-insensitively; duplicates are dropped. It
// never fails: an empty value gives an empty status.
func ParseStatus(raw string) Status {
	s := Status{Raw: raw}
	for _, tok := range strings.Fields(raw) {
		if f, ok := LookupFlag(tok); ok {
			if s.Flags.Has(f) {
				continue
			}
			s.Flags |= Flags(f)
			s.Tokens = append(s.Tokens, f.String())
			continue
		}
		dup := false
		for _, u := range s.Unknown {
			if u == tok {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		s.Unknown = append(s.Unknown, tok)
		s.Tokens = append(s.Tokens, tok)
	}
	return s
}

// Has reports whether the status carries flag f.
func (s Status) Has(f Flag) bool { return s.Flags.Has(f) }

// Empty reports whether the status has no tokens at all.
func (s Status) Empty() bool { return len(s.Tokens) == 0 }
