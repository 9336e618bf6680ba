package usbhid

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/upsbridge/upsbridge/internal/datadir"
	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
	"github.com/upsbridge/upsbridge/internal/hid/usb"
)

// corpusDir holds the USB HID descriptors and captures of the repository.
var corpusDir = datadir.HID()

// fakeDevice is an in-process UPS: a descriptor, a Feature report table,
// scripted interrupt reports, and a plug that can be pulled.
type fakeDevice struct {
	info usb.DeviceInfo
	desc []byte

	mu       sync.Mutex
	features map[uint8][]byte
	sets     [][]byte
	present  bool
	unplug   chan struct{} // closed when pulled
	opens    int
	intr     chan []byte
}

func newFakeBK650(t interface{ Fatal(...any) }) *fakeDevice {
	read := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		for _, line := range strings.Split(string(raw), "\n") {
			b, err := hidparse.ParseHex(line)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
		}
		return out
	}
	d := &fakeDevice{
		info: usb.DeviceInfo{VendorID: 0x051d, ProductID: 0x0002, Manufacturer: "American Power Conversion",
			Product: "Back-UPS BK650M2-CH FW:294803G -292804G", Serial: "EMULATED0001", Bus: 1, Port: "1"},
		desc:     read("apc-back-ups-bk650m2-ch.hex"),
		features: map[uint8][]byte{},
		present:  true,
		unplug:   make(chan struct{}),
		intr:     make(chan []byte),
	}
	raw, err := os.ReadFile(filepath.Join(corpusDir, "apc-back-ups-bk650m2-ch.features.hex"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		b, err := hidparse.ParseHex(line)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 {
			d.features[b[0]] = b
		}
	}
	d.features[0x04] = []byte{0x04, 0} // no string index: keeps String out of the way
	return d
}

func (d *fakeDevice) pull() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.present {
		d.present = false
		close(d.unplug)
	}
}

func (d *fakeDevice) plug() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.present {
		d.present = true
		d.unplug = make(chan struct{})
	}
}

func (d *fakeDevice) setFeature(b []byte) {
	d.mu.Lock()
	d.features[b[0]] = b
	d.mu.Unlock()
}

func (d *fakeDevice) setReports() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.sets...)
}

type fakeOpener struct{ d *fakeDevice }

func (o fakeOpener) List(context.Context, bool) ([]usb.DeviceInfo, error) {
	return []usb.DeviceInfo{o.d.info}, nil
}

func (o fakeOpener) Open(_ context.Context, f usb.Filter) (usb.Transport, error) {
	o.d.mu.Lock()
	defer o.d.mu.Unlock()
	if !o.d.present || !f.Match(o.d.info) {
		return nil, usb.ErrNotFound
	}
	o.d.opens++
	return &fakeTransport{d: o.d, unplug: o.d.unplug}, nil
}

type fakeTransport struct {
	d      *fakeDevice
	unplug chan struct{}
}

func (t *fakeTransport) gone() bool {
	select {
	case <-t.unplug:
		return true
	default:
		return false
	}
}

func (t *fakeTransport) Info() usb.DeviceInfo { return t.d.info }

func (t *fakeTransport) ReportDescriptor(context.Context) ([]byte, error) {
	if t.gone() {
		return nil, usb.ErrDisconnected
	}
	return t.d.desc, nil
}

func (t *fakeTransport) GetReport(_ context.Context, typ, id uint8, n int) ([]byte, error) {
	if t.gone() {
		return nil, fmt.Errorf("get report: %w", usb.ErrDisconnected)
	}
	t.d.mu.Lock()
	defer t.d.mu.Unlock()
	b, ok := t.d.features[id]
	if !ok {
		return nil, usb.ErrNotSupported
	}
	return append([]byte(nil), b...), nil
}

func (t *fakeTransport) SetReport(_ context.Context, typ, id uint8, data []byte) error {
	if t.gone() {
		return usb.ErrDisconnected
	}
	t.d.mu.Lock()
	defer t.d.mu.Unlock()
	t.d.sets = append(t.d.sets, append([]byte(nil), data...))
	t.d.features[id] = append([]byte(nil), data...)
	return nil
}

func (t *fakeTransport) String(context.Context, int) (string, error) { return "", usb.ErrNotSupported }

func (t *fakeTransport) ReadInterrupt(ctx context.Context) ([]byte, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.unplug:
		return nil, fmt.Errorf("interrupt: %w", usb.ErrDisconnected)
	case b := <-t.d.intr:
		return b, nil
	}
}

func (t *fakeTransport) Close() error { return nil }
