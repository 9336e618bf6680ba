//go:build cgo && !nousb

package usb

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/google/gousb"
)

// Available reports whether this binary can talk to USB devices.
const Available = true

type gousbOpener struct{}

// NewOpener returns the libusb opener. Every List and Open uses a fresh
// libusb context: without a udev daemon a long-lived context never learns
// about a replugged device.
func NewOpener() Opener { return gousbOpener{} }

func hidInterface0(desc *gousb.DeviceDesc) bool {
	for _, cfg := range desc.Configs {
		for _, intf := range cfg.Interfaces {
			if intf.Number != 0 || len(intf.AltSettings) == 0 {
				continue
			}
			return intf.AltSettings[0].Class == gousb.ClassHID
		}
	}
	return false
}

func infoOf(desc *gousb.DeviceDesc) DeviceInfo {
	return DeviceInfo{
		VendorID: uint16(desc.Vendor), ProductID: uint16(desc.Product),
		BcdDevice: uint16(desc.Device),
		Bus:       desc.Bus, Address: desc.Address, Port: PortPath(desc.Path),
	}
}

func readStrings(dev *gousb.Device, info *DeviceInfo) {
	info.Manufacturer, _ = dev.Manufacturer()
	info.Product, _ = dev.Product()
	info.Serial, _ = dev.SerialNumber()
}

func (gousbOpener) List(ctx context.Context, all bool) ([]DeviceInfo, error) {
	uctx := gousb.NewContext()
	defer uctx.Close()
	var out []DeviceInfo
	devs, err := uctx.OpenDevices(func(desc *gousb.DeviceDesc) bool {
		if !all && !hidInterface0(desc) {
			return false
		}
		out = append(out, infoOf(desc))
		return true
	})
	for _, d := range devs {
		for i := range out {
			if out[i].Bus == d.Desc.Bus && out[i].Address == d.Desc.Address {
				d.ControlTimeout = ControlTimeout
				readStrings(d, &out[i])
			}
		}
		d.Close()
	}
	if err != nil && len(devs) == 0 && len(out) == 0 {
		return nil, fmt.Errorf("list USB devices: %w", err)
	}
	return out, nil
}

func (gousbOpener) Open(ctx context.Context, f Filter) (Transport, error) {
	uctx := gousb.NewContext()
	devs, openErr := uctx.OpenDevices(func(desc *gousb.DeviceDesc) bool {
		return hidInterface0(desc) && f.MatchIDs(infoOf(desc))
	})
	var dev *gousb.Device
	var info DeviceInfo
	for _, d := range devs {
		if dev != nil {
			d.Close()
			continue
		}
		d.ControlTimeout = ControlTimeout
		i := infoOf(d.Desc)
		readStrings(d, &i)
		if !f.Match(i) {
			d.Close()
			continue
		}
		dev, info = d, i
	}
	if dev == nil {
		uctx.Close()
		if openErr != nil {
			return nil, fmt.Errorf("open USB device (%s): %w (%w)", f, ErrNotFound, openErr)
		}
		return nil, fmt.Errorf("open USB device (%s): %w", f, ErrNotFound)
	}
	if err := dev.SetAutoDetach(true); err != nil {
		dev.Close()
		uctx.Close()
		return nil, fmt.Errorf("detach kernel driver from %s: %w", info, err)
	}
	intf, done, err := dev.DefaultInterface()
	if err != nil {
		dev.Close()
		uctx.Close()
		return nil, fmt.Errorf("claim interface 0 of %s: %w", info, mapErr(err))
	}
	t := &gousbTransport{ctx: uctx, dev: dev, intf: intf, done: done, info: info}
	for _, ep := range intf.Setting.Endpoints {
		if ep.Direction == gousb.EndpointDirectionIn && ep.TransferType == gousb.TransferTypeInterrupt {
			if in, err := intf.InEndpoint(ep.Number); err == nil {
				t.in = in
			}
			break
		}
	}
	return t, nil
}

type gousbTransport struct {
	ctx  *gousb.Context
	dev  *gousb.Device
	intf *gousb.Interface
	done func()
	in   *gousb.InEndpoint
	info DeviceInfo

	mu     sync.Mutex // serializes control transfers: cheap firmware is not reentrant
	closed bool
}

func (t *gousbTransport) Info() DeviceInfo { return t.info }

// mapErr sorts libusb errors into the transport's error kinds.
func mapErr(err error) error {
	var ue gousb.Error
	if errors.As(err, &ue) {
		switch ue {
		case gousb.ErrorNoDevice, gousb.ErrorAccess, gousb.ErrorNotFound, gousb.ErrorBusy:
			return fmt.Errorf("%w: %w", ErrDisconnected, err)
		case gousb.ErrorPipe:
			return fmt.Errorf("%w: %w", ErrNotSupported, err)
		case gousb.ErrorTimeout:
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	}
	var ts gousb.TransferStatus
	if errors.As(err, &ts) {
		switch ts {
		case gousb.TransferNoDevice, gousb.TransferError, gousb.TransferStall:
			return fmt.Errorf("%w: %w", ErrDisconnected, err)
		case gousb.TransferTimedOut:
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	}
	return err
}

func (t *gousbTransport) control(ctx context.Context, rType, req uint8, val, idx uint16, buf []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, ErrDisconnected
	}
	n, err := t.dev.Control(rType, req, val, idx, buf)
	if err != nil {
		return n, mapErr(err)
	}
	return n, nil
}

// hidDescriptorLength finds wDescriptorLength of interface 0's HID
// descriptor in the raw configuration descriptor (gousb does not expose the
// interface's extra bytes; NUT prefers this copy too).
func (t *gousbTransport) hidDescriptorLength(ctx context.Context) int {
	head := make([]byte, 9)
	if n, err := t.control(ctx, 0x80, 0x06, 0x0200, 0, head); err != nil || n < 4 {
		return 0
	}
	total := int(binary.LittleEndian.Uint16(head[2:4]))
	if total < 9 || total > 65535 {
		return 0
	}
	cfg := make([]byte, total)
	n, err := t.control(ctx, 0x80, 0x06, 0x0200, 0, cfg)
	if err != nil {
		return 0
	}
	cfg = cfg[:n]
	inIntf0 := false
	for i := 0; i+1 < len(cfg) && cfg[i] >= 2; i += int(cfg[i]) {
		l, typ := int(cfg[i]), cfg[i+1]
		switch {
		case typ == 0x04 && i+2 < len(cfg):
			inIntf0 = cfg[i+2] == 0
		case typ == 0x21 && inIntf0 && l >= 9 && i+9 <= len(cfg):
			return int(binary.LittleEndian.Uint16(cfg[i+7 : i+9]))
		}
	}
	return 0
}

func (t *gousbTransport) ReportDescriptor(ctx context.Context) ([]byte, error) {
	size := t.hidDescriptorLength(ctx)
	if size <= 0 {
		size = 4096
	}
	buf := make([]byte, size)
	n, err := t.control(ctx, 0x81, 0x06, 0x2200, 0, buf)
	if err != nil {
		return nil, fmt.Errorf("read report descriptor of %04x:%04x: %w", t.info.VendorID, t.info.ProductID, err)
	}
	return buf[:n], nil
}

func (t *gousbTransport) GetReport(ctx context.Context, typ, id uint8, length int) ([]byte, error) {
	if length <= 0 {
		length = 64
	}
	if length > 65535 { // wLength is 16 bits: never allocate more
		return nil, fmt.Errorf("GET_REPORT type %d id 0x%02x: length %d is more than USB's 65535", typ, id, length)
	}
	buf := make([]byte, length)
	n, err := t.control(ctx, 0xA1, 0x01, uint16(typ)<<8|uint16(id), 0, buf)
	if err != nil {
		return nil, fmt.Errorf("GET_REPORT type %d id 0x%02x: %w", typ, id, err)
	}
	return buf[:n], nil
}

func (t *gousbTransport) SetReport(ctx context.Context, typ, id uint8, data []byte) error {
	if _, err := t.control(ctx, 0x21, 0x09, uint16(typ)<<8|uint16(id), 0, data); err != nil {
		return fmt.Errorf("SET_REPORT type %d id 0x%02x: %w", typ, id, err)
	}
	return nil
}

func (t *gousbTransport) String(ctx context.Context, index int) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.dev.GetStringDescriptor(index)
	if err != nil {
		return "", fmt.Errorf("read string descriptor %d: %w", index, mapErr(err))
	}
	return s, nil
}

func (t *gousbTransport) ReadInterrupt(ctx context.Context) ([]byte, error) {
	if t.in == nil {
		return nil, ErrNoInterrupt
	}
	size := t.in.Desc.MaxPacketSize
	if size <= 0 {
		size = 64
	}
	buf := make([]byte, size)
	n, err := t.in.ReadContext(ctx, buf)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("interrupt read: %w", mapErr(err))
	}
	return buf[:n], nil
}

func (t *gousbTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.done()
	err := t.dev.Close()
	t.ctx.Close()
	return err
}
