//go:build !linux

package client

import "net"

// newQuickAckConn: TCP_QUICKACK is Linux-only.
func newQuickAckConn(net.Conn) net.Conn { return nil }
