// Package bridge is the core of upsbridge: the normalised UPS model (NUT's
// variable names and status flags), the event derivation that follows NUT's
// upsmon, and the routing from sources to sinks.
//
// Data flows one way. A [Source] emits [Update]s into a channel the [Bridge]
// owns; the bridge keeps one tracker per UPS that turns consecutive updates
// into [State]s and [Event]s; every [Sink] consumes them from its own bounded
// [Queue]. Commands travel back through the small [Commander] interface.
package bridge
