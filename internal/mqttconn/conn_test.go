package mqttconn

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// TestBufConnKeepsPacketsWhole: the MQTT client writes a packet in several
// calls on anything but a bare TCP connection, from several goroutines;
// bufConn's lock must keep every packet whole.
func TestBufConnKeepsPacketsWhole(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	c := newBufConn(client)
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := packets.NewControlPacket(packets.PUBLISH)
				pub := p.Content.(*packets.Publish)
				pub.Topic = fmt.Sprintf("w%d", w)
				pub.Payload = bytes.Repeat([]byte{byte('a' + w)}, 10+i%50)
				if _, err := p.WriteTo(c); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); client.Close() }()
	n := 0
	for {
		p, err := packets.ReadPacket(server)
		if err != nil {
			break
		}
		pub, ok := p.Content.(*packets.Publish)
		if !ok {
			t.Fatalf("packet %d: %T, want a PUBLISH (the stream was interleaved)", n, p.Content)
		}
		var w int
		if _, err := fmt.Sscanf(pub.Topic, "w%d", &w); err != nil || len(pub.Payload) == 0 || !bytes.Equal(pub.Payload, bytes.Repeat([]byte{byte('a' + w)}, len(pub.Payload))) {
			t.Fatalf("packet %d: topic %q payload %q: interleaved", n, pub.Topic, pub.Payload)
		}
		n++
	}
	if n != writers*each {
		t.Fatalf("read %d whole packets, want %d", n, writers*each)
	}
}
