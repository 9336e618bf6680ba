package nutproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// lines feeds in to a fresh parser and returns each completed line's words
// and error.
func lines(in []byte) (out [][]string, errs []error) {
	var p Parser
	var ws [][]byte
	for len(in) > 0 {
		n, ok := p.Feed(in)
		in = in[n:]
		if !ok {
			break
		}
		ws = p.Words(ws)
		line := []string{}
		for _, w := range ws {
			line = append(line, string(w))
		}
		out = append(out, line)
		errs = append(errs, p.Err())
	}
	return out, errs
}

func TestParser(t *testing.T) {
	long := strings.Repeat("x", 700)
	many := "GET VAR ups ups.status" + strings.Repeat(" junk", 40)
	tests := []struct {
		name string
		in   string
		want []string
		err  bool
	}{
		{"plain", "GET VAR ups ups.status\n", []string{"GET", "VAR", "ups", "ups.status"}, false},
		{"crlf", "LIST UPS\r\n", []string{"LIST", "UPS"}, false},
		{"winnut cr cr lf", "GET VAR ups ups.load\r\r\n", []string{"GET", "VAR", "ups", "ups.load"}, false},
		{"tabs", "GET\tVAR\t ups  x\n", []string{"GET", "VAR", "ups", "x"}, false},
		{"empty", "\n", []string{}, false},
		{"blank", "  \r\n", []string{}, false},
		{"quoted", `SET VAR ups ups.id "a b"` + "\n", []string{"SET", "VAR", "ups", "ups.id", "a b"}, false},
		{"escapes in quotes", `SET VAR u v "a\\b \"q\" \#x"` + "\n", []string{"SET", "VAR", "u", "v", `a\b "q" #x`}, false},
		{"empty quoted word", `SET VAR u v ""` + "\n", []string{"SET", "VAR", "u", "v", ""}, false},
		{"backslash outside quotes", `USERNAME a\ b` + "\n", []string{"USERNAME", "a b"}, false},
		{"comment", "LIST UPS # trailing\n", []string{"LIST", "UPS"}, false},
		{"comment glued", "LIST UPS#x\n", []string{"LIST", "UPS"}, false},
		{"equals own word", "PASSWORD pa=ss\n", []string{"PASSWORD", "pa", "=", "ss"}, false},
		{"hash in quotes", `SET VAR u v "a#b"` + "\n", nil, true},
		{"unterminated quote", `SET VAR u v "abc` + "\n", nil, true},
		{"binary dropped", "LI\x00ST\xff \x01UPS\x7f\n", []string{"LIST", "UPS"}, false},
		{"tab dropped in quotes", "X \"a\tb\"\n", []string{"X", "ab"}, false},
		{"word cut at 512", "X " + long + "\n", []string{"X", long[:MaxWordLen]}, false},
		{"words after 32 dropped", many + "\n", append([]string{"GET", "VAR", "ups", "ups.status"}, strings.Fields(strings.Repeat(" junk", 28))...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := lines([]byte(tt.in))
			if len(got) != 1 {
				t.Fatalf("%q: %d lines, want 1", tt.in, len(got))
			}
			if tt.err {
				if !errors.Is(errs[0], ErrSyntax) {
					t.Fatalf("%q: err %v, want ErrSyntax", tt.in, errs[0])
				}
				return
			}
			if errs[0] != nil {
				t.Fatalf("%q: %v", tt.in, errs[0])
			}
			if strings.Join(got[0], "|") != strings.Join(tt.want, "|") || len(got[0]) != len(tt.want) {
				t.Errorf("%q:\n got %q\nwant %q", tt.in, got[0], tt.want)
			}
		})
	}
}

func TestParserPipelinedAndSplit(t *testing.T) {
	in := []byte("VER\nNETVER\r\nLIST UPS\n")
	// Fed one byte at a time, the lines come out the same.
	var p Parser
	var got []string
	var ws [][]byte
	for _, c := range in {
		if _, ok := p.Feed([]byte{c}); ok {
			ws = p.Words(ws)
			var parts []string
			for _, w := range ws {
				parts = append(parts, string(w))
			}
			got = append(got, strings.Join(parts, " "))
		}
	}
	if strings.Join(got, ",") != "VER,NETVER,LIST UPS" {
		t.Fatalf("got %q", got)
	}
	// A syntax error affects its line only.
	out, errs := lines([]byte("X \"#\"\nVER\n"))
	if len(out) != 2 || errs[0] == nil || errs[1] != nil || out[1][0] != "VER" {
		t.Fatalf("got %q %v", out, errs)
	}
}

// A line of any length keeps the parser's memory bounded.
func TestParserBoundedMemory(t *testing.T) {
	var p Parser
	chunk := bytes.Repeat([]byte(strings.Repeat("w", 600)+" \"quoted words\" "), 200)
	for range 50 {
		if _, ok := p.Feed(chunk); ok {
			t.Fatal("line ended without LF")
		}
	}
	if cap(p.buf) > 2*MaxWords*MaxWordLen {
		t.Fatalf("buffer grew to %d bytes", cap(p.buf))
	}
	n, ok := p.Feed([]byte("\n"))
	if !ok || n != 1 {
		t.Fatal("line not ended")
	}
	if len(p.Words(nil)) != MaxWords {
		t.Fatalf("%d words, want %d", len(p.Words(nil)), MaxWords)
	}
	// Between lines, Reset lets go of what the long line grew.
	p.Reset()
	if cap(p.buf) != 0 {
		t.Fatalf("buffer of %d bytes kept after Reset", cap(p.buf))
	}
	if _, ok := p.Feed([]byte("VER\n")); !ok || string(p.Words(nil)[0]) != "VER" {
		t.Fatal("no line after Reset")
	}
}

func TestAppendQuoted(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"OL", `"OL"`},
		{`a\b "q" #x`, `"a\\b \"q\" \#x"`},
		{"caf\xc3\xa9\x01", `"caf"`},
		{strings.Repeat("#", 300), `"` + strings.Repeat(`\#`, MaxValueLen) + `"`},
	}
	for _, tt := range tests {
		if got := string(AppendQuoted(nil, tt.in)); got != tt.want {
			t.Errorf("AppendQuoted(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzParser: any input yields bounded words of printable ASCII, never a
// panic; and a line of quoted words parses back to the words.
func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"GET VAR ups ups.status\n", "LIST UPS\r\r\n", `SET VAR ups v "a\\b \"q\" \#x"` + "\n",
		"USERNAME monuser\nPASSWORD secret\nLOGIN ups\n", "PASSWORD pa=ss\n", "X \"#\"\n", "\x00\xff\n",
		"INSTCMD ups beeper.mute\n", "STARTTLS\n", "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var p Parser
		var ws [][]byte
		for len(in) > 0 {
			n, ok := p.Feed(in)
			if n <= 0 || n > len(in) {
				t.Fatalf("Feed consumed %d of %d", n, len(in))
			}
			in = in[n:]
			if !ok {
				continue
			}
			ws = p.Words(ws)
			if len(ws) > MaxWords {
				t.Fatalf("%d words", len(ws))
			}
			for _, w := range ws {
				if len(w) > MaxWordLen {
					t.Fatalf("word of %d bytes", len(w))
				}
				for _, c := range w {
					if c < 0x20 || c > 0x7e {
						t.Fatalf("byte %#x in word %q", c, w)
					}
				}
			}
			// Re-quoting the words gives the same words back.
			if p.Err() == nil && len(ws) > 0 {
				var line []byte
				var want []string
				for _, w := range ws {
					line = append(AppendQuoted(line, string(w[:min(len(w), MaxValueLen)])), ' ')
					want = append(want, string(w[:min(len(w), MaxValueLen)]))
				}
				got, errs := lines(append(line, '\n'))
				if len(got) != 1 || errs[0] != nil || strings.Join(got[0], "\x00") != strings.Join(want, "\x00") {
					t.Fatalf("round trip of %q: got %q (%v)", want, got, errs)
				}
			}
		}
	})
}
