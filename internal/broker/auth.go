package broker

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/upsbridge/upsbridge/hass"
)

// Role is what a user of the embedded broker may do.
type Role string

// The roles. Under <prefix> (mqtt.topic_prefix) and <disc>
// (hass.discovery_prefix):
//
//	bridge         reads and writes <prefix>/# and <disc>/#: the only writer of UPS topics
//	agent          reads <prefix>/ups/+/state, <prefix>/ups/+/availability and
//	               <prefix>/bridge/+/availability; reads and writes
//	               <prefix>/agent/<name>/#; writes its own device's discovery
//	               configs (<disc>/<component>/upsbridge_agent_<name>[_...]/config)
//	homeassistant  reads <prefix>/#, reads and writes <disc>/#, writes
//	               <prefix>/ups/+/command and <prefix>/ups/+/set
//	reader         reads <prefix>/# and <disc>/#
const (
	RoleBridge        Role = "bridge"
	RoleAgent         Role = "agent"
	RoleHomeAssistant Role = "homeassistant"
	RoleReader        Role = "reader"
)

// rule allows reading and/or writing the topics a filter matches.
type rule struct {
	filter      []string
	read, write bool
	// objPrefix, when set, restricts write to topics whose third level is
	// objPrefix or starts with objPrefix+"_" (an agent's discovery ids).
	objPrefix string
}

func r(filter string, read, write bool) rule {
	return rule{filter: strings.Split(filter, "/"), read: read, write: write}
}

// ACL returns the rules of a role for a user name.
func ACL(role Role, name, prefix, disc string) ([]rule, error) {
	switch role {
	case RoleBridge:
		return []rule{r(prefix+"/#", true, true), r(disc+"/#", true, true)}, nil
	case RoleAgent:
		return []rule{
			r(prefix+"/ups/+/state", true, false),
			r(prefix+"/ups/+/availability", true, false),
			r(prefix+"/bridge/+/availability", true, false),
			r(prefix+"/agent/"+name+"/#", true, true),
			{filter: strings.Split(disc+"/+/+/config", "/"), write: true, objPrefix: hass.AgentDeviceID(name)},
		}, nil
	case RoleHomeAssistant:
		return []rule{
			r(prefix+"/#", true, false), r(disc+"/#", true, true),
			r(prefix+"/ups/+/command", false, true), r(prefix+"/ups/+/set", false, true),
		}, nil
	case RoleReader:
		return []rule{r(prefix+"/#", true, false), r(disc+"/#", true, false)}, nil
	}
	return nil, fmt.Errorf("unknown role %q", role)
}

// account is a user as the hook keeps it: the password's hash, so that
// comparisons take the same time whatever the lengths.
type account struct {
	sum   [32]byte
	rules []rule
}

// authHook authenticates clients and checks every publish and subscribe
// against their role's rules. It is a few dozen lines instead of mochi's
// hooks/auth, whose ledger would add a second YAML library to the binary.
type authHook struct {
	mochi.HookBase
	users     map[string]*account
	anonymous bool // clients without a user name get full access
	dummy     [32]byte
	log       *slog.Logger

	loginsRejected atomic.Uint64
	aclRejected    atomic.Uint64
}

func newAuthHook(users []User, anonymous bool, prefix, disc string, log *slog.Logger) (*authHook, error) {
	h := &authHook{users: map[string]*account{}, anonymous: anonymous, dummy: sha256.Sum256([]byte("no such user")), log: log}
	for _, u := range users {
		rules, err := ACL(u.Role, u.Name, prefix, disc)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", u.Name, err)
		}
		if u.Password == "" {
			return nil, fmt.Errorf("user %q has no password", u.Name)
		}
		h.users[u.Name] = &account{sum: sha256.Sum256([]byte(u.Password.Reveal())), rules: rules}
	}
	return h, nil
}

func (*authHook) ID() string { return "upsbridge-auth" }

func (*authHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// OnConnectAuthenticate accepts a known user with the right password, and
// a client without a user name only when anonymous access is on.
func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	name := string(pk.Connect.Username)
	if name == "" && !pk.Connect.UsernameFlag {
		if h.anonymous {
			return true
		}
		h.loginsRejected.Add(1)
		h.log.Warn("embedded broker: anonymous login refused", "remote", cl.Net.Remote, "client_id", cl.ID)
		return false
	}
	got := sha256.Sum256(pk.Connect.Password)
	acc, ok := h.users[name]
	want := h.dummy
	if ok {
		want = acc.sum
	}
	// Compare even for an unknown user, so timing does not tell which
	// user names exist.
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	if !ok || !match {
		h.loginsRejected.Add(1)
		h.log.Warn("embedded broker: login refused", "user", name, "remote", cl.Net.Remote, "client_id", cl.ID)
		return false
	}
	return true
}

// OnACLCheck allows a publish (write, a topic name) or a subscription
// (read, a filter that may hold wildcards) by the client's rules.
func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	name := string(cl.Properties.Username)
	acc, ok := h.users[name]
	if !ok {
		// Only an anonymous client gets here past authentication.
		if name == "" && h.anonymous {
			return true
		}
		h.aclRejected.Add(1)
		return false
	}
	if allowed(acc.rules, topic, write) {
		return true
	}
	h.aclRejected.Add(1)
	h.log.Debug("embedded broker: ACL refused", "user", name, "topic", topic, "write", write)
	return false
}

func allowed(rules []rule, topic string, write bool) bool {
	levels := strings.Split(topic, "/")
	for _, ru := range rules {
		if write && !ru.write || !write && !ru.read {
			continue
		}
		if !within(levels, ru.filter) {
			continue
		}
		if ru.objPrefix != "" {
			if len(levels) < 3 || !(levels[2] == ru.objPrefix || strings.HasPrefix(levels[2], ru.objPrefix+"_")) {
				continue
			}
		}
		return true
	}
	return false
}

// within reports whether every topic that filter f matches is matched by
// filter p (a topic name is a filter without wildcards).
func within(f, p []string) bool {
	for i, pl := range p {
		if pl == "#" {
			return true
		}
		if i >= len(f) {
			return false
		}
		fl := f[i]
		if fl == "#" {
			return false
		}
		if pl == "+" {
			continue
		}
		if fl == "+" || fl != pl {
			return false
		}
	}
	return len(f) == len(p)
}
