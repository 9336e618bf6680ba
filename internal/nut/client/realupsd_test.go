package client_test

import (
	"context"
	"testing"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/internal/nut/client"
)

const benchDev = `ups.mfr: Example
ups.model: Sim 1500
ups.status: OL
battery.charge: 100
battery.runtime: 3000
battery.voltage: 27.1
input.voltage: 230.4
input.frequency: 50.0
output.voltage: 230.0
ups.load: 20
ups.serial: 0003
`

// BenchmarkRealUPSD is one poll's round trip against Debian's real upsd on
// loopback, on a kept-open connection: LIST VAR with TCP_QUICKACK re-armed
// around reads (what the source does), the same without (upsd's Nagle
// meets our delayed ACK: about 40 ms per LIST), and one GET VAR.
func BenchmarkRealUPSD(b *testing.B) {
	u := harness.StartUPSD(b, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "bench", Dev: benchDev}}})
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		opts client.Options
		get  bool
	}{
		{"ListVar/quickack", client.Options{}, false},
		{"ListVar/no-quickack", client.Options{NoQuickAck: true}, false},
		{"GetVar/quickack", client.Options{}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := client.Dial(ctx, u.Addr(), bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ReportAllocs()
			for b.Loop() {
				if bc.get {
					if _, err := c.GetVar(ctx, "bench", "ups.status"); err != nil {
						b.Fatal(err)
					}
					continue
				}
				n := 0
				if err := c.ListVarFunc(ctx, "bench", func(_, _ []byte) { n++ }); err != nil || n < 10 {
					b.Fatal(err, n)
				}
			}
		})
	}
}
