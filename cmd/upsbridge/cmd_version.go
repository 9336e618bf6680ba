package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	register(command{
		Name:    "version",
		Usage:   "version",
		Summary: "print the version",
		Run: func(_ context.Context, _ []string, io stdio) int {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" && len(s.Value) >= 12 {
						v = "dev-" + s.Value[:12]
					}
				}
			}
			fmt.Fprintf(io.Stdout, "upsbridge %s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return exitOK
		},
	})
}
