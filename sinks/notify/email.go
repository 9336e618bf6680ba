package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// EmailConfig is the `type: email` notifier: SMTP with STARTTLS (port 587)
// or implicit TLS (port 465), with PLAIN or LOGIN authentication.
type EmailConfig struct {
	engine.Common `koanf:",squash"`
	Host          string `koanf:"host"`
	Port          int    `koanf:"port"`
	// Security is starttls (default), tls (implicit, port 465) or none
	// (only for a local relay).
	Security     string        `koanf:"security"`
	Username     string        `koanf:"username"`
	Password     config.Secret `koanf:"password"`
	PasswordFile string        `koanf:"password_file"`
	PasswordEnv  string        `koanf:"password_env"`
	// Auth is auto (PLAIN, or LOGIN if the server offers only that),
	// plain, login or none.
	Auth               string   `koanf:"auth"`
	From               string   `koanf:"from"`
	To                 []string `koanf:"to"`
	CAFile             string   `koanf:"ca_file"`
	InsecureSkipVerify bool     `koanf:"insecure_skip_verify"`

	pw engine.SecretRef
}

func init() {
	engine.Register("email", func() *EmailConfig {
		return &EmailConfig{Common: engine.Defaults("email", engine.ServiceDefaults{RateLimit: 10, FlapWindow: 10 * time.Second}),
			Port: 587, Security: "starttls", Auth: "auto"}
	})
}

// Validate implements config.Validator.
func (c *EmailConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	errs = append(errs, c.pw.Resolve(&c.Password, c.PasswordFile, c.PasswordEnv, "password", false)...)
	if c.Host == "" {
		errs = append(errs, config.Errorf("host", "is required"))
	}
	if c.Port <= 0 || c.Port > 65535 {
		errs = append(errs, config.Errorf("port", "must be 1..65535, got %d", c.Port))
	}
	switch c.Security {
	case "starttls", "tls", "none":
	default:
		errs = append(errs, config.Errorf("security", "must be starttls, tls or none, got %q", c.Security))
	}
	switch c.Auth {
	case "auto", "plain", "login", "none":
	default:
		errs = append(errs, config.Errorf("auth", "must be auto, plain, login or none, got %q", c.Auth))
	}
	if c.Username != "" && c.Password == "" && c.Auth != "none" {
		errs = append(errs, config.Errorf("password", "is required with username (or password_file, password_env)"))
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		errs = append(errs, config.Errorf("from", "must be an email address, got %q", c.From))
	}
	if len(c.To) == 0 {
		errs = append(errs, config.Errorf("to", "needs at least one address"))
	}
	for i, a := range c.To {
		if _, err := mail.ParseAddress(a); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("to[%d]", i), "must be an email address, got %q", a))
		}
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			errs = append(errs, config.Errorf("ca_file", "%v", err))
		}
	}
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *EmailConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("email notifier %q: %w", c.Name, config.Errors(errs))
	}
	tc := &tls.Config{ServerName: c.Host, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("email notifier %q: read ca_file: %w", c.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("email notifier %q: ca_file %s holds no PEM certificate", c.Name, c.CAFile)
		}
		tc.RootCAs = pool
	}
	return engine.New(env, &c.Common, &email{cfg: c, tls: tc}, c.Password.Reveal())
}

type email struct {
	cfg *EmailConfig
	tls *tls.Config
}

func (e *email) Escape(s string) string { return engine.MarkupPlain.Escape(s) }

func (e *email) MaxBytes() int { return 0 }

// loginAuth is SMTP AUTH LOGIN (Exchange, Office 365 and others offer only
// it); net/smtp has only PLAIN and CRAM-MD5.
type loginAuth struct{ user, pass string }

func (a loginAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }
func (a loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch strings.ToLower(strings.TrimSpace(string(fromServer))) {
	case "username:":
		return []byte(a.user), nil
	case "password:":
		return []byte(a.pass), nil
	}
	return nil, fmt.Errorf("unexpected LOGIN challenge %q", fromServer)
}

// plainAuth is AUTH PLAIN; unlike smtp.PlainAuth it leaves the TLS policy
// to the security setting (checked before authenticating).
type plainAuth struct{ user, pass string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}
func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge during AUTH PLAIN")
	}
	return nil, nil
}

func (e *email) Send(ctx context.Context, m engine.Message) error {
	err := e.deliver(ctx, m)
	if err == nil {
		return nil
	}
	var tp *textproto.Error
	if errors.As(err, &tp) {
		werr := fmt.Errorf("email: SMTP %d: %s", tp.Code, tp.Msg)
		switch {
		case tp.Code >= 400 && tp.Code < 500:
			return engine.Transient(werr, 0)
		case tp.Code == 535 || tp.Code == 534 || tp.Code == 530 || tp.Code == 550 || tp.Code == 551 || tp.Code == 553:
			return engine.Refused(werr) // authentication or addresses: the config
		}
		return engine.Rejected(werr)
	}
	if engine.Classified(err) {
		return err
	}
	return engine.Transient(fmt.Errorf("email: %w", err), 0)
}

func (e *email) deliver(ctx context.Context, m engine.Message) error {
	addr := net.JoinHostPort(e.cfg.Host, strconv.Itoa(e.cfg.Port))
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if e.cfg.Security == "tls" {
		tc := tls.Client(conn, e.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, e.cfg.Host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello(helloName()); err != nil {
		return err
	}
	secure := e.cfg.Security == "tls"
	if e.cfg.Security == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return engine.Refused(fmt.Errorf("email: %s does not offer STARTTLS (set security: tls for port 465, or none for a local relay)", addr))
		}
		if err := c.StartTLS(e.tls); err != nil {
			return fmt.Errorf("STARTTLS with %s: %w", addr, err)
		}
		secure = true
	}
	if e.cfg.Username != "" && e.cfg.Auth != "none" {
		if !secure && !isLoopback(e.cfg.Host) {
			return engine.Refused(fmt.Errorf("email: refusing to send the password without TLS to %s", addr))
		}
		ok, mechs := c.Extension("AUTH")
		if !ok {
			return engine.Refused(fmt.Errorf("email: %s does not offer AUTH", addr))
		}
		var a smtp.Auth = plainAuth{e.cfg.Username, e.cfg.Password.Reveal()}
		if e.cfg.Auth == "login" || (e.cfg.Auth == "auto" && !strings.Contains(" "+strings.ToUpper(mechs)+" ", " PLAIN ") && strings.Contains(strings.ToUpper(mechs), "LOGIN")) {
			a = loginAuth{e.cfg.Username, e.cfg.Password.Reveal()}
		}
		if err := c.Auth(a); err != nil {
			return err
		}
	}
	from, _ := mail.ParseAddress(e.cfg.From)
	if err := c.Mail(from.Address); err != nil {
		return err
	}
	for _, to := range e.cfg.To {
		a, _ := mail.ParseAddress(to)
		if err := c.Rcpt(a.Address); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(e.compose(m, from)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func (e *email) compose(m engine.Message, from *mail.Address) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", from.String())
	hdr("To", strings.Join(e.cfg.To, ", "))
	hdr("Subject", mime.BEncoding.Encode("UTF-8", m.Title))
	hdr("Date", time.Now().Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<%d.upsbridge@%s>", time.Now().UnixNano(), helloName()))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=UTF-8")
	hdr("Content-Transfer-Encoding", "base64")
	hdr("X-Upsbridge-Event", m.Event)
	b.WriteString("\r\n")
	enc := base64.StdEncoding.EncodeToString([]byte(m.Body + "\n"))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

func helloName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
