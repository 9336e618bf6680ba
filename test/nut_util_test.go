package test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// upsdLine sends one request on a fresh connection and returns the answer.
func upsdLine(addr, req string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", req); err != nil {
		return "", err
	}
	l, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// listenBlackhole accepts connections on port and never answers.
func listenBlackhole(t *testing.T, port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln, nil
}

// upsdScript sends requests in order on one connection and returns the
// answer to the last.
func upsdScript(addr string, reqs ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var l string
	for _, r := range reqs {
		if _, err := fmt.Fprintf(c, "%s\n", r); err != nil {
			return "", err
		}
		if l, err = br.ReadString('\n'); err != nil {
			return "", err
		}
	}
	return strings.TrimRight(l, "\r\n"), nil
}
