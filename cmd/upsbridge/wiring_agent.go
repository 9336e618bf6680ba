package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/upsbridge/upsbridge/internal/mqttconn"

	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/agent"
	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/hass"
	"github.com/upsbridge/upsbridge/internal/agent/executor"
	"github.com/upsbridge/upsbridge/internal/agent/intake"
	"github.com/upsbridge/upsbridge/internal/agent/statefile"
	"github.com/upsbridge/upsbridge/mqttwire"
)

// newAgent builds the shutdown agent of the agent section a, with its own
// broker connection whose Will says "offline" for this host, and returns
// it with the service that runs it.
func newAgent(cfg *config.Config, a *agent.Config, stateDir string, rlog *slog.Logger, set *metrics.Set) (*agent.Agent, func(context.Context) error, error) {
	a.ApplyDefaults(stateDir)
	log := rlog.With("agent", a.ID)
	var verifier *signing.Verifier
	if a.PublicKeyFile != "" {
		v, err := signing.LoadVerifier(a.PublicKeyFile)
		if err != nil {
			return nil, nil, configError{fmt.Errorf("agent.public_key_file: %w", err)}
		}
		verifier = v
	}
	var exec executor.Executor = &executor.CommandExecutor{Mode: a.Poweroff, ShutdownCommand: a.ShutdownCommand, Timeout: a.CommandTimeout, Logger: log}
	if a.DryRun {
		exec = executor.DryRunExecutor{Logger: log}
	}
	prefix := cfg.MQTT.TopicPrefix
	stateTopic := mqttwire.Topics{Prefix: prefix}.AgentState(a.ID)
	conn := mqttconn.ConnOptionsFromConfig(config.MQTT{URL: cfg.MQTT.URL, Username: cfg.MQTT.Username, Password: cfg.MQTT.Password, TLS: cfg.MQTT.TLS}, "upsbridge-agent-"+a.ID, log)
	conn.Will = &paho.WillMessage{Topic: stateTopic, Payload: []byte(mqttwire.Offline), Retain: true, QoS: 1}
	supplies := make([]intake.Supply, len(a.Supplies))
	ids := make([]string, len(a.Supplies))
	for i, s := range a.Supplies {
		supplies[i] = intake.Supply{UPS: s.UPS, Bridge: s.Bridge}
		ids[i] = s.UPS
	}
	// The agent is built first: it reads state_file, whose orders the
	// intake needs for its replay check.
	var in *intake.Intake
	publish := func(ctx context.Context, topic string, payload []byte, retain bool) error {
		if in == nil {
			return fmt.Errorf("publish %s: the agent's connection is not set up yet", topic)
		}
		return in.Publish(ctx, topic, payload, retain)
	}
	orders := func() map[string]mqttwire.Order {
		if in == nil {
			return nil // New may rewrite state_file before the intake exists
		}
		return in.Orders()
	}
	ag, err := agent.New(agent.Options{
		ID: a.ID, TopicPrefix: prefix, Policy: a.PolicyConfig(), FinalDelay: a.FinalDelayValue(), DryRun: a.DryRun,
		StateFile: a.StateFile, BootID: statefile.BootID(), Exec: exec, Publish: publish,
		Orders: orders, Logger: rlog, // New adds the agent id
		Metrics: set,
	})
	if err != nil {
		return nil, nil, err // names the shutdown agent
	}
	hassOpts := hass.Options{DiscoveryPrefix: cfg.HASS.DiscoveryPrefix, DeviceMode: cfg.HASS.Mode == "device",
		Origin: hassOrigin()}
	host, _ := os.Hostname()
	in, err = intake.New(intake.Options{
		Conn: conn, TopicPrefix: prefix, Supplies: supplies, Verifier: verifier, RequireSigned: a.RequireSigned,
		MaxStateAge: a.MaxStateAge, Known: ag.Known(), Logger: log, Metrics: set, Agent: a.ID,
		OnUp: func(ctx context.Context) {
			ag.Republish()
			if !cfg.HASS.Enabled {
				return
			}
			dev := hass.AgentDevice(hassOpts, hass.Agent{ID: a.ID, Host: host, SWVersion: version, StateTopic: stateTopic,
				EventTopic: mqttwire.Topics{Prefix: prefix}.AgentEvent(a.ID)})
			for _, m := range hass.Messages(hassOpts, dev) {
				if err := in.Publish(ctx, m.Topic, m.Payload, true); err != nil {
					log.Warn("publish Home Assistant discovery", "err", err)
					return
				}
			}
		},
	})
	if err != nil {
		return nil, nil, configError{err}
	}
	if a.DeadTime < 2*bridge.DefaultBatteryStateInterval {
		// Bridges publish a UPS on battery at least every
		// DefaultBatteryStateInterval; a shorter dead time can take a
		// slowly polled UPS for a dead bridge.
		log.Warn("agent.dead_time is shorter than twice the bridges' on-battery publication interval; a slowly polled UPS may look dead", "dead_time", a.DeadTime, "battery_state_interval", bridge.DefaultBatteryStateInterval)
	}
	log.Info("shutdown agent configured", "supplies", ids, "stages", len(a.Stages), "dry_run", a.DryRun, "require_signed", a.RequireSigned, "state_file", a.StateFile)
	run := func(ctx context.Context) error {
		ictx, stopIntake := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- in.Run(ictx) }()
		err := ag.Run(ctx, in)
		// A clean stop does not fire the Will: say offline ourselves, so a
		// primary waiting for this host is not kept waiting.
		pctx, c := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = in.Publish(pctx, stateTopic, []byte(mqttwire.Offline), true)
		in.Disconnect(pctx)
		c()
		stopIntake()
		<-done
		return err
	}
	return ag, run, nil
}
