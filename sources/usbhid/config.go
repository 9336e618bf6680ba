// Package usbhid is the USB HID source: it reads a UPS directly over USB
// (HID Power Device Class), polls its Feature reports, and publishes a
// reading the moment the UPS pushes a status change on its interrupt pipe.
package usbhid

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/hid/usb"
)

// HexID is a USB vendor or product id written in hex ("051d" or "0x051d").
// Quote it in YAML when it starts with 0x, or YAML reads it as a number.
type HexID uint16

// UnmarshalText parses hex.
func (h *HexID) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" {
		*h = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		return fmt.Errorf("must be a hex USB id such as \"051d\", got %q", string(b))
	}
	*h = HexID(v)
	return nil
}

// DecodeRaw implements config.RawDecoder: YAML reads `0x051d` as the number
// 1309 and `0764` as 764, so a number cannot be trusted to be the id the
// user wrote; only strings are accepted.
func (h *HexID) DecodeRaw(raw any) error {
	s, ok := raw.(string)
	if !ok {
		return fmt.Errorf("must be a quoted hex USB id such as \"051d\" (YAML reads an unquoted %v as a number)", raw)
	}
	return h.UnmarshalText([]byte(s))
}

// MarshalText formats the id as 4 hex digits.
func (h HexID) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// String formats the id as 4 hex digits.
func (h HexID) String() string { return fmt.Sprintf("%04x", uint16(h)) }

// Config configures a usbhid source (type: usbhid). Every device filter is
// optional; the first HID UPS that matches all set filters is used. The UPS
// is published under the source's id.
type Config struct {
	config.SourceCommon `koanf:",squash"`
	VendorID            HexID  `koanf:"vendor_id"`
	ProductID           HexID  `koanf:"product_id"`
	Serial              string `koanf:"serial"`
	Bus                 int    `koanf:"bus"`
	// Port is the physical port path from the root hub ("1.4").
	Port string `koanf:"port"`
	// PollInterval is how often Feature reports are read; status changes
	// arrive at once on the interrupt pipe regardless.
	PollInterval time.Duration `koanf:"poll_interval"`
}

// DefaultPollInterval is poll_interval's default.
const DefaultPollInterval = 10 * time.Second

func init() {
	config.RegisterSource("usbhid", func() config.SourceSpec {
		return &Config{PollInterval: DefaultPollInterval}
	})
}

// Validate checks the values. A binary built without USB support rejects
// the source here, so check-config says so before run would.
func (c *Config) Validate() []config.FieldError {
	var errs []config.FieldError
	if !usb.Available {
		errs = append(errs, config.Errorf("type", "%v", usb.ErrNoUSB))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, config.Errorf("poll_interval", "must be > 0, got %q", c.PollInterval.String()))
	}
	if c.Bus < 0 || c.Bus > 255 {
		errs = append(errs, config.Errorf("bus", "must be 0..255, got %d", c.Bus))
	}
	for _, p := range strings.Split(c.Port, ".") {
		if c.Port == "" {
			break
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 255 {
			errs = append(errs, config.Errorf("port", "must be a port path such as \"1.4\", got %q", c.Port))
			break
		}
	}
	return errs
}

// Filter returns the device filter the config describes.
func (c *Config) Filter() usb.Filter {
	return usb.Filter{VendorID: uint16(c.VendorID), ProductID: uint16(c.ProductID), Serial: c.Serial, Bus: c.Bus, Port: c.Port}
}

// NewSource builds the source. A binary built without USB support fails
// here with a clear message.
func (c *Config) NewSource(env bridge.Env) (bridge.Source, error) {
	if !usb.Available {
		return nil, fmt.Errorf("source %q (type usbhid): %w", c.ID, usb.ErrNoUSB)
	}
	return New(*c, usb.NewOpener(), env.Logger), nil
}
