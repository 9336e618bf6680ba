package client

import (
	"errors"
	"fmt"
)

// ErrBadArgument is returned for an argument upsd cannot receive intact:
// upsd silently drops control characters and bytes above 0x7E, and cuts words
// at 512 characters.
var ErrBadArgument = errors.New("argument cannot be sent to upsd")

// maxWord is the longest word upsd keeps (parseconf cuts longer words).
const maxWord = 512

// isBare reports whether s can be sent without quotes: printable ASCII
// without space, '"', '\' or '#'.
func isBare(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '#' {
			return false
		}
	}
	return true
}

// checkArg refuses what upsd would mangle silently.
func checkArg(s string) error {
	if len(s) > maxWord {
		return fmt.Errorf("%w: %d characters (upsd keeps %d)", ErrBadArgument, len(s), maxWord)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f {
			return fmt.Errorf("%w: byte 0x%02x at %d (upsd drops control characters and non-ASCII)", ErrBadArgument, c, i)
		}
	}
	return nil
}

// Quote returns s as one protocol word: bare when it is a plain token,
// otherwise in double quotes with '\', '"' and '#' escaped by a backslash
// (upsd never answers a line with an unescaped '#' inside quotes). It does
// not check for bytes upsd drops; requests go through checkArg first.
func Quote(s string) string {
	return string(AppendQuoted(nil, s))
}

// AppendQuoted appends the quoted form of s (see [Quote]) to b.
func AppendQuoted(b []byte, s string) []byte {
	if isBare(s) {
		return append(b, s...)
	}
	return appendQuotedAlways(b, s)
}

// appendQuotedAlways quotes s even when it is a bare token (values).
func appendQuotedAlways(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"', '#':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// SyntaxError is a response line that does not parse.
type SyntaxError struct {
	Line string
	Pos  int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("malformed line from upsd at byte %d: %s: %q", e.Pos, e.Msg, e.Line)
}

// splitLine splits a response line into words the way NUT's parseconf does:
// words are separated by blanks (space, tab, CR); a word in double quotes
// may hold blanks; a backslash, inside or outside quotes, makes the next
// byte literal; a '#' outside quotes starts a comment. Unlike parseconf, a
// '#' inside quotes is kept, because upsd does not escape descriptions.
//
// Words are unescaped in place: the returned slices alias line, which is
// modified. dst is reused to avoid allocation. A quoted empty string gives
// an empty word.
func splitLine(line []byte, dst [][]byte) ([][]byte, error) {
	dst = dst[:0]
	i, n := 0, len(line)
	for i < n {
		c := line[i]
		if c == ' ' || c == '\t' || c == '\r' {
			i++
			continue
		}
		if c == '#' {
			break
		}
		start := i
		w := i // write position: words are unescaped in place
		quoted, closed := c == '"', false
		if quoted {
			i++
		}
	word:
		for i < n {
			c := line[i]
			switch {
			case c == '\\':
				if i+1 >= n {
					return dst, &SyntaxError{Line: string(line), Pos: i, Msg: "backslash at end of line"}
				}
				line[w] = line[i+1]
				w++
				i += 2
			case quoted && c == '"':
				i++
				closed = true
				break word
			case !quoted && (c == ' ' || c == '\t' || c == '\r' || c == '"' || c == '#'):
				// A quote or '#' in the middle of a bare word ends it.
				break word
			default:
				line[w] = c
				w++
				i++
			}
		}
		if quoted && !closed {
			return dst, &SyntaxError{Line: string(line), Pos: start, Msg: "unterminated quote"}
		}
		dst = append(dst, line[start:w])
	}
	return dst, nil
}
