package client

import (
	"errors"
	"fmt"
)

// The ERR codes of NUT's network protocol (server/neterr.h), plus UNKNOWN,
// which GET TRACKING uses for a command the driver did not handle.
const (
	CodeAccessDenied         = "ACCESS-DENIED"
	CodeUnknownUPS           = "UNKNOWN-UPS"
	CodeVarNotSupported      = "VAR-NOT-SUPPORTED"
	CodeCmdNotSupported      = "CMD-NOT-SUPPORTED"
	CodeInvalidArgument      = "INVALID-ARGUMENT"
	CodeInstCmdFailed        = "INSTCMD-FAILED"
	CodeSetFailed            = "SET-FAILED"
	CodeReadOnly             = "READONLY"
	CodeTooLong              = "TOO-LONG"
	CodeFeatureNotSupported  = "FEATURE-NOT-SUPPORTED"
	CodeFeatureNotConfigured = "FEATURE-NOT-CONFIGURED"
	CodeAlreadySSLMode       = "ALREADY-SSL-MODE"
	CodeDriverNotConnected   = "DRIVER-NOT-CONNECTED"
	CodeDataStale            = "DATA-STALE"
	CodeAlreadyLoggedIn      = "ALREADY-LOGGED-IN"
	CodeInvalidPassword      = "INVALID-PASSWORD"
	CodeAlreadySetPassword   = "ALREADY-SET-PASSWORD"
	CodeInvalidUsername      = "INVALID-USERNAME"
	CodeAlreadySetUsername   = "ALREADY-SET-USERNAME"
	CodeUsernameRequired     = "USERNAME-REQUIRED"
	CodePasswordRequired     = "PASSWORD-REQUIRED"
	CodeUnknownCommand       = "UNKNOWN-COMMAND"
	CodeInvalidValue         = "INVALID-VALUE"
	CodeUnknown              = "UNKNOWN"
	CodeFailed               = "FAILED"
)

// hints tell the user what to fix for each code.
var hints = map[string]string{
	CodeAccessDenied:         "upsd refused: check the username and password in upsd.users, the user's actions/instcmds/upsmon rights, and that this host is allowed (upsd LISTEN, firewall, tcp-wrappers, or Synology's permitted DiskStation devices)",
	CodeUnknownUPS:           "no UPS of that name on this server: run `upsc -l host` to list the names (they are ups.conf section names) or use ups: \"*\"",
	CodeVarNotSupported:      "the UPS does not have this variable",
	CodeCmdNotSupported:      "the UPS does not offer this instant command (see `upscmd -l`)",
	CodeInvalidArgument:      "upsd did not accept the request's arguments (an older or non-standard server?)",
	CodeInstCmdFailed:        "upsd could not pass the command to the driver: is the driver running?",
	CodeSetFailed:            "upsd could not pass the value to the driver, or the variable's metadata is invalid",
	CodeReadOnly:             "the variable is not writable",
	CodeTooLong:              "the value is longer than the variable allows (see `upsrw`)",
	CodeFeatureNotSupported:  "upsd was built without TLS support; set starttls: off or try",
	CodeFeatureNotConfigured: "upsd has no CERTFILE configured for TLS (or tracking is off on this connection); set up CERTFILE in upsd.conf or use starttls: try/off",
	CodeAlreadySSLMode:       "the connection is already in TLS mode",
	CodeDriverNotConnected:   "upsd cannot reach the UPS driver: is the driver running (upsdrvctl start) and the UPS connected?",
	CodeDataStale:            "the driver has not sent fresh data within upsd's MAXAGE: the UPS or its cable may be disconnected, or the driver hangs",
	CodeAlreadyLoggedIn:      "this connection is already logged in to a UPS",
	CodeInvalidPassword:      "upsd rejected the password's format",
	CodeAlreadySetPassword:   "the password was already sent on this connection",
	CodeInvalidUsername:      "upsd rejected the username's format",
	CodeAlreadySetUsername:   "the username was already sent on this connection",
	CodeUsernameRequired:     "this needs a username and password from upsd.users: set username and password in the source's config",
	CodePasswordRequired:     "this needs a password: set password or password_file in the source's config",
	CodeUnknownCommand:       "upsd does not know this command (an older or non-standard server?)",
	CodeInvalidValue:         "the value is not one the variable accepts (see its ENUM or RANGE with `upsrw`)",
	CodeUnknown:              "the driver did not recognise or did not handle the command",
	CodeFailed:               "the driver reported that the command failed",
}

// ProtocolError is an ERR answer from upsd. Compare with errors.Is against
// the Err* values, which match on Code alone.
type ProtocolError struct {
	Code    string // e.g. "DATA-STALE"
	Extra   string // anything after the code on the ERR line
	Request string // the request, without secrets; empty on the Err* values
}

func (e *ProtocolError) Error() string {
	msg := "upsd answered ERR " + e.Code
	if e.Extra != "" {
		msg += " " + e.Extra
	}
	if e.Request != "" {
		msg += " to " + e.Request
	}
	if h, ok := hints[e.Code]; ok {
		msg += ": " + h
	}
	return msg
}

// Is matches another *ProtocolError with the same code.
func (e *ProtocolError) Is(target error) bool {
	t, ok := target.(*ProtocolError)
	return ok && t.Code == e.Code
}

// Values to test errors against with errors.Is.
var (
	ErrAccessDenied         = &ProtocolError{Code: CodeAccessDenied}
	ErrUnknownUPS           = &ProtocolError{Code: CodeUnknownUPS}
	ErrVarNotSupported      = &ProtocolError{Code: CodeVarNotSupported}
	ErrCmdNotSupported      = &ProtocolError{Code: CodeCmdNotSupported}
	ErrInvalidArgument      = &ProtocolError{Code: CodeInvalidArgument}
	ErrInstCmdFailed        = &ProtocolError{Code: CodeInstCmdFailed}
	ErrSetFailed            = &ProtocolError{Code: CodeSetFailed}
	ErrReadOnly             = &ProtocolError{Code: CodeReadOnly}
	ErrTooLong              = &ProtocolError{Code: CodeTooLong}
	ErrFeatureNotSupported  = &ProtocolError{Code: CodeFeatureNotSupported}
	ErrFeatureNotConfigured = &ProtocolError{Code: CodeFeatureNotConfigured}
	ErrAlreadySSLMode       = &ProtocolError{Code: CodeAlreadySSLMode}
	ErrDriverNotConnected   = &ProtocolError{Code: CodeDriverNotConnected}
	ErrDataStale            = &ProtocolError{Code: CodeDataStale}
	ErrAlreadyLoggedIn      = &ProtocolError{Code: CodeAlreadyLoggedIn}
	ErrInvalidPassword      = &ProtocolError{Code: CodeInvalidPassword}
	ErrAlreadySetPassword   = &ProtocolError{Code: CodeAlreadySetPassword}
	ErrInvalidUsername      = &ProtocolError{Code: CodeInvalidUsername}
	ErrAlreadySetUsername   = &ProtocolError{Code: CodeAlreadySetUsername}
	ErrUsernameRequired     = &ProtocolError{Code: CodeUsernameRequired}
	ErrPasswordRequired     = &ProtocolError{Code: CodePasswordRequired}
	ErrUnknownCommand       = &ProtocolError{Code: CodeUnknownCommand}
	ErrInvalidValue         = &ProtocolError{Code: CodeInvalidValue}
	ErrUnknown              = &ProtocolError{Code: CodeUnknown}
	ErrFailed               = &ProtocolError{Code: CodeFailed}
)

// Connection-level errors. After any of them the connection is closed and
// every later request returns an error wrapping ErrClosed.
var (
	// ErrClosed is returned by requests on a closed or broken connection.
	ErrClosed = errors.New("connection to upsd closed")
	// ErrLineTooLong is a response line longer than Options.MaxLineLength.
	ErrLineTooLong = errors.New("response line from upsd too long")
)

// ErrLimit is matched (errors.Is) by every *LimitError.
var ErrLimit = errors.New("reply from upsd exceeds a limit")

// LimitError is a reply larger than a bound of Options. The connection is
// closed, because the rest of the reply was not read.
type LimitError struct {
	Request string // e.g. "LIST VAR ups"
	What    string // what was counted: "lines in one LIST reply", "bytes in one reply"
	Limit   int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("answer to %s has more than %d %s: refused (a broken or hostile upsd?)", e.Request, e.Limit, e.What)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// UnexpectedError is a response that is not what the request calls for.
// The connection is closed, because the stream may be out of step.
type UnexpectedError struct {
	Request string
	Line    string
	Want    string
}

func (e *UnexpectedError) Error() string {
	return fmt.Sprintf("unexpected answer from upsd to %s: %q (want %s)", e.Request, e.Line, e.Want)
}

// IsCommLost reports whether err means the UPS cannot be read right now:
// the driver is stale or gone, or the server could not be reached or did
// not answer in time.
func IsCommLost(err error) bool {
	if err == nil {
		return false
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return pe.Code == CodeDataStale || pe.Code == CodeDriverNotConnected
	}
	return true
}
