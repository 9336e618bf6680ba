package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/agent"
	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/agent/news"
	"github.com/upsbridge/upsbridge/internal/agent/policy"
	"github.com/upsbridge/upsbridge/mqttwire"
	"github.com/upsbridge/upsbridge/sources/sim"
)

func init() {
	register(command{
		Name:    "drill",
		Usage:   "drill -c FILE [-scenario outage]",
		Summary: "replay an outage against this host's agent policy and print what would run when (runs nothing)",
		Run:     cmdDrill,
	})
}

func cmdDrill(_ context.Context, args []string, io stdio) int {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	path := configFlag(fs, io.Env)
	scenario := fs.String("scenario", "outage", "simulated scenario: "+strings.Join(sim.Scenarios, ", "))
	step := fs.Duration("step", time.Second, "simulated time between readings")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	cfg, code := loadConfig(*path, io)
	if cfg == nil {
		return code
	}
	a := agent.FromConfig(cfg)
	if a == nil {
		fmt.Fprintln(io.Stderr, "upsbridge drill: the config has no agent section")
		return exitConfig
	}
	if _, _, err := sim.Simulate(*scenario, 0); err != nil || *step <= 0 {
		fmt.Fprintf(io.Stderr, "upsbridge drill: bad -scenario or -step: %v\n", err)
		return exitConfig
	}
	length := sim.Length(*scenario)
	if length == 0 {
		length = time.Hour
	}
	t0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	// Simulated time: the monotonic instant is the offset from t0.
	clock := func(at time.Duration) policy.Now { return policy.Now{Mono: at, Wall: t0.Add(at)} }
	pol := policy.New(a.PolicyConfig(), clock(0), policy.Progress{})
	fmt.Fprintf(io.Stdout, "drill: scenario %q (%s) against agent %q, supplies all following the scenario; nothing is run\n", *scenario, length, a.ID)
	say := func(at time.Duration, format string, args ...any) {
		fmt.Fprintf(io.Stdout, "  T+%-8s %s\n", at.Round(time.Second), fmt.Sprintf(format, args...))
	}
	lastStatus := ""
	for at := time.Duration(0); at <= length; at += *step {
		now := clock(at)
		vars, ok, _ := sim.Simulate(*scenario, at)
		if ok {
			for _, s := range a.Supplies {
				bridgeID := s.Bridge
				if bridgeID == "" {
					bridgeID = "drill"
				}
				st := &bridge.State{UPS: s.UPS, Time: now.Wall, Status: bridge.ParseStatus(vars[bridge.VarStatus]), Vars: vars, Comm: true}
				p := mqttwire.NewStatePayload(st, bridgeID, 1, now.Wall)
				pol.Observe(news.News{Kind: news.KindState, UPS: s.UPS, Bridge: bridgeID, Live: true, At: now.Wall, Reading: news.ReadingFrom(p, now.Wall)}, at)
			}
		}
		if st := vars[bridge.VarStatus]; ok && st != lastStatus {
			say(at, "UPS status %s (charge %s%%, runtime %ss)", st, vars["battery.charge"], vars["battery.runtime"])
			lastStatus = st
		} else if !ok && lastStatus != "" {
			say(at, "communication with the UPS lost")
			lastStatus = ""
		}
		for _, act := range pol.Evaluate(now) {
			switch act.Kind {
			case policy.ActWarn:
				say(at, "warning: %s %s", act.UPS, act.Reason)
			case policy.ActCancelFinal:
				say(at, "final stage cancelled: %s", act.Reason)
			case policy.ActOutageStart:
				say(at, "outage starts: %s", act.Reason)
			case policy.ActOutageEnd:
				say(at, "outage ends: %s", act.Reason)
			case policy.ActStage:
				say(at, "stage %s (%s): would run %q", act.Stage, act.Reason, act.Command)
			case policy.ActUndo:
				say(at, "undo %s: would run %q", act.Stage, act.Command)
			case policy.ActPoweroff:
				if len(act.Command) > 0 {
					say(at, "final stage %s (%s): would run %q", act.Stage, act.Reason, act.Command)
				} else {
					say(at, "final stage %s (%s)", act.Stage, act.Reason)
				}
				say(at, "would publish shutting_down and SHUTDOWN, wait final_delay %s", a.FinalDelayValue())
				say(at+a.FinalDelayValue(), "would publish powering_off and power off (poweroff: %s, command %q)", a.Poweroff, a.ShutdownCommand)
				return exitOK
			}
		}
	}
	fmt.Fprintln(io.Stdout, "drill: the scenario ended without powering off")
	return exitOK
}
