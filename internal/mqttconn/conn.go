// Package mqttconn is the MQTT connection every part of upsbridge uses: the
// bridge's publishing and listening connections and an agent's two. It
// wraps paho's autopaho with the project's defaults: reconnects with
// backoff, TLS from files, MQTT v5 limits announced in CONNECT (maximum
// packet size, receive maximum) and a buffered reader for floods.
package mqttconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

// ConnOptions say how to reach the broker. They are shared by the bridge's
// publisher and by agents, which keep their own connection.
type ConnOptions struct {
	URL      string // tcp://, mqtt://, mqtts://, ssl://, ws://, wss://
	ClientID string
	Username string
	Password config.Secret
	TLS      config.TLS
	// Will is published by the broker when the connection dies.
	Will *paho.WillMessage
	// KeepAlive in seconds; 0 means 30.
	KeepAlive uint16
	// MaxPacket is the largest packet accepted from the broker, announced
	// in CONNECT (MQTT v5 Maximum Packet Size) so the broker drops larger
	// messages for this client instead of sending them; 0 means
	// MaxInboundPacket.
	MaxPacket int
	// ReceiveMaximum, when not 0, is announced to the broker (MQTT v5
	// Receive Maximum) and bounds the client's queue of received messages
	// waiting for the handler (65535 otherwise): with it, a slow handler
	// holds at most that many messages in memory and a backlog stays in
	// the socket and the broker.
	ReceiveMaximum uint16
	// BufferedRead reads the connection through a buffer (tcp and tls
	// schemes): the MQTT client reads each packet in several small reads,
	// a system call each without it, which caps how many messages per
	// second a reader can absorb.
	BufferedRead bool
	Logger       *slog.Logger
}

// ConnOptionsFromConfig builds connection options from the mqtt section.
func ConnOptionsFromConfig(m config.MQTT, clientID string, log *slog.Logger) ConnOptions {
	if m.ClientID != "" {
		clientID = m.ClientID
	}
	return ConnOptions{URL: m.URL, ClientID: clientID, Username: m.Username, Password: m.Password.Secret(), TLS: m.TLS, Logger: log}
}

// TLSConfig builds the TLS configuration from files.
func TLSConfig(t config.TLS, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user's explicit choice
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls: read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt tls: ca_file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls: load client certificate %s: %w", t.CertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// MaxInboundPacket is the largest MQTT packet a connection accepts. The
// broker is told in CONNECT (MQTT 5 Maximum Packet Size) and drops larger
// messages for this client, so they never reach its memory; a payload
// that still arrives larger (a broker ignoring the property) is refused
// before any decoding. The largest legitimate message is a UPS state:
// 4,096 variables (nut max_vars) of ~200 bytes fit.
const MaxInboundPacket = 1 << 20

// Handlers are called by the connection; they must not block.
type Handlers struct {
	OnUp      func(cm *autopaho.ConnectionManager)
	OnDown    func()
	OnPublish func(topic string, payload []byte, retained bool)
	// OnConnack, when set, sees each CONNACK (before OnUp): the broker's
	// limits, such as its maximum packet size.
	OnConnack func(ca *paho.Connack)
	// OnRefused, when set, is told of each message refused for its size.
	OnRefused func(topic string, size int)
}

// Connect starts a managed connection that reconnects with backoff and
// jitter until ctx ends. It returns at once; the connection comes up in the
// background (check with AwaitConnection).
func Connect(ctx context.Context, o ConnOptions, h Handlers) (*autopaho.ConnectionManager, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("mqtt: parse url: %w", err)
	}
	var tlsCfg *tls.Config
	switch u.Scheme {
	case "mqtts", "ssl", "tls", "wss":
		if tlsCfg, err = TLSConfig(o.TLS, u.Hostname()); err != nil {
			return nil, err
		}
	}
	ka := o.KeepAlive
	if ka == 0 {
		ka = 30
	}
	maxPacket := o.MaxPacket
	if maxPacket <= 0 {
		maxPacket = MaxInboundPacket
	}
	attempt := 0
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     ka,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff: func(n int) time.Duration {
			return bridge.Backoff(n, 500*time.Millisecond, 30*time.Second, rand.Float64)
		},
		ConnectUsername: o.Username,
		ConnectPassword: []byte(o.Password.Reveal()),
		WillMessage:     o.Will,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			attempt = 0
			if h.OnConnack != nil && ca != nil {
				h.OnConnack(ca)
			}
			log.Info("mqtt connected", "url", redactURL(u))
			if h.OnUp != nil {
				h.OnUp(cm)
			}
		},
		OnConnectionDown: func() bool {
			log.Warn("mqtt connection lost; reconnecting", "url", redactURL(u))
			if h.OnDown != nil {
				h.OnDown()
			}
			return true
		},
		OnConnectError: func(err error) {
			attempt++
			log.Warn("mqtt connect failed; retrying with backoff", "url", redactURL(u), "attempt", attempt, "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: o.ClientID,
			// Why a connection went down, for the log line that follows.
			OnClientError: func(err error) { log.Warn("mqtt connection error", "url", redactURL(u), "err", err) },
			OnServerDisconnect: func(d *paho.Disconnect) {
				log.Warn("mqtt server disconnected us", "url", redactURL(u), "reason_code", d.ReasonCode)
			},
		},
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			maxSize := uint32(maxPacket)
			cp.Properties.MaximumPacketSize = &maxSize
			if o.ReceiveMaximum > 0 {
				recv := o.ReceiveMaximum
				cp.Properties.ReceiveMaximum = &recv
			}
			return cp, nil
		},
	}
	if h.OnPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				if n := len(pr.Packet.Payload); n > maxPacket {
					log.Warn("mqtt message refused: larger than the limit", "topic", pr.Packet.Topic, "bytes", n, "limit", maxPacket)
					if h.OnRefused != nil {
						h.OnRefused(pr.Packet.Topic, n)
					}
					return true, nil
				}
				h.OnPublish(pr.Packet.Topic, pr.Packet.Payload, pr.Packet.Retain)
				return true, nil
			},
		}
	}
	if o.BufferedRead {
		switch u.Scheme {
		case "mqtt", "tcp", "":
			cfg.AttemptConnection = func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", u.Host)
				if err != nil {
					return nil, err
				}
				return newBufConn(c), nil
			}
		case "mqtts", "ssl", "tls":
			cfg.AttemptConnection = func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
				d := tls.Dialer{Config: tlsCfg}
				c, err := d.DialContext(ctx, "tcp", u.Host)
				if err != nil {
					return nil, err
				}
				// Writes come from several goroutines: bufConn's lock
				// keeps each packet whole (as the client's own TLS dialer
				// does with its thread-safe wrapper).
				return newBufConn(c), nil
			}
		}
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("mqtt: connect to %s: %w", redactURL(u), err)
	}
	return cm, nil
}

// bufConn is a connection whose reads go through a buffer. Only the
// client's reading goroutine reads. It is a sync.Locker: the MQTT client
// then holds the lock around each packet it writes (it writes a packet in
// several calls unless the connection is a bare TCP one, whose writev keeps
// the packet whole), so packets written by two goroutines never interleave.
type bufConn struct {
	net.Conn
	r *bufio.Reader
	sync.Mutex
}

func newBufConn(c net.Conn) *bufConn { return &bufConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10)} }

var _ sync.Locker = (*bufConn)(nil)

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// redactURL drops any user:password from a URL for logs.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
