// Package usb is the transport between the usbhid source and a UPS: a small
// interface over the HID class requests a Power Device needs, with a gousb
// (libusb) implementation when built with cgo, and a stub otherwise.
package usb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Report types as GET_REPORT numbers them.
const (
	ReportInput   = 1
	ReportOutput  = 2
	ReportFeature = 3
)

// Errors a Transport returns (wrapped).
var (
	// ErrDisconnected: the device is gone or unusable; reopen it.
	ErrDisconnected = errors.New("USB device disconnected")
	// ErrNotSupported: the device stalled the request (unknown report).
	ErrNotSupported = errors.New("request not supported by the device (stall)")
	// ErrTimeout: a control transfer timed out.
	ErrTimeout = errors.New("USB transfer timed out")
	// ErrNoUSB: this binary was built without USB support.
	ErrNoUSB = errors.New("this upsbridge binary was built without USB support (CGO_ENABLED=0 or -tags nousb); rebuild with cgo and libusb-1.0 to use usbhid sources")
	// ErrNotFound: no device matches the filter.
	ErrNotFound = errors.New("no matching USB HID UPS found")
)

// DeviceInfo describes one USB device.
type DeviceInfo struct {
	VendorID, ProductID uint16
	BcdDevice           uint16
	Manufacturer        string
	Product             string
	Serial              string
	Bus                 int
	Address             int
	// Port is the physical port path from the root hub, "1.4.2".
	Port string
}

func (d DeviceInfo) String() string {
	return fmt.Sprintf("%04x:%04x bus %d port %s (%s / %s / serial %s)", d.VendorID, d.ProductID, d.Bus, d.Port, d.Manufacturer, d.Product, d.Serial)
}

// PortPath formats a port path.
func PortPath(path []int) string {
	s := make([]string, len(path))
	for i, p := range path {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ".")
}

// Filter selects devices; zero fields match anything.
type Filter struct {
	VendorID, ProductID uint16
	Serial              string
	Bus                 int
	Port                string
}

// String describes the filter as lsusb and the configuration write USB ids:
// "vendor_id 051d product_id 0002 serial \"X\" bus 1 port 1.4", set fields
// only ("any device" when none is set).
func (f Filter) String() string {
	var parts []string
	if f.VendorID != 0 {
		parts = append(parts, fmt.Sprintf("vendor_id %04x", f.VendorID))
	}
	if f.ProductID != 0 {
		parts = append(parts, fmt.Sprintf("product_id %04x", f.ProductID))
	}
	if f.Serial != "" {
		parts = append(parts, fmt.Sprintf("serial %q", f.Serial))
	}
	if f.Bus != 0 {
		parts = append(parts, fmt.Sprintf("bus %d", f.Bus))
	}
	if f.Port != "" {
		parts = append(parts, "port "+f.Port)
	}
	if len(parts) == 0 {
		return "any device"
	}
	return strings.Join(parts, " ")
}

// MatchIDs reports whether the ids and location match (strings are checked
// after opening, since reading them needs the device open).
func (f Filter) MatchIDs(d DeviceInfo) bool {
	return (f.VendorID == 0 || f.VendorID == d.VendorID) &&
		(f.ProductID == 0 || f.ProductID == d.ProductID) &&
		(f.Bus == 0 || f.Bus == d.Bus) &&
		(f.Port == "" || f.Port == d.Port)
}

// Match reports whether the device matches every set field.
func (f Filter) Match(d DeviceInfo) bool {
	return f.MatchIDs(d) && (f.Serial == "" || strings.TrimSpace(f.Serial) == strings.TrimSpace(d.Serial))
}

// Transport is an open HID interface of a UPS. Control transfers are
// serialized by the implementation; ReadInterrupt may run concurrently with
// them (from one goroutine).
type Transport interface {
	Info() DeviceInfo
	// ReportDescriptor returns the HID report descriptor of interface 0.
	ReportDescriptor(ctx context.Context) ([]byte, error)
	// GetReport reads a report (typ ReportInput/ReportFeature); the result
	// starts with the report id when ids are used. Short answers are
	// returned as they came.
	GetReport(ctx context.Context, typ, id uint8, length int) ([]byte, error)
	// SetReport writes a report; data[0] is the report id when ids are used.
	SetReport(ctx context.Context, typ, id uint8, data []byte) error
	// String reads a string descriptor.
	String(ctx context.Context, index int) (string, error)
	// ReadInterrupt waits for one Input report on the interrupt IN endpoint
	// until ctx ends. It returns ErrNoInterrupt when the device has none.
	ReadInterrupt(ctx context.Context) ([]byte, error)
	Close() error
}

// ErrNoInterrupt: the interface has no interrupt IN endpoint.
var ErrNoInterrupt = errors.New("no interrupt IN endpoint")

// Opener finds and opens devices. Implementations must start each Open
// from a fresh view of the bus (a new libusb context), so a replugged UPS is
// found without a udev daemon.
type Opener interface {
	// List returns the HID UPSes (and, with all, every USB device) found.
	List(ctx context.Context, all bool) ([]DeviceInfo, error)
	// Open opens the first HID UPS matching f.
	Open(ctx context.Context, f Filter) (Transport, error)
}

// ControlTimeout bounds every control transfer (libusb's default is to wait
// forever).
const ControlTimeout = 5 * time.Second
