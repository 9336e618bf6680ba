package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNUTServerValidate(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		n    NUTServer
		want []string // substrings of the errors, in order; none: valid
	}{
		{"off", NUTServer{}, nil},
		{"full", NUTServer{
			Listen: []string{"127.0.0.1:3493", "[::1]:3493"}, AllowFrom: []string{"192.168.1.0/24", "10.0.0.7"},
			Users: []NUTUser{{Name: "monuser", Password: SecretValue("secret"), Upsmon: "secondary"}, {Name: "admin", Password: SecretRef{File: pw}, Upsmon: "primary", Actions: []string{"set", "FSD"}, InstCmds: []string{"ALL"}}},
			UPS:   []NUTServerUPS{{ID: "rack", Name: "ups"}, {ID: "rack", Name: "qnapups"}, {ID: "other"}},
		}, nil},
		{"bad listen", NUTServer{Listen: []string{"3493"}}, []string{"listen[0]: must be host:port"}},
		{"bad cidr", NUTServer{AllowFrom: []string{"192.168.1.0/33"}}, []string{"allow_from[0]"}},
		{"tls half", NUTServer{TLS: NUTServerTLS{CertFile: pw}}, []string{"tls: cert_file and key_file go together"}},
		{"users", NUTServer{Users: []NUTUser{
			{Name: "a", Password: SecretValue("p=q"), Upsmon: "master", Actions: []string{"LOGIN"}, InstCmds: []string{"a b"}},
			{Name: "a"},
			{Name: "b c", Password: SecretRef{Value: "x", File: pw}},
		}}, []string{"users[0].password: must not contain", "users[0].upsmon: must be secondary, primary", "users[0].actions[0]: must be SET or FSD", "users[0].instcmds[0]",
			"users[1].name: \"a\" is already", "users[1].password: is required", "users[2].name: must not contain", "users[2].password: set only one of"}},
		{"ups", NUTServer{UPS: []NUTServerUPS{{ID: "Rack"}, {ID: "rack", Name: "UPS"}, {ID: "rack2", Name: "ups"}, {ID: "rack3", Name: "a b"}}},
			[]string{"ups[0].id", "ups[2].name: \"ups\" is already served by ups[1]", "ups[3].name: must be printable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.n.Validate()
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d: %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
	n := NUTServer{Users: []NUTUser{{Name: "x", Password: SecretRef{File: pw}}}}
	if errs := ResolveSecrets("", &n, nil); len(errs) != 0 {
		t.Fatalf("resolve password_file: %v", errs)
	}
	for range 2 { // validation runs any number of times
		if errs := n.Validate(); len(errs) != 0 || n.Users[0].Password.Reveal() != "fromfile" {
			t.Errorf("password_file: %v %q", errs, n.Users[0].Password)
		}
	}
}
