package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/harness"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// TestBridgePrimaryWaitsForNUTSecondaries: the bridge is the primary of a
// UPS it also serves on its NUT server, where a real upsmon secondary is
// logged in. On OB LB the primary's handshake counts that secondary among
// the hosts it waits for, and the hosts are down once it has shut down
// and logged out.
func TestBridgePrimaryWaitsForNUTSecondaries(t *testing.T) {
	harness.NeedUpsc(t)
	mq := harness.StartMosquitto(t)
	u := harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{{Name: "dummy", Dev: prDev}}})
	nutAddr := harness.Addr(harness.FreePort(t))
	sub := harness.Subscribe(t, mq.URL(), "ub/ups/nut1/#")
	harness.StartBridge(t, prBridgeYAML(mq.URL(), t.TempDir(), "host_sync: 30s, max_wait: 1m",
		fmt.Sprintf(`  - {id: nut1, type: nut, address: %q, ups: dummy, username: %s, password: %s, primary: true, poll_interval: 200ms}
nut_server:
  listen: [%q]
  users:
    - {name: mon, password: monpass, upsmon: secondary}
`, u.Addr(), harness.NUTAdminUser, harness.NUTAdminPassword, nutAddr)))
	sub.WaitPayload("ub/ups/nut1/state", 20*time.Second, func(p string) bool { s := prState(p); return s != nil && s.Status == "OL" })
	mon := startRealUpsmon(t, "nut1@"+nutAddr+" 1 mon monpass secondary")
	waitLogins(t, nutAddr, "nut1", 1, 10*time.Second)

	u.WriteDev("dummy", prDevWith("OB DISCHRG LB"))
	msgs := sub.WaitFor("HOSTSYNC counting the NUT secondary, then HOSTS_DOWN", 30*time.Second, func(msgs []harness.Msg) bool {
		return prCount(prEvents(msgs, "ub/ups/nut1/event"), "HOSTS_DOWN") == 1
	})
	mon.waitShutdown(t, 5*time.Second)
	var hostsync string
	for _, m := range msgs {
		if p, err := mqttwire.DecodeEvent([]byte(m.Payload)); err == nil && m.Topic == "ub/ups/nut1/event" && p.Type == "HOSTSYNC" {
			hostsync = p.Message
		}
	}
	if !strings.Contains(hostsync, "NUT secondaries: 1;") {
		t.Errorf("HOSTSYNC does not count the logged-in secondary: %q", hostsync)
	}
}
