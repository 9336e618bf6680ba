package client

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/upsbridge/upsbridge/internal/datadir"
)

// ddlLines returns up to max "name: value" lines from the repository's
// curated device dumps, then the full corpus when it is present.
func ddlLines(tb testing.TB, max int) []string {
	tb.Helper()
	var out []string
	for _, path := range append(datadir.CuratedDDL(tb), datadir.CorpusDDLIfPresent()...) {
		if len(out) >= max {
			break
		}
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() && len(out) < max {
			out = append(out, sc.Text())
		}
	}
	return out
}

// FuzzSplitLine: no input panics, and whatever splits re-quotes and splits
// to the same words.
func FuzzSplitLine(f *testing.F) {
	for _, l := range ddlLines(f, 1500) {
		name, value, _ := strings.Cut(l, ":")
		f.Add("VAR ups " + name + " " + string(appendQuotedAlways(nil, strings.TrimSpace(value))))
		f.Add(l)
	}
	f.Add(`VAR ups x "a\\b \"q\" \#x"`)
	f.Add(`"unterminated`)
	f.Fuzz(func(t *testing.T, line string) {
		words, err := splitLine([]byte(line), nil)
		if err != nil {
			return
		}
		var b []byte
		for i, w := range words {
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendQuotedAlways(b, string(w))
		}
		again, err := splitLine(b, nil)
		if err != nil {
			t.Fatalf("re-quoted %q does not split: %v", b, err)
		}
		if len(again) != len(words) {
			t.Fatalf("%q: %d words, re-quoted %d", line, len(words), len(again))
		}
		for i := range words {
			if !bytes.Equal(words[i], again[i]) {
				t.Fatalf("%q: word %d %q became %q", line, i, words[i], again[i])
			}
		}
	})
}

// FuzzQuote: every value that upsd can carry survives Quote and splitLine,
// as the only word, and Quote never leaves a bare '#', '"' or '\'.
func FuzzQuote(f *testing.F) {
	for _, l := range ddlLines(f, 1500) {
		if _, v, ok := strings.Cut(l, ":"); ok {
			f.Add(strings.TrimSpace(v))
		}
	}
	f.Add(`a\b "q" #x`)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		q := Quote(s)
		if checkArg(s) == nil {
			words, err := splitLine([]byte(q), nil)
			if err != nil {
				t.Fatalf("Quote(%q) = %s does not split: %v", s, q, err)
			}
			if len(words) != 1 || string(words[0]) != s {
				t.Fatalf("Quote(%q) = %s splits to %q", s, q, words)
			}
		}
		// A '#', '"' or '\' in the output is always escaped or the quotes.
		inner := q
		if strings.HasPrefix(q, `"`) {
			inner = q[1 : len(q)-1]
		}
		for i := 0; i < len(inner); i++ {
			switch inner[i] {
			case '\\':
				i++
			case '"', '#':
				t.Fatalf("Quote(%q) = %s has a bare %q", s, q, inner[i])
			}
		}
	})
}
