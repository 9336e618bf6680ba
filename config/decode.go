package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with the configuration, named by its key path
// ("sources[0].poll_interval").
type FieldError struct {
	Key string
	Msg string
}

func (e FieldError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Errorf builds a FieldError for a key relative to the value being checked.
func Errorf(key, format string, args ...any) FieldError {
	return FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Prefix puts a key path in front of each error's key.
func Prefix(prefix string, errs []FieldError) []FieldError {
	for i := range errs {
		switch {
		case errs[i].Key == "":
			errs[i].Key = prefix
		case strings.HasPrefix(errs[i].Key, "["):
			errs[i].Key = prefix + errs[i].Key
		default:
			errs[i].Key = prefix + "." + errs[i].Key
		}
	}
	return errs
}

var (
	durationType    = reflect.TypeOf(time.Duration(0))
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	rawDecoder      = reflect.TypeOf((*RawDecoder)(nil)).Elem()
)

// RawDecoder is implemented by config types that need the value as the YAML
// parser produced it (a string, a number, a list) rather than as text: a
// USB id must refuse the number that `0x051d` becomes in YAML.
type RawDecoder interface {
	DecodeRaw(raw any) error
}

// decoder fills a struct from a loaded map: only keys present change fields,
// so defaults set in code stay. It reports every unknown key and every value
// of the wrong shape with its path, instead of stopping at the first.
type decoder struct {
	errs []FieldError
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Key: path, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fields maps the koanf keys of a struct type to field index paths,
// flattening embedded structs tagged ",squash" or untagged.
func fields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && (name == "" || opts == "squash") && f.Type.Kind() == reflect.Struct {
			for k, idx := range fields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = []int{i}
		if f.Type == secretRefType {
			// One SecretRef takes three keys: x (decoded into Value),
			// x_file and x_env.
			out[name+"_file"] = []int{i, 1}
			out[name+"_env"] = []int{i, 2}
		}
	}
	return out
}

func (d *decoder) decodeStruct(path string, raw any, v reflect.Value) {
	m, ok := raw.(map[string]any)
	if !ok {
		d.fail(path, "must be a mapping of keys, got %s", describe(raw))
		return
	}
	fs := fields(v.Type())
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		idx, ok := fs[k]
		if !ok {
			known := make([]string, 0, len(fs))
			for name := range fs {
				known = append(known, name)
			}
			sort.Strings(known)
			d.fail(join(path, k), "unknown key (known here: %s)", strings.Join(known, ", "))
			continue
		}
		d.decodeValue(join(path, k), m[k], v.FieldByIndex(idx))
	}
}

func (d *decoder) decodeValue(path string, raw any, v reflect.Value) {
	if raw == nil {
		return // "key:" with no value keeps the default
	}
	if v.Type() == sourceEntryType || v.Type() == notifierEntryType {
		d.fail(path, "a typed entry outside a list")
		return
	}
	if v.Kind() == reflect.Interface && v.NumMethod() == 0 {
		d.decodeSection(path, raw, v)
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decodeValue(path, raw, v.Elem())
		return
	}
	if v.Type() == secretRefType {
		v = v.Field(0) // the x key itself; x_file and x_env are fields of their own
	}
	if v.Type() == durationType {
		s, ok := raw.(string)
		if !ok {
			d.fail(path, "must be a duration with a unit such as \"15s\" or \"2m\", got %s", describe(raw))
			return
		}
		dur, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			d.fail(path, "must be a duration with a unit such as \"15s\" or \"2m\", got %q", s)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(rawDecoder) {
		if err := v.Addr().Interface().(RawDecoder).DecodeRaw(raw); err != nil {
			d.fail(path, "%v", err)
		}
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		s, ok := scalarString(raw)
		if !ok {
			d.fail(path, "must be a single value, got %s", describe(raw))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := scalarString(raw)
		if !ok {
			d.fail(path, "must be a string, got %s", describe(raw))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		switch b := raw.(type) {
		case bool:
			v.SetBool(b)
		case string:
			pb, err := strconv.ParseBool(b)
			if err != nil {
				d.fail(path, "must be true or false, got %q", b)
				return
			}
			v.SetBool(pb)
		default:
			d.fail(path, "must be true or false, got %s", describe(raw))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := toFloat(raw)
		if !ok || n != float64(int64(n)) {
			d.fail(path, "must be a whole number, got %s", describe(raw))
			return
		}
		if v.OverflowInt(int64(n)) {
			d.fail(path, "%v is out of range", raw)
			return
		}
		v.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := toFloat(raw)
		if !ok || n < 0 || n != float64(uint64(n)) {
			d.fail(path, "must be a whole number >= 0, got %s", describe(raw))
			return
		}
		if v.OverflowUint(uint64(n)) {
			d.fail(path, "%v is out of range", raw)
			return
		}
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		n, ok := toFloat(raw)
		if !ok {
			d.fail(path, "must be a number, got %s", describe(raw))
			return
		}
		v.SetFloat(n)
	case reflect.Struct:
		d.decodeStruct(path, raw, v)
	case reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			// A single scalar where a list of strings is expected is a common
			// slip in YAML and in environment variables: accept "a,b".
			if s, isStr := raw.(string); isStr && v.Type().Elem().Kind() == reflect.String {
				parts := strings.Split(s, ",")
				list = make([]any, 0, len(parts))
				for _, p := range parts {
					if p = strings.TrimSpace(p); p != "" {
						list = append(list, p)
					}
				}
			} else {
				d.fail(path, "must be a list, got %s", describe(raw))
				return
			}
		}
		out := reflect.MakeSlice(v.Type(), len(list), len(list))
		for i, item := range list {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if et := v.Type().Elem(); et == sourceEntryType || et == notifierEntryType {
				d.decodeTyped(ip, kindOf(path), item, out.Index(i))
				continue
			}
			d.decodeValue(ip, item, out.Index(i))
		}
		v.Set(out)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok || v.Type().Key().Kind() != reflect.String {
			d.fail(path, "must be a mapping, got %s", describe(raw))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for k, item := range m {
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decodeValue(join(path, k), item, ev)
			v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		}
	default:
		d.fail(path, "cannot be set from configuration (type %s)", v.Type())
	}
}

// kindOf returns the registry kind of a typed list from its key path:
// "sources" -> "sources", "notify" -> "notify".
func kindOf(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func (d *decoder) decodeTyped(path, kind string, raw any, v reflect.Value) {
	m, ok := raw.(map[string]any)
	if !ok {
		d.fail(path, "must be a mapping of keys, got %s", describe(raw))
		return
	}
	typ, _ := m["type"].(string)
	if typ == "" {
		d.fail(join(path, "type"), "is required (one of: %s)", strings.Join(TypeNames(kind), ", "))
		return
	}
	spec, set := newEntry(kind, typ)
	if set == nil {
		d.fail(join(path, "type"), "unknown type %q (one of: %s)", typ, strings.Join(TypeNames(kind), ", "))
		return
	}
	sv := reflect.ValueOf(spec)
	if sv.Kind() != reflect.Pointer || sv.Elem().Kind() != reflect.Struct {
		d.fail(path, "internal: spec for %s %q is not a pointer to a struct", kind, typ)
		return
	}
	d.decodeStruct(path, m, sv.Elem())
	set(v)
}

// decodeSection fills an `any` field with the struct its package registered
// for the section at path (RegisterSection).
func (d *decoder) decodeSection(path string, raw any, v reflect.Value) {
	newSpec := lookupSection(path)
	if newSpec == nil {
		d.fail(path, "is not available in this build")
		return
	}
	spec := v.Interface()
	if spec == nil {
		spec = newSpec()
	}
	sv := reflect.ValueOf(spec)
	if sv.Kind() != reflect.Pointer || sv.Elem().Kind() != reflect.Struct {
		d.fail(path, "internal: section %q is not a pointer to a struct", path)
		return
	}
	d.decodeStruct(path, raw, sv.Elem())
	v.Set(sv)
}

func scalarString(raw any) (string, bool) {
	switch x := raw.(type) {
	case string:
		return x, true
	case int, int64, float64, bool, uint64:
		// YAML reads `ups: 1500` as a number; a string field takes its text.
		return fmt.Sprint(x), true
	}
	return "", false
}

func toFloat(raw any) (float64, bool) {
	switch x := raw.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

func describe(raw any) string {
	switch x := raw.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(x)
	default:
		return fmt.Sprintf("%v", x)
	}
}
