package hidparse

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseHex reads bytes written as hex pairs separated by white space (the
// format of the descriptor files in the test data and of `hid dump`). A '#'
// starts a comment that runs to the end of the line.
func ParseHex(s string) ([]byte, error) {
	var out []byte
	for ln, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, tok := range strings.Fields(line) {
			tok = strings.TrimPrefix(strings.TrimPrefix(tok, "0x"), "0X")
			if len(tok) != 2 {
				return nil, fmt.Errorf("line %d: %q is not one hex byte", ln+1, tok)
			}
			v, err := strconv.ParseUint(tok, 16, 8)
			if err != nil {
				return nil, fmt.Errorf("line %d: %q is not one hex byte", ln+1, tok)
			}
			out = append(out, byte(v))
		}
	}
	return out, nil
}

// FormatHex writes bytes as lowercase hex pairs, 16 a line.
func FormatHex(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			if i%16 == 0 {
				sb.WriteByte('\n')
			} else {
				sb.WriteByte(' ')
			}
		}
		fmt.Fprintf(&sb, "%02x", c)
	}
	if len(b) > 0 {
		sb.WriteByte('\n')
	}
	return sb.String()
}
