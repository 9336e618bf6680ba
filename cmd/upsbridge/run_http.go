package main

import (
	"github.com/upsbridge/upsbridge/sinks/httpapi"
)

// The HTTP endpoint (metrics, health, readiness, /api/state) runs when
// http.listen is set. The hook is named to run last so that it starts only
// when the rest of the run has something to do.
func init() {
	registerRunHook("zz-http", func(r *runState) error {
		if r.cfg.HTTP.Listen == "" {
			return nil
		}
		if len(r.cfg.Sources) == 0 && len(r.services) == 0 {
			return nil // "nothing to run" is reported by run itself
		}
		srv, err := httpapi.New(httpapi.Options{
			Listen:   r.cfg.HTTP.Listen,
			Token:    r.cfg.HTTP.Token,
			BridgeID: r.cfg.Bridge.ID,
			Version:  version,
			Bridge:   r.bridge,
			Logger:   r.log,
		})
		if err != nil {
			return configError{err}
		}
		r.bridge.AddSink(srv)
		r.Go(srv.Serve)
		return nil
	})
}
