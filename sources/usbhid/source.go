package usbhid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/config"
	"github.com/upsbridge/upsbridge/internal/hid/hidmap"
	"github.com/upsbridge/upsbridge/internal/hid/hidparse"
	"github.com/upsbridge/upsbridge/internal/hid/usb"
)

// Reconnect pacing: a replugged UPS is usually back within a few seconds.
const (
	retryMin = 500 * time.Millisecond
	retryMax = 10 * time.Second
)

// Source reads one UPS over USB HID.
type Source struct {
	cfg    Config
	ups    string
	opener usb.Opener
	log    *slog.Logger

	mu  sync.Mutex // guards cur
	cur *conn
}

// conn is one open session with the device.
type conn struct {
	t     usb.Transport
	maxGR int // GET_REPORT length for vendors that need the maximum size

	mu sync.Mutex // guards m
	m  *hidmap.Mapper
}

// New returns a source reading the UPS the config selects through opener.
func New(cfg Config, opener usb.Opener, log *slog.Logger) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	return &Source{cfg: cfg, ups: config.SanitizeID(cfg.ID), opener: opener, log: log.With("source", cfg.ID)}
}

// ID returns the source id.
func (s *Source) ID() string { return s.cfg.ID }

func (s *Source) send(ctx context.Context, out chan<- bridge.Update, u bridge.Update) bool {
	u.Source, u.UPS = s.cfg.ID, s.ups
	if u.Time.IsZero() {
		u.Time = time.Now()
	}
	select {
	case out <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run connects, serves and reconnects until ctx ends. While the UPS cannot
// be reached it reports CommLost once per outage.
func (s *Source) Run(ctx context.Context, out chan<- bridge.Update) error {
	lost := false
	for attempt := 0; ; attempt++ {
		c, err := s.connect(ctx)
		if err == nil {
			attempt = -1
			lost = false
			s.log.Info("UPS connected", "device", c.t.Info().String(), "vendor_table", c.m.Vendor())
			err = s.serve(ctx, c, out)
			s.setConn(nil)
			c.t.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		if !lost {
			s.log.Warn("UPS communication lost", "err", err)
			s.send(ctx, out, bridge.Update{Kind: bridge.CommLost, Err: err})
			lost = true
		} else {
			s.log.Debug("UPS still unreachable", "err", err)
		}
		wait := retryMin << min(max(attempt, 0), 5)
		if wait > retryMax {
			wait = retryMax
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (s *Source) setConn(c *conn) {
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
}

// connect opens the device, reads and parses its report descriptor and
// takes a first full reading.
func (s *Source) connect(ctx context.Context) (*conn, error) {
	t, err := s.opener.Open(ctx, s.cfg.Filter())
	if err != nil {
		return nil, err
	}
	raw, err := t.ReportDescriptor(ctx)
	if err != nil {
		t.Close()
		return nil, err
	}
	d, err := hidparse.Parse(raw)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("report descriptor of %s: %w", t.Info(), err)
	}
	info := t.Info()
	m := hidmap.New(d, hidmap.DeviceInfo{
		VendorID: info.VendorID, ProductID: info.ProductID,
		Manufacturer: info.Manufacturer, Product: info.Product, Serial: info.Serial,
	}, hidmap.Options{})
	c := &conn{t: t, m: m}
	if m.Vendor() == "apc" {
		// Some APC Back-UPS answer GET_REPORT only when asked for the
		// largest report size (NUT's max_report_size).
		for _, k := range m.PollReports() {
			c.maxGR = max(c.maxGR, d.ReportLen(k))
		}
	}
	if err := s.poll(ctx, c); err != nil {
		t.Close()
		return nil, err
	}
	return c, nil
}

// poll reads every mapped report and the string descriptors values refer
// to. A stalled or failing report is skipped (firmware fails some ids); a
// disconnect, or every report failing, ends the session.
func (s *Source) poll(ctx context.Context, c *conn) error {
	c.mu.Lock()
	keys := c.m.PollReports()
	d := c.m.Descriptor()
	c.mu.Unlock()
	failed := 0
	var lastErr error
	for _, k := range keys {
		n := max(d.ReportLen(k), c.maxGR)
		data, err := c.t.GetReport(ctx, uint8(k.Type), k.ID, n)
		if err != nil {
			if errors.Is(err, usb.ErrDisconnected) || ctx.Err() != nil {
				return err
			}
			failed++
			lastErr = err
			s.log.Debug("report skipped", "report_id", k.ID, "type", k.Type.String(), "err", err)
			continue
		}
		c.mu.Lock()
		c.m.Apply(k.Type, data)
		c.mu.Unlock()
	}
	if failed > 0 && failed == len(keys) {
		return fmt.Errorf("every one of %d reports failed: %w", failed, lastErr)
	}
	c.mu.Lock()
	idx := c.m.StringIndexes()
	c.mu.Unlock()
	for _, i := range idx {
		str, err := c.t.String(ctx, i)
		if errors.Is(err, usb.ErrDisconnected) {
			return err
		}
		c.mu.Lock()
		c.m.SetString(i, str) // an empty string on failure: not asked again
		c.mu.Unlock()
	}
	return nil
}

func (c *conn) reading() bridge.Update {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bridge.Update{Kind: bridge.Reading, Time: time.Now(), Vars: c.m.Vars(), Info: c.m.Info()}
}

// serve publishes readings: at once for every interrupt report, and after
// every Feature poll. It returns when the device goes away or ctx ends.
func (s *Source) serve(ctx context.Context, c *conn, out chan<- bridge.Update) error {
	s.setConn(c)
	if !s.send(ctx, out, c.reading()) {
		return ctx.Err()
	}
	ictx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	c.mu.Lock()
	interrupts := c.m.Interrupts()
	c.mu.Unlock()
	if interrupts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- s.listen(ictx, c, out)
		}()
	}
	// The interrupt listener must be stopped before the transport closes.
	defer func() { cancel(); wg.Wait() }()

	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			if err != nil {
				return err
			}
			// No interrupt endpoint: poll only.
		case <-tick.C:
			if err := s.poll(ctx, c); err != nil {
				return err
			}
			if !s.send(ctx, out, c.reading()) {
				return ctx.Err()
			}
		}
	}
}

// listen turns every interrupt report into a reading. It returns nil when
// the device has no interrupt endpoint, an error when it is gone.
func (s *Source) listen(ctx context.Context, c *conn, out chan<- bridge.Update) error {
	timeouts := 0
	for {
		data, err := c.t.ReadInterrupt(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, usb.ErrNoInterrupt):
			s.log.Info("no interrupt endpoint: status changes wait for the next poll")
			return nil
		case errors.Is(err, usb.ErrDisconnected):
			return err
		case err != nil:
			// Transient (timeout, overflow): retry, but not in a hot loop.
			timeouts++
			s.log.Debug("interrupt read failed", "err", err)
			if timeouts > 10 {
				return fmt.Errorf("interrupt pipe keeps failing: %w", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		timeouts = 0
		c.mu.Lock()
		n := c.m.Apply(hidparse.Input, data)
		c.mu.Unlock()
		if n == 0 {
			continue // a report we do not map
		}
		if !s.send(ctx, out, c.reading()) {
			return nil
		}
	}
}

// InstCmd runs an instant command with SET_REPORT (read-modify-write of the
// Feature report that holds the target field).
func (s *Source) InstCmd(ctx context.Context, ups, command, arg string) (bridge.CommandResult, error) {
	if ups != s.ups {
		return bridge.CommandResult{}, fmt.Errorf("%w %q", bridge.ErrUnknownUPS, ups)
	}
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c == nil {
		return bridge.CommandResult{Status: "FAILED", Detail: "UPS not connected"}, fmt.Errorf("instant command %q: UPS not connected: %w", command, usb.ErrDisconnected)
	}
	c.mu.Lock()
	writes, err := c.m.Command(command, arg)
	d := c.m.Descriptor()
	c.mu.Unlock()
	if errors.Is(err, hidmap.ErrUnknownCommand) {
		return bridge.CommandResult{}, fmt.Errorf("%w: %w", bridge.ErrCommandUnknown, err)
	}
	if err != nil {
		return bridge.CommandResult{}, err
	}
	for _, w := range writes {
		k := hidparse.ReportKey{Type: hidparse.Feature, ID: w.Field.ReportID}
		n := d.ReportLen(k)
		buf, err := c.t.GetReport(ctx, usb.ReportFeature, k.ID, max(n, c.maxGR))
		// Firmware that answers shorter than declared gets a report of the
		// length it uses, when the field fits in it; otherwise the declared
		// length, zero-filled past what was read.
		idLen := 0
		if d.UsesIDs {
			idLen = 1
		}
		if fits := (w.Field.Offset+w.Field.Size+7)/8 + idLen; err == nil && len(buf) >= fits && len(buf) < n {
			n = len(buf)
		}
		if err != nil || len(buf) < n {
			nb := make([]byte, n)
			copy(nb, buf)
			buf = nb
		}
		buf = buf[:n]
		if d.UsesIDs {
			buf[0] = k.ID
		}
		w.Field.Put(buf, d.UsesIDs, w.Raw)
		if err := c.t.SetReport(ctx, usb.ReportFeature, k.ID, buf); err != nil {
			return bridge.CommandResult{Status: "FAILED", Detail: err.Error()}, fmt.Errorf("instant command %q: %w", command, err)
		}
		c.mu.Lock()
		c.m.Apply(hidparse.Feature, buf)
		c.mu.Unlock()
	}
	s.log.Info("instant command sent", "command", command)
	return bridge.CommandResult{Status: "SUCCESS"}, nil
}

var _ bridge.Commander = (*Source)(nil)

// IsPrimary implements bridge.PrimaryReporter: the bridge reads this UPS
// over USB, so no one else can decide its forced shutdown.
func (s *Source) IsPrimary(ups string) bool { return ups == s.ups }

var _ bridge.PrimaryReporter = (*Source)(nil)
