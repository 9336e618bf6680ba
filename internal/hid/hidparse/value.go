package hidparse

import "math"

// Raw extracts the field's raw logical value from a report as received on
// the wire (starting with the report id byte when the descriptor uses ids).
// Reports shorter than declared are zero-filled, as devices often send
// short reports; ok is false when the field lies wholly past the received
// data (nothing of it was sent).
func (f *Field) Raw(report []byte, usesIDs bool) (v int64, ok bool) {
	data := report
	if usesIDs {
		if len(report) == 0 {
			return 0, false
		}
		data = report[1:]
	}
	if f.Offset/8 >= len(data) || f.Size <= 0 || f.Size > 64 {
		return 0, false
	}
	var u uint64
	for i := 0; i < f.Size; i++ {
		bit := f.Offset + i
		if bit/8 >= len(data) {
			break // zero-fill a short report
		}
		if data[bit/8]&(1<<(bit%8)) != 0 {
			u |= 1 << i
		}
	}
	if f.Signed() && f.Size < 64 && u&(1<<(f.Size-1)) != 0 {
		u |= ^uint64(0) << f.Size
	}
	return int64(u), true
}

// Put writes a raw logical value into a report buffer (with the id byte
// first when the descriptor uses ids), for SET_REPORT's read-modify-write.
// It reports false when the buffer is too short for the field.
func (f *Field) Put(report []byte, usesIDs bool, v int64) bool {
	data := report
	if usesIDs {
		if len(report) == 0 {
			return false
		}
		data = report[1:]
	}
	if f.Size <= 0 || f.Size > 64 || (f.Offset+f.Size+7)/8 > len(data) {
		return false
	}
	u := uint64(v)
	for i := 0; i < f.Size; i++ {
		bit := f.Offset + i
		if u&(1<<i) != 0 {
			data[bit/8] |= 1 << (bit % 8)
		} else {
			data[bit/8] &^= 1 << (bit % 8)
		}
	}
	return true
}

// Physical converts a logical value with the physical range when one is
// declared (both bounds 0 means none).
func (f *Field) Physical(raw int64) float64 {
	if (f.PhysMin == 0 && f.PhysMax == 0) || f.LogMax == f.LogMin || f.PhysMin == f.PhysMax {
		return float64(raw)
	}
	return float64(raw-f.LogMin)*float64(f.PhysMax-f.PhysMin)/float64(f.LogMax-f.LogMin) + float64(f.PhysMin)
}

// Logical is the inverse of Physical, rounded to the nearest integer.
func (f *Field) Logical(phys float64) int64 {
	if (f.PhysMin == 0 && f.PhysMax == 0) || f.LogMax == f.LogMin || f.PhysMin == f.PhysMax {
		return int64(math.Round(phys))
	}
	return int64(math.Round((phys-float64(f.PhysMin))*float64(f.LogMax-f.LogMin)/float64(f.PhysMax-f.PhysMin))) + f.LogMin
}

// Unit codes Power Device Class descriptors use (SI linear system).
const (
	UnitNone         = 0
	UnitVolt         = 0x00F0D121
	UnitWatt         = 0x0000D121 // also VA
	UnitAmpere       = 0x00100001
	UnitSecond       = 0x00001001
	UnitHertz        = 0x0000F001
	UnitKelvin       = 0x00010001
	UnitAmpereSecond = 0x00101001
)

// unitBase is the power of ten between a unit's SI-linear base (centimetre,
// gram) and the engineering unit: a volt is 10^7 cm²·g·s⁻³·A⁻¹.
func unitBase(unit uint32) int {
	switch unit {
	case UnitVolt, UnitWatt, 0x0001D121:
		return 7
	}
	return 0
}

// Scale returns the factor from physical value to engineering unit:
// 10^(UnitExp - base(Unit)). An exponent on a field without a unit is a
// global carried over by accident (firmware forgot to reset it), so it is
// ignored; see the Cypress reference descriptor.
func (f *Field) Scale() float64 {
	if f.Unit == UnitNone {
		return 1
	}
	return math.Pow10(f.UnitExp - unitBase(f.Unit))
}

// Value returns the engineering value of a raw logical value: physical
// range, then unit exponent.
func (f *Field) Value(raw int64) float64 { return f.Physical(raw) * f.Scale() }
