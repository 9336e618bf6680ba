package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

func init() {
	register(command{
		Name:    "health",
		Usage:   "health [-c FILE] [--url URL] [--ready]",
		Summary: "probe a running upsbridge's /healthz (or /readyz); exit 0 if it answers 200",
		Run:     cmdHealth,
	})
}

// cmdHealth is the container HEALTHCHECK: the image has no curl or wget,
// and the binary knows where its own endpoint listens from the config.
func cmdHealth(ctx context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	path := configFlag(fs, io.Env)
	rawURL := fs.String("url", "", "base URL of the endpoint (default: from http.listen in the config)")
	ready := fs.Bool("ready", false, "probe /readyz instead of /healthz")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	base := *rawURL
	var token string
	if base == "" {
		if *path == "" {
			fmt.Fprintln(io.Stderr, "upsbridge health: no config file and no --url (use -c FILE, $UPSBRIDGE_CONFIG or --url)")
			return exitConfig
		}
		cfg, code := loadConfig(*path, io)
		if cfg == nil {
			return code
		}
		if cfg.HTTP.Listen == "" {
			fmt.Fprintln(io.Stderr, "upsbridge health: http.listen is not set in the config, so there is nothing to probe")
			return exitConfig
		}
		base = "http://" + probeAddr(cfg.HTTP.Listen)
		token = cfg.HTTP.Token.Reveal()
	}
	endpoint := strings.TrimSuffix(base, "/") + "/healthz"
	if *ready {
		endpoint = strings.TrimSuffix(base, "/") + "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge health: bad URL %q: %v\n", endpoint, err)
		return exitConfig
	}
	if token != "" {
		// /healthz is open; /readyz needs http.token when it is set.
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge health: GET %s: %v\n", endpoint, err)
		return exitFail
	}
	defer resp.Body.Close()
	body, _ := readLimited(resp.Body, 4096)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(io.Stderr, "upsbridge health: GET %s: %s\n%s", endpoint, resp.Status, body)
		return exitFail
	}
	fmt.Fprint(io.Stdout, body)
	return exitOK
}

// probeAddr turns a listen address into one to connect to: a wildcard
// host (":9105", "0.0.0.0:9105", "[::]:9105") is probed on loopback.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

func readLimited(r io.Reader, n int64) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, n))
	return string(b), err
}
