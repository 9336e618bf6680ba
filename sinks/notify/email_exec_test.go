package notify

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// smtpServer is a minimal SMTP server for tests: EHLO, STARTTLS, AUTH
// PLAIN/LOGIN, MAIL, RCPT, DATA, QUIT.
type smtpServer struct {
	ln       net.Listener
	tls      *tls.Config
	implicit bool
	authFail bool
	mu       sync.Mutex
	mails    []smtpMail
}

type smtpMail struct {
	auth, from string
	to         []string
	data       string
	tls        bool
}

func selfSigned(t *testing.T) (*tls.Config, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, ca
}

func startSMTP(t *testing.T, tc *tls.Config, implicit bool) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln, tls: tc, implicit: implicit}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c) })
		}
	})
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer func() { c.Close() }()
	secure := false
	if s.implicit {
		c = tls.Server(c, s.tls)
		secure = true
	}
	r := bufio.NewReader(c)
	say := func(l string) { _, _ = c.Write([]byte(l + "\r\n")) }
	say("220 test ESMTP")
	var m smtpMail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			say("250-test")
			if !secure && s.tls != nil {
				say("250-STARTTLS")
			}
			say("250 AUTH PLAIN LOGIN")
		case cmd == "STARTTLS":
			say("220 go ahead")
			c = tls.Server(c, s.tls)
			r = bufio.NewReader(c)
			secure = true
		case strings.HasPrefix(cmd, "AUTH PLAIN"):
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line[len("AUTH PLAIN"):]))
			m.auth = "PLAIN " + string(raw)
			if s.authFail {
				say("535 5.7.8 Authentication credentials invalid")
				continue
			}
			say("235 ok")
		case strings.HasPrefix(cmd, "AUTH LOGIN"):
			say("334 " + base64.StdEncoding.EncodeToString([]byte("Username:")))
			u, _ := r.ReadString('\n')
			say("334 " + base64.StdEncoding.EncodeToString([]byte("Password:")))
			p, _ := r.ReadString('\n')
			ub, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(u))
			pb, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(p))
			m.auth = "LOGIN " + string(ub) + ":" + string(pb)
			say("235 ok")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			m.from = line[10:]
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.to = append(m.to, line[8:])
			say("250 ok")
		case cmd == "DATA":
			say("354 go")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			m.data, m.tls = b.String(), secure
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func TestEmail(t *testing.T) {
	tc, ca := selfSigned(t)
	tests := []struct {
		name     string
		implicit bool
		security string
		auth     string
		wantAuth string
	}{
		{"starttls plain", false, "starttls", "auto", "PLAIN \x00alert@example.com\x00pw-secret"},
		{"implicit tls login", true, "tls", "login", "LOGIN alert@example.com:pw-secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSMTP(t, tc, tt.implicit)
			port := srv.ln.Addr().(*net.TCPAddr).Port
			c := &EmailConfig{Common: common("email"), Host: "127.0.0.1", Port: port, Security: tt.security, Username: "alert@example.com",
				Password: "pw-secret", Auth: tt.auth, From: "UPS <ups@example.com>", To: []string{"ops@example.com", "b@example.com"}, CAFile: ca}
			s := build(t, c)
			msg := testMsg
			msg.Title = "[警告] ups1: 市电中断"
			if err := s.Attempt(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.mails) != 1 {
				t.Fatalf("%d mails", len(srv.mails))
			}
			m := srv.mails[0]
			if !m.tls || m.auth != tt.wantAuth || m.from != "<ups@example.com>" || len(m.to) != 2 || m.to[0] != "<ops@example.com>" {
				t.Fatalf("mail %+v", m)
			}
			if !strings.Contains(m.data, "Subject: =?UTF-8?b?") || !strings.Contains(m.data, "Content-Type: text/plain; charset=UTF-8") {
				t.Fatalf("headers: %s", m.data)
			}
			_, body, _ := strings.Cut(m.data, "\r\n\r\n")
			dec, _ := base64.StdEncoding.DecodeString(strings.ReplaceAll(body, "\r\n", ""))
			if string(dec) != msg.Body+"\n" {
				t.Fatalf("body %q", dec)
			}
		})
	}
	t.Run("bad password is refused, not retried", func(t *testing.T) {
		srv := startSMTP(t, tc, false)
		srv.authFail = true
		c := &EmailConfig{Common: common("email"), Host: "127.0.0.1", Port: srv.ln.Addr().(*net.TCPAddr).Port, Security: "starttls",
			Username: "u", Password: "pw-secret", Auth: "plain", From: "ups@example.com", To: []string{"ops@example.com"}, CAFile: ca}
		err := build(t, c).Attempt(context.Background(), testMsg)
		if k, _ := engine.Classify(err); err == nil || k != engine.KindRefused || strings.Contains(err.Error(), "pw-secret") {
			t.Fatalf("err %v kind %v", err, k)
		}
	})
	t.Run("untrusted certificate fails", func(t *testing.T) {
		srv := startSMTP(t, tc, true)
		c := &EmailConfig{Common: common("email"), Host: "127.0.0.1", Port: srv.ln.Addr().(*net.TCPAddr).Port, Security: "tls",
			Auth: "none", From: "ups@example.com", To: []string{"ops@example.com"}}
		if err := build(t, c).Attempt(context.Background(), testMsg); err == nil {
			t.Fatal("a self-signed certificate was accepted without ca_file")
		}
	})
}

func TestExecLikeNotifyCmd(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := filepath.Join(dir, "notify.sh")
	// The kind of script people keep in upsmon.conf's NOTIFYCMD.
	body := "#!/bin/sh\nprintf '%s|%s|%s|%s|%s\\n' \"$#\" \"$UPSNAME\" \"$NOTIFYTYPE\" \"$1\" \"$2\" >> " + out + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &ExecConfig{Common: common("exec"), Command: []string{script, "--flag"}}
	s := build(t, c)
	if err := s.Attempt(context.Background(), testMsg); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := "2|ups1|ONBATT|--flag|UPS ups1 is on battery\n"
	if string(got) != want {
		t.Fatalf("script saw %q, want %q", got, want)
	}

	fail := filepath.Join(dir, "fail.sh")
	_ = os.WriteFile(fail, []byte("#!/bin/sh\necho boom >&2\nexit 3\n"), 0o755)
	err := build(t, &ExecConfig{Common: common("exec"), Command: []string{fail}}).Attempt(context.Background(), testMsg)
	if k, _ := engine.Classify(err); err == nil || k != engine.KindTransient || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err %v", err)
	}
	if errs := (&ExecConfig{Common: common("exec"), Command: []string{filepath.Join(dir, "missing")}}).Validate(); len(errs) != 1 || errs[0].Key != "command[0]" {
		t.Fatalf("missing command: %v", errs)
	}
}
