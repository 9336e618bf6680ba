package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/sinks/console"
	"github.com/upsbridge/upsbridge/sources/sim"
)

func init() {
	register(command{
		Name:    "demo",
		Usage:   "demo [--scenario S] [--time-scale N]",
		Summary: "embedded broker + simulated outage + readable event log",
		Run:     cmdDemo,
	})
}

func cmdDemo(ctx context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	listen := fs.String("listen", "127.0.0.1:1883", "embedded broker address (a free port is picked if it is taken)")
	scenario := fs.String("scenario", "outage", "steady | outage | flapping | comm_loss")
	scale := fs.Float64("time-scale", 60, "simulated seconds per real second")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if ln, err := net.Listen("tcp", *listen); err != nil {
		*listen = "127.0.0.1:0"
	} else {
		ln.Close()
	}

	cfg := config.Default()
	cfg.Log.Level = "warn"
	cfg.Bridge.ID = "demo"
	cfg.Bridge.StateInterval = 5 * time.Second
	cfg.MQTT.URL = "embedded"
	cfg.MQTT.Listen = *listen
	dir, err := os.MkdirTemp("", "upsbridge-demo-")
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge demo: %v\n", err)
		return exitFail
	}
	defer os.RemoveAll(dir)
	cfg.Bridge.StateDir = filepath.Join(dir, "state")
	cfg.Sources = []config.Source{{Type: "sim", Spec: &sim.Config{
		SourceCommon: config.SourceCommon{ID: "demo-ups", Type: "sim"},
		Scenario:     *scenario, TimeScale: *scale, PollInterval: time.Second, Loop: true,
	}}}
	if errs := cfg.Validate(); len(errs) > 0 {
		fmt.Fprintf(io.Stderr, "upsbridge demo: %v\n", config.Errors(errs))
		return exitConfig
	}
	// Readable text even when stderr is not a terminal (piped, captured):
	// "auto" would log JSON there, amid the console's lines.
	log := newLogger(io.Stderr, cfg.Log.Level, "text")

	// The same build as run; the embedded broker has its address once
	// built, for the announcement.
	p, err := build(cfg, log, []bridge.Sink{console.New(io.Stdout)})
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge demo: %v\n", err)
		return exitFail
	}
	host, port, _ := net.SplitHostPort(trimScheme(cfg.MQTT.URL))
	fmt.Fprintf(io.Stdout, "upsbridge demo: simulated %q scenario at %gx speed, embedded MQTT broker on %s:%s\n", *scenario, *scale, host, port)
	fmt.Fprintf(io.Stdout, "watch it with:  mosquitto_sub -h %s -p %s -t '%s/#' -v\n", host, port, cfg.MQTT.TopicPrefix)
	fmt.Fprintf(io.Stdout, "stop with Ctrl-C\n\n")
	if err := p.serve(ctx); err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge demo: %v\n", err)
		return exitFail
	}
	return exitOK
}

func trimScheme(u string) string {
	if i := len("tcp://"); len(u) > i && u[:i] == "tcp://" {
		return u[i:]
	}
	return u
}
