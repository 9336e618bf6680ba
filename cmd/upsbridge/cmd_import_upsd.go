package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/upsbridge/upsbridge/internal/importer/upsd"
	"github.com/upsbridge/upsbridge/internal/importer/upsmon"
)

func init() {
	register(command{
		Name:    "import-upsd",
		Usage:   "import-upsd --users FILE --ups FILE [--conf FILE]",
		Summary: "convert upsd.users and ups.conf (and upsd.conf) into the nut_server config section on stdout",
		Run:     cmdImportUpsd,
	})
}

func cmdImportUpsd(_ context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("import-upsd", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	users := fs.String("users", "", "upsd.users")
	ups := fs.String("ups", "", "ups.conf")
	conf := fs.String("conf", "", "upsd.conf, for LISTEN and CERTFILE (optional)")
	quiet := fs.Bool("q", false, "do not list the lines not carried over on stderr")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if *users == "" || *ups == "" || fs.NArg() != 0 {
		fmt.Fprintln(io.Stderr, "usage: upsbridge import-upsd --users /etc/nut/upsd.users --ups /etc/nut/ups.conf [--conf /etc/nut/upsd.conf] >> upsbridge.yaml")
		return exitConfig
	}
	var f upsd.Files
	var code int
	if f.Users, code = parseNUTFile(*users, "import-upsd", io); f.Users == nil {
		return code
	}
	if f.UPS, code = parseNUTFile(*ups, "import-upsd", io); f.UPS == nil {
		return code
	}
	if *conf != "" {
		if f.Conf, code = parseNUTFile(*conf, "import-upsd", io); f.Conf == nil {
			return code
		}
	}
	res, err := upsd.Convert(f)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge %v\n", err)
		return exitConfig
	}
	if _, err := io.Stdout.Write(res.YAML); err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge import-upsd: write: %v\n", err)
		return exitFail
	}
	if !*quiet {
		fmt.Fprintf(io.Stderr, "upsbridge import-upsd: %d user(s), %d UPS(es); %d line(s) not carried over or with a caveat\n", res.Users, res.UPS, len(res.Notes))
		for _, n := range res.Notes {
			fmt.Fprintf(io.Stderr, "  %s: %s\n", n.Where, n.Reason)
		}
	}
	return exitOK
}

// parseNUTFile reads a NUT configuration file with NUT's word splitting.
func parseNUTFile(path, cmd string, io stdio) (*upsmon.File, int) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge %s: %v\n", cmd, err)
		return nil, exitConfig
	}
	defer f.Close()
	parsed, err := upsmon.Parse(f, filepath.Base(path))
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge %s: %v\n", cmd, err)
		return nil, exitConfig
	}
	return parsed, exitOK
}
