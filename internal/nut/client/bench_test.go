package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// bigListVar builds a LIST VAR answer of n variables, some escaped.
func bigListVar(n int) []byte {
	var b bytes.Buffer
	b.WriteString("BEGIN LIST VAR ups\n")
	for i := 0; i < n; i++ {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "VAR ups outlet.%d.realpower \"%d.5\"\n", i, i)
		case 1:
			fmt.Fprintf(&b, "VAR ups device.%d.model \"Back-UPS \\\"RS\\\" 1500 \\#%d\"\n", i, i)
		case 2:
			fmt.Fprintf(&b, "VAR ups ups.%d.status \"OL CHRG\"\n", i)
		default:
			fmt.Fprintf(&b, "VAR ups input.L%d-N.voltage \"230.1\"\n", i)
		}
	}
	b.WriteString("END LIST VAR ups\n")
	return b.Bytes()
}

// replayConn answers every write with the same canned bytes.
type replayConn struct {
	net.Conn
	answer  []byte
	pending []byte
}

func (r *replayConn) Write(b []byte) (int, error) { r.pending = r.answer; return len(b), nil }
func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}
func (r *replayConn) SetDeadline(time.Time) error { return nil }
func (r *replayConn) Close() error                { return nil }

// BenchmarkParseListVar measures reading and parsing a 200-variable LIST
// VAR answer (about a big three-phase UPS), without the network.
func BenchmarkParseListVar(b *testing.B) {
	for _, n := range []int{50, 200} {
		b.Run(fmt.Sprint(n, "vars"), func(b *testing.B) {
			rc := &replayConn{answer: bigListVar(n)}
			c := NewConn(rc, "bench:3493", Options{})
			ctx := context.Background()
			b.SetBytes(int64(len(rc.answer)))
			b.ReportAllocs()
			for b.Loop() {
				count := 0
				if err := c.ListVarFunc(ctx, "ups", func(name, value []byte) { count++ }); err != nil || count != n {
					b.Fatal(err, count)
				}
			}
		})
		b.Run(fmt.Sprint(n, "vars-strings"), func(b *testing.B) {
			rc := &replayConn{answer: bigListVar(n)}
			c := NewConn(rc, "bench:3493", Options{})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if vs, err := c.ListVar(ctx, "ups"); err != nil || len(vs) != n {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSplitLine measures the tokenizer on one escaped VAR line.
func BenchmarkSplitLine(b *testing.B) {
	line := []byte(`VAR ups device.model "Back-UPS \"RS\" 1500 \#1"`)
	buf := make([]byte, len(line))
	var dst [][]byte
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, line)
		dst, _ = splitLine(buf, dst)
	}
}
