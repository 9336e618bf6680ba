// Command upsbridge reads UPSes (NUT upsd, USB HID, simulation), derives
// power events the way NUT's upsmon does, and publishes state, events and
// Home Assistant discovery to MQTT; as an agent it runs a staged shutdown.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2 // bad usage or bad configuration
)

// stdio is where a command reads and writes; tests substitute it.
type stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Env    []string
}

// command is one sub-command. Each lives in its own cmd_<name>.go file and
// registers itself in init, so adapters add commands without touching main.
type command struct {
	Name    string
	Usage   string // "run -c FILE"
	Summary string
	Run     func(ctx context.Context, args []string, io stdio) int
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.Name]; dup {
		panic("upsbridge: command registered twice: " + c.Name)
	}
	commands[c.Name] = c
}

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		// upsbridge is I/O-bound: a poll is microseconds of work. With more
		// than one P the runtime wakes an idle thread for every goroutine a
		// poll readies (a futex wake and a context switch each), about a
		// third of an idle bridge's CPU; one P runs the same hand-offs on
		// one thread. Measured in docs/benchmarks.md; the variable wins.
		runtime.GOMAXPROCS(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Env: os.Environ()})
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, io stdio) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(io.Stdout)
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(io.Stderr, "upsbridge: unknown command %q\n\n", args[0])
		usage(io.Stderr)
		return exitConfig
	}
	return c.Run(ctx, args[1:], io)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "upsbridge: UPS power events on MQTT")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  upsbridge %-34s %s\n", c.Usage, c.Summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The config file may also be named by "+strings.ToUpper("UPSBRIDGE_CONFIG")+".")
}
