package test

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upsbridge/upsbridge/agent"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/harness"
	_ "github.com/upsbridge/upsbridge/sinks/notify"
	_ "github.com/upsbridge/upsbridge/sources/nut"
	_ "github.com/upsbridge/upsbridge/sources/sim"
	_ "github.com/upsbridge/upsbridge/sources/usbhid"
)

var printDocRows = flag.Bool("docs-print", false, "print the reference rows the code expects (to start a missing section)")

// docKey is a key with its default as the code has it.
type docKey struct {
	key  string
	def  reflect.Value
	text string // formatted default
}

var durationType = reflect.TypeOf(time.Duration(0))

// walkKeys lists the koanf keys of a struct value with their defaults.
// Slices of structs are described through their first element as
// "list[].key"; typed lists (sources, notify) are documented per type.
func walkKeys(prefix string, v reflect.Value, out *[]docKey) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		fv := v.Field(i)
		if opts == "squash" {
			walkKeys(prefix, fv, out)
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		ft := f.Type
		if ft == reflect.TypeOf([]config.Source{}) || ft == reflect.TypeOf([]config.Notifier{}) {
			continue
		}
		if ft.Kind() == reflect.Interface {
			// A registered section (agent): its struct, when set.
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
			ft = fv.Type()
		}
		if ft == reflect.TypeOf(config.SecretRef{}) {
			// One SecretRef is three keys: x, x_file and x_env.
			for _, suffix := range []string{"", "_file", "_env"} {
				*out = append(*out, docKey{key: key + suffix, def: reflect.ValueOf(""), text: ""})
			}
			continue
		}
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			if fv.IsNil() {
				continue
			}
			walkKeys(key, fv.Elem(), out)
			continue
		}
		if ft.Kind() == reflect.Struct && ft != durationType {
			walkKeys(key, fv, out)
			continue
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			if fv.Len() > 0 {
				walkKeys(key+"[]", fv.Index(0), out)
			}
			continue
		}
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				fv = reflect.Zero(ft.Elem())
			} else {
				fv = fv.Elem()
			}
		}
		*out = append(*out, docKey{key: key, def: fv, text: formatDefault(fv)})
	}
}

func formatDefault(v reflect.Value) string {
	if v.Type() == durationType {
		d := time.Duration(v.Int())
		if d == 0 {
			return "0s"
		}
		return d.String()
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float64, reflect.Float32:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice:
		if v.Len() == 0 {
			return "[]"
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = strconv.Quote(formatDefault(v.Index(i)))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		if v.Len() == 0 {
			return "{}"
		}
	}
	return fmt.Sprint(v.Interface())
}

// sameDefault compares a default as documented with the code's.
func sameDefault(doc string, k docKey) bool {
	doc = strings.TrimSpace(strings.ReplaceAll(doc, "`", ""))
	if doc == k.text {
		return true
	}
	zero := k.def.IsZero() || (k.def.Kind() == reflect.Slice && k.def.Len() == 0) || (k.def.Kind() == reflect.Map && k.def.Len() == 0)
	switch doc {
	case `""`, "[]", "{}", "(none)", "0", "0s", "false":
		if zero {
			return true
		}
	}
	if k.def.Type() == durationType {
		d, err := time.ParseDuration(doc)
		return err == nil && int64(d) == k.def.Int()
	}
	return false
}

// dynamicDefaults depend on the machine (host name, state directory): the
// reference describes them in words, in parentheses.
var dynamicDefaults = map[string]bool{"top:bridge.id": true, "top:agent.id": true, "top:agent.state_file": true}

// codeKeys returns the documented sections and their keys from the code.
func codeKeys(t *testing.T) map[string][]docKey {
	t.Helper()
	out := map[string][]docKey{}
	cfg := config.Default()
	ag := &agent.Config{Supplies: []agent.Supply{{}}, Stages: []agent.Stage{{}}}
	ag.ApplyDefaults("/var/lib/upsbridge")
	cfg.Agent = ag
	cfg.MQTT.Broker.Users = []config.BrokerUser{{}}
	cfg.NUTServer.Users, cfg.NUTServer.UPS = []config.NUTUser{{}}, []config.NUTServerUPS{{}}
	var top []docKey
	walkKeys("", reflect.ValueOf(cfg), &top)
	out["top"] = top
	for _, kind := range []string{"sources", "notify"} {
		for _, typ := range config.TypeNames(kind) {
			spec, _ := config.NewSpec(kind, typ)
			var keys []docKey
			walkKeys("", reflect.ValueOf(spec), &keys)
			out[kind+"/"+typ] = keys
		}
	}
	return out
}

// docRow is one row of a reference table.
type docRow struct {
	key, def string
	line     int
}

var (
	markerRe = regexp.MustCompile(`^<!-- keys: ([a-z*/_-]+) -->$`)
	rowRe    = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]*) \\|")
)

// docSections reads the reference: rows after <!-- keys: SECTION --> belong
// to SECTION ("top", "sources/nut", "notify/*" for keys of every notifier,
// "notify/wecom").
func docSections(t *testing.T, path string) map[string]map[string]docRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]docRow{}
	section := ""
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if m := markerRe.FindStringSubmatch(line); m != nil {
			section = m[1]
			if out[section] == nil {
				out[section] = map[string]docRow{}
			}
			continue
		}
		if m := rowRe.FindStringSubmatch(line); m != nil && section != "" {
			if _, dup := out[section][m[1]]; dup {
				t.Errorf("%s:%d: %s documented twice in %s", path, n, m[1], section)
			}
			out[section][m[1]] = docRow{key: m[1], def: strings.TrimSpace(m[2]), line: n}
		}
	}
	return out
}

// TestDocsConfigReference: docs/configuration.md documents every key of the
// configuration, and of every registered source and notifier type, with the
// default the code has, and no key the code does not have.
func TestDocsConfigReference(t *testing.T) {
	path := filepath.Join(harness.RepoRoot(t), "docs", "configuration.md")
	docs := docSections(t, path)
	code := codeKeys(t)
	names := make([]string, 0, len(code))
	for n := range code {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, section := range names {
		keys := code[section]
		kind, _, _ := strings.Cut(section, "/")
		rows := map[string]docRow{}
		if kind == "notify" {
			for k, r := range docs["notify/*"] {
				rows[k] = r
			}
		}
		own, ok := docs[section]
		if !ok && !(kind == "notify" && len(docs["notify/*"]) > 0) {
			t.Errorf("docs/configuration.md has no section <!-- keys: %s --> (registered type)", section)
		}
		for k, r := range own {
			rows[k] = r
		}
		seen := map[string]bool{}
		for _, k := range keys {
			seen[k.key] = true
			r, ok := rows[k.key]
			switch {
			case !ok:
				t.Errorf("%s: key %s (default %q) is not documented", section, k.key, k.text)
				if *printDocRows {
					fmt.Printf("%s | `%s` | `%s` | |\n", section, k.key, k.text)
				}
			case k.key == "type" || k.key == "id" || k.key == "name":
				// Identity keys: required, or the type's own name.
			case dynamicDefaults[section+":"+k.key] && strings.HasPrefix(strings.Trim(r.def, "`"), "("):
			case !sameDefault(r.def, k):
				t.Errorf("%s: %s documented with default %s (line %d), the code has %q", section, k.key, r.def, r.line, k.text)
			}
		}
		for k, r := range own {
			if !seen[k] {
				t.Errorf("%s: docs/configuration.md:%d documents %s, which the code does not have", section, r.line, k)
			}
		}
	}
	for k, r := range docs["notify/*"] {
		found := false
		for _, section := range names {
			if strings.HasPrefix(section, "notify/") {
				for _, key := range code[section] {
					found = found || key.key == k
				}
			}
		}
		if !found {
			t.Errorf("notify/*: docs/configuration.md:%d documents %s, which no notifier has", r.line, k)
		}
	}
	for section := range docs {
		if _, ok := code[section]; !ok && section != "notify/*" {
			t.Errorf("docs/configuration.md documents %s, which is not a registered type", section)
		}
	}
}
