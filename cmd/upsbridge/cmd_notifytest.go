package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
)

func init() {
	register(command{
		Name:    "notify-test",
		Usage:   "notify-test -c FILE [--notifier NAME]",
		Summary: "send a test message through each notifier; report success or the exact error",
		Run:     cmdNotifyTest,
	})
}

// testSender is what notifier sinks offer for notify-test.
type testSender interface {
	SendTest(ctx context.Context, ups string) error
}

// testUPS is the UPS a test message is about: the first source's, so an
// exec notifier's script sees a UPSNAME it knows.
func testUPS(cfg *config.Config) string {
	for _, t := range cfg.Sources {
		if id := t.Spec.SourceID(); id != "" {
			return id
		}
	}
	return "test-ups"
}

func cmdNotifyTest(ctx context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("notify-test", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	path := configFlag(fs, io.Env)
	only := fs.String("notifier", "", "test only the notifier with this name")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if *path == "" {
		fmt.Fprintln(io.Stderr, "upsbridge notify-test: no config file (use -c FILE or $UPSBRIDGE_CONFIG)")
		return exitConfig
	}
	cfg, code := loadConfig(*path, io)
	if cfg == nil {
		return code
	}
	env := bridge.Env{Logger: slog.New(slog.DiscardHandler), BridgeID: cfg.Bridge.ID}
	ups := testUPS(cfg)
	tested, failed := 0, 0
	for i, t := range cfg.Notify {
		spec := t.Spec
		name := spec.NotifierName()
		if name == "" {
			name = fmt.Sprintf("notify[%d]", i)
		}
		if *only != "" && name != *only {
			continue
		}
		tested++
		sink, err := spec.NewSink(env)
		if err != nil {
			failed++
			fmt.Fprintf(io.Stdout, "FAIL %s (%s): %v\n", name, t.Type, err)
			continue
		}
		ts, ok := sink.(testSender)
		if !ok {
			fmt.Fprintf(io.Stdout, "SKIP %s (%s): cannot send a test message\n", name, t.Type)
			continue
		}
		if err := ts.SendTest(ctx, ups); err != nil {
			failed++
			fmt.Fprintf(io.Stdout, "FAIL %s (%s): %v\n", name, t.Type, err)
			continue
		}
		fmt.Fprintf(io.Stdout, "ok   %s (%s): test message sent\n", name, t.Type)
	}
	switch {
	case tested == 0 && *only != "":
		fmt.Fprintf(io.Stderr, "upsbridge notify-test: no notifier named %q\n", *only)
		return exitConfig
	case tested == 0:
		fmt.Fprintln(io.Stderr, "upsbridge notify-test: the config has no notifiers")
		return exitConfig
	case failed > 0:
		return exitFail
	}
	return exitOK
}
