package test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/internal/harness"
)

// mqttLogin connects a plain paho client and returns it, or the broker's
// refusal.
func mqttLogin(t *testing.T, addr, user, pass string) (*paho.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	cp := &paho.Connect{ClientID: fmt.Sprintf("t-%s-%d", user, time.Now().UnixNano()), CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = true, user, true, []byte(pass)
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

// TestEmbeddedBrokerClosed runs the real binary with the embedded broker
// and users: the bridge publishes through its own per-run account, a
// reader reads, an agent cannot write UPS topics or another agent's, and
// anonymous clients are refused. The same broker on every address without
// users is a configuration error.
func TestEmbeddedBrokerClosed(t *testing.T) {
	addr := harness.Addr(harness.FreePort(t))
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
mqtt:
  url: embedded
  listen: "%s"
  broker:
    users:
      - {name: pve1, password: agent-pw, role: agent}
      - {name: dash, password: reader-pw, role: reader}
bridge: {id: emb, state_dir: %s}
sources: [{id: sim-ups, type: sim, scenario: steady, poll_interval: 100ms}]
`, addr, dir)
	harness.StartBridge(t, cfg)
	harness.WaitTCP(t, addr, 20*time.Second)

	reader := harness.Subscribe(t, "tcp://dash:reader-pw@"+addr, "upsbridge/#")
	reader.WaitPayload("upsbridge/ups/sim-ups/state", 20*time.Second, func(p string) bool { return strings.Contains(p, `"ups":"sim-ups"`) })

	if _, err := mqttLogin(t, addr, "", ""); err == nil {
		t.Error("anonymous client accepted by a broker with users")
	}
	if _, err := mqttLogin(t, addr, "pve1", "reader-pw"); err == nil {
		t.Error("wrong password accepted")
	}
	agent, err := mqttLogin(t, addr, "pve1", "agent-pw")
	if err != nil {
		t.Fatalf("agent login: %v", err)
	}
	pub := func(c *paho.Client, topic, payload string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1})
		return err
	}
	for _, topic := range []string{"upsbridge/ups/sim-ups/state", "upsbridge/ups/sim-ups/event", "upsbridge/ups/sim-ups/command", "upsbridge/agent/pve2/state", "upsbridge/bridge/emb/availability"} {
		if err := pub(agent, topic, "forged"); err == nil {
			t.Errorf("agent published %s", topic)
		}
	}
	if err := pub(agent, "upsbridge/agent/pve1/state", "own"); err != nil {
		t.Errorf("agent may not publish its own state: %v", err)
	}
	reader.WaitPayload("upsbridge/agent/pve1/state", 10*time.Second, func(p string) bool { return p == "own" })
	for _, m := range reader.Messages() {
		if m.Payload == "forged" {
			t.Errorf("a forged message was delivered: %s", m.Topic)
		}
	}
	rc, err := mqttLogin(t, addr, "dash", "reader-pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := pub(rc, "upsbridge/ups/sim-ups/command", `{"command":"beeper.mute"}`); err == nil {
		t.Error("a reader sent a command")
	}

	// A real agent process logs in with its account: it reads the UPS
	// state, and publishes its own state and Home Assistant discovery.
	disc := harness.Subscribe(t, "tcp://dash:reader-pw@"+addr, "homeassistant/#")
	agentProc := harness.StartBridge(t, fmt.Sprintf(`
mqtt: {url: "tcp://%s", username: pve1, password: agent-pw}
bridge: {state_dir: %s}
agent:
  id: pve1
  supplies: [{ups: sim-ups}]
  dry_run: true
  poweroff: command
  shutdown_command: ["/bin/true"]
  state_file: %s
`, addr, t.TempDir(), filepath.Join(t.TempDir(), "agent.json")))
	reader.WaitPayload("upsbridge/agent/pve1/state", 20*time.Second, func(p string) bool { return strings.Contains(p, `"agent":"pve1"`) })
	disc.WaitFor("the agent's discovery configs", 20*time.Second, func(msgs []harness.Msg) bool {
		for _, m := range msgs {
			if strings.Contains(m.Topic, "upsbridge_agent_pve1") && strings.HasSuffix(m.Topic, "/config") {
				return true
			}
		}
		return false
	})
	if out := strings.ToLower(agentProc.Output.String()); strings.Contains(out, "not authorized") || strings.Contains(out, "refused") {
		t.Errorf("the agent was refused something its role allows:\n%s", agentProc.Output.String())
	}

	// Beyond loopback without users: refused at check-config.
	open := filepath.Join(t.TempDir(), "open.yaml")
	body := strings.Replace(cfg, `listen: "`+addr+`"`, `listen: "0.0.0.0:1883"`, 1)
	body = body[:strings.Index(body, "  broker:")] + body[strings.Index(body, "bridge:"):]
	if err := os.WriteFile(open, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.Binary(t), "check-config", "-c", open).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "mqtt.listen") || !strings.Contains(string(out), "allow_anonymous") {
		t.Errorf("an open embedded broker passed check-config: %v\n%s", err, out)
	}
}
