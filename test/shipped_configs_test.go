package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/datadir"
	"github.com/upsbridge/upsbridge/internal/harness"
)

// shippedConfig is a configuration the project ships: a file of deploy/ or
// a YAML example of the README or docs/.
type shippedConfig struct {
	name string // where it comes from: "deploy/config/synology.yaml", "README.md:36"
	body []byte
}

// configKeys are the top-level keys of upsbridge's configuration: a YAML
// example whose keys are all among them is a configuration (others are
// Home Assistant automations, alert rules, ...).
var configKeys = map[string]bool{"log": true, "mqtt": true, "bridge": true, "hass": true, "http": true, "sources": true, "notify": true, "agent": true}

// shippedConfigs lists every configuration of deploy/ and every YAML
// configuration example of README.md and docs/*.md.
func shippedConfigs(t *testing.T) []shippedConfig {
	t.Helper()
	root := harness.RepoRoot(t)
	var out []shippedConfig
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "config", "*.yaml"))
	compose, _ := filepath.Glob(filepath.Join(root, "deploy", "compose", "*.yaml"))
	for _, f := range append(files, compose...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		out = append(out, shippedConfig{rel, b})
	}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	block := regexp.MustCompile("(?s)```ya?ml\n(.*?)```")
	for _, f := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, m := range block.FindAllSubmatchIndex(b, -1) {
			body := b[m[2]:m[3]]
			var top map[string]any
			if yaml.Unmarshal(body, &top) != nil || len(top) == 0 {
				continue
			}
			isConfig := true
			for k := range top {
				isConfig = isConfig && configKeys[k]
			}
			if isConfig {
				out = append(out, shippedConfig{fmt.Sprintf("%s:%d", rel, bytes.Count(b[:m[0]], []byte("\n"))+1), body})
			}
		}
	}
	return out
}

// shippedRig is what a shipped configuration runs against: the harness's
// mosquitto and upsd, secret files, a signing key pair and a recording
// script that stands in for every stage, undo and power-off command.
type shippedRig struct {
	bin, dir, record string
	broker           *harness.Mosquitto // the current run's, fresh for each (no retained leftovers)
	upsd             *harness.UPSD
	subURL           string // the broker URL with an account, when the rewritten config needs one
	subPrefix        string // the topic prefix that account reads
}

// rewrite points a configuration at the rig: brokers and upsd addresses,
// listening ports, secret and key files, commands. It returns the rewritten
// YAML and the topics that show it runs (retained states and agent states).
func (r *shippedRig) rewrite(t *testing.T, body []byte) ([]byte, string, []string) {
	t.Helper()
	// Placeholders of the examples.
	body = bytes.ReplaceAll(body, []byte("<hostname>"), []byte("example-host"))
	var cfg map[string]any
	if err := yaml.Unmarshal(body, &cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	sub := func(m map[string]any, key string) map[string]any {
		if v, ok := m[key].(map[string]any); ok {
			return v
		}
		v := map[string]any{}
		m[key] = v
		return v
	}
	file := func(path string) string {
		// Secret files stand in at the same base name in the rig.
		p := filepath.Join(r.dir, filepath.Base(path))
		if _, err := os.Stat(p); err != nil {
			if err := os.WriteFile(p, []byte("not-a-real-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	rec := func(name string) []any { return []any{filepath.Join(r.dir, "rec.sh"), name} }

	mq := sub(cfg, "mqtt")
	reader := "" // an account of the embedded broker that reads everything
	brokerURL := r.broker.URL()
	if mq["url"] == "embedded" {
		mq["listen"] = harness.Addr(harness.FreePort(t))
		brokerURL = "tcp://" + mq["listen"].(string)
	} else {
		mq["url"] = brokerURL
		delete(mq, "tls") // the harness's broker has no TLS
	}
	if f, ok := mq["password_file"].(string); ok {
		mq["password_file"] = file(f)
	}
	if br, ok := mq["broker"].(map[string]any); ok {
		users, _ := br["users"].([]any)
		for _, u := range users {
			if um, ok := u.(map[string]any); ok {
				if f, ok := um["password_file"].(string); ok {
					um["password_file"] = file(f)
				}
				if name, _ := um["name"].(string); reader == "" && (um["role"] == "homeassistant" || um["role"] == "reader") {
					reader = name
				}
			}
		}
	}
	if h, ok := cfg["http"].(map[string]any); ok {
		if f, ok := h["token_file"].(string); ok {
			h["token_file"] = file(f)
		}
	}
	prefix, _ := mq["topic_prefix"].(string)
	if prefix == "" {
		prefix = "upsbridge"
	}
	if b, ok := cfg["bridge"].(map[string]any); ok {
		if f, ok := b["signing_key_file"].(string); ok && f != "" {
			b["signing_key_file"] = filepath.Join(r.dir, "bridge.key")
		}
		delete(b, "state_dir") // the environment sets it
	}
	if h, ok := cfg["http"].(map[string]any); ok && h["listen"] != nil && h["listen"] != "" {
		h["listen"] = harness.Addr(harness.FreePort(t))
	}
	if cfg["sources"] == nil && cfg["agent"] == nil {
		// A fragment showing one section (notifiers, TLS to the broker):
		// it runs beside the smallest source, since run needs something to
		// run and check-config says so.
		cfg["sources"] = []any{map[string]any{"id": "fragment-ups", "type": "sim"}}
	}
	var ready []string
	sources, _ := cfg["sources"].([]any)
	for i, s := range sources {
		src := s.(map[string]any)
		id, _ := src["id"].(string)
		switch src["type"] {
		case "nut":
			src["address"] = r.upsd.Addr()
			if src["ups"] != "*" {
				src["ups"] = "ups"
			}
			user, pw := harness.NUTMonUser, harness.NUTMonPassword
			if src["primary"] == true {
				user, pw = harness.NUTAdminUser, harness.NUTAdminPassword
			}
			if src["username"] != nil || src["login"] == true || src["primary"] == true {
				src["username"] = user
				delete(src, "password")
				delete(src, "password_env")
				src["password_file"] = filepath.Join(r.dir, "nut-"+user)
				if err := os.WriteFile(src["password_file"].(string), []byte(pw+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if src["ups"] == "*" {
				id += "_ups"
			}
		case "usbhid":
			// No USB device here (test/usb/run.sh runs the source on a USB
			// stack in qemu): a simulated UPS with the same id stands in.
			sources[i] = map[string]any{"id": id, "type": "sim"}
		}
		ready = append(ready, prefix+"/ups/"+id+"/state")
	}
	notify, _ := cfg["notify"].([]any)
	for _, n := range notify {
		nt := n.(map[string]any)
		for k, v := range nt {
			if f, ok := v.(string); ok && strings.HasSuffix(k, "_file") {
				nt[k] = file(f)
			}
		}
		if nt["type"] == "exec" {
			nt["command"] = rec("NOTIFY")
		}
	}
	if a, ok := cfg["agent"].(map[string]any); ok {
		a["poweroff"] = "command"
		a["shutdown_command"] = rec("POWEROFF")
		delete(a, "state_file") // under the state directory the environment sets
		if f, ok := a["public_key_file"].(string); ok && f != "" {
			a["public_key_file"] = filepath.Join(r.dir, "bridge.pub")
		}
		stages, _ := a["stages"].([]any)
		for _, s := range stages {
			st := s.(map[string]any)
			name, _ := st["name"].(string)
			if st["run"] != nil {
				st["run"] = rec("STAGE-" + name)
			}
			if st["undo"] != nil {
				st["undo"] = rec("UNDO-" + name)
			}
		}
		id, _ := a["id"].(string)
		if id == "" {
			host, _ := os.Hostname()
			id = config.SanitizeID(host) // the default
		}
		ready = append(ready, prefix+"/agent/"+id+"/state")
	}
	if len(ready) == 0 {
		t.Fatal("nothing to wait for: the configuration has no source and no agent")
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if reader != "" {
		// The broker has accounts: the test reads as one that may read
		// everything (every stand-in secret is the same).
		r.subURL = strings.Replace(brokerURL, "tcp://", "tcp://"+reader+":not-a-real-secret@", 1)
		r.subPrefix = prefix
	}
	return out, brokerURL, ready
}

// TestShippedConfigsRun: every configuration the project ships (deploy/,
// the README's and docs/' YAML examples) passes check-config and runs
// against the harness's real mosquitto and upsd until its UPSes' states and
// its agent's state are published, then stops cleanly on SIGTERM, with no
// error, no unparsable line and no duplicate key in its JSON log. Secret
// files are temporary files; power-off, stage and notify commands are a
// recording script, which must not have run; notifiers' HTTP goes to a
// closed local proxy, so a message sent would show as an error.
func TestShippedConfigsRun(t *testing.T) {
	configs := shippedConfigs(t)
	if len(configs) < 12 {
		t.Fatalf("found %d shipped configurations, want the 6 of deploy/ and the README's and docs' examples", len(configs))
	}
	r := &shippedRig{bin: harness.Binary(t), dir: t.TempDir()}
	r.record = filepath.Join(r.dir, "record.txt")
	if err := os.WriteFile(filepath.Join(r.dir, "rec.sh"), []byte("#!/bin/sh\necho \"$1\" >> "+r.record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(r.dir, "bridge.key")
	if out, err := exec.Command(r.bin, "keygen", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("upsbridge keygen: %v\n%s", err, out)
	}
	if err := os.Rename(key+".pub", filepath.Join(r.dir, "bridge.pub")); err != nil {
		t.Fatal(err)
	}
	r.upsd = harness.StartUPSD(t, harness.UPSDOptions{Devices: []harness.NUTDevice{
		{Name: "ups", File: datadir.DDL("APC/APC__Back-UPS_BK650M2-CH__usbhid-ups__2.8.0__01.dev")},
	}})
	// Nothing reaches a notification service: HTTP goes to a closed port.
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:9")
	t.Setenv("NO_PROXY", "")

	for _, c := range configs {
		t.Run(strings.NewReplacer("/", "_", ":", "_").Replace(c.name), func(t *testing.T) {
			r.broker = harness.StartMosquitto(t)
			body, brokerURL, ready := r.rewrite(t, c.body)
			cfgPath := filepath.Join(t.TempDir(), "upsbridge.yaml")
			if err := os.WriteFile(cfgPath, body, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("UPSBRIDGE_BRIDGE__STATE_DIR", t.TempDir())
			if out, err := exec.Command(r.bin, "check-config", "-c", cfgPath).CombinedOutput(); err != nil {
				t.Fatalf("%s does not pass check-config: %v\n%s\nas run:\n%s", c.name, err, out, body)
			}
			p := harness.StartBridge(t, string(body))
			if strings.HasPrefix(brokerURL, "tcp://127.0.0.1:") && brokerURL != r.broker.URL() {
				harness.WaitTCP(t, strings.TrimPrefix(brokerURL, "tcp://"), 15*time.Second)
			}
			subURL, filter := brokerURL, "#"
			if r.subURL != "" {
				// An account reads only under the prefix.
				subURL, filter, r.subURL = r.subURL, r.subPrefix+"/#", ""
			}
			sub := harness.Subscribe(t, subURL, filter)
			sub.WaitFor(fmt.Sprintf("%v published", ready), 30*time.Second, func(msgs []harness.Msg) bool {
				seen := map[string]bool{}
				for _, m := range msgs {
					seen[m.Topic] = true
				}
				for _, topic := range ready {
					if !seen[topic] {
						return false
					}
				}
				return true
			})
			sub.Close()
			if code := p.Stop(t, 15*time.Second); code != 0 {
				t.Errorf("exit status %d after SIGTERM", code)
			}
			for _, problem := range logProblems(p.Output.String()) {
				t.Errorf("%s: %s", c.name, problem)
			}
			if t.Failed() {
				t.Logf("configuration as run:\n%s", body)
			}
		})
	}
	if b, err := os.ReadFile(r.record); err == nil && len(b) > 0 {
		t.Errorf("commands ran during the runs (nothing was on battery): %s", b)
	}
}

// logProblems returns what is wrong with a JSON log: lines that are not
// JSON objects, ERROR lines, and keys that appear twice in one line.
func logProblems(out string) []string {
	var problems []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		keys, err := topLevelKeys(line)
		if err != nil {
			problems = append(problems, fmt.Sprintf("log line is not a JSON object (%v): %s", err, line))
			continue
		}
		seen := map[string]bool{}
		var dups []string
		for _, k := range keys {
			if seen[k] {
				dups = append(dups, k)
			}
			seen[k] = true
		}
		if len(dups) > 0 {
			sort.Strings(dups)
			problems = append(problems, fmt.Sprintf("duplicate log keys %v: %s", dups, line))
		}
		var rec struct{ Level string }
		_ = json.Unmarshal([]byte(line), &rec)
		if rec.Level == "ERROR" {
			problems = append(problems, "error logged: "+line)
		}
	}
	return problems
}

// topLevelKeys returns the keys of a JSON object in order, repeats kept
// (encoding/json keeps only the last of a repeated key).
func topLevelKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object")
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the object")
	}
	return keys, nil
}
