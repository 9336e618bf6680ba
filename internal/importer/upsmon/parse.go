// Package upsmon reads NUT's upsmon.conf and upssched.conf and converts them
// into an upsbridge configuration (`upsbridge import-upsmon`): every MONITOR
// becomes a NUT source and an agent supply, the timing directives become
// their upsbridge keys, NOTIFYCMD with the EXEC flags becomes an `exec`
// notifier, upssched's on-battery timers become agent stages, and every line
// that cannot be carried over becomes a comment that says why.
package upsmon

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// MaxLine is the longest line accepted; NUT's own parser stops far below.
const MaxLine = 64 * 1024

// Directive is one configuration line, split into words the way NUT's
// parseconf does: blanks separate words, double quotes group them, a
// backslash escapes the next character, '#' outside quotes starts a comment.
type Directive struct {
	File string
	Line int
	// Name is the first word, upper-cased (NUT keywords are case-insensitive).
	Name string
	Args []string
	// Raw is the line as written, without its end of line.
	Raw string
}

// Where names the directive's place, "upsmon.conf:12".
func (d Directive) Where() string { return fmt.Sprintf("%s:%d", d.File, d.Line) }

// File is a parsed configuration file.
type File struct {
	Name       string
	Directives []Directive
}

// Parse reads a upsmon.conf or upssched.conf. name is used in messages
// (usually the base name). Bad quoting is an error naming the line.
func Parse(r io.Reader, name string) (*File, error) {
	f := &File{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		raw := strings.TrimRight(sc.Text(), "\r")
		words, err := SplitWords(raw)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if len(words) == 0 {
			continue
		}
		f.Directives = append(f.Directives, Directive{
			File: name, Line: n, Name: strings.ToUpper(words[0]), Args: words[1:], Raw: raw,
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: line %d: %w", name, n+1, err)
	}
	return f, nil
}

// SplitWords splits one line into words as NUT's parseconf does.
func SplitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, inQuote, escaped := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped, inWord = true, true
		case inQuote:
			if r == '"' {
				inQuote = false
			} else {
				cur.WriteRune(r)
			}
		case r == '"':
			inQuote, inWord = true, true
		case r == '#':
			if inWord {
				words = append(words, cur.String())
			}
			return words, nil
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated double quote in %q", truncate(line, 80))
	}
	if escaped {
		return nil, fmt.Errorf("backslash at the end of %q", truncate(line, 80))
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
