// Package nutproto is the server side of NUT's network protocol as upsd 2.8
// speaks it: a request tokenizer that splits lines exactly as upsd's
// parseconf does, the quoting of reply fields, and the ERR codes.
package nutproto

import "errors"

// Limits upsd applies to requests (include/parseconf.h): longer words are
// cut, words after the 32nd are dropped.
const (
	MaxWordLen = 512
	MaxWords   = 32
)

// ErrSyntax is the error of a request line upsd would not parse: an
// unescaped '#' inside quotes, or a line ending inside quotes. upsd sends
// no reply at all to such a line; a server answers ERR INVALID-ARGUMENT
// instead so that no client waits for its timeout.
var ErrSyntax = errors.New("request line does not parse: unescaped '#' inside quotes or unterminated quote")

type state uint8

const (
	stFindWord   state = iota // between words
	stCollect                 // in a bare word
	stCollectLit              // after '\' in a bare word
	stQuote                   // inside quotes
	stQuoteLit                // after '\' inside quotes
	stComment                 // after '#': up to the end of the line
	stError                   // after a syntax error: up to the end of the line
)

// Parser splits a byte stream into request lines and the lines into words,
// as upsd does: LF ends a line; space, tab and CR separate words (so CRLF
// and WinNUT's CR CR LF work); "..." groups a word; a backslash makes the
// next character literal, inside quotes or not; '#' outside quotes starts
// a comment; an unquoted '=' is a word of its own; bytes below 0x20 (other
// than blanks) and above 0x7E are dropped; words are cut at MaxWordLen and
// words after the MaxWords-th are dropped.
//
// A Parser's memory is bounded by MaxWords*MaxWordLen whatever it is fed,
// so there is no line length limit to enforce: a line is as long as the
// client likes, only its first words count. The zero value is ready.
type Parser struct {
	st    state
	buf   []byte  // the current line's kept words, back to back
	ends  []int32 // end offset in buf of each completed word
	start int     // offset in buf where the current word starts
	inW   bool    // a word is open (even an empty quoted one)
	err   error
	// pending: a line was completed; its words stay readable until the
	// next Feed.
	pending bool
}

// Feed consumes b up to and including the first LF. It returns how many
// bytes it consumed and, when a line was completed, true: then Words holds
// the line's words (valid until the next Feed) and Err any syntax error.
func (p *Parser) Feed(b []byte) (n int, line bool) {
	if p.pending {
		p.startLine()
	}
	for i, c := range b {
		if c == '\n' {
			p.endLine()
			return i + 1, true
		}
		p.char(c)
	}
	return len(b), false
}

// Words returns the words of the line Feed just completed. The slices
// alias the parser's buffer: copy what must outlive the next Feed.
func (p *Parser) Words(dst [][]byte) [][]byte {
	dst = dst[:0]
	prev := 0
	for _, e := range p.ends {
		dst = append(dst, p.buf[prev:e])
		prev = int(e)
	}
	return dst
}

// Err returns the syntax error of the line Feed just completed, if any.
func (p *Parser) Err() error { return p.err }

// Reset forgets any partial line and releases a large buffer, so that an
// idle connection holds little memory.
func (p *Parser) Reset() {
	p.st, p.start, p.inW, p.err, p.pending = stFindWord, 0, false, nil, false
	if cap(p.buf) > 1024 {
		p.buf = nil
	} else {
		p.buf = p.buf[:0]
	}
	if cap(p.ends) > MaxWords {
		p.ends = nil
	} else {
		p.ends = p.ends[:0]
	}
}

// startLine clears what the previous line left.
func (p *Parser) startLine() {
	p.pending = false
	p.buf = p.buf[:0]
	p.ends = p.ends[:0]
	p.start, p.inW, p.err = 0, false, nil
	p.st = stFindWord
}

func (p *Parser) endLine() {
	switch p.st {
	case stQuote, stQuoteLit:
		p.fail()
	case stCollect, stCollectLit:
		p.endWord()
	}
	// The words stay readable until the next byte is fed.
	p.st = stFindWord
	p.pending = true
}

func (p *Parser) fail() {
	if p.err == nil {
		p.err = ErrSyntax
	}
	p.st = stError
	p.inW = false
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

func (p *Parser) char(c byte) {
	if isBlank(c) {
		switch p.st {
		case stCollect:
			p.endWord()
			p.st = stFindWord
			return
		case stFindWord, stComment, stError:
			return
		}
		// Inside quotes or after a backslash a space is kept; upsd
		// drops tabs and CRs there as non-printable.
		if c != ' ' {
			return
		}
	} else if c < 0x20 || c > 0x7e {
		return // dropped, as upsd does (CVE-2012-2944)
	}
	switch p.st {
	case stComment, stError:
	case stFindWord:
		switch c {
		case '#':
			p.st = stComment
		case '"':
			p.beginWord()
			p.st = stQuote
		case '\\':
			p.beginWord()
			p.st = stCollectLit
		case '=':
			p.beginWord()
			p.add(c)
			p.endWord()
		default:
			p.beginWord()
			p.add(c)
			p.st = stCollect
		}
	case stCollect:
		switch c {
		case '#':
			p.endWord()
			p.st = stComment
		case '\\':
			p.st = stCollectLit
		case '=':
			p.endWord()
			p.beginWord()
			p.add(c)
			p.endWord()
			p.st = stFindWord
		default:
			p.add(c)
		}
	case stCollectLit:
		p.add(c)
		p.st = stCollect
	case stQuote:
		switch c {
		case '"':
			p.endWord()
			p.st = stFindWord
		case '\\':
			p.st = stQuoteLit
		case '#':
			p.fail()
		default:
			p.add(c)
		}
	case stQuoteLit:
		p.add(c)
		p.st = stQuote
	}
}

func (p *Parser) beginWord() {
	p.inW = true
	p.start = len(p.buf)
}

func (p *Parser) add(c byte) {
	if len(p.ends) >= MaxWords || len(p.buf)-p.start >= MaxWordLen {
		return
	}
	p.buf = append(p.buf, c)
}

func (p *Parser) endWord() {
	if !p.inW {
		return
	}
	p.inW = false
	if len(p.ends) >= MaxWords {
		p.buf = p.buf[:p.start]
		return
	}
	p.ends = append(p.ends, int32(len(p.buf)))
}
