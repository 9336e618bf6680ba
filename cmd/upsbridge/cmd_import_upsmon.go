package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/upsbridge/upsbridge/internal/importer/upsmon"
)

func init() {
	register(command{
		Name:    "import-upsmon",
		Usage:   "import-upsmon FILE [--upssched FILE]",
		Summary: "convert an upsmon.conf (and upssched.conf) into an upsbridge config on stdout",
		Run:     cmdImportUpsmon,
	})
}

func cmdImportUpsmon(_ context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("import-upsmon", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	sched := fs.String("upssched", "", "upssched.conf, when upsmon's NOTIFYCMD is upssched")
	quiet := fs.Bool("q", false, "do not list the lines not carried over on stderr")
	// Accept the file before or after the flags.
	var files []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return exitConfig
		}
		args = fs.Args()
		if len(args) > 0 {
			files = append(files, args[0])
			args = args[1:]
		}
	}
	if len(files) != 1 {
		fmt.Fprintln(io.Stderr, "usage: upsbridge import-upsmon /etc/nut/upsmon.conf [--upssched /etc/nut/upssched.conf] > upsbridge.yaml")
		return exitConfig
	}
	mon, code := parseConfFile(files[0], io)
	if mon == nil {
		return code
	}
	opts := upsmon.Options{SourcePath: files[0], ReadFile: os.ReadFile}
	if *sched != "" {
		if opts.Upssched, code = parseConfFile(*sched, io); opts.Upssched == nil {
			return code
		}
	}
	res, err := upsmon.Convert(mon, opts)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge import-upsmon: %v\n", err)
		return exitConfig
	}
	if _, err := io.Stdout.Write(res.YAML); err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge import-upsmon: write: %v\n", err)
		return exitFail
	}
	if !*quiet {
		fmt.Fprintf(io.Stderr, "upsbridge import-upsmon: %d source(s), %d notifier(s), %d stage(s); %d line(s) not carried over or with a caveat (see the comments at the top)\n",
			res.Sources, res.Notifiers, res.Stages, len(res.Notes))
		for _, n := range res.Notes {
			fmt.Fprintf(io.Stderr, "  %s: %s\n", n.Where, n.Reason)
		}
	}
	return exitOK
}

func parseConfFile(path string, io stdio) (*upsmon.File, int) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge import-upsmon: %v\n", err)
		return nil, exitConfig
	}
	defer f.Close()
	parsed, err := upsmon.Parse(f, filepath.Base(path))
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge import-upsmon: %v\n", err)
		return nil, exitConfig
	}
	return parsed, exitOK
}
