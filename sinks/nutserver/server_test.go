package nutserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
)

// fakeBridge records commands and FSDs; results are scripted.
type fakeBridge struct {
	mu     sync.Mutex
	calls  []string
	fsd    []string
	result bridge.CommandResult
	err    error
	block  chan struct{} // when set, commands wait for it
}

func (f *fakeBridge) InstCmd(ctx context.Context, ups, command, arg string) (bridge.CommandResult, error) {
	return f.do(ctx, fmt.Sprintf("INSTCMD %s %s %s", ups, command, arg))
}

func (f *fakeBridge) SetVar(ctx context.Context, ups, name, value string) (bridge.CommandResult, error) {
	return f.do(ctx, fmt.Sprintf("SET %s %s=%s", ups, name, value))
}

func (f *fakeBridge) do(ctx context.Context, call string) (bridge.CommandResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	block, res, err := f.block, f.result, f.err
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return bridge.CommandResult{}, ctx.Err()
		}
	}
	return res, err
}

func (f *fakeBridge) ForceFSD(ctx context.Context, ups string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fsd = append(f.fsd, ups)
	return nil
}

func (f *fakeBridge) snapshot() (calls, fsd []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), append([]string(nil), f.fsd...)
}

var testUsers = []User{
	{Name: "monuser", Password: "secret", Upsmon: "secondary"},
	{Name: "admin", Password: "adminpass", Upsmon: "primary", Actions: []string{"SET"}, InstCmds: []string{"beeper.mute"}},
	{Name: "all", Password: "allpass", InstCmds: []string{"ALL"}},
	{Name: "reader", Password: "readpass"},
}

func testState(status string) *bridge.State {
	return &bridge.State{
		UPS:    "rack",
		Comm:   true,
		Status: bridge.ParseStatus(status),
		Vars: bridge.Vars{
			"ups.status": status, "ups.mfr": "Example", "ups.model": "Sim 1500",
			"battery.charge": "100", "Battery.Zeta": "z", "ups.id": `a\b "q" #x`,
			"input.transfer.low": "160", "ups.delay.start": "30",
		},
		Info: &bridge.Info{
			Commands: []bridge.Command{{Name: "beeper.mute", Description: "Mute the beeper"}, {Name: "load.off"}},
			Writable: []bridge.Writable{
				{Name: "ups.id", Type: "STRING:12", Description: "UPS system identifier"},
				{Name: "input.transfer.low", Type: "ENUM", Enum: []string{"160", "170"}},
				{Name: "ups.delay.start", Type: "RANGE", Ranges: [][2]float64{{0, 600}}},
			},
		},
	}
}

type testServer struct {
	*Server
	fb   *fakeBridge
	addr string
}

func startServer(t *testing.T, mod func(*Options)) *testServer {
	t.Helper()
	fb := &fakeBridge{result: bridge.CommandResult{Status: "SUCCESS"}}
	opts := Options{Listen: []string{"127.0.0.1:0"}, Users: testUsers, Bridge: fb,
		UPS: []UPS{{ID: "rack", Name: "ups", Description: "Rack UPS"}, {ID: "rack", Name: "qnapups"}, {ID: "other", Name: "other"}}}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	s.update(testState("OL"))
	return &testServer{Server: s, fb: fb, addr: s.Addrs()[0].String()}
}

// client is a line-oriented test client.
type client struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, rd: bufio.NewReader(c)}
}

// do sends raw bytes and reads the reply: one line, or a whole list.
func (c *client) do(req string) string {
	c.t.Helper()
	if _, err := c.c.Write([]byte(req)); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

func (c *client) reply() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	for {
		l, err := c.rd.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read after %q: %v", b.String(), err)
		}
		b.WriteString(l)
		if !strings.HasPrefix(b.String(), "BEGIN LIST") || strings.HasPrefix(l, "END LIST") {
			return b.String()
		}
	}
}

func TestSessions(t *testing.T) {
	ts := startServer(t, nil)
	type step struct{ req, want string }
	tests := []struct {
		name  string
		steps []step
	}{
		{"versions", []step{
			{"VER\n", "Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/\n"},
			{"VER x\n", "ERR INVALID-ARGUMENT\n"},
			{"NETVER\n", "1.3\n"}, {"PROTVER\n", "1.3\n"},
			{"HELP\n", "Commands: HELP VER GET LIST SET INSTCMD LOGIN LOGOUT USERNAME PASSWORD STARTTLS\n"},
			{"STARTTLS\n", "ERR FEATURE-NOT-CONFIGURED\n"},
			{"\n", "ERR UNKNOWN-COMMAND\n"}, {"FOO\n", "ERR UNKNOWN-COMMAND\n"},
			{"GET VAR x server.version\n", "VAR x server.version \"2.8.0\"\n"},
			{"GET VAR x server.foo\n", "ERR VAR-NOT-SUPPORTED\n"},
		}},
		{"reads", []step{
			{"LIST UPS\n", "BEGIN LIST UPS\nUPS ups \"Rack UPS\"\nUPS qnapups \"Description unavailable\"\nUPS other \"Description unavailable\"\nEND LIST UPS\n"},
			{"get var UPS ups.status\r\r\n", "VAR UPS ups.status \"OL\"\n"},
			{"GET VAR ups UPS.MFR\n", "VAR ups UPS.MFR \"Example\"\n"},
			{"GET VAR ups ups.id\n", "VAR ups ups.id \"a\\\\b \\\"q\\\" \\#x\"\n"},
			{"GET VAR ups nope\n", "ERR VAR-NOT-SUPPORTED\n"},
			{"GET VAR nope ups.status\n", "ERR UNKNOWN-UPS\n"},
			{"GET VAR ups\n", "ERR INVALID-ARGUMENT\n"},
			{"GET VAR other ups.status\n", "ERR DRIVER-NOT-CONNECTED\n"},
			{"GET\n", "ERR INVALID-ARGUMENT\n"}, {"GET FOO ups x\n", "ERR INVALID-ARGUMENT\n"},
			{"LIST VAR ups\n", "BEGIN LIST VAR ups\n" +
				"VAR ups battery.charge \"100\"\nVAR ups Battery.Zeta \"z\"\nVAR ups input.transfer.low \"160\"\n" +
				"VAR ups ups.delay.start \"30\"\nVAR ups ups.id \"a\\\\b \\\"q\\\" \\#x\"\nVAR ups ups.mfr \"Example\"\n" +
				"VAR ups ups.model \"Sim 1500\"\nVAR ups ups.status \"OL\"\nEND LIST VAR ups\n"},
			{"LIST RW ups\n", "BEGIN LIST RW ups\nRW ups input.transfer.low \"160\"\nRW ups ups.delay.start \"30\"\nRW ups ups.id \"a\\\\b \\\"q\\\" \\#x\"\nEND LIST RW ups\n"},
			{"LIST CMD ups\n", "BEGIN LIST CMD ups\nCMD ups beeper.mute\nCMD ups load.off\nEND LIST CMD ups\n"},
			{"LIST ENUM ups input.transfer.low\n", "BEGIN LIST ENUM ups input.transfer.low\nENUM ups input.transfer.low \"160\"\nENUM ups input.transfer.low \"170\"\nEND LIST ENUM ups input.transfer.low\n"},
			{"LIST RANGE ups ups.delay.start\n", "BEGIN LIST RANGE ups ups.delay.start\nRANGE ups ups.delay.start \"0\" \"600\"\nEND LIST RANGE ups ups.delay.start\n"},
			{"LIST ENUM ups ups.mfr\n", "BEGIN LIST ENUM ups ups.mfr\nEND LIST ENUM ups ups.mfr\n"},
			{"LIST ENUM ups nope\n", "ERR VAR-NOT-SUPPORTED\n"},
			{"LIST CLIENT ups\n", "BEGIN LIST CLIENT ups\nEND LIST CLIENT ups\n"},
			{"LIST\n", "ERR INVALID-ARGUMENT\n"}, {"LIST VAR\n", "ERR INVALID-ARGUMENT\n"},
			{"GET TYPE ups ups.status\n", "TYPE ups ups.status NUMBER\n"},
			{"GET TYPE ups ups.id\n", "TYPE ups ups.id RW STRING:12\n"},
			{"GET TYPE ups input.transfer.low\n", "TYPE ups input.transfer.low RW ENUM NUMBER\n"},
			{"GET TYPE ups ups.delay.start\n", "TYPE ups ups.delay.start RW RANGE NUMBER\n"},
			{"GET TYPE ups nope\n", "ERR VAR-NOT-SUPPORTED\n"},
			{"GET DESC ups ups.id\n", "DESC ups ups.id \"UPS system identifier\"\n"},
			{"GET DESC ups whatever\n", "DESC ups whatever \"Description unavailable\"\n"},
			{"GET CMDDESC ups beeper.mute\n", "CMDDESC ups beeper.mute \"Mute the beeper\"\n"},
			{"GET UPSDESC ups\n", "UPSDESC ups \"Rack UPS\"\n"},
			{"GET UPSDESC qnapups\n", "UPSDESC qnapups \"Unavailable\"\n"},
			{"GET NUMLOGINS ups\n", "NUMLOGINS ups 0\n"},
			{"GET VAR ups ups.status # comment\n", "VAR ups ups.status \"OL\"\n"},
			{"GET VAR ups \"ups.status\" j1 j2 j3\n", "VAR ups ups.status \"OL\"\n"},
			{"SET VAR ups ups.id \"#\"\n", "ERR INVALID-ARGUMENT\n"},
		}},
		{"auth order", []step{
			{"LOGIN ups\n", "ERR USERNAME-REQUIRED\n"},
			{"PASSWORD secret\n", "OK\n"},
			{"FSD ups\n", "ERR USERNAME-REQUIRED\n"},
			{"USERNAME monuser\n", "OK\n"},
			{"USERNAME monuser\n", "ERR ALREADY-SET-USERNAME\n"},
			{"PASSWORD x\n", "ERR ALREADY-SET-PASSWORD\n"},
			{"LOGIN\n", "ERR INVALID-ARGUMENT\n"},
			{"LOGIN nope\n", "ERR UNKNOWN-UPS\n"},
			{"LOGIN ups\n", "OK\n"},
			{"LOGIN ups\n", "ERR ALREADY-LOGGED-IN\n"},
			{"GET NUMLOGINS ups\n", "NUMLOGINS ups 1\n"},
			{"GET NUMLOGINS qnapups\n", "NUMLOGINS qnapups 0\n"},
			{"LIST CLIENT UPS\n", "BEGIN LIST CLIENT UPS\nCLIENT ups 127.0.0.1\nEND LIST CLIENT UPS\n"},
			{"PRIMARY ups\n", "ERR ACCESS-DENIED\n"},
			{"FSD ups\n", "ERR ACCESS-DENIED\n"},
			{"SET VAR ups ups.id x\n", "ERR ACCESS-DENIED\n"},
			{"INSTCMD ups beeper.mute\n", "ERR ACCESS-DENIED\n"},
			{"INSTCMD ups nope\n", "ERR CMD-NOT-SUPPORTED\n"},
			{"SET TRACKING ON\n", "OK\n"}, {"GET TRACKING\n", "ON\n"}, {"SET TRACKING MAYBE\n", "ERR INVALID-ARGUMENT\n"},
			{"LOGOUT\n", "OK Goodbye\n"},
		}},
		{"wrong password", []step{
			{"USERNAME monuser\n", "OK\n"}, {"PASSWORD wrong\n", "OK\n"},
			{"LOGIN ups\n", "ERR ACCESS-DENIED\n"},
			{"GET VAR ups ups.status\n", "VAR ups ups.status \"OL\"\n"},
		}},
		{"no upsmon right", []step{
			{"USERNAME reader\n", "OK\n"}, {"PASSWORD readpass\n", "OK\n"},
			{"LOGIN ups\n", "ERR ACCESS-DENIED\n"},
		}},
		{"set and instcmd", []step{
			{"USERNAME admin\n", "OK\n"}, {"PASSWORD adminpass\n", "OK\n"},
			{"SET VAR ups ups.status OB\n", "ERR READONLY\n"},
			{"SET VAR ups nope 1\n", "ERR VAR-NOT-SUPPORTED\n"},
			{"SET VAR ups ups.id 1234567890123\n", "ERR TOO-LONG\n"},
			{"SET VAR ups input.transfer.low 165\n", "ERR INVALID-VALUE\n"},
			{"SET VAR ups ups.delay.start 601\n", "ERR INVALID-VALUE\n"},
			{"SET VAR ups ups.delay.start 600\n", "OK\n"},
			{"INSTCMD ups load.off\n", "ERR ACCESS-DENIED\n"},
			{"INSTCMD ups BEEPER.MUTE\n", "OK\n"},
			{"GET TRACKING 0000\n", "ERR FEATURE-NOT-CONFIGURED\n"},
			{"PRIMARY ups\n", "OK PRIMARY-GRANTED\n"},
			{"MASTER ups\n", "OK MASTER-GRANTED\n"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			for _, s := range tt.steps {
				if got := c.do(s.req); got != s.want {
					t.Errorf("%q:\n got %q\nwant %q", s.req, got, s.want)
				}
			}
		})
	}
	// The two commands the admin was allowed reached the bridge, with the
	// bridge's UPS id and the command's own spelling.
	want := "SET rack ups.delay.start=600|INSTCMD rack beeper.mute "
	waitFor(t, func() bool { calls, _ := ts.fb.snapshot(); return strings.Join(calls, "|") == want }, "the bridge did not get %q", want)
}

func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
