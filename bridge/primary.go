package bridge

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// SetFSD latches forced shutdown on a UPS, as NUT's primary does with its
// FSD command: from now on the published status carries FSD and the state
// is critical, an FSD event goes to every sink, and a source that can
// (ForcedShutdowner) tells the UPS's server too, so its other clients shut
// down. The latch is released once the UPS is back on mains and no longer
// critical by itself, so that hosts restarting after the outage do not see
// FSD again. Calling it again while latched does nothing.
//
// Only the UPS's primary sets FSD (see [PrimaryReporter]); on a UPS of
// which the bridge is a secondary it returns ErrNotPrimary and changes
// nothing: a secondary relays the FSD its server reports.
func (b *Bridge) SetFSD(ctx context.Context, ups string) error {
	return b.latchFSD(ctx, ups, false)
}

// ForceFSD latches forced shutdown on behalf of an authenticated outside
// primary: a NUT client logged in with primary rights to the bridge's own
// NUT server. Such a client is the UPS's primary for the hosts it serves,
// so the latch is set even where the bridge itself is a secondary; it is
// passed upstream only where the bridge is the primary (a secondary has no
// right to set FSD on its server), else it stays local, with a warning.
func (b *Bridge) ForceFSD(ctx context.Context, ups string) error {
	return b.latchFSD(ctx, ups, true)
}

func (b *Bridge) latchFSD(ctx context.Context, ups string, outside bool) error {
	b.mu.Lock()
	e := b.upss[ups]
	if e == nil {
		b.mu.Unlock()
		return fmt.Errorf("set FSD: %w %q", ErrUnknownUPS, ups)
	}
	primary := isPrimary(e.owner, ups)
	if !primary && !outside {
		b.mu.Unlock()
		return fmt.Errorf("set FSD on %q: %w", ups, ErrNotPrimary)
	}
	if e.fsd {
		b.mu.Unlock()
		return nil
	}
	e.fsd = true
	now := time.Now()
	ev := NewEvent(ups, now, EventFSD, "")
	st := e.tracker.State()
	e.decorate(&st)
	ev.Status = st.Status.Raw
	b.emit(e, now, []Event{ev}, true)
	owner := e.owner
	b.mu.Unlock()
	if !primary {
		b.log.Warn("forced shutdown set by a NUT primary logged in to this bridge; not passed upstream: the bridge is a secondary of this UPS", "ups", ups)
		return nil
	}
	b.log.Warn("forced shutdown set as primary", "ups", ups)
	if fs, ok := owner.(ForcedShutdowner); ok {
		if err := fs.SetFSD(ctx, ups); err != nil {
			return fmt.Errorf("set FSD on %q at its source: %w", ups, err)
		}
	}
	return nil
}

// IsPrimary reports whether the bridge is the primary of the UPS: its
// source says so ([PrimaryReporter]). Unknown UPSes are not.
func (b *Bridge) IsPrimary(ups string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	e := b.upss[ups]
	return e != nil && isPrimary(e.owner, ups)
}

func isPrimary(owner Source, ups string) bool {
	p, ok := owner.(PrimaryReporter)
	return ok && p.IsPrimary(ups)
}

// FSDLatched reports whether SetFSD latched forced shutdown on the UPS.
func (b *Bridge) FSDLatched(ups string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	e := b.upss[ups]
	return e != nil && e.fsd
}

// decorate adds the latched FSD to a state about to be published, or
// releases the latch when mains is back. Called with b.mu held.
func (e *upsEntry) decorate(st *State) {
	if !e.fsd {
		return
	}
	if !st.Critical && st.Status.Has(OL) && !st.Status.Has(OB) {
		e.fsd = false
		return
	}
	st.Critical = true
	if st.Status.Has(FSD) {
		return
	}
	s := st.Status
	s.Flags |= Flags(FSD)
	s.Tokens = append(append([]string(nil), s.Tokens...), FSD.String())
	s.Raw = strings.TrimSpace(s.Raw + " FSD")
	st.Status = s
}
