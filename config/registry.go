package config

import (
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/upsbridge/upsbridge/bridge"
)

// Source is one entry of sources: its type and that type's config struct
// (registered with RegisterSource by the package that implements the type,
// decoded strictly with its defaults in place).
type Source struct {
	Type string
	Spec SourceSpec
}

// Notifier is one entry of notify: its type and that type's config struct
// (registered with RegisterNotifier).
type Notifier struct {
	Type string
	Spec NotifierSpec
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

var (
	regMu     sync.RWMutex
	sourceReg = map[string]func() SourceSpec{}
	notifyReg = map[string]func() NotifierSpec{}
	sections  = map[string]func() any{}

	sourceEntryType   = reflect.TypeOf(Source{})
	notifierEntryType = reflect.TypeOf(Notifier{})
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

// RegisterSource makes `type: <typ>` entries of sources known. newSpec
// returns a pointer to a fresh config struct with its defaults set. The same
// type registered twice panics: it is a programming error.
func RegisterSource(typ string, newSpec func() SourceSpec) {
	register(sourceReg, "sources", typ, newSpec)
}

// RegisterNotifier makes `type: <typ>` entries of notify known, as
// RegisterSource does for sources.
func RegisterNotifier(typ string, newSpec func() NotifierSpec) {
	register(notifyReg, "notify", typ, newSpec)
}

func register[S any](reg map[string]func() S, kind, typ string, newSpec func() S) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := reg[typ]; dup {
		panic(fmt.Sprintf("config: %s type %q registered twice", kind, typ))
	}
	reg[typ] = newSpec
}

// newEntry returns a fresh spec of typ for the typed list kind ("sources",
// "notify") and a function that stores it as an entry of that list in v;
// nil when the type is unknown.
func newEntry(kind, typ string) (spec any, set func(v reflect.Value)) {
	regMu.RLock()
	defer regMu.RUnlock()
	switch kind {
	case "sources":
		if f := sourceReg[typ]; f != nil {
			s := f()
			return s, func(v reflect.Value) { v.Set(reflect.ValueOf(Source{Type: typ, Spec: s})) }
		}
	case "notify":
		if f := notifyReg[typ]; f != nil {
			s := f()
			return s, func(v reflect.Value) { v.Set(reflect.ValueOf(Notifier{Type: typ, Spec: s})) }
		}
	}
	return nil, nil
}

// TypeNames lists the registered types of a kind, sorted.
func TypeNames(kind string) []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var out []string
	switch kind {
	case "sources":
		for t := range sourceReg {
			out = append(out, t)
		}
	case "notify":
		for t := range notifyReg {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}
