package config

import (
	"fmt"
	"sort"
	"sync"
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
// with its defaults set. Registering the same kind and type twice panics: it
// is a programming error.
func Register(kind, typ string, newSpec func() any) {
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
