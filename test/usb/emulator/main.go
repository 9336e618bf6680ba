//go:build linux

// Command ups-emulator is a USB HID UPS for the end-to-end test: a pure-Go
// FunctionFS gadget function that serves a report descriptor and a Feature
// report table, accepts SET_REPORT, and sends an "AC lost" interrupt report
// on SIGUSR1. It runs inside the qemu guest; every line it prints starts
// with "EMU" and carries a wall-clock Unix-nanosecond timestamp.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FunctionFS event types.
const (
	evBind    = 0
	evUnbind  = 1
	evEnable  = 2
	evDisable = 3
	evSetup   = 4
)

var (
	mu       sync.Mutex
	features = map[byte][]byte{}
)

func logf(format string, args ...any) {
	fmt.Printf("EMU %d "+format+"\n", append([]any{time.Now().UnixNano()}, args...)...)
}

func readHex(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for n, line := range strings.Split(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		var b []byte
		for _, tok := range strings.Fields(line) {
			v, err := strconv.ParseUint(tok, 16, 8)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %q is not a hex byte", path, n+1, tok)
			}
			b = append(b, byte(v))
		}
		if len(b) > 0 {
			out = append(out, b)
		}
	}
	return out, nil
}

// descriptors builds the FunctionFS v2 descriptor blob: one HID interface
// with its HID class descriptor and an interrupt IN endpoint, for full and
// high speed (dummy_hcd runs high speed).
func descriptors(reportLen int) []byte {
	intf := []byte{9, 4, 0, 0, 1, 3, 0, 0, 0}
	hid := []byte{9, 0x21, 0x11, 0x01, 0, 1, 0x22, byte(reportLen), byte(reportLen >> 8)}
	epFS := []byte{7, 5, 0x81, 3, 64, 0, 10}
	epHS := []byte{7, 5, 0x81, 3, 64, 0, 4}
	var body []byte
	le := func(v uint32) { body = binary.LittleEndian.AppendUint32(body, v) }
	le(3) // fs count
	le(3) // hs count
	for _, d := range [][]byte{intf, hid, epFS, intf, hid, epHS} {
		body = append(body, d...)
	}
	out := binary.LittleEndian.AppendUint32(nil, 3) // FUNCTIONFS_DESCRIPTORS_MAGIC_V2
	out = binary.LittleEndian.AppendUint32(out, uint32(12+len(body)))
	out = binary.LittleEndian.AppendUint32(out, 3) // HAS_FS_DESC | HAS_HS_DESC
	return append(out, body...)
}

func main() {
	dir := flag.String("ffs", "/dev/ffs-ups", "FunctionFS mount point")
	descPath := flag.String("desc", "", "report descriptor (hex)")
	featPath := flag.String("features", "", "Feature report table (hex, id first, one a line)")
	flag.Parse()
	descLines, err := readHex(*descPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var desc []byte
	for _, l := range descLines {
		desc = append(desc, l...)
	}
	feats, err := readHex(*featPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, f := range feats {
		features[f[0]] = f
	}

	ep0, err := syscall.Open(filepath.Join(*dir, "ep0"), syscall.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open ep0:", err)
		os.Exit(1)
	}
	if _, err := syscall.Write(ep0, descriptors(len(desc))); err != nil {
		fmt.Fprintln(os.Stderr, "write descriptors:", err)
		os.Exit(1)
	}
	strs := binary.LittleEndian.AppendUint32(nil, 2) // FUNCTIONFS_STRINGS_MAGIC
	strs = binary.LittleEndian.AppendUint32(strs, 16)
	strs = binary.LittleEndian.AppendUint32(strs, 0)
	strs = binary.LittleEndian.AppendUint32(strs, 0)
	if _, err := syscall.Write(ep0, strs); err != nil {
		fmt.Fprintln(os.Stderr, "write strings:", err)
		os.Exit(1)
	}
	ep1, err := syscall.Open(filepath.Join(*dir, "ep1"), syscall.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open ep1:", err)
		os.Exit(1)
	}
	logf("ready descriptor=%d features=%d", len(desc), len(features))

	// SIGUSR1: mains fails. The device updates its Feature reports and
	// pushes the status report on the interrupt pipe.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		for range sig {
			mu.Lock()
			features[0x16] = []byte{0x16, 0x0a, 0x00}
			features[0x13] = []byte{0x13, 0x00}
			features[0x7a] = []byte{0x7a, 0x0a}
			mu.Unlock()
			report := []byte{0x16, 0x0a, 0x00}
			logf("INTR-WRITE % x", report)
			if _, err := syscall.Write(ep1, report); err != nil {
				logf("INTR-ERROR %v", err)
				continue
			}
			logf("INTR-DONE")
		}
	}()

	buf := make([]byte, 12*8)
	for {
		n, err := syscall.Read(ep0, buf)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			logf("ep0 read: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for off := 0; off+12 <= n; off += 12 {
			ev := buf[off : off+12]
			switch ev[8] {
			case evBind:
				logf("BIND")
			case evUnbind:
				logf("UNBIND")
			case evEnable:
				logf("ENABLE")
			case evDisable:
				logf("DISABLE")
			case evSetup:
				setup(ep0, ev[:8], desc)
			}
		}
	}
}

func stall(ep0 int, in bool) {
	if in {
		_, _ = syscall.Read(ep0, make([]byte, 0))
	} else {
		_, _ = syscall.Write(ep0, nil)
	}
}

func reply(ep0 int, data []byte, wLength int) {
	if len(data) > wLength {
		data = data[:wLength]
	}
	if _, err := syscall.Write(ep0, data); err != nil {
		logf("ep0 write: %v", err)
	}
}

func setup(ep0 int, s []byte, desc []byte) {
	rt, req := s[0], s[1]
	val := binary.LittleEndian.Uint16(s[2:4])
	wLength := int(binary.LittleEndian.Uint16(s[6:8]))
	in := rt&0x80 != 0
	switch {
	case rt == 0x81 && req == 0x06 && val>>8 == 0x22:
		reply(ep0, desc, wLength)
	case rt == 0x81 && req == 0x06 && val>>8 == 0x21:
		reply(ep0, []byte{9, 0x21, 0x11, 0x01, 0, 1, 0x22, byte(len(desc)), byte(len(desc) >> 8)}, wLength)
	case rt == 0xA1 && req == 0x01:
		mu.Lock()
		r, ok := features[byte(val)]
		mu.Unlock()
		if !ok {
			stall(ep0, true)
			return
		}
		reply(ep0, r, wLength)
	case rt == 0x21 && req == 0x09:
		b := make([]byte, wLength)
		n, err := syscall.Read(ep0, b)
		if err != nil {
			logf("SET_REPORT read: %v", err)
			return
		}
		b = b[:n]
		if len(b) > 0 {
			mu.Lock()
			features[b[0]] = b
			mu.Unlock()
		}
		logf("SET_REPORT % x", b)
	case rt == 0x21 && req == 0x0A: // SET_IDLE
		_, _ = syscall.Read(ep0, make([]byte, 0))
	default:
		logf("SETUP unhandled % x", s)
		stall(ep0, in)
	}
}
