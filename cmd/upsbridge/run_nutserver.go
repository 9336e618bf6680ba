package main

import (
	"crypto/tls"
	"fmt"

	"github.com/upsbridge/upsbridge/sinks/nutserver"
	"github.com/upsbridge/upsbridge/sinks/primary"
)

// The NUT server runs when nut_server.listen is set: every UPS of the
// bridge (or the configured list) served to NUT clients.
func init() {
	registerRunHook("nutserver", func(r *runState) error {
		nc := r.cfg.NUTServer
		if !nc.Enabled() {
			return nil
		}
		opts := nutserver.Options{
			Listen:    nc.Listen,
			AllowFrom: nc.AllowPrefixes(),
			Bridge:    r.bridge,
			Version:   version,
			Logger:    r.log,
		}
		if nc.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(nc.TLS.CertFile, nc.TLS.KeyFile)
			if err != nil {
				return configError{fmt.Errorf("nut_server.tls: %w", err)}
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
			return configError{err}
		}
		if err := srv.Listen(); err != nil {
			return err
		}
		r.bridge.AddSink(srv)
		// The primary's handshake waits for the NUT secondaries logged in
		// here as for agents (until they log out or host_sync passes).
		r.hostCounters = append(r.hostCounters, primary.HostCounterFunc(func(ups string) int { return len(srv.Logins(ups)) }))
		r.Go(srv.Serve)
		return nil
	})
}
