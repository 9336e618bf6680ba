//go:build !cgo || nousb

package usb

import "context"

// Available reports whether this binary can talk to USB devices.
const Available = false

type stubOpener struct{}

// NewOpener returns an opener that always fails with ErrNoUSB: this binary
// was built without cgo or with -tags nousb.
func NewOpener() Opener { return stubOpener{} }

func (stubOpener) List(context.Context, bool) ([]DeviceInfo, error) { return nil, ErrNoUSB }

func (stubOpener) Open(context.Context, Filter) (Transport, error) { return nil, ErrNoUSB }
