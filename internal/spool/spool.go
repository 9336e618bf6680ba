// Package spool is a durable FIFO of byte records on disk, for messages that
// must survive a restart and a network that is down for hours: events waiting
// for the MQTT broker, notifications waiting for a webhook.
//
// Layout: one append-only log file of records (4-byte length, 4-byte CRC-32C,
// payload) and a small head file holding the offset of the oldest record not
// yet acknowledged. A record torn by a crash at the tail is detected by its
// length or checksum and cut off on open. When every record is acknowledged
// the log is truncated; a log whose acknowledged prefix grows large is
// compacted. Delivery is at least once: a record acknowledged just before a
// crash of the machine (not of the process) may be delivered again.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

const (
	headerSize = 8
	// MaxRecord is the largest record accepted (records are events of a
	// few KB).
	MaxRecord = 1 << 20
	// DefaultMaxBytes bounds the queued records of a spool when
	// Options.MaxBytes is 0: about 100,000 events of 2 KB.
	DefaultMaxBytes = 256 << 20
	// maxStoredRecord is the largest record read back: the bound of
	// earlier versions, so that their queues are not cut on upgrade.
	maxStoredRecord = 16 << 20
	// maxPeekBytes bounds one read of PeekN (plus one record).
	maxPeekBytes = 4 << 20
	// compactAfter is how large the acknowledged prefix may grow before the
	// log is rewritten without it.
	compactAfter = 8 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrEmpty is returned by Peek when nothing is queued.
var ErrEmpty = errors.New("spool: empty")

// Options tune a spool.
type Options struct {
	// NoSync skips fsync after each append. Process crashes lose nothing
	// either way; fsync protects against the machine losing power.
	NoSync bool
	// MaxRecords bounds the queue; 0 means unbounded. Append fails when full.
	MaxRecords int
	// MaxBytes bounds the bytes of queued records (headers included);
	// 0 means DefaultMaxBytes. Append fails when full, and Open refuses a
	// log that holds more.
	MaxBytes int64
}

// ErrFull is wrapped by Append errors when a bound of Options is reached.
var ErrFull = errors.New("spool: full")

// Spool is a durable FIFO. It is safe for concurrent use.
type Spool struct {
	opts Options
	dir  string

	mu      sync.Mutex
	log     *os.File
	head    *os.File
	offsets []int64 // start offsets of unacknowledged records, oldest first
	end     int64   // end of the last valid record
	acked   int64   // offset of the oldest unacknowledged record
	wake    chan struct{}
}

// Open opens or creates the spool in dir.
func Open(dir string, opts Options) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	s := &Spool{opts: opts, dir: dir, wake: make(chan struct{}, 1)}
	var err error
	if s.log, err = os.OpenFile(filepath.Join(dir, "queue.log"), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("spool: open log in %s: %w", dir, err)
	}
	if s.head, err = os.OpenFile(filepath.Join(dir, "queue.head"), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		s.log.Close()
		return nil, fmt.Errorf("spool: open head in %s: %w", dir, err)
	}
	if err := s.recover(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Spool) recover() error {
	var hb [16]byte
	n, err := s.head.ReadAt(hb[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("spool: read head in %s: %w", s.dir, err)
	}
	if n == 16 && crc32.Checksum(hb[:8], castagnoli) == binary.LittleEndian.Uint32(hb[8:12]) {
		s.acked = int64(binary.LittleEndian.Uint64(hb[:8]))
	}
	st, err := s.log.Stat()
	if err != nil {
		return fmt.Errorf("spool: stat log in %s: %w", s.dir, err)
	}
	if s.acked > st.Size() {
		s.acked = 0 // head from another life of the log: replay all, at least once
	}
	if queued := st.Size() - s.acked; queued > s.opts.MaxBytes {
		return fmt.Errorf("spool: %s holds %d bytes of records, more than the limit of %d: move it aside (it was not written by this version with this limit)",
			s.log.Name(), queued, s.opts.MaxBytes)
	}
	off := s.acked
	var h [headerSize]byte
	buf := make([]byte, 0, 4096)
	for {
		if _, err := s.log.ReadAt(h[:], off); err != nil {
			break
		}
		size := int64(binary.LittleEndian.Uint32(h[:4]))
		if size > maxStoredRecord || off+headerSize+size > st.Size() {
			break
		}
		if int64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := s.log.ReadAt(buf, off+headerSize); err != nil {
			break
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
			break
		}
		s.offsets = append(s.offsets, off)
		off += headerSize + size
	}
	s.end = off
	if off < st.Size() {
		// A torn or corrupt tail: cut it so appends continue from a clean end.
		if err := s.log.Truncate(off); err != nil {
			return fmt.Errorf("spool: cut torn tail of log in %s: %w", s.dir, err)
		}
	}
	return nil
}

// Append adds a record at the tail.
func (s *Spool) Append(data []byte) error {
	return s.AppendBatch([][]byte{data})
}

// AppendBatch adds records at the tail with one write and one fsync, so a
// burst of records costs one sync instead of one each. Either all records
// are added or, on error, none is.
func (s *Spool) AppendBatch(records [][]byte) error {
	size := 0
	for _, data := range records {
		if len(data) > MaxRecord {
			return fmt.Errorf("spool: record of %d bytes exceeds %d", len(data), MaxRecord)
		}
		size += headerSize + len(data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return errors.New("spool: closed")
	}
	if s.opts.MaxRecords > 0 && len(s.offsets)+len(records) > s.opts.MaxRecords {
		return fmt.Errorf("%w: %d records queued in %s, the limit is %d", ErrFull, len(s.offsets), s.dir, s.opts.MaxRecords)
	}
	queued := int64(0)
	if len(s.offsets) > 0 {
		queued = s.end - s.offsets[0]
	}
	if queued+int64(size) > s.opts.MaxBytes {
		return fmt.Errorf("%w: %d bytes queued in %s, %d more would pass the limit of %d bytes", ErrFull, queued, s.dir, size, s.opts.MaxBytes)
	}
	buf := make([]byte, 0, size)
	starts := make([]int64, 0, len(records))
	for _, data := range records {
		starts = append(starts, s.end+int64(len(buf)))
		var h [headerSize]byte
		binary.LittleEndian.PutUint32(h[:4], uint32(len(data)))
		binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(data, castagnoli))
		buf = append(buf, h[:]...)
		buf = append(buf, data...)
	}
	if _, err := s.log.WriteAt(buf, s.end); err != nil {
		// Leave the tail as it was; a partial record is cut on next open.
		return fmt.Errorf("spool: append to %s: %w", s.dir, err)
	}
	if !s.opts.NoSync {
		if err := s.log.Sync(); err != nil {
			return fmt.Errorf("spool: sync %s: %w", s.dir, err)
		}
	}
	s.offsets = append(s.offsets, starts...)
	s.end += int64(len(buf))
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// PeekN returns up to n of the oldest unacknowledged records, oldest first,
// or ErrEmpty. It reads them with one read of the log.
func (s *Spool) PeekN(n int) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil, errors.New("spool: closed")
	}
	if len(s.offsets) == 0 {
		return nil, ErrEmpty
	}
	if n > len(s.offsets) {
		n = len(s.offsets)
	}
	if n <= 0 {
		return nil, nil
	}
	first := s.offsets[0]
	// Fewer records when n of them are large: one read stays bounded.
	for n > 1 && s.offsets[n-1]-first >= maxPeekBytes {
		n--
	}
	last := s.end
	if n < len(s.offsets) {
		last = s.offsets[n]
	}
	buf := make([]byte, last-first)
	if _, err := s.log.ReadAt(buf, first); err != nil {
		return nil, fmt.Errorf("spool: read %d records at %d in %s: %w", n, first, s.dir, err)
	}
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		off := s.offsets[i] - first
		size := int64(binary.LittleEndian.Uint32(buf[off : off+4]))
		out = append(out, buf[off+headerSize:off+headerSize+size:off+headerSize+size])
	}
	return out, nil
}

// AckN removes the n oldest records.
func (s *Spool) AckN(n int) error {
	for i := 0; i < n; i++ {
		if err := s.Ack(); err != nil {
			return err
		}
	}
	return nil
}

// Peek returns the oldest unacknowledged record, or ErrEmpty.
func (s *Spool) Peek() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil, errors.New("spool: closed")
	}
	if len(s.offsets) == 0 {
		return nil, ErrEmpty
	}
	off := s.offsets[0]
	var h [headerSize]byte
	if _, err := s.log.ReadAt(h[:], off); err != nil {
		return nil, fmt.Errorf("spool: read record at %d in %s: %w", off, s.dir, err)
	}
	data := make([]byte, binary.LittleEndian.Uint32(h[:4]))
	if _, err := s.log.ReadAt(data, off+headerSize); err != nil {
		return nil, fmt.Errorf("spool: read record at %d in %s: %w", off, s.dir, err)
	}
	return data, nil
}

// Ack removes the oldest record.
func (s *Spool) Ack() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return errors.New("spool: closed")
	}
	if len(s.offsets) == 0 {
		return ErrEmpty
	}
	s.offsets = s.offsets[1:]
	if len(s.offsets) == 0 {
		// Everything delivered: start the log afresh.
		if err := s.log.Truncate(0); err != nil {
			return fmt.Errorf("spool: truncate %s: %w", s.dir, err)
		}
		s.end, s.acked = 0, 0
		return s.writeHead()
	}
	s.acked = s.offsets[0]
	if s.acked > compactAfter && s.acked > (s.end-s.acked) {
		return s.compact()
	}
	return s.writeHead()
}

func (s *Spool) writeHead() error {
	var hb [16]byte
	binary.LittleEndian.PutUint64(hb[:8], uint64(s.acked))
	binary.LittleEndian.PutUint32(hb[8:12], crc32.Checksum(hb[:8], castagnoli))
	if _, err := s.head.WriteAt(hb[:], 0); err != nil {
		return fmt.Errorf("spool: write head in %s: %w", s.dir, err)
	}
	return nil
}

// compact rewrites the log without its acknowledged prefix.
func (s *Spool) compact() error {
	tmpPath := filepath.Join(s.dir, "queue.log.tmp")
	tmp, err := os.OpenFile(tmpPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: compact %s: %w", s.dir, err)
	}
	if _, err := io.Copy(tmp, io.NewSectionReader(s.log, s.acked, s.end-s.acked)); err != nil {
		tmp.Close()
		return fmt.Errorf("spool: compact %s: %w", s.dir, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("spool: compact %s: %w", s.dir, err)
	}
	// Reset the head before the rename: a crash between the two replays
	// from the start of the new log (at least once), never skips records.
	shift := s.acked
	s.acked = 0
	if err := s.writeHead(); err != nil {
		tmp.Close()
		return err
	}
	if err := os.Rename(tmpPath, filepath.Join(s.dir, "queue.log")); err != nil {
		tmp.Close()
		return fmt.Errorf("spool: compact %s: %w", s.dir, err)
	}
	s.log.Close()
	s.log = tmp
	for i := range s.offsets {
		s.offsets[i] -= shift
	}
	s.end -= shift
	return nil
}

// Len returns the number of unacknowledged records.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.offsets)
}

// Notify returns a channel that receives a value after appends; use it to
// wait for work without polling.
func (s *Spool) Notify() <-chan struct{} { return s.wake }

// Close closes the files. Records stay on disk for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.log != nil {
		errs = append(errs, s.log.Close())
		s.log = nil
	}
	if s.head != nil {
		errs = append(errs, s.head.Close())
		s.head = nil
	}
	return errors.Join(errs...)
}
