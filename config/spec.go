package config

// NewSpec returns a fresh spec with its defaults for a registered type of a
// typed list ("sources", "notify"), for tools that document or compare the
// defaults (the configuration reference test). ok is false for an unknown
// type.
func NewSpec(kind, typ string) (spec any, ok bool) {
	s, set := newEntry(kind, typ)
	return s, set != nil
}
