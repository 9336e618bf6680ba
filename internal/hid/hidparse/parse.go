// Package hidparse parses USB HID report descriptors into a flat list of
// fields with their usage paths, report ids, bit layouts, ranges and units,
// and extracts field values from reports. It is written for the HID Power
// Device Class (UPSes) and tolerates what real UPS descriptors get wrong.
package hidparse

import (
	"errors"
	"fmt"
	"strings"
)

// ReportType is the kind of a report, numbered as in GET_REPORT's wValue.
type ReportType uint8

// Report types.
const (
	Input   ReportType = 1
	Output  ReportType = 2
	Feature ReportType = 3
)

func (t ReportType) String() string {
	switch t {
	case Input:
		return "Input"
	case Output:
		return "Output"
	case Feature:
		return "Feature"
	}
	return fmt.Sprintf("ReportType(%d)", uint8(t))
}

// Usage is an extended usage: page in the high 16 bits, id in the low 16.
type Usage uint32

// Page returns the usage page.
func (u Usage) Page() uint16 { return uint16(u >> 16) }

// ID returns the usage id within its page.
func (u Usage) ID() uint16 { return uint16(u) }

// PathElem is one step of a field's path: a collection's usage (with its
// instance number for vendor "indexed" collections, 0 when none) or, last,
// the field's own usage.
type PathElem struct {
	Usage    Usage
	Instance uint8 // collection type byte 0x80-0xFF gives instance type&0x7f
}

// Main item flag bits (Input/Output/Feature data).
const (
	FlagConstant = 1 << 0
	FlagVariable = 1 << 1
	FlagRelative = 1 << 2
	FlagNull     = 1 << 6
	FlagVolatile = 1 << 7
)

// Field is one value in one report.
type Field struct {
	Type     ReportType
	ReportID uint8
	// Offset is the bit offset after the report id byte; Size the width.
	Offset, Size int
	// Path is the collection chain plus the field usage (last element).
	Path []PathElem
	// LogMin/LogMax is the logical range. LogMaxAssumed is set when the
	// maximum was encoded too short (read signed it was below the minimum)
	// and was reinterpreted as unsigned.
	LogMin, LogMax int64
	LogMaxAssumed  bool
	// PhysMin/PhysMax is the physical range; both 0 means "same as logical".
	PhysMin, PhysMax int64
	Unit             uint32
	UnitExp          int // already decoded from nibble or byte form
	Flags            uint32
	// Index is the position of this field among the Report Count fields
	// of its main item (0 for the first).
	Index int
}

// Usage returns the field's own usage.
func (f *Field) Usage() Usage { return f.Path[len(f.Path)-1].Usage }

// Signed reports whether the raw value is two's complement.
func (f *Field) Signed() bool { return f.LogMin < 0 || (f.LogMax < 0 && !f.LogMaxAssumed) }

// ReportKey names one report: its type and id.
type ReportKey struct {
	Type ReportType
	ID   uint8
}

// Descriptor is a parsed report descriptor.
type Descriptor struct {
	Fields []Field
	// ReportBits is the declared length of each report's data in bits,
	// without the id byte.
	ReportBits map[ReportKey]int
	// UsesIDs is true when the descriptor declares report ids (then every
	// report on the wire starts with its id).
	UsesIDs bool
	// Items is the number of items read.
	Items int
}

// ReportLen returns the declared length in bytes of a report on the wire,
// including the id byte when the descriptor uses ids.
func (d *Descriptor) ReportLen(k ReportKey) int {
	n := (d.ReportBits[k] + 7) / 8
	if d.UsesIDs {
		n++
	}
	return n
}

// Reports lists the ids of the reports of a type, in first-declared order.
func (d *Descriptor) Reports(t ReportType) []uint8 {
	var out []uint8
	seen := map[uint8]bool{}
	for i := range d.Fields {
		f := &d.Fields[i]
		if f.Type == t && !seen[f.ReportID] {
			seen[f.ReportID] = true
			out = append(out, f.ReportID)
		}
	}
	return out
}

// Limits that keep hostile descriptors from exhausting memory.
const (
	maxFields      = 1 << 16
	maxReportCount = 1 << 12
	maxReportSize  = 64 // we extract into int64; wider fields are skipped
	maxDepth       = 32
	maxStack       = 32
	// MaxReportBytes is the longest report on the wire, id byte included:
	// GET_REPORT's wLength is 16 bits, so no USB device can send more.
	MaxReportBytes = 65535
)

// ErrReportTooLong is wrapped by Parse errors for a report whose declared
// length passes MaxReportBytes.
var ErrReportTooLong = errors.New("report longer than USB allows")

// ErrTruncated is wrapped by Parse errors for an item running past the end.
var ErrTruncated = errors.New("item runs past the end of the descriptor")

type globals struct {
	page                    uint16
	logMin, logMax          int64
	logMaxSize              int // encoded bytes of LogMax, for the "too short" fix
	physMin, physMax        int64
	unit                    uint32
	unitExp                 int
	reportSize, reportCount int
	reportID                uint8
}

type locals struct {
	usages             []Usage
	usageMin, usageMax uint32
	haveMin, haveMax   bool
}

// Parse parses a report descriptor. Malformed input gives an error naming the
// byte offset; it never panics.
func Parse(b []byte) (*Descriptor, error) {
	d := &Descriptor{ReportBits: map[ReportKey]int{}}
	var g globals
	var stack []globals
	var l locals
	var coll []PathElem
	offsets := map[ReportKey]int{}

	for pos := 0; pos < len(b); {
		prefix := b[pos]
		start := pos
		if prefix == 0xFE { // long item: skip its data
			if pos+3 > len(b) {
				return nil, fmt.Errorf("long item at offset %d: %w", start, ErrTruncated)
			}
			n := int(b[pos+1])
			pos += 3 + n
			if pos > len(b) {
				return nil, fmt.Errorf("long item at offset %d: %w", start, ErrTruncated)
			}
			d.Items++
			continue
		}
		size := int(prefix & 3)
		if size == 3 {
			size = 4
		}
		if pos+1+size > len(b) {
			return nil, fmt.Errorf("item 0x%02x at offset %d: %w", prefix, start, ErrTruncated)
		}
		data := b[pos+1 : pos+1+size]
		pos += 1 + size
		d.Items++
		var u uint32
		for i := size - 1; i >= 0; i-- {
			u = u<<8 | uint32(data[i])
		}
		s := signExtend(u, size)
		typ := (prefix >> 2) & 3
		tag := prefix >> 4
		switch typ {
		case 0: // main
			switch tag {
			case 0x8, 0x9, 0xB: // Input, Output, Feature
				rt := Input
				if tag == 0x9 {
					rt = Output
				} else if tag == 0xB {
					rt = Feature
				}
				if err := addMain(d, rt, u, &g, &l, coll, offsets); err != nil {
					return nil, fmt.Errorf("main item at offset %d: %w", start, err)
				}
			case 0xA: // Collection
				if len(coll) >= maxDepth {
					return nil, fmt.Errorf("collection at offset %d: nested deeper than %d", start, maxDepth)
				}
				var usage Usage
				if len(l.usages) > 0 {
					usage = l.usages[0]
				} else if l.haveMin {
					usage = Usage(l.usageMin)
				}
				e := PathElem{Usage: usage}
				if u&0xff >= 0x80 {
					e.Instance = uint8(u & 0x7f)
				}
				coll = append(coll, e)
			case 0xC: // End Collection
				if len(coll) == 0 {
					return nil, fmt.Errorf("end collection at offset %d without an open collection", start)
				}
				coll = coll[:len(coll)-1]
			default:
				return nil, fmt.Errorf("unknown main item tag 0x%x at offset %d", tag, start)
			}
			l = locals{}
		case 1: // global
			switch tag {
			case 0x0:
				g.page = uint16(u)
			case 0x1:
				g.logMin = s
			case 0x2:
				g.logMax, g.logMaxSize = s, size
			case 0x3:
				g.physMin = s
			case 0x4:
				g.physMax = s
			case 0x5:
				g.unitExp = decodeExponent(u, size)
			case 0x6:
				g.unit = u
			case 0x7:
				if u > maxReportSize*4 {
					return nil, fmt.Errorf("report size %d at offset %d is too large", u, start)
				}
				g.reportSize = int(u)
			case 0x8:
				if u == 0 || u > 255 {
					return nil, fmt.Errorf("report id %d at offset %d is out of range 1..255", u, start)
				}
				g.reportID = uint8(u)
				d.UsesIDs = true
			case 0x9:
				if u > maxReportCount {
					return nil, fmt.Errorf("report count %d at offset %d is too large", u, start)
				}
				g.reportCount = int(u)
			case 0xA:
				if len(stack) >= maxStack {
					return nil, fmt.Errorf("push at offset %d: stack deeper than %d", start, maxStack)
				}
				stack = append(stack, g)
			case 0xB:
				if len(stack) == 0 {
					return nil, fmt.Errorf("pop at offset %d with an empty stack", start)
				}
				g = stack[len(stack)-1]
				stack = stack[:len(stack)-1]
			default:
				return nil, fmt.Errorf("unknown global item tag 0x%x at offset %d", tag, start)
			}
		case 2: // local
			switch tag {
			case 0x0:
				if len(l.usages) >= maxReportCount {
					return nil, fmt.Errorf("too many usages at offset %d", start)
				}
				l.usages = append(l.usages, extUsage(u, size, g.page))
			case 0x1:
				l.usageMin, l.haveMin = uint32(extUsage(u, size, g.page)), true
			case 0x2:
				l.usageMax, l.haveMax = uint32(extUsage(u, size, g.page)), true
			default:
				// designators, strings, delimiters: not used by UPSes
			}
		default:
			return nil, fmt.Errorf("reserved item type at offset %d (prefix 0x%02x)", start, prefix)
		}
	}
	if len(coll) != 0 {
		// Tolerated: some firmware omits the final End Collection.
		_ = coll
	}
	return d, nil
}

func signExtend(u uint32, size int) int64 {
	switch size {
	case 1:
		return int64(int8(u))
	case 2:
		return int64(int16(u))
	case 4:
		return int64(int32(u))
	}
	return 0
}

// decodeExponent accepts both encodings in the wild: the HID 1.11 4-bit
// two's-complement nibble (0x0E = -2) and a plain signed byte (0xFE = -2),
// as Linux hid-core does.
func decodeExponent(u uint32, size int) int {
	if u <= 0xF {
		if u >= 8 {
			return int(u) - 16
		}
		return int(u)
	}
	return int(signExtend(u, size))
}

func extUsage(u uint32, size int, page uint16) Usage {
	if size == 4 {
		return Usage(u)
	}
	return Usage(uint32(page)<<16 | u&0xffff)
}

func addMain(d *Descriptor, rt ReportType, flags uint32, g *globals, l *locals, coll []PathElem, offsets map[ReportKey]int) error {
	key := ReportKey{rt, g.reportID}
	count, size := g.reportCount, g.reportSize
	usages := l.usages
	if len(usages) == 0 && l.haveMin && l.haveMax && l.usageMax >= l.usageMin {
		n := l.usageMax - l.usageMin + 1
		if n > maxReportCount {
			n = maxReportCount
		}
		for i := uint32(0); i < n; i++ {
			usages = append(usages, Usage(l.usageMin+i))
		}
	}
	base := offsets[key]
	// In int64 so that no sum can overflow an int on 32-bit builds; one
	// byte is kept for the report id, which may be declared later.
	end := int64(base) + int64(count)*int64(size)
	if end > (MaxReportBytes-1)*8 {
		return fmt.Errorf("%s report %d: %w: it declares %d bits, more than %d bytes with its id byte", rt, g.reportID, ErrReportTooLong, end, MaxReportBytes)
	}
	offsets[key] = int(end)
	d.ReportBits[key] = offsets[key]
	if len(usages) == 0 {
		return nil // padding: a constant without a usage, or nothing to name
	}
	if size == 0 || size > maxReportSize {
		return nil // nothing we can extract; keep the layout
	}
	logMin, logMax, assumed := g.logMin, g.logMax, false
	if logMax < logMin && g.logMaxSize > 0 && g.logMaxSize < 4 {
		// LogMax encoded too short (25 FF meaning 255): take it unsigned.
		logMax = int64(uint32(logMax) & (1<<(8*g.logMaxSize) - 1))
		assumed = true
	}
	// One backing array for the paths of all fields of this item.
	plen := len(coll) + 1
	paths := make([]PathElem, count*plen)
	for i := 0; i < count; i++ {
		if len(d.Fields) >= maxFields {
			return fmt.Errorf("more than %d fields", maxFields)
		}
		// Arrays and short usage lists repeat the last usage.
		uu := usages[len(usages)-1]
		if i < len(usages) {
			uu = usages[i]
		}
		path := paths[i*plen : (i+1)*plen : (i+1)*plen]
		copy(path, coll)
		path[len(coll)] = PathElem{Usage: uu}
		d.Fields = append(d.Fields, Field{
			Type: rt, ReportID: g.reportID, Offset: base + i*size, Size: size, Path: path,
			LogMin: logMin, LogMax: logMax, LogMaxAssumed: assumed,
			PhysMin: g.physMin, PhysMax: g.physMax, Unit: g.unit, UnitExp: g.unitExp,
			Flags: flags, Index: i,
		})
	}
	return nil
}

// Namer returns the name of a usage, or false to use the 8-digit hex form.
type Namer func(Usage) (string, bool)

// PathString renders a path NUT's way: names joined by dots, unknown usages
// as 8 hex digits, a collection's instance as a following "[n]" element.
func PathString(p []PathElem, names Namer) string {
	var sb strings.Builder
	for i, e := range p {
		if i > 0 {
			sb.WriteByte('.')
		}
		name, ok := "", false
		if names != nil {
			name, ok = names(e.Usage)
		}
		if !ok {
			name, ok = StandardName(e.Usage)
		}
		if ok {
			sb.WriteString(name)
		} else {
			fmt.Fprintf(&sb, "%08x", uint32(e.Usage))
		}
		if e.Instance != 0 {
			fmt.Fprintf(&sb, ".[%d]", e.Instance)
		}
	}
	return sb.String()
}
