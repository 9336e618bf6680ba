package broker

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// client is a real MQTT v5 client (paho) logged in to the broker.
type client struct {
	c    *paho.Client
	msgs chan *paho.Publish
}

func dial(t *testing.T, addr, user, pass string) (*client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, _ := url.Parse("tcp://" + addr)
	conn, err := (&netDialer{}).dial(ctx, u.Host)
	if err != nil {
		return nil, err
	}
	cl := &client{msgs: make(chan *paho.Publish, 64)}
	cl.c = paho.NewClient(paho.ClientConfig{
		Conn:    conn,
		Session: state.NewInMemory(),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case cl.msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
	})
	cp := &paho.Connect{ClientID: "t-" + user + "-" + randomHex(3), CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
		cp.PasswordFlag, cp.Password = true, []byte(pass)
	}
	ca, err := cl.c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		return nil, errors.New(ca.Properties.ReasonString)
	}
	t.Cleanup(func() { _ = cl.c.Disconnect(&paho.Disconnect{}) })
	return cl, nil
}

// publish returns nil when the broker accepted the message (PUBACK < 0x80).
func (cl *client) publish(topic, payload string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cl.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1})
	return err
}

// subscribe returns whether the broker granted the subscription.
func (cl *client) subscribe(t *testing.T, filter string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil {
		// paho reports a refused subscription as an error with the SUBACK.
		if sa != nil && len(sa.Reasons) == 1 && sa.Reasons[0] >= 0x80 {
			return false
		}
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0] < 0x80
}

// expect waits for a message on topic, or fails.
func (cl *client) expect(t *testing.T, topic, payload string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-cl.msgs:
			if m.Topic == topic && string(m.Payload) == payload {
				return
			}
		case <-deadline:
			t.Fatalf("no %s=%q within 5s", topic, payload)
		}
	}
}

func start(t *testing.T, o Options) *Broker {
	t.Helper()
	b, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

var testUsers = []User{
	{Name: "pve1", Password: "agent-pw", Role: RoleAgent},
	{Name: "pve2", Password: "agent2-pw", Role: RoleAgent},
	{Name: "bridge", Password: "bridge-pw", Role: RoleBridge},
	{Name: "dash", Password: "reader-pw", Role: RoleReader},
	{Name: "ha", Password: "ha-pw", Role: RoleHomeAssistant},
}

func TestStartRefusesOpenNetworkBroker(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:1883", "[::]:0"} {
		if _, err := Start(Options{Addr: addr}); err == nil || !strings.Contains(err.Error(), "allow_anonymous") {
			t.Errorf("Start(%s) without users = %v, want a refusal naming allow_anonymous", addr, err)
		}
	}
}

// Logins: anonymous and wrong passwords are refused once users exist.
func TestBrokerLogin(t *testing.T) {
	b := start(t, Options{Addr: "127.0.0.1:0", Users: testUsers})
	for _, tc := range []struct{ user, pass string }{
		{"", ""}, {"pve1", "wrong"}, {"pve1", ""}, {"nobody", "agent-pw"}, {"pve1", "agent-pw2"},
	} {
		if _, err := dial(t, b.Addr(), tc.user, tc.pass); err == nil {
			t.Errorf("login %q/%q accepted", tc.user, tc.pass)
		}
	}
	if _, err := dial(t, b.Addr(), "pve1", "agent-pw"); err != nil {
		t.Errorf("agent login refused: %v", err)
	}
	name, pw := b.Credentials()
	if _, err := dial(t, b.Addr(), name, pw.Reveal()); err != nil {
		t.Errorf("the process's own login refused: %v", err)
	}
	// An empty password is a protocol violation mochi refuses before
	// authentication; the four others reach the hook.
	if logins, _ := b.Rejected(); logins != 4 {
		t.Errorf("rejected logins = %d, want 4", logins)
	}
}

// The ACL through real clients: agents read state and write only their own
// topics, the bridge writes under the prefix, readers only read.
func TestBrokerACL(t *testing.T) {
	b := start(t, Options{Addr: "127.0.0.1:0", Users: testUsers, TopicPrefix: "upsbridge", DiscoveryPrefix: "homeassistant"})
	login := func(user, pass string) *client {
		c, err := dial(t, b.Addr(), user, pass)
		if err != nil {
			t.Fatalf("login %s: %v", user, err)
		}
		return c
	}
	agent, bridge, reader, ha := login("pve1", "agent-pw"), login("bridge", "bridge-pw"), login("dash", "reader-pw"), login("ha", "ha-pw")
	watch := login("bridge", "bridge-pw")
	if !watch.subscribe(t, "upsbridge/#") {
		t.Fatal("bridge may not read its prefix")
	}

	for _, tc := range []struct {
		who   string
		c     *client
		topic string
		ok    bool
	}{
		{"bridge", bridge, "upsbridge/ups/u1/state", true},
		{"bridge", bridge, "upsbridge/ups/u1/event", true},
		{"bridge", bridge, "homeassistant/sensor/x/config", true},
		{"agent", agent, "upsbridge/agent/pve1/state", true},
		{"agent", agent, "homeassistant/sensor/upsbridge_agent_pve1_state/config", true},
		{"agent", agent, "homeassistant/device/upsbridge_agent_pve1/config", true},
		{"agent", agent, "upsbridge/ups/u1/state", false},
		{"agent", agent, "upsbridge/ups/u1/event", false},
		{"agent", agent, "upsbridge/ups/u1/set", false},
		{"agent", agent, "upsbridge/ups/u1/command", false},
		{"agent", agent, "upsbridge/bridge/b/availability", false},
		{"agent", agent, "upsbridge/agent/pve2/state", false},
		{"agent", agent, "upsbridge/agent/pve1x/state", false},
		{"agent", agent, "homeassistant/sensor/upsbridge_b_ups_u1_status/config", false},
		{"agent", agent, "homeassistant/status", false},
		{"agent", agent, "other/topic", false},
		{"reader", reader, "upsbridge/ups/u1/state", false},
		{"reader", reader, "upsbridge/ups/u1/command", false},
		{"reader", reader, "homeassistant/sensor/x/config", false},
		{"ha", ha, "upsbridge/ups/u1/command", true},
		{"ha", ha, "upsbridge/ups/u1/set", true},
		{"ha", ha, "homeassistant/status", true},
		{"ha", ha, "upsbridge/ups/u1/state", false},
	} {
		err := tc.c.publish(tc.topic, "x-"+tc.who)
		if (err == nil) != tc.ok {
			t.Errorf("%s publishes %s: err=%v, want allowed=%v", tc.who, tc.topic, err, tc.ok)
		}
		if tc.ok && strings.HasPrefix(tc.topic, "upsbridge/") {
			watch.expect(t, tc.topic, "x-"+tc.who)
		}
	}

	for _, tc := range []struct {
		who    string
		c      *client
		filter string
		ok     bool
	}{
		{"agent", agent, "upsbridge/ups/+/state", true},
		{"agent", agent, "upsbridge/ups/u1/availability", true},
		{"agent", agent, "upsbridge/bridge/+/availability", true},
		{"agent", agent, "upsbridge/agent/pve1/#", true},
		{"agent", agent, "upsbridge/#", false},
		{"agent", agent, "upsbridge/ups/+/+", false},
		{"agent", agent, "upsbridge/ups/u1/set", false},
		{"agent", agent, "upsbridge/agent/+/state", false},
		{"agent", agent, "#", false},
		{"agent", agent, "$SYS/#", false},
		{"reader", reader, "upsbridge/#", true},
		{"reader", reader, "homeassistant/#", true},
		{"reader", reader, "#", false},
	} {
		if got := tc.c.subscribe(t, tc.filter); got != tc.ok {
			t.Errorf("%s subscribes %s: granted=%v, want %v", tc.who, tc.filter, got, tc.ok)
		}
	}
	// What the reader was granted delivers.
	if err := bridge.publish("upsbridge/ups/u1/state", "s1"); err != nil {
		t.Fatal(err)
	}
	reader.expect(t, "upsbridge/ups/u1/state", "s1")
	agent.expect(t, "upsbridge/ups/u1/state", "s1")
	if _, acl := b.Rejected(); acl == 0 {
		t.Error("refused ACL checks are not counted")
	}
}

// Without users the broker on loopback is open, as before.
func TestBrokerLoopbackAnonymous(t *testing.T) {
	b := start(t, Options{Addr: "127.0.0.1:0"})
	c, err := dial(t, b.Addr(), "", "")
	if err != nil {
		t.Fatalf("anonymous on loopback: %v", err)
	}
	if err := c.publish("upsbridge/ups/u1/state", "x"); err != nil {
		t.Errorf("anonymous publish on loopback: %v", err)
	}
	if name, _ := b.Credentials(); name != "" {
		t.Errorf("credentials %q without users", name)
	}
}

// allow_anonymous with users: anonymous clients get in, users keep their ACL.
func TestBrokerAllowAnonymousWithUsers(t *testing.T) {
	b := start(t, Options{Addr: "127.0.0.1:0", Users: testUsers, AllowAnonymous: true})
	if _, err := dial(t, b.Addr(), "", ""); err != nil {
		t.Errorf("anonymous refused with allow_anonymous: %v", err)
	}
	agent, err := dial(t, b.Addr(), "pve1", "agent-pw")
	if err != nil {
		t.Fatal(err)
	}
	if agent.publish("upsbridge/ups/u1/state", "x") == nil {
		t.Error("agent wrote a UPS state with allow_anonymous on")
	}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		f, p string
		want bool
	}{
		{"a/b", "a/#", true}, {"a", "a/#", true}, {"a/#", "a/#", true}, {"a/+/c", "a/#", true},
		{"#", "a/#", false}, {"+/b", "a/#", false}, {"a/b", "a/+", true}, {"a/+", "a/+", true},
		{"a/#", "a/+", false}, {"a/b/c", "a/+", false}, {"a", "a/+", false}, {"a/b", "a/b", true},
		{"a/+", "a/b", false}, {"a/b/", "a/b", false},
	} {
		if got := within(strings.Split(tc.f, "/"), strings.Split(tc.p, "/")); got != tc.want {
			t.Errorf("within(%s, %s) = %v", tc.f, tc.p, got)
		}
	}
}

type netDialer struct{}

func (netDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// TestSilentConnectionDoesNotHoldTheBroker: a TCP connection that never
// sends its CONNECT is closed by the broker after the connect timeout (a
// slowloris holds no goroutine forever), Close does not wait for it beyond
// that, and a client that did connect keeps its connection past the
// connect timeout (its keepalive governs it from then on).
func TestSilentConnectionDoesNotHoldTheBroker(t *testing.T) {
	const timeout = 300 * time.Millisecond
	b, err := Start(Options{Addr: "127.0.0.1:0", ConnectTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close()
		}
	})
	good, err := dial(t, b.Addr(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !good.subscribe(t, "t/#") {
		t.Fatal("subscription refused")
	}

	silent, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if n, err := silent.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent connection: read %d bytes, err %v; want it closed by the broker", n, err)
	}
	if d := time.Since(start); d > timeout+5*time.Second {
		t.Errorf("silent connection closed after %s, connect timeout %s", d, timeout)
	}

	// Past the connect timeout, the connected client still works.
	if err := good.publish("t/x", "still here"); err != nil {
		t.Fatalf("publish after the connect timeout: %v", err)
	}
	good.expect(t, "t/x", "still here")

	// A second silent connection open at Close: Close returns without
	// waiting for it past the connect timeout.
	silent2, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent2.Close()
	_ = good.c.Disconnect(&paho.Disconnect{})
	start = time.Now()
	closed = true
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > timeout+2*time.Second+time.Second {
		t.Errorf("Close took %s with a silent connection open", d)
	}
}
