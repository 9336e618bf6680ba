package main

import (
	"github.com/upsbridge/upsbridge/hass"
	"github.com/upsbridge/upsbridge/sinks/mqtt"
)

// Home Assistant discovery: when hass.enabled and this process publishes
// UPSes, the MQTT sink gets the discovery extension, and commands from MQTT
// (HA's buttons) are checked against its allow-list: commands the UPS
// offers that the command policy (mqtt.commands, hass.dangerous_commands)
// allows; HA gets controls for nothing else.
func init() {
	registerRunHook("hass", func(r *runState) error {
		if !r.cfg.HASS.Enabled || r.mqttOpts == nil {
			return nil
		}
		d := mqtt.NewDiscovery(mqtt.DiscoveryOptions{
			HASS: hass.Options{
				DiscoveryPrefix: r.cfg.HASS.DiscoveryPrefix,
				TopicPrefix:     r.mqttOpts.TopicPrefix,
				BridgeID:        r.mqttOpts.BridgeID,
				DeviceMode:      r.cfg.HASS.Mode == "device",
				Policy:          r.mqttOpts.Policy,
				Origin:          hass.Origin{Name: "upsbridge", SWVersion: version, SupportURL: "https://github.com/upsbridge/upsbridge"},
			},
			Conn:   r.mqttOpts.Conn,
			Logger: r.log,
		})
		r.mqttOpts.Extensions = append(r.mqttOpts.Extensions, d)
		r.mqttOpts.AllowCommand = d.AllowCommand
		r.Go(d.Scan)
		return nil
	})
}
