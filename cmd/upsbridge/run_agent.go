package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/upsbridge/upsbridge/bridge/signing"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/hass"
	"github.com/upsbridge/upsbridge/sinks/mqtt"
	"github.com/upsbridge/upsbridge/sinks/shutdown"
	srcmqtt "github.com/upsbridge/upsbridge/sources/mqtt"
)

// Shutdown agents, state signing and the bridge's primary role:
//   - bridge.signing_key_file: every published state and event is signed;
//   - with sources, the bridge is the primary of its UPSes (FSD handshake,
//     bridge.primary.host_sync and kill_power);
//   - with an agent section, the agent runs as a service with its own
//     broker connection.
func init() {
	registerRunHook("agent", func(r *runState) error {
		if r.cfg.Bridge.SigningKeyFile != "" && r.mqttOpts != nil {
			s, err := signing.LoadSigner(r.cfg.Bridge.SigningKeyFile)
			if err != nil {
				return configError{fmt.Errorf("bridge.signing_key_file: %w", err)}
			}
			r.mqttOpts.Sign = s
		}
		if r.mqttOpts != nil {
			r.bridge.AddSink(shutdown.NewPrimary(shutdown.PrimaryOptions{
				Bridge:      r.bridge,
				HostSync:    r.cfg.Bridge.Primary.HostSync,
				KillPower:   r.cfg.Bridge.Primary.KillPower,
				Conn:        mqtt.ConnOptionsFromConfig(config.MQTT{URL: r.cfg.MQTT.URL, Username: r.cfg.MQTT.Username, Password: r.cfg.MQTT.Password, TLS: r.cfg.MQTT.TLS}, "upsbridge-primary-"+r.cfg.Bridge.ID, r.log),
				TopicPrefix: r.cfg.MQTT.TopicPrefix,
				Logger:      r.log,
			}))
		}
		if r.cfg.Agent == nil {
			return nil
		}
		return startAgent(r)
	})
}

// policyConfig turns the agent section into the policy's configuration.
func policyConfig(a *config.Agent) shutdown.PolicyConfig {
	pc := shutdown.PolicyConfig{MinSupplies: a.MinSuppliesValue(), DeadTime: a.DeadTime, MaxStateAge: a.MaxStateAge}
	for _, s := range a.Supplies {
		pc.Supplies = append(pc.Supplies, shutdown.SupplySpec{UPS: s.UPS, Power: s.Power()})
	}
	for _, st := range a.Stages {
		pc.Stages = append(pc.Stages, shutdown.Stage{Name: st.Name, OnBatteryFor: st.OnBatteryFor, ChargeBelow: st.BatteryChargeBelow,
			RuntimeBelow: st.RuntimeBelow, Run: st.Run, Undo: st.Undo, Final: st.Action == "poweroff"})
	}
	return pc
}

func startAgent(r *runState) error {
	a := r.cfg.Agent
	a.ApplyDefaults(r.env.StateDir)
	log := r.log.With("agent", a.ID)
	var verifier *signing.Verifier
	if a.PublicKeyFile != "" {
		v, err := signing.LoadVerifier(a.PublicKeyFile)
		if err != nil {
			return configError{fmt.Errorf("agent.public_key_file: %w", err)}
		}
		verifier = v
	}
	var exec shutdown.Executor = &shutdown.CommandExecutor{Mode: a.Poweroff, ShutdownCommand: a.ShutdownCommand, Timeout: a.CommandTimeout, Logger: log}
	if a.DryRun {
		exec = shutdown.DryRunExecutor{Logger: log}
	}
	prefix := r.cfg.MQTT.TopicPrefix
	stateTopic := shutdown.StateTopic(prefix, a.ID)
	conn := mqtt.ConnOptionsFromConfig(config.MQTT{URL: r.cfg.MQTT.URL, Username: r.cfg.MQTT.Username, Password: r.cfg.MQTT.Password, TLS: r.cfg.MQTT.TLS}, "upsbridge-agent-"+a.ID, log)
	conn.Will = &paho.WillMessage{Topic: stateTopic, Payload: []byte("offline"), Retain: true, QoS: 1}
	supplies := make([]string, len(a.Supplies))
	for i, s := range a.Supplies {
		supplies[i] = s.UPS
	}
	var agent *shutdown.Agent
	var w *srcmqtt.Watcher
	hassOpts := hass.Options{DiscoveryPrefix: r.cfg.HASS.DiscoveryPrefix, DeviceMode: r.cfg.HASS.Mode == "device",
		Origin: hass.Origin{Name: "upsbridge", SWVersion: version, SupportURL: "https://github.com/upsbridge/upsbridge"}}
	host, _ := os.Hostname()
	w, err := srcmqtt.NewWatcher(srcmqtt.Options{
		Conn: conn, TopicPrefix: prefix, Supplies: supplies, Verifier: verifier, RequireSigned: a.RequireSigned,
		MaxStateAge: a.MaxStateAge, Logger: log,
		OnUp: func(ctx context.Context) {
			agent.Republish(ctx)
			if !r.cfg.HASS.Enabled {
				return
			}
			for _, m := range hass.Messages(hassOpts, hass.AgentDevice(hassOpts, hass.Agent{ID: a.ID, Host: host, SWVersion: version, StateTopic: stateTopic})) {
				if err := w.Publish(ctx, m.Topic, m.Payload, true); err != nil {
					log.Warn("publish Home Assistant discovery", "err", err)
					return
				}
			}
		},
	})
	if err != nil {
		return configError{err}
	}
	agent, err = shutdown.NewAgent(shutdown.Options{
		ID: a.ID, TopicPrefix: prefix, Policy: policyConfig(a), FinalDelay: a.FinalDelayValue(), DryRun: a.DryRun,
		StateFile: a.StateFile, BootID: shutdown.BootID(), CommandTimeout: a.CommandTimeout, Exec: exec,
		Publish: w.Publish, Emit: r.bridge.Emit, Logger: r.log, // the agent adds "agent" itself
	})
	if err != nil {
		return err
	}
	if r.cfg.HTTP.Listen != "" {
		// The HTTP endpoint (/metrics, /api/state) reads the stats of the
		// bridge's sinks; the agent is not one otherwise. Without the
		// endpoint nothing would read them.
		r.bridge.AddSink(agent.StatsSink())
	}
	log.Info("shutdown agent configured", "supplies", supplies, "stages", len(a.Stages), "dry_run", a.DryRun, "require_signed", a.RequireSigned, "state_file", a.StateFile)
	r.Go(func(ctx context.Context) error {
		wctx, stopWatcher := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		err := agent.Run(ctx, w.News())
		// A clean stop does not fire the Will: say offline ourselves, so a
		// primary waiting for this host is not kept waiting.
		pctx, c := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = w.Publish(pctx, stateTopic, []byte("offline"), true)
		w.Disconnect(pctx)
		c()
		stopWatcher()
		<-done
		return err
	})
	return nil
}
