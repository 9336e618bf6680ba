package nutproto

// MaxValueLen is the longest value upsd holds (include/extstate.h); longer
// values are cut when served.
const MaxValueLen = 255

// MaxReplyLine is the longest reply line, LF excluded, that libupsclient's
// 512-byte buffers take whole.
const MaxReplyLine = 510

// AppendQuoted appends s in double quotes with '\', '"' and '#' escaped by
// a backslash, as upsd's pconf_encode does; bytes upsd could never hold
// (control characters, non-ASCII) are dropped and s is cut at MaxValueLen.
func AppendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	n := 0
	for i := 0; i < len(s) && n < MaxValueLen; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			continue
		}
		n++
		if c == '\\' || c == '"' || c == '#' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"')
}

// AppendWord appends a word received from a client (a UPS or variable
// name echoed back) as it was received: the parser let through only
// printable ASCII.
func AppendWord(b []byte, s string) []byte { return append(b, s...) }
