package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// endlessServer answers LIST VAR with BEGIN LIST and then data lines that
// never end (until the client hangs up), each pad bytes of value.
func endlessServer(t *testing.T, pad int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
				w := bufio.NewWriter(c)
				fmt.Fprintf(w, "BEGIN LIST VAR ups\n")
				val := strings.Repeat("x", pad)
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(w, "VAR ups v%d \"%s\"\n", i, val); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestListBounds: an endless LIST VAR ends in a *LimitError naming the
// request and the bound, within the deadline, with bounded memory, and the
// connection is closed (its stream is out of step).
func TestListBounds(t *testing.T) {
	tests := []struct {
		name string
		pad  int
		opts Options
		want string
	}{
		{"lines", 1, Options{}, "more than 10000 lines in one LIST reply"},
		{"bytes", 3000, Options{}, "more than 1048576 bytes in one reply"},
		{"small lines bound", 1, Options{MaxListLines: 5}, "more than 5 lines"},
		{"small bytes bound", 1, Options{MaxReplyBytes: 100}, "more than 100 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := endlessServer(t, tt.pad)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, addr, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			n := 0
			start := time.Now()
			err = c.ListVarFunc(ctx, "ups", func(_, _ []byte) { n++ })
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "LIST VAR ups") {
				t.Fatalf("err = %v, want a limit error with %q", err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			if c.Err() == nil {
				t.Error("connection still usable after an unread reply")
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
				t.Errorf("heap grew by %d bytes", grown)
			}
			t.Logf("%d lines delivered before: %v", n, err)
		})
	}
}
