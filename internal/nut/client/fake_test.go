package client

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
)

// fakeServer is an in-process upsd stand-in for what the real one cannot be
// made to do. handle gets each request line and returns the raw answer
// (LF-terminated lines); "" sends nothing; closeConn closes the connection
// after writing the answer.
type fakeServer struct {
	ln     net.Listener
	handle func(line string) (answer string, closeConn bool)

	mu    sync.Mutex
	lines []string
	conns []net.Conn
	wg    sync.WaitGroup
}

func newFake(t testing.TB, handle func(line string) (string, bool)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, handle: handle}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

func (f *fakeServer) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		ans, closeIt := f.handle(line)
		if ans != "" {
			if _, err := c.Write([]byte(ans)); err != nil {
				return
			}
		}
		if closeIt {
			return
		}
	}
}

func (f *fakeServer) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

func (f *fakeServer) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// script answers requests from a fixed table; unknown requests get
// ERR UNKNOWN-COMMAND.
func script(table map[string]string) func(string) (string, bool) {
	return func(line string) (string, bool) {
		if a, ok := table[line]; ok {
			return a, false
		}
		return "ERR UNKNOWN-COMMAND\n", false
	}
}
