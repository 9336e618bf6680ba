package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The exposure keys: every bad value is an error naming its key; good ones
// load.
func TestExposureKeys(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		wantErr    []string // substrings, each "key: ..."
	}{
		{"defaults are closed and valid", ``, nil},
		{"embedded on loopback needs nothing", "mqtt: {url: embedded, listen: '127.0.0.1:1883'}", nil},
		{"embedded on localhost", "mqtt: {url: embedded, listen: 'localhost:1883'}", nil},
		{"embedded on the LAN without users", "mqtt: {url: embedded, listen: '0.0.0.0:1883'}",
			[]string{"mqtt.listen: the embedded broker on \"0.0.0.0:1883\" is reachable beyond this machine"}},
		{"empty host is every address", "mqtt: {url: embedded, listen: ':1883'}", []string{"mqtt.listen: "}},
		{"a remote broker may listen key unused", "mqtt: {url: 'tcp://b:1883', listen: '0.0.0.0:1883'}", nil},
		{"explicit anonymous", "mqtt: {url: embedded, listen: '0.0.0.0:1883', broker: {allow_anonymous: true}}", nil},
		{"users", "mqtt: {url: embedded, listen: '0.0.0.0:1883', broker: {users: [{name: pve1, password_file: " + pwFile + ", role: agent}, {name: ha, password: x, role: homeassistant}]}}", nil},
		{"bad users", "mqtt: {url: embedded, listen: '0.0.0.0:1883', broker: {users: [{name: '', password: x, role: agent}, {name: 'Bad Agent', password: x, role: agent}, {name: r, role: reader}, {name: r, password: y, role: admin}, {name: f, password: x, password_file: " + pwFile + ", role: reader}]}}",
			[]string{"mqtt.broker.users[0].name: is required", "mqtt.broker.users[1].name: an agent's user name is its agent.id", "mqtt.broker.users[2].password: is required", "mqtt.broker.users[3].name: \"r\" is already", "mqtt.broker.users[3].role: must be one of bridge, agent, homeassistant, reader", "mqtt.broker.users[4].password: set either password or password_file"}},
		{"allow_set", "mqtt: {commands: {allow_set: [ups.delay.start, input.transfer.low]}}", nil},
		{"allow_dangerous needs allow_set for variables", "mqtt: {commands: {allow_set: [ups.delay.shutdown], allow_dangerous: [ups.delay.shutdown, battery.charge.low, load.off]}}",
			[]string{"mqtt.commands.allow_dangerous[1]: \"battery.charge.low\" is a variable: list it in mqtt.commands.allow_set too"}},
		{"allow_dangerous takes only dangerous names", "mqtt: {commands: {allow_dangerous: [beeper.mute]}}",
			[]string{"mqtt.commands.allow_dangerous[0]: \"beeper.mute\" neither cuts the load"}},
		{"bad names", "mqtt: {commands: {allow_set: ['ups delay'], allow_dangerous: ['load.off*']}}",
			[]string{"mqtt.commands.allow_set[0]: must be a NUT variable name", "mqtt.commands.allow_dangerous[0]: must be a NUT command"}},
		{"http token file", "http: {listen: '0.0.0.0:9105', token_file: " + pwFile + "}", nil},
		{"http token twice", "http: {token: a, token_file: " + pwFile + "}", []string{"http.token: set either token or token_file"}},
		{"http token file missing", "http: {token_file: " + filepath.Join(dir, "nope") + "}", []string{"http.token_file: read secret file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(write(t, tc.yaml), nil)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if strings.Contains(tc.yaml, "token_file") && cfg.HTTP.Token.Reveal() != "s3cret" {
					t.Errorf("token not read from file")
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Error("a secret reached the error")
			}
		})
	}
}

func TestIsLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.1.2.3:1": true, "[::1]:1883": true, "localhost:1883": true,
		"0.0.0.0:1883": false, ":1883": false, "[::]:1883": false, "192.168.1.2:1883": false, "mqtt.lan:1883": false, "bad": false,
	} {
		if got := IsLoopbackListen(addr); got != want {
			t.Errorf("IsLoopbackListen(%q) = %v", addr, got)
		}
	}
}
