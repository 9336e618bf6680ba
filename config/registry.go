package config

import (
	"fmt"
	"sort"
	"sync"

	"github.com/upsbridge/upsbridge/bridge"
)

// Typed is one entry of a list whose entries have a `type` (sources,
// notifiers). Spec is the type's own config struct, registered by the package
// that implements the type, decoded strictly with its defaults in place.
type Typed struct {
	Type string
	Spec any
}

// Validator is implemented by specs that check themselves. Keys are relative
// to the entry ("poll_interval"); the caller adds the entry's path.
type Validator interface {
	Validate() []FieldError
}

// SourceSpec is what every source type's spec is: it has an id and builds
// the source.
type SourceSpec interface {
	SourceID() string
	bridge.SourceSpec
}

// NotifierSpec is what every notifier type's spec is: it has a name and
// builds the notifier.
type NotifierSpec interface {
	NotifierName() string
	bridge.SinkSpec
}

// kinds are the typed lists: the key that names an entry (unique in its
// list) and the check that a registered spec is of the kind.
var kinds = map[string]struct {
	key string
	is  func(any) bool
}{
	"sources": {"id", func(s any) bool { _, ok := s.(SourceSpec); return ok }},
	"notify":  {"name", func(s any) bool { _, ok := s.(NotifierSpec); return ok }},
}

// Source returns the entry's spec as a source, for an entry of sources.
func (t Typed) Source() (SourceSpec, bool) { s, ok := t.Spec.(SourceSpec); return s, ok }

// Notifier returns the entry's spec as a notifier, for an entry of notify.
func (t Typed) Notifier() (NotifierSpec, bool) { s, ok := t.Spec.(NotifierSpec); return s, ok }

// entryName returns the id of a source or the name of a notifier.
func entryName(kind string, spec any) (string, bool) {
	switch s := spec.(type) {
	case SourceSpec:
		if kind == "sources" {
			return s.SourceID(), true
		}
	case NotifierSpec:
		if kind == "notify" {
			return s.NotifierName(), true
		}
	}
	return "", false
}

var (
	regMu    sync.RWMutex
	registry = map[string]map[string]func() any{}
	sections = map[string]func() any{}
)

// RegisterSection makes a top-level section known whose struct lives in
// the package that implements it (the shutdown agent's `agent`), so this
// package imports nothing of it. newSpec returns a pointer to a fresh struct
// with its defaults set; it is decoded strictly, and validated when it
// implements [Validator]. The Config field of the section is an `any`.
// Registering a key twice panics: it is a programming error.
func RegisterSection(key string, newSpec func() any) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := sections[key]; dup {
		panic(fmt.Sprintf("config: section %q registered twice", key))
	}
	sections[key] = newSpec
}

func lookupSection(key string) func() any {
	regMu.RLock()
	defer regMu.RUnlock()
	return sections[key]
}

// Register makes a type known for a typed list. kind is the list's key
// ("sources", "notify"); newSpec returns a pointer to a fresh config struct
// with its defaults set: a SourceSpec for sources, a NotifierSpec for
// notifiers, so every entry Load accepts can be built. An unknown kind, a spec of the wrong kind, or the same kind
// and type registered twice panic: they are programming errors.
func Register(kind, typ string, newSpec func() any) {
	k, ok := kinds[kind]
	if !ok {
		panic(fmt.Sprintf("config: unknown kind %q of typed list", kind))
	}
	if !k.is(newSpec()) {
		panic(fmt.Sprintf("config: %s type %q: spec %T lacks the %s of its kind", kind, typ, newSpec(), k.key))
	}
	regMu.Lock()
	defer regMu.Unlock()
	if registry[kind] == nil {
		registry[kind] = map[string]func() any{}
	}
	if _, dup := registry[kind][typ]; dup {
		panic(fmt.Sprintf("config: %s type %q registered twice", kind, typ))
	}
	registry[kind][typ] = newSpec
}

func lookup(kind, typ string) func() any {
	regMu.RLock()
	defer regMu.RUnlock()
	return registry[kind][typ]
}

// TypeNames lists the registered types of a kind, sorted.
func TypeNames(kind string) []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry[kind]))
	for t := range registry[kind] {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
