package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/agent"
	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/hass"
	"github.com/upsbridge/upsbridge/internal/mqttconn"
	"github.com/upsbridge/upsbridge/sinks/agentrelay"
	"github.com/upsbridge/upsbridge/sinks/httpapi"
	"github.com/upsbridge/upsbridge/sinks/mqtt"
	"github.com/upsbridge/upsbridge/sinks/nutserver"
	"github.com/upsbridge/upsbridge/sinks/primary"
)

// process is one `run` (or `demo`) as build assembled it: the bridge with
// its sources and sinks, and the services that run beside it.
type process struct {
	cfg      *config.Config
	log      *slog.Logger
	bridge   *bridge.Bridge
	stateDir string
	// metrics is the process's metrics set: every component registers its
	// own there, and the HTTP API's /metrics writes it.
	metrics *metrics.Set
	// services run from the start of the bridge until its sinks have
	// drained (the embedded broker, the agent, the HTTP API).
	services []func(ctx context.Context) error
	// closers release what build opened before a later step failed.
	closers []func()
}

// build assembles the process the configuration asks for, in an order a
// reader can follow; nothing runs until serve. extraSinks are added to the
// bridge (the demo's console). On error nothing stays open.
func build(cfg *config.Config, log *slog.Logger, extraSinks []bridge.Sink) (_ *process, err error) {
	p := &process{cfg: cfg, log: log, stateDir: stateDir(cfg), metrics: metrics.NewSet()}
	defer func() {
		if err != nil {
			p.close()
		}
	}()

	// 1. The embedded broker first: every MQTT client of this process (the
	// bridge's sink, the agent) connects to it, so its address and the
	// run's account must be known before they are configured.
	if cfg.MQTT.URL == "embedded" {
		if err := p.startBroker(); err != nil {
			return nil, err
		}
	}

	// 2. The bridge and its sources.
	p.bridge = bridge.New(bridge.Options{
		Rules: bridge.Rules{
			DeadTime:       cfg.Bridge.DeadTime,
			NoCommWarnTime: cfg.Bridge.NoCommWarnTime,
			OffDuration:    bridge.DefaultRules().OffDuration,
			RBWarnTime:     bridge.DefaultRules().RBWarnTime,
		},
		StateInterval: cfg.Bridge.StateInterval,
		Logger:        log,
	})
	env := bridge.Env{Logger: log, BridgeID: cfg.Bridge.ID, StateDir: p.stateDir, Commands: p.bridge, Metrics: p.metrics}
	for i, t := range cfg.Sources {
		src, err := t.Spec.NewSource(env)
		if err != nil {
			return nil, configError{fmt.Errorf("sources[%d]: %w", i, err)}
		}
		p.bridge.AddSource(src)
	}

	// 3. The NUT server, before the MQTT sink: the primary's handshake
	// there waits for the NUT secondaries logged in to it as for agents
	// (until they log out or host_sync passes). It listens only in step 7.
	var hosts []primary.HostCounter
	var nutSrv *nutserver.Server
	if cfg.NUTServer.Enabled() {
		if nutSrv, err = p.buildNUTServer(); err != nil {
			return nil, err
		}
		hosts = append(hosts, primary.HostCounterFunc(func(ups string) int { return len(nutSrv.Logins(ups)) }))
	}

	// 4. The bridge's MQTT sink, when this process publishes UPSes. Its
	// one connection carries the states and events, Home Assistant
	// discovery with its scan of retained configs, the primary's reading
	// of agents' states and the relay of agents' events.
	if len(cfg.Sources) > 0 {
		sink, err := p.buildMQTTSink(hosts)
		if err != nil {
			return nil, err
		}
		p.bridge.AddSink(sink)
	}

	// 5. Notifiers: sinks of the bridge's events, and of agents' events
	// through the relay on the MQTT sink's connection.
	for i, t := range cfg.Notify {
		s, err := t.Spec.NewSink(env)
		if err != nil {
			return nil, configError{fmt.Errorf("notify[%d]: %w", i, err)}
		}
		p.bridge.AddSink(s)
	}

	// 6. The agent, with its own connection and its Will: it must say
	// "offline" for this host when the process dies, which the bridge's
	// connection (whose Will is the bridge's availability) cannot.
	ag, err := p.buildAgent()
	if err != nil {
		return nil, err
	}

	// The caller's own sinks (the demo's console).
	for _, s := range extraSinks {
		p.bridge.AddSink(s)
	}
	if len(cfg.Sources) == 0 && len(p.services) == 0 && nutSrv == nil {
		return nil, configError{errors.New("nothing to run: the config has no sources and no agent")}
	}

	// 7. Listening sockets last, once every step that can refuse the
	// configuration has passed: the NUT server's, then the HTTP API's,
	// which reports on every other component.
	if nutSrv != nil {
		if err := nutSrv.Listen(); err != nil {
			return nil, err
		}
		p.closers = append(p.closers, func() { _ = nutSrv.Close() })
		p.services = append(p.services, nutSrv.Serve)
	}
	if cfg.HTTP.Listen != "" {
		if ag != nil {
			// The API reads the stats of the bridge's sinks; the agent
			// is one only for it.
			p.bridge.AddSink(ag.StatsSink())
		}
		srv, err := httpapi.New(httpapi.Options{
			Listen:   cfg.HTTP.Listen,
			Token:    cfg.HTTP.Token.Secret(),
			BridgeID: cfg.Bridge.ID,
			Version:  version,
			Bridge:   p.bridge,
			Logger:   log,
			Metrics:  p.metrics,
		})
		if err != nil {
			return nil, configError{err}
		}
		p.bridge.AddSink(srv)
		p.services = append(p.services, srv.Serve)
	}
	return p, nil
}

// buildNUTServer builds the NUT server of the nut_server section, a sink
// of the bridge serving its UPSes to NUT clients; it listens in Listen.
func (p *process) buildNUTServer() (*nutserver.Server, error) {
	nc := p.cfg.NUTServer
	opts := nutserver.Options{
		Listen:    nc.Listen,
		AllowFrom: nc.AllowPrefixes(),
		Bridge:    p.bridge,
		Version:   version,
		Logger:    p.log,
		Metrics:   p.metrics,
	}
	if nc.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(nc.TLS.CertFile, nc.TLS.KeyFile)
		if err != nil {
			return nil, configError{fmt.Errorf("nut_server.tls: %w", err)}
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for _, u := range nc.Users {
		opts.Users = append(opts.Users, nutserver.User{
			Name: u.Name, Password: u.Password.Reveal(), Upsmon: u.Upsmon, Actions: u.Actions, InstCmds: u.InstCmds,
		})
	}
	for _, u := range nc.UPS {
		opts.UPS = append(opts.UPS, nutserver.UPS{ID: u.ID, Name: u.Name, Description: u.Description})
	}
	srv, err := nutserver.New(opts)
	if err != nil {
		return nil, configError{err}
	}
	p.bridge.AddSink(srv)
	return srv, nil
}

// startBroker starts the embedded broker and points this process's MQTT
// clients at it, logged in with the run's account unless one is set.
func (p *process) startBroker() error {
	br, err := startBroker(p.cfg, p.log)
	if err != nil {
		return err
	}
	p.closers = append(p.closers, func() { _ = br.Close() })
	p.cfg.MQTT.URL = br.URL()
	if name, pw := br.Credentials(); name != "" && p.cfg.MQTT.Username == "" {
		p.cfg.MQTT.Username, p.cfg.MQTT.Password = name, config.SecretValue(pw.Reveal())
	}
	p.services = append(p.services, br.Run)
	return nil
}

// buildMQTTSink builds the bridge's MQTT sink with what rides on its
// connection: signing, Home Assistant discovery, the primary's side of the
// shutdown handshake (which also counts hosts), and the relay of agents'
// events to the notifiers.
func (p *process) buildMQTTSink(hosts []primary.HostCounter) (*mqtt.Sink, error) {
	cfg := p.cfg
	opts := mqtt.Options{
		Conn:        mqttconn.ConnOptionsFromConfig(cfg.MQTT, "upsbridge-"+cfg.Bridge.ID, p.log),
		TopicPrefix: cfg.MQTT.TopicPrefix,
		BridgeID:    cfg.Bridge.ID,
		SpoolDir:    filepath.Join(p.stateDir, "bridge-"+cfg.Bridge.ID, "mqtt-events"),
		EpochFile:   filepath.Join(p.stateDir, "bridge-"+cfg.Bridge.ID, "epoch"),
		Commands:    p.bridge,
		Policy: bridge.CommandPolicy{
			DangerousCommands: cfg.HASS.DangerousCommands,
			AllowSet:          cfg.MQTT.Commands.AllowSet,
			AllowDangerous:    cfg.MQTT.Commands.AllowDangerous,
		},
		Logger:  p.log,
		Metrics: p.metrics,
	}
	if cfg.Bridge.SigningKeyFile != "" {
		s, err := signing.LoadSigner(cfg.Bridge.SigningKeyFile)
		if err != nil {
			return nil, configError{fmt.Errorf("bridge.signing_key_file: %w", err)}
		}
		opts.Sign = s
	}
	if cfg.HASS.Enabled {
		// Commands from MQTT (HA's buttons) are limited to those the UPS
		// offers and the command policy allows; HA gets controls for
		// nothing else.
		d := mqtt.NewDiscovery(mqtt.DiscoveryOptions{
			HASS: hass.Options{
				DiscoveryPrefix: cfg.HASS.DiscoveryPrefix,
				TopicPrefix:     opts.TopicPrefix,
				BridgeID:        opts.BridgeID,
				DeviceMode:      cfg.HASS.Mode == "device",
				Policy:          opts.Policy,
				Origin:          hassOrigin(),
			},
			Logger: p.log,
		})
		opts.Extensions = append(opts.Extensions, d)
		opts.AllowCommand = d.AllowCommand
	}

	// For every UPS of which the bridge is the primary (USB, NUT with
	// primary: true) the primary sets FSD when the UPS turns critical,
	// waits for the hosts it feeds (agents on MQTT, and hosts), then
	// final_delay, and with kill_power cuts the UPS's load.
	pc := cfg.Bridge.Primary
	prim := primary.New(primary.Options{
		Bridge:         p.bridge,
		BridgeID:       cfg.Bridge.ID,
		TopicPrefix:    opts.TopicPrefix,
		HostSync:       pc.HostSync,
		MaxWait:        pc.MaxWait,
		FinalDelay:     pc.FinalDelay,
		KillPower:      pc.KillPower,
		KillPowerDelay: pc.KillPowerDelay,
		Hosts:          hosts,
		Logger:         p.log,
		Metrics:        p.metrics,
	})
	p.bridge.AddSink(prim)
	opts.Listeners = append(opts.Listeners, prim)
	if len(cfg.Notify) > 0 {
		// Every agent's events, this process's own agent's too: agents
		// publish them on MQTT and hand them to no notifier directly.
		opts.Listeners = append(opts.Listeners, agentrelay.New(agentrelay.Options{
			TopicPrefix: opts.TopicPrefix,
			Emit:        p.bridge.Emit,
			Logger:      p.log,
			Metrics:     p.metrics,
		}))
	}
	return mqtt.New(opts)
}

// hassOrigin is this program as Home Assistant shows it.
func hassOrigin() hass.Origin {
	return hass.Origin{Name: "upsbridge", SWVersion: version, SupportURL: "https://github.com/upsbridge/upsbridge"}
}

// buildAgent builds the shutdown agent of the agent section, or returns
// nil without one.
func (p *process) buildAgent() (*agent.Agent, error) {
	a := agent.FromConfig(p.cfg)
	if a == nil {
		return nil, nil
	}
	ag, svc, err := newAgent(p.cfg, a, p.stateDir, p.log, p.metrics)
	if err != nil {
		return nil, err
	}
	p.services = append(p.services, svc)
	return ag, nil
}

// close releases what build opened.
func (p *process) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

// serve runs the process until ctx ends or a service fails, and returns
// the first service's error.
func (p *process) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Services (the embedded broker, agents, HTTP) outlive the bridge's
	// drain: they stop only after the sinks have flushed.
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	var wg sync.WaitGroup
	errs := make(chan error, len(p.services)+1)
	for _, svc := range p.services {
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

	p.log.Info("upsbridge running", "bridge_id", p.cfg.Bridge.ID, "sources", len(p.cfg.Sources), "state_dir", p.stateDir)
	// The bridge runs even without sources: notifiers and agents use its
	// sinks and queues (see Bridge.Emit).
	_ = p.bridge.Run(ctx)
	cancel()
	stopServices()
	wg.Wait()
	close(errs)
	return <-errs
}
