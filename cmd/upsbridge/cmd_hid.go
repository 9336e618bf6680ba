package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/hid/hidmap"
	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
	"github.com/upsbridge/upsbridge/internal/hid/usb"
	"github.com/upsbridge/upsbridge/sources/usbhid"
)

func init() {
	register(command{
		Name:    "hid",
		Usage:   "hid list|dump|decode|watch [flags]",
		Summary: "inspect USB HID UPSes: list, dump reports, decode a dump, watch events",
		Run:     runHID,
	})
}

const hidUsage = `Usage:
  upsbridge hid list [--all]
  upsbridge hid dump [filters] > FILE
  upsbridge hid decode --descriptor FILE --reports FILE [--vendor-id HEX] [--product-id HEX]
  upsbridge hid watch [filters] [--poll-interval 10s] [--instcmd NAME] [--duration D]

Filters: --vendor-id HEX --product-id HEX --serial S --bus N --port PATH
`

func runHID(ctx context.Context, args []string, io stdio) int {
	if len(args) == 0 {
		fmt.Fprint(io.Stderr, hidUsage)
		return exitConfig
	}
	switch args[0] {
	case "list":
		return hidList(ctx, args[1:], io)
	case "dump":
		return hidDump(ctx, args[1:], io)
	case "decode":
		return hidDecode(args[1:], io)
	case "watch":
		return hidWatch(ctx, args[1:], io)
	case "-h", "--help", "help":
		fmt.Fprint(io.Stdout, hidUsage)
		return exitOK
	}
	fmt.Fprintf(io.Stderr, "upsbridge hid: unknown sub-command %q\n%s", args[0], hidUsage)
	return exitConfig
}

type hidFilterFlags struct {
	vendor, product usbhid.HexID
	serial, port    string
	bus             int
}

func (f *hidFilterFlags) register(fs *flag.FlagSet) {
	fs.TextVar(&f.vendor, "vendor-id", usbhid.HexID(0), "USB vendor id (hex)")
	fs.TextVar(&f.product, "product-id", usbhid.HexID(0), "USB product id (hex)")
	fs.StringVar(&f.serial, "serial", "", "serial number")
	fs.IntVar(&f.bus, "bus", 0, "USB bus number")
	fs.StringVar(&f.port, "port", "", "USB port path (1.4)")
}

func (f *hidFilterFlags) filter() usb.Filter {
	return usb.Filter{VendorID: uint16(f.vendor), ProductID: uint16(f.product), Serial: f.serial, Bus: f.bus, Port: f.port}
}

func newFlagSet(name string, io stdio) *flag.FlagSet {
	fs := flag.NewFlagSet("upsbridge hid "+name, flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	return fs
}

func usbError(io stdio, op string, err error) int {
	fmt.Fprintf(io.Stderr, "upsbridge hid %s: %v\n", op, err)
	if errors.Is(err, usb.ErrNoUSB) {
		return exitConfig
	}
	return exitFail
}

func hidList(ctx context.Context, args []string, io stdio) int {
	fs := newFlagSet("list", io)
	all := fs.Bool("all", false, "list every USB device, not only HID ones")
	if fs.Parse(args) != nil || fs.NArg() != 0 {
		return exitConfig
	}
	devs, err := usb.NewOpener().List(ctx, *all)
	if err != nil {
		return usbError(io, "list", err)
	}
	fmt.Fprintf(io.Stdout, "%-9s %-4s %-8s %-10s %-26s %-40s %s\n", "ID", "BUS", "PORT", "UPS", "MANUFACTURER", "PRODUCT", "SERIAL")
	for _, d := range devs {
		kind := "-"
		if v, ok := hidmap.KnownVendor(d.VendorID, d.ProductID); ok {
			kind = v
		}
		fmt.Fprintf(io.Stdout, "%04x:%04x %-4d %-8s %-10s %-26q %-40q %q\n", d.VendorID, d.ProductID, d.Bus, d.Port, kind, d.Manufacturer, d.Product, d.Serial)
	}
	if len(devs) == 0 {
		fmt.Fprintln(io.Stderr, "no USB HID devices found (is the UPS plugged in, and may this user open /dev/bus/usb?)")
	}
	return exitOK
}

func hidDump(ctx context.Context, args []string, io stdio) int {
	fs := newFlagSet("dump", io)
	var ff hidFilterFlags
	ff.register(fs)
	if fs.Parse(args) != nil || fs.NArg() != 0 {
		return exitConfig
	}
	t, err := usb.NewOpener().Open(ctx, ff.filter())
	if err != nil {
		return usbError(io, "dump", err)
	}
	defer t.Close()
	info := t.Info()
	w := io.Stdout
	fmt.Fprintf(w, "# upsbridge hid dump, %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "# device: %04x:%04x bcd %04x bus %d port %s\n", info.VendorID, info.ProductID, info.BcdDevice, info.Bus, info.Port)
	fmt.Fprintf(w, "# manufacturer: %s\n# product: %s\n# serial: %s\n", info.Manufacturer, info.Product, info.Serial)
	raw, err := t.ReportDescriptor(ctx)
	if err != nil {
		return usbError(io, "dump", err)
	}
	fmt.Fprintf(w, "# report descriptor, %d bytes\n", len(raw))
	for _, line := range strings.Split(strings.TrimSpace(hidparse.FormatHex(raw)), "\n") {
		fmt.Fprintf(w, "descriptor %s\n", line)
	}
	d, err := hidparse.Parse(raw)
	if err != nil {
		fmt.Fprintf(w, "# descriptor does not parse: %v\n", err)
		return exitFail
	}
	m := hidmap.New(d, hidmap.DeviceInfo{VendorID: info.VendorID, ProductID: info.ProductID, Manufacturer: info.Manufacturer, Product: info.Product, Serial: info.Serial}, hidmap.Options{})
	for _, typ := range []hidparse.ReportType{hidparse.Feature, hidparse.Input} {
		for _, id := range d.Reports(typ) {
			k := hidparse.ReportKey{Type: typ, ID: id}
			data, err := t.GetReport(ctx, uint8(typ), id, d.ReportLen(k))
			if err != nil {
				fmt.Fprintf(w, "# %s 0x%02x: %v\n", strings.ToLower(typ.String()), id, err)
				if errors.Is(err, usb.ErrDisconnected) {
					return exitFail
				}
				continue
			}
			m.Apply(typ, data)
			fmt.Fprintf(w, "%s %s\n", strings.ToLower(typ.String()), strings.TrimSpace(hidparse.FormatHex(data)))
		}
	}
	for _, i := range m.StringIndexes() {
		s, err := t.String(ctx, i)
		if err == nil {
			m.SetString(i, s)
			fmt.Fprintf(w, "# string %d: %s\n", i, s)
		}
	}
	vars := m.Vars()
	fmt.Fprintf(w, "# decoded with the %s table:\n", m.Vendor())
	for _, k := range sortedKeys(vars) {
		fmt.Fprintf(w, "#   %s: %s\n", k, vars[k])
	}
	return exitOK
}

func sortedKeys(v bridge.Vars) []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readDescriptorFile reads hex bytes; a `hid dump` file is accepted too (its
// "descriptor" lines).
func readDescriptorFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := string(raw)
	var dumped []string
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "descriptor "); ok {
			dumped = append(dumped, rest)
		}
	}
	if len(dumped) > 0 {
		text = strings.Join(dumped, "\n")
	}
	b, err := hidparse.ParseHex(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// readReportsFile reads the reports format; from a dump, "descriptor" lines
// are skipped and "# string N: text" comments supply string descriptors.
func readReportsFile(path string) ([]hidmap.Report, map[int]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	strs := map[int]string{}
	var keep []string
	for _, line := range strings.Split(string(raw), "\n") {
		tl := strings.TrimSpace(line)
		if strings.HasPrefix(tl, "descriptor ") {
			keep = append(keep, "")
			continue
		}
		if rest, ok := strings.CutPrefix(tl, "# string "); ok {
			if n, s, ok := strings.Cut(rest, ": "); ok {
				if i, err := strconv.Atoi(n); err == nil {
					strs[i] = s
				}
			}
		}
		keep = append(keep, line)
	}
	reps, err := hidmap.ParseReports(strings.Join(keep, "\n"))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return reps, strs, nil
}

func hidDecode(args []string, io stdio) int {
	fs := newFlagSet("decode", io)
	descPath := fs.String("descriptor", "", "report descriptor file (hex bytes)")
	repPath := fs.String("reports", "", "reports file (\"feature <hex>\" / \"input <hex>\" lines)")
	var vendor, product usbhid.HexID
	fs.TextVar(&vendor, "vendor-id", usbhid.HexID(0), "USB vendor id (hex) selecting the vendor table")
	fs.TextVar(&product, "product-id", usbhid.HexID(0), "USB product id (hex) for product quirks")
	if fs.Parse(args) != nil || fs.NArg() != 0 {
		return exitConfig
	}
	if *descPath == "" || *repPath == "" {
		fmt.Fprintln(io.Stderr, "upsbridge hid decode: --descriptor and --reports are required")
		return exitConfig
	}
	desc, err := readDescriptorFile(*descPath)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge hid decode: descriptor: %v\n", err)
		return exitFail
	}
	reps, strs, err := readReportsFile(*repPath)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge hid decode: reports: %v\n", err)
		return exitFail
	}
	vars, err := hidmap.Decode(desc, reps, hidmap.DeviceInfo{VendorID: uint16(vendor), ProductID: uint16(product)}, strs)
	if err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge hid decode: %v\n", err)
		return exitFail
	}
	for _, k := range sortedKeys(vars) {
		fmt.Fprintf(io.Stdout, "%s: %s\n", k, vars[k])
	}
	return exitOK
}

// watchSink prints states and events with wall-clock timestamps (Unix
// nanoseconds), so end-to-end tests can measure latency against another
// process on the same clock.
type watchSink struct {
	w     io.Writer
	first chan struct{}
	seen  bool
}

func (s *watchSink) Name() string { return "watch" }

func (s *watchSink) Run(ctx context.Context, q *bridge.Queue) error {
	var last bridge.Vars
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return nil
		}
		now := time.Now().UnixNano()
		switch m.Kind {
		case bridge.MessageEvent:
			fmt.Fprintf(s.w, "EVENT %d %s %s status=%q\n", now, m.Event.UPS, m.Event.Type, m.Event.Status)
		case bridge.MessageState:
			st := m.State
			fmt.Fprintf(s.w, "STATE %d %s status=%q comm=%v\n", now, st.UPS, st.Status.Raw, st.Comm)
			if st.Vars != nil && !st.Vars.Equal(last) {
				for _, k := range sortedKeys(st.Vars) {
					fmt.Fprintf(s.w, "VAR %s: %s\n", k, st.Vars[k])
				}
				last = st.Vars
			}
			if st.Comm && !s.seen {
				s.seen = true
				close(s.first)
			}
		}
	}
}

func hidWatch(ctx context.Context, args []string, io stdio) int {
	fs := newFlagSet("watch", io)
	var ff hidFilterFlags
	ff.register(fs)
	poll := fs.Duration("poll-interval", usbhid.DefaultPollInterval, "Feature report poll interval")
	instcmd := fs.String("instcmd", "", "run this instant command once after the first reading")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	id := fs.String("id", "ups", "source and UPS id")
	debug := fs.Bool("debug", false, "debug logging to stderr")
	if fs.Parse(args) != nil || fs.NArg() != 0 {
		return exitConfig
	}
	level := slog.LevelWarn
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(io.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := usbhid.Config{
		SourceCommon: config.SourceCommon{ID: *id, Type: "usbhid"},
		VendorID:     ff.vendor, ProductID: ff.product, Serial: ff.serial, Bus: ff.bus, Port: ff.port,
		PollInterval: *poll,
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		fmt.Fprintf(io.Stderr, "upsbridge hid watch: %v\n", errs)
		return exitConfig
	}
	src, err := cfg.NewSource(bridge.Env{Logger: log})
	if err != nil {
		return usbError(io, "watch", err)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	b := bridge.New(bridge.Options{Logger: log})
	b.AddSource(src)
	sink := &watchSink{w: io.Stdout, first: make(chan struct{})}
	b.AddSink(sink)
	if *instcmd != "" {
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-sink.first:
			}
			res, err := b.InstCmd(ctx, config.SanitizeID(*id), *instcmd, "")
			fmt.Fprintf(io.Stdout, "INSTCMD %d %s result=%s err=%v\n", time.Now().UnixNano(), *instcmd, res.Status, err)
		}()
	}
	if err := b.Run(ctx); err != nil {
		fmt.Fprintf(io.Stderr, "upsbridge hid watch: %v\n", err)
		return exitFail
	}
	return exitOK
}
