package main

import (
	"github.com/upsbridge/upsbridge/sinks/agentrelay"
	"github.com/upsbridge/upsbridge/sinks/primary"
)

// The bridge's side of the shutdown handshake, and agents' events for the
// notifiers, both over the MQTT sink's single connection:
//   - for every UPS of which the bridge is the primary (USB, NUT with
//     primary: true) the primary sink sets FSD when the UPS turns critical,
//     waits for the hosts it feeds (bridge.primary.host_sync, max_wait),
//     then final_delay, and with kill_power cuts the UPS's load;
//   - with a notify section, agents' STAGE, UNDO, SHUTDOWN, POWERING_OFF
//     and POWEROFF_FAILED reach the notifiers.
func init() {
	registerRunHook("primary", func(r *runState) error {
		if r.mqttOpts == nil {
			return nil // no UPS is published by this process
		}
		pc := r.cfg.Bridge.Primary
		p := primary.New(primary.Options{
			Bridge:         r.bridge,
			BridgeID:       r.cfg.Bridge.ID,
			TopicPrefix:    r.mqttOpts.TopicPrefix,
			HostSync:       pc.HostSync,
			MaxWait:        pc.MaxWait,
			FinalDelay:     pc.FinalDelay,
			KillPower:      pc.KillPower,
			KillPowerDelay: pc.KillPowerDelay,
			// Read when the handshake runs, so hooks of any order can
			// add hosts (the bridge's NUT server's secondaries).
			Hosts:  []primary.HostCounter{primary.HostCounterFunc(r.primaryHosts)},
			Logger: r.log,
		})
		r.bridge.AddSink(p)
		r.mqttOpts.Listeners = append(r.mqttOpts.Listeners, p)

		if len(r.cfg.Notify) > 0 {
			// Every agent's events, this process's own agent's too: agents
			// publish them on MQTT and hand them to no notifier directly.
			r.mqttOpts.Listeners = append(r.mqttOpts.Listeners, agentrelay.New(agentrelay.Options{
				TopicPrefix: r.mqttOpts.TopicPrefix,
				Emit:        r.bridge.Emit,
				Logger:      r.log,
			}))
		}
		return nil
	})
}

// primaryHosts counts the hosts fed by ups that other parts of the run
// registered in r.hostCounters.
func (r *runState) primaryHosts(ups string) int {
	n := 0
	for _, h := range r.hostCounters {
		n += h.Hosts(ups)
	}
	return n
}
