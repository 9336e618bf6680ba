package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/notify/engine"
)

// ExecConfig is the `type: exec` notifier: it runs a command the way
// upsmon's NOTIFYCMD does (the message as the last argument, UPSNAME and
// NOTIFYTYPE in the environment), so an existing script keeps working.
type ExecConfig struct {
	engine.Common `koanf:",squash"`
	// Command is the program and its leading arguments.
	Command []string `koanf:"command"`
	// Env adds NAME=value pairs to the command's environment.
	Env map[string]string `koanf:"env"`
}

func init() {
	engine.Register("exec", func() *ExecConfig {
		// upsmon runs NOTIFYCMD for every event, without holding any back.
		return &ExecConfig{Common: engine.Defaults("exec", engine.ServiceDefaults{Attempts: 3})}
	})
}

// Validate implements config.Validator.
func (c *ExecConfig) Validate() []config.FieldError {
	errs := c.Common.Validate()
	if len(c.Command) == 0 || c.Command[0] == "" {
		errs = append(errs, config.Errorf("command", "is required: the program to run, like upsmon's NOTIFYCMD"))
	} else if _, err := exec.LookPath(c.Command[0]); err != nil {
		errs = append(errs, config.Errorf("command[0]", "%v", err))
	}
	return errs
}

// NewSink implements bridge.SinkSpec.
func (c *ExecConfig) NewSink(env bridge.Env) (bridge.Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("exec notifier %q: %w", c.Name, config.Errors(errs))
	}
	return engine.New(env, &c.Common, &execSvc{cfg: c, fullBody: c.Template != ""})
}

type execSvc struct {
	cfg      *ExecConfig
	fullBody bool
}

func (e *execSvc) MaxBytes() int { return 0 }

func (e *execSvc) Send(ctx context.Context, m engine.Message) error {
	// Like upsmon's NOTIFYMSG, the built-in message is one line; a custom
	// template is passed whole.
	msg := m.Body
	if !e.fullBody && len(m.Records) == 1 {
		msg, _, _ = strings.Cut(m.Body, "\n")
	}
	args := append(append([]string{}, e.cfg.Command[1:]...), msg)
	cmd := exec.CommandContext(ctx, e.cfg.Command[0], args...)
	cmd.Env = append(os.Environ(), "UPSNAME="+m.UPS, "NOTIFYTYPE="+m.Event,
		"UPSBRIDGE_SEVERITY="+m.Severity.String(), "UPSBRIDGE_TITLE="+m.Title, "UPSBRIDGE_HOST="+m.Host)
	for k, v := range e.cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return engine.Refused(fmt.Errorf("exec %s: %w", e.cfg.Command[0], err))
	}
	return engine.Transient(fmt.Errorf("exec %s: %w: %s", e.cfg.Command[0], err, engine.Shorten(out.String(), 300)), 0)
}
