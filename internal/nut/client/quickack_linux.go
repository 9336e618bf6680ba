//go:build linux

package client

import (
	"net"
	"syscall"
)

// quickAckConn re-arms TCP_QUICKACK before every read. upsd writes each line
// of a LIST reply separately and Nagle holds the second segment until the
// first is acknowledged; Linux delays that ACK by about 40 ms on a
// connection it sees as interactive. Quick ACKs remove the stall (measured
// on upsd 2.8.0 over loopback: 44 ms -> 0.25 ms per LIST).
type quickAckConn struct {
	net.Conn
	rc  syscall.RawConn
	arm func(fd uintptr) // preallocated so a read does not allocate
}

// newQuickAckConn wraps a TCP connection, or a wrapper of one that exposes
// its socket (SyscallConn); other connections get nil.
func newQuickAckConn(nc net.Conn) net.Conn {
	sc, ok := nc.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return nil
	}
	if _, isTCP := nc.LocalAddr().(*net.TCPAddr); !isTCP {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	q := &quickAckConn{Conn: nc, rc: rc}
	q.arm = func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	}
	return q
}

func (q *quickAckConn) Read(b []byte) (int, error) {
	_ = q.rc.Control(q.arm)
	n, err := q.Conn.Read(b)
	_ = q.rc.Control(q.arm)
	return n, err
}
