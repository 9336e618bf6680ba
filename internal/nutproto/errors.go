package nutproto

// The ERR codes upsd 2.8 sends (server/neterr.h). Only these may be sent:
// WinNUT throws on codes it does not know.
const (
	ErrAccessDenied         = "ACCESS-DENIED"
	ErrUnknownUPS           = "UNKNOWN-UPS"
	ErrVarNotSupported      = "VAR-NOT-SUPPORTED"
	ErrCmdNotSupported      = "CMD-NOT-SUPPORTED"
	ErrInvalidArgument      = "INVALID-ARGUMENT"
	ErrInstCmdFailed        = "INSTCMD-FAILED"
	ErrSetFailed            = "SET-FAILED"
	ErrReadOnly             = "READONLY"
	ErrTooLong              = "TOO-LONG"
	ErrFeatureNotSupported  = "FEATURE-NOT-SUPPORTED"
	ErrFeatureNotConfigured = "FEATURE-NOT-CONFIGURED"
	ErrAlreadySSLMode       = "ALREADY-SSL-MODE"
	ErrDriverNotConnected   = "DRIVER-NOT-CONNECTED"
	ErrDataStale            = "DATA-STALE"
	ErrAlreadyLoggedIn      = "ALREADY-LOGGED-IN"
	ErrAlreadySetPassword   = "ALREADY-SET-PASSWORD"
	ErrAlreadySetUsername   = "ALREADY-SET-USERNAME"
	ErrUsernameRequired     = "USERNAME-REQUIRED"
	ErrPasswordRequired     = "PASSWORD-REQUIRED"
	ErrUnknownCommand       = "UNKNOWN-COMMAND"
	ErrInvalidValue         = "INVALID-VALUE"
)

// Results of GET TRACKING <id> other than PENDING and SUCCESS: sent as
// "ERR UNKNOWN", "ERR INVALID-ARGUMENT", "ERR FAILED".
const (
	TrackUnknown = "UNKNOWN"
	TrackFailed  = "FAILED"
)

// AppendErr appends "ERR <code>\n".
func AppendErr(b []byte, code string) []byte {
	b = append(b, "ERR "...)
	b = append(b, code...)
	return append(b, '\n')
}
