package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/sinks/mqtt"
	"github.com/upsbridge/upsbridge/sinks/mqtt/broker"
	"github.com/upsbridge/upsbridge/sinks/primary"
)

func init() {
	register(command{
		Name:    "run",
		Usage:   "run -c FILE",
		Summary: "run the bridge (and/or agent) from a config file",
		Run:     cmdRun,
	})
	register(command{
		Name:    "check-config",
		Usage:   "check-config -c FILE",
		Summary: "check a config file; exit 0 if valid, 2 with every problem listed",
		Run:     cmdCheckConfig,
	})
}

// configFlag adds -c/--config to fs, defaulting to $UPSBRIDGE_CONFIG.
func configFlag(fs *flag.FlagSet, env []string) *string {
	def := ""
	for _, kv := range env {
		if v, ok := cutPrefix(kv, config.EnvConfigPath+"="); ok {
			def = v
		}
	}
	p := fs.String("config", def, "config file (YAML); default $"+config.EnvConfigPath)
	fs.StringVar(p, "c", def, "shorthand for --config")
	return p
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

// loadConfig loads and reports errors the way every command does.
func loadConfig(path string, io stdio) (*config.Config, int) {
	cfg, err := config.Load(path, io.Env)
	if err != nil {
		if errs, ok := config.AsErrors(err); ok {
			fmt.Fprintf(io.Stderr, "upsbridge: invalid configuration (%d problem(s)):\n", len(errs))
			for _, e := range errs {
				fmt.Fprintf(io.Stderr, "  %s\n", e.Error())
			}
		} else {
			fmt.Fprintf(io.Stderr, "upsbridge: %v\n", err)
		}
		return nil, exitConfig
	}
	return cfg, exitOK
}

func cmdCheckConfig(_ context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	path := configFlag(fs, io.Env)
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if *path == "" {
		fmt.Fprintln(io.Stderr, "upsbridge check-config: no config file (use -c FILE or $UPSBRIDGE_CONFIG)")
		return exitConfig
	}
	cfg, code := loadConfig(*path, io)
	if cfg == nil {
		return code
	}
	fmt.Fprintf(io.Stdout, "%s: valid (%d source(s), %d notifier(s), agent: %v)\n", *path, len(cfg.Sources), len(cfg.Notify), cfg.Agent != nil)
	return exitOK
}

func cmdRun(ctx context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	path := configFlag(fs, io.Env)
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	cfg, code := loadConfig(*path, io)
	if cfg == nil {
		return code
	}
	log := newLogger(io.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err := run(ctx, cfg, log, nil); err != nil {
		log.Error("upsbridge stopped", "err", err)
		var ce configError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitFail
	}
	return exitOK
}

// configError marks errors found while building adapters from a valid
// config: they exit 2 like config errors.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// runState is what one `run` assembles; hooks in other cmd files (Home
// Assistant, agents, HTTP) extend it before it starts.
type runState struct {
	cfg      *config.Config
	log      *slog.Logger
	env      bridge.Env
	bridge   *bridge.Bridge
	mqttOpts *mqtt.Options // nil when this process publishes no UPS
	// hostCounters are hosts the primary waits for besides agents (NUT
	// secondaries of the bridge's own NUT server); see run_primary.go.
	hostCounters []primary.HostCounter
	// extra goroutines started with the bridge and stopped with it.
	services []func(ctx context.Context) error
}

// Go adds a service that runs until ctx ends.
func (r *runState) Go(f func(ctx context.Context) error) { r.services = append(r.services, f) }

// runHooks let other files add to a run (Home Assistant discovery, agents,
// HTTP endpoints) without touching this one. They run in name order.
var runHooks = map[string]func(r *runState) error{}

func registerRunHook(name string, f func(r *runState) error) {
	if _, dup := runHooks[name]; dup {
		panic("upsbridge: run hook registered twice: " + name)
	}
	runHooks[name] = f
}

// stateDir picks where state that survives restarts lives.
func stateDir(cfg *config.Config) string {
	if cfg.Bridge.StateDir != "" {
		return cfg.Bridge.StateDir
	}
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/upsbridge"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "upsbridge")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "upsbridge")
	}
	return filepath.Join(home, ".local", "state", "upsbridge")
}

// run assembles and runs everything the config asks for until ctx ends.
// extraSinks are added to the bridge (the demo's console).
func run(ctx context.Context, cfg *config.Config, log *slog.Logger, extraSinks []bridge.Sink) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := bridge.New(bridge.Options{
		Rules: bridge.Rules{
			DeadTime:       cfg.Bridge.DeadTime,
			NoCommWarnTime: cfg.Bridge.NoCommWarnTime,
			OffDuration:    bridge.DefaultRules().OffDuration,
			RBWarnTime:     bridge.DefaultRules().RBWarnTime,
		},
		StateInterval: cfg.Bridge.StateInterval,
		Logger:        log,
	})
	dir := stateDir(cfg)
	r := &runState{
		cfg:    cfg,
		log:    log,
		bridge: b,
		env:    bridge.Env{Logger: log, BridgeID: cfg.Bridge.ID, StateDir: dir, Commands: b},
	}

	mqttURL := cfg.MQTT.URL
	if mqttURL == "embedded" {
		br, err := startBroker(cfg, log)
		if err != nil {
			return err
		}
		mqttURL = br.URL()
		if name, pw := br.Credentials(); name != "" && cfg.MQTT.Username == "" {
			// This process's own clients log in with the run's account.
			cfg.MQTT.Username, cfg.MQTT.Password = name, pw
		}
		r.Go(br.Run)
	}
	r.cfg.MQTT.URL = mqttURL

	for i, t := range cfg.Sources {
		spec, ok := t.Spec.(bridge.SourceSpec)
		if !ok {
			return configError{fmt.Errorf("sources[%d]: type %q cannot build a source", i, t.Type)}
		}
		src, err := spec.NewSource(r.env)
		if err != nil {
			return configError{fmt.Errorf("sources[%d]: %w", i, err)}
		}
		b.AddSource(src)
	}
	if len(cfg.Sources) > 0 {
		r.mqttOpts = &mqtt.Options{
			Conn:        mqtt.ConnOptionsFromConfig(cfg.MQTT, "upsbridge-"+cfg.Bridge.ID, log),
			TopicPrefix: cfg.MQTT.TopicPrefix,
			BridgeID:    cfg.Bridge.ID,
			SpoolDir:    filepath.Join(dir, "bridge-"+cfg.Bridge.ID, "mqtt-events"),
			EpochFile:   filepath.Join(dir, "bridge-"+cfg.Bridge.ID, "epoch"),
			Commands:    b,
			Policy: bridge.CommandPolicy{
				DangerousCommands: cfg.HASS.DangerousCommands,
				AllowSet:          cfg.MQTT.Commands.AllowSet,
				AllowDangerous:    cfg.MQTT.Commands.AllowDangerous,
			},
			Logger: log,
		}
	}
	for i, t := range cfg.Notify {
		spec, ok := t.Spec.(bridge.SinkSpec)
		if !ok {
			return configError{fmt.Errorf("notify[%d]: type %q cannot build a notifier", i, t.Type)}
		}
		s, err := spec.NewSink(r.env)
		if err != nil {
			return configError{fmt.Errorf("notify[%d]: %w", i, err)}
		}
		b.AddSink(s)
	}
	names := make([]string, 0, len(runHooks))
	for n := range runHooks {
		names = append(names, n)
	}
	sortStrings(names)
	for _, n := range names {
		if err := runHooks[n](r); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	if r.mqttOpts != nil {
		sink, err := mqtt.New(*r.mqttOpts)
		if err != nil {
			return err
		}
		b.AddSink(sink)
	}
	for _, s := range extraSinks {
		b.AddSink(s)
	}
	if len(cfg.Sources) == 0 && len(r.services) == 0 {
		return configError{errors.New("nothing to run: the config has no sources and no agent")}
	}

	// Services (the embedded broker, agents, HTTP) outlive the bridge's
	// drain: they stop only after the sinks have flushed.
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	var wg sync.WaitGroup
	errs := make(chan error, len(r.services)+1)
	for _, svc := range r.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc(svcCtx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
				cancel()
			}
		}()
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		trimAfterStartup(svcCtx, startupTrimDelay)
	}()

	log.Info("upsbridge running", "bridge_id", cfg.Bridge.ID, "sources", len(cfg.Sources), "state_dir", dir)
	// The bridge runs even without sources: notifiers and agents use its
	// sinks and queues (see Bridge.Emit).
	_ = b.Run(ctx)
	cancel()
	stopServices()
	wg.Wait()
	close(errs)
	return <-errs
}

// startupTrimDelay is how long after start-up the heap is trimmed once.
const startupTrimDelay = 15 * time.Second

// trimAfterStartup returns start-up's garbage to the OS once: config
// parsing, package inits, the first discovery and publications leave a
// few MB that the runtime keeps mapped until its background scavenger
// gets to them, while a bridge then idles for months at a fraction of
// that heap. Measured with one NUT UPS: 4.6 -> 3.1 MB anonymous memory.
func trimAfterStartup(ctx context.Context, delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
		debug.FreeOSMemory()
	}
}

// startBroker starts the embedded broker with the users of
// mqtt.broker.users and their roles' ACLs.
func startBroker(cfg *config.Config, log *slog.Logger) (*broker.Broker, error) {
	users := make([]broker.User, 0, len(cfg.MQTT.Broker.Users))
	for _, u := range cfg.MQTT.Broker.Users {
		users = append(users, broker.User{Name: u.Name, Password: u.Password, Role: broker.Role(u.Role)})
	}
	br, err := broker.Start(broker.Options{
		Addr:            cfg.MQTT.Listen,
		Users:           users,
		AllowAnonymous:  cfg.MQTT.Broker.AllowAnonymous,
		TopicPrefix:     cfg.MQTT.TopicPrefix,
		DiscoveryPrefix: cfg.HASS.DiscoveryPrefix,
		Logger:          log,
	})
	if err != nil {
		return nil, err
	}
	switch {
	case len(users) > 0:
		log.Info("embedded MQTT broker listening", "addr", br.Addr(), "users", len(users), "anonymous", cfg.MQTT.Broker.AllowAnonymous)
	case config.IsLoopbackListen(br.Addr()):
		log.Info("embedded MQTT broker listening on loopback only", "addr", br.Addr())
	default:
		log.Warn("embedded MQTT broker open to anonymous clients on the network (mqtt.broker.allow_anonymous)", "addr", br.Addr())
	}
	return br, nil
}
