package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/upsbridge/upsbridge/bridge"
	"github.com/upsbridge/upsbridge/internal/spool"
)

// Service is one notification service: it sends one rendered message. The
// engine owns everything else (queue, retries, rate limit, flap merge,
// digests, redaction of secrets, stats).
//
// A service may also implement Escaper (how external text is made inert in
// its markup) and Sizer (the largest message it takes).
type Service interface {
	// Send delivers m once. Errors are classified with Transient, Refused
	// or Rejected (unclassified errors count as transient). A panic is
	// contained and counts as a rejection of m.
	Send(ctx context.Context, m Message) error
}

// Sizer is implemented by services with a size limit.
type Sizer interface {
	// MaxBytes is the largest title+body the service takes (0: no limit);
	// digests are packed to fit it.
	MaxBytes() int
}

const (
	peekBatch   = 512 // records looked at per planning round
	ingestBatch = 256 // events written to the queue with one fsync
	digestMax   = 100 // events in one digest at most
	drainWait   = 3 * time.Second
)

// Sink is a notifier: a bridge.Sink that queues matching events on disk
// and delivers them to one service.
type Sink struct {
	c      Common
	svc    Service
	log    *slog.Logger
	dir    string
	filter filter
	render renderer
	red    redactor
	lim    limiter

	seq       atomic.Int64
	sp        *spool.Spool
	isRefused bool           // a refusal was reported and not yet cleared
	stale     bool           // the decoded head must be read again
	done      map[int64]bool // delivered out of order (blip partners), not yet acknowledged

	st sinkStats // numbers for Stats (stats.go)
}

// New builds the delivery core around a service. secrets are redacted
// from every error and log line.
func New(env bridge.Env, c *Common, svc Service, secrets ...string) (*Sink, error) {
	if errs := c.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("notifier %q: %s", c.Name, errs[0].Error())
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("notifier", c.Name, "service", c.Type)
	tpl, _ := parseTemplates(c.Title, c.Template)
	s := &Sink{
		c: *c, svc: svc, log: log, filter: newFilter(c), red: newRedactor(secrets...),
		lim:  limiter{limit: c.RateLimit, window: c.RateWindow},
		done: map[int64]bool{},
	}
	s.st.initMetrics(env.Metrics, s.Name())
	if env.StateDir != "" {
		s.dir = filepath.Join(env.StateDir, "notify-"+c.Name)
	}
	s.render = renderer{lang: c.Language, bridgeID: env.BridgeID, tpl: tpl, warn: log.Warn}
	if e, ok := svc.(Escaper); ok {
		s.render.esc = e.Escape
	}
	return s, nil
}

// Render renders records as the queue would send them: one record, or an
// ONBATT+ONLINE pair as a blip.
func (s *Sink) Render(recs []Record) Message { return s.render.render(recs) }

// Name implements bridge.Sink.
func (s *Sink) Name() string { return "notify-" + s.c.Name }

// SendTest sends a test message about ups (UPSNAME for the exec notifier)
// now, bypassing the queue, filters and rate limit, and returns the
// service's exact error (secrets redacted).
func (s *Sink) SendTest(ctx context.Context, ups string) error {
	r := Record{Type: "TEST", Test: true, Severity: int(bridge.SeverityInfo), Time: time.Now(), Queued: time.Now(),
		UPS: ups, Message: "upsbridge test message"}
	return s.Attempt(ctx, s.render.render([]Record{r}))
}

var (
	openMu   sync.Mutex
	openDirs = map[string]bool{}
)

// Run implements bridge.Sink: it queues matching events on disk and
// delivers them until the queue is closed (then waits briefly for the
// queue on disk to empty; what is left is sent after the next start) or
// ctx ends. A failing service never stops the bridge: errors are logged.
func (s *Sink) Run(ctx context.Context, q *bridge.Queue) error {
	if s.dir == "" {
		return fmt.Errorf("notifier %q: no state directory for its queue", s.c.Name)
	}
	abs, _ := filepath.Abs(s.dir)
	openMu.Lock()
	if openDirs[abs] {
		openMu.Unlock()
		return fmt.Errorf("notifier %q: queue %s is already in use (two notifiers with the same name?)", s.c.Name, s.dir)
	}
	openDirs[abs] = true
	openMu.Unlock()
	defer func() { openMu.Lock(); delete(openDirs, abs); openMu.Unlock() }()

	sp, err := spool.Open(s.dir, spool.Options{NoSync: s.c.NoSync, MaxRecords: s.c.QueueMax})
	if err != nil {
		return fmt.Errorf("notifier %q: %w", s.c.Name, err)
	}
	s.sp = sp
	defer sp.Close()
	s.loadDone()
	s.refreshDepth()
	if n := sp.Len(); n > 0 {
		s.log.Info("notifier has queued messages from before; delivering them", "queued", n)
	}

	dctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { s.deliver(dctx) })

	s.ingest(ctx, q)

	// Queue closed (shutdown): give delivery a moment to empty the disk
	// queue; anything left is delivered after the next start.
	deadline := time.NewTimer(drainWait)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
wait:
	for sp.Len() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-deadline.C:
			break wait
		case <-poll.C:
		}
	}
	stop()
	wg.Wait()
	if n := sp.Len(); n > 0 {
		s.log.Info("notifier stopping with messages queued on disk; they are sent after restart", "queued", n)
	}
	return nil
}

// ingest writes matching events to the disk queue until q is closed.
func (s *Sink) ingest(ctx context.Context, q *bridge.Queue) {
	batch := make([][]byte, 0, ingestBatch)
	for {
		m, ok := q.Next(ctx)
		if !ok {
			return
		}
		batch = batch[:0]
		for {
			if m.Kind == bridge.MessageEvent && s.filter.match(m.Event) {
				if b, err := json.Marshal(newRecord(m.Event, s.nextSeq(), time.Now())); err == nil {
					batch = append(batch, b)
				} else {
					s.noteDropped(1)
				}
			}
			if len(batch) >= ingestBatch || q.Len() == 0 {
				break
			}
			if m, ok = q.Next(ctx); !ok {
				break
			}
		}
		if len(batch) == 0 {
			continue
		}
		if err := s.sp.AppendBatch(batch); err != nil {
			s.log.Error("notifier cannot queue events; they are lost", "events", len(batch), "err", err)
			s.noteDropped(len(batch))
		}
		s.refreshDepth()
		if !ok {
			return
		}
	}
}

// nextSeq returns increasing record ids, based on the clock so they keep
// increasing across restarts.
func (s *Sink) nextSeq() int64 {
	for {
		prev := s.seq.Load()
		n := time.Now().UnixNano()
		if n <= prev {
			n = prev + 1
		}
		if s.seq.CompareAndSwap(prev, n) {
			return n
		}
	}
}

// unit is a set of record indexes sent as one message: one record, or an
// ONBATT+ONLINE blip pair.
type unit []int

// plan groups the queued records into units, in order. It stops at an
// ONBATT still inside its flap window (returned as wake).
func (s *Sink) plan(recs []Record, now time.Time) (units []unit, wake time.Time) {
	taken := make([]bool, len(recs))
	for i := range recs {
		if s.done[recs[i].Seq] {
			taken[i] = true
		}
	}
	for i, r := range recs {
		if taken[i] {
			continue
		}
		if r.Type == string(bridge.EventOnBatt) && s.c.FlapWindow > 0 && !r.Test {
			j := -1
			for k := i + 1; k < len(recs); k++ {
				if !taken[k] && recs[k].UPS == r.UPS {
					j = k
					break
				}
			}
			if j >= 0 && recs[j].Type == string(bridge.EventOnline) && recs[j].Queued.Sub(r.Queued) <= s.c.FlapWindow {
				units = append(units, unit{i, j})
				taken[j] = true
				continue
			}
			if j < 0 && now.Before(r.Queued.Add(s.c.FlapWindow)) {
				return units, r.Queued.Add(s.c.FlapWindow)
			}
		}
		units = append(units, unit{i})
	}
	return units, time.Time{}
}

// peek reads and decodes the head of the disk queue. Undecodable records
// are dropped with an error (they cannot be delivered).
func (s *Sink) peek() ([]Record, error) {
	raw, err := s.sp.PeekN(peekBatch)
	if err != nil {
		return nil, err
	}
	recs := make([]Record, 0, len(raw))
	for _, b := range raw {
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			s.log.Error("unreadable message in notifier queue dropped", "err", err)
			r = Record{Seq: -1}
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// deliver sends queued messages until ctx ends.
func (s *Sink) deliver(ctx context.Context) {
	attempt := 0
	single := false // after a digest was rejected: send one by one
	// recs is the decoded head of the disk queue, kept between sends so
	// that a long queue is not decoded again for every message; it is
	// re-read when new work arrived or it runs low.
	var recs []Record
	for ctx.Err() == nil {
		if len(recs) == 0 || s.stale || (len(recs) < peekBatch/2 && s.sp.Len() > len(recs)) {
			var err error
			recs, err = s.peek()
			s.stale = false
			if errors.Is(err, spool.ErrEmpty) {
				s.wait(ctx, time.Time{}, true)
				continue
			}
			if err != nil {
				s.log.Error("notifier cannot read its queue", "err", err)
				s.wait(ctx, time.Now().Add(s.c.RetryMax), false)
				continue
			}
		}
		if recs[0].Seq == -1 {
			_ = s.sp.Ack()
			s.noteDropped(1)
			s.refreshDepth()
			recs = recs[1:]
			continue
		}
		now := time.Now()
		units, wake := s.plan(recs, now)
		if len(units) == 0 {
			s.wait(ctx, wake, true)
			continue
		}
		if avail := s.lim.available(now); avail == 0 {
			s.st.rateLimited.Inc()
			s.wait(ctx, s.lim.nextFree(), false)
			continue
		}
		var m Message
		isDigest := false
		if !single && s.c.RateLimit > 0 && s.sp.Len() > s.lim.available(now) && len(units) > 1 {
			m, isDigest = s.pack(recs, units)
		} else {
			m = s.render.render(pick(recs, units[0]))
		}
		s.lim.take(now)
		err := s.Attempt(ctx, m)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.noteSuccess(m, isDigest)
			if s.isRefused {
				s.log.Info("notifier works again", "queued", s.sp.Len())
				s.isRefused = false
			}
			if attempt > 0 {
				s.log.Info("notification delivered after retries", "attempts", attempt+1)
			}
			attempt, single = 0, false
			recs = recs[s.delivered(recs, m):]
			continue
		}
		s.noteFailure(err)
		kind, hint := Classify(err)
		switch kind {
		case KindRefused:
			s.st.isRefused.Store(true)
			if !s.isRefused {
				s.isRefused = true
				s.log.Error("NOTIFIER REFUSED: the service rejects this notifier's URL, key or token; fix the config. "+
					"Messages stay queued and are retried quietly", "err", err, "queued", s.sp.Len(), "retry_every", s.c.PermanentRetry)
			} else {
				s.log.Debug("notifier still refused", "err", err)
			}
			s.wait(ctx, time.Now().Add(s.c.PermanentRetry), false)
		case KindRejected:
			if len(m.Records) > 1 && !single && len(units) > 1 {
				s.log.Warn("digest rejected; sending the events one by one", "err", err)
				single = true
				continue
			}
			s.log.Error("notification rejected by the service and dropped", "event", m.Event, "ups", m.UPS, "err", err)
			s.noteDropped(len(m.Records))
			attempt = 0
			recs = recs[s.delivered(recs, m):]
		default:
			attempt++
			if s.c.MaxAttempts > 0 && attempt >= s.c.MaxAttempts {
				s.log.Error("notification dropped after failed attempts", "attempts", attempt, "event", m.Event, "ups", m.UPS, "err", err)
				s.noteDropped(len(m.Records))
				attempt = 0
				recs = recs[s.delivered(recs, m):]
				continue
			}
			d := bridge.Backoff(attempt-1, s.c.RetryMin, s.c.RetryMax, rand.Float64)
			if hint > d {
				d = min(hint, s.c.RetryMax)
			}
			lvl := slog.LevelDebug
			if attempt == 1 || attempt%10 == 0 {
				lvl = slog.LevelWarn
			}
			s.log.Log(ctx, lvl, "notification failed; will retry", "attempt", attempt, "retry_in", d, "queued", s.sp.Len(), "err", err)
			s.wait(ctx, time.Now().Add(d), false)
		}
	}
}

func pick(recs []Record, u unit) []Record {
	out := make([]Record, len(u))
	for i, idx := range u {
		out[i] = recs[idx]
	}
	return out
}

// pack renders as many units as fit into one digest; the bool says whether
// it is one (a single unit that fits alone is sent as itself).
func (s *Sink) pack(recs []Record, units []unit) (Message, bool) {
	max := 0
	if z, ok := s.svc.(Sizer); ok {
		max = z.MaxBytes()
	}
	var msgs []Message
	size := 64 // title and slack
	for _, u := range units {
		m := s.render.render(pick(recs, u))
		l := len(digestLine(m)) + 1
		if len(msgs) > 0 && (len(msgs) >= digestMax || (max > 0 && size+l > max)) {
			break
		}
		size += l
		msgs = append(msgs, m)
	}
	if len(msgs) == 1 {
		return msgs[0], false
	}
	return digest(msgs, s.c.Language, s.render.esc), true
}

// Attempt sends m once now, bypassing the queue, with the attempt timeout
// (for notify-test and tests of a service); panics in a service are
// contained, and secrets are removed from the error.
func (s *Sink) Attempt(ctx context.Context, m Message) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.c.Timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = Rejected(fmt.Errorf("%s: internal error: %v", s.c.Type, p))
		}
		err = s.red.err(err)
	}()
	return s.svc.Send(ctx, m)
}

// delivered acknowledges m's records: the acknowledged prefix of the queue
// is removed; records delivered ahead of their turn (blip partners) are
// remembered in a small file so a restart does not send them again.
func (s *Sink) delivered(recs []Record, m Message) int {
	for _, r := range m.Records {
		s.done[r.Seq] = true
	}
	n := 0
	for n < len(recs) && (s.done[recs[n].Seq] || recs[n].Seq == -1) {
		delete(s.done, recs[n].Seq)
		n++
	}
	if err := s.sp.AckN(n); err != nil {
		s.log.Error("notifier cannot acknowledge delivered messages; they may be sent again", "err", err)
		s.stale = true
	}
	s.refreshDepth()
	s.saveDone()
	return n
}

func (s *Sink) donePath() string { return filepath.Join(s.dir, "delivered.json") }

func (s *Sink) saveDone() {
	if len(s.done) == 0 {
		if err := os.Remove(s.donePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("notifier cannot clear its delivered list", "err", err)
		}
		return
	}
	seqs := make([]int64, 0, len(s.done))
	for q := range s.done {
		seqs = append(seqs, q)
	}
	b, _ := json.Marshal(seqs)
	tmp := s.donePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		err = os.Rename(tmp, s.donePath())
		if err != nil {
			s.log.Error("notifier cannot save its delivered list", "err", err)
		}
	}
}

func (s *Sink) loadDone() {
	b, err := os.ReadFile(s.donePath())
	if err != nil {
		return
	}
	var seqs []int64
	if json.Unmarshal(b, &seqs) == nil {
		for _, q := range seqs {
			s.done[q] = true
		}
	}
}

// wait sleeps until t (zero: no deadline), or ctx ends, or, when
// onWork, new work is queued (a flap wait is re-planned when the ONLINE
// may have come; a backoff or rate-limit wait is not cut short).
func (s *Sink) wait(ctx context.Context, t time.Time, onWork bool) {
	var tc <-chan time.Time
	if !t.IsZero() {
		tm := time.NewTimer(time.Until(t))
		defer tm.Stop()
		tc = tm.C
	}
	var work <-chan struct{}
	if onWork {
		work = s.sp.Notify()
	}
	select {
	case <-ctx.Done():
	case <-tc:
	case <-work:
		s.stale = true
	}
}

// limiter is a sliding-window rate limit: at most limit attempts in any
// window (failed attempts count too, as WeCom counts them).
type limiter struct {
	limit  int
	window time.Duration
	sent   []time.Time
}

func (l *limiter) prune(now time.Time) {
	i := 0
	for i < len(l.sent) && now.Sub(l.sent[i]) >= l.window {
		i++
	}
	l.sent = l.sent[i:]
}

func (l *limiter) available(now time.Time) int {
	if l.limit <= 0 {
		return 1 << 30
	}
	l.prune(now)
	return l.limit - len(l.sent)
}

func (l *limiter) nextFree() time.Time {
	if len(l.sent) == 0 {
		return time.Now()
	}
	return l.sent[0].Add(l.window)
}

func (l *limiter) take(now time.Time) {
	if l.limit > 0 {
		l.sent = append(l.sent, now)
	}
}
