// Package shutdown is the bridge's side of the FSD handshake ([Primary]).
// The shutdown agent itself lives in the agent tree (package agent).
package shutdown

import "github.com/upsbridge/upsbridge/mqttwire"

// AgentState is an agent's state as the primary reads it.
type AgentState = mqttwire.AgentState

// StatusShuttingDown is the agent status the primary waits for.
const StatusShuttingDown = mqttwire.AgentShuttingDown
