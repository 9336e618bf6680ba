package client

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

// replyTo answers the first request on a pipe with reply, then closes.
func replyTo(reply []byte) net.Conn {
	cli, srv := net.Pipe()
	go func() {
		defer srv.Close()
		if _, err := bufio.NewReader(srv).ReadString('\n'); err != nil {
			return
		}
		_ = srv.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = srv.Write(reply)
	}()
	return cli
}

// FuzzListReply: whatever upsd answers to LIST VAR, the client returns
// variables or an error, never panics, and never delivers more lines than
// the bound.
func FuzzListReply(f *testing.F) {
	f.Add([]byte("BEGIN LIST VAR ups\nVAR ups battery.charge \"100\"\nVAR ups ups.status \"OL\"\nEND LIST VAR ups\n"))
	f.Add([]byte("BEGIN LIST VAR ups\nVAR ups ups.alarm \"a \\\"quoted\\\" \\\\ #x\"\nEND LIST VAR ups\n"))
	f.Add([]byte("ERR DATA-STALE\n"))
	f.Add([]byte("BEGIN LIST VAR ups\nVAR ups x\n"))
	f.Add([]byte("BEGIN LIST VAR ups\r\nVAR ups a \"1\"\r\nEND LIST VAR ups\r\n"))
	f.Add([]byte("BEGIN LIST VAR UPS\nvar UPS a \"1\"\nEND LIST VAR UPS\n"))
	const maxLines = 200
	f.Fuzz(func(t *testing.T, reply []byte) {
		c := NewConn(replyTo(reply), "upsd:3493", Options{Timeout: 2 * time.Second, MaxListLines: maxLines, MaxReplyBytes: 64 << 10, NoQuickAck: true})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n := 0
		err := c.ListVarFunc(ctx, "ups", func(_, _ []byte) { n++ })
		if n > maxLines {
			t.Fatalf("%d variables delivered, bound %d (err %v)", n, maxLines, err)
		}
		if err == nil && ctx.Err() != nil {
			t.Fatalf("success after the deadline")
		}
	})
}
