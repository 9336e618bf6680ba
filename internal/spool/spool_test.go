package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppendPeekAckAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := s.Append([]byte(fmt.Sprintf("msg-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		got, err := s.Peek()
		if err != nil || string(got) != fmt.Sprintf("msg-%d", i) {
			t.Fatalf("peek %d = %q, %v", i, got, err)
		}
		if err := s.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 3 {
		t.Fatalf("after reopen Len = %d, want 3", s.Len())
	}
	for i := 2; i < 5; i++ {
		got, err := s.Peek()
		if err != nil || string(got) != fmt.Sprintf("msg-%d", i) {
			t.Fatalf("peek %d = %q, %v", i, got, err)
		}
		if err := s.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Peek(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Peek on empty = %v, want ErrEmpty", err)
	}
	st, _ := os.Stat(filepath.Join(dir, "queue.log"))
	if st.Size() != 0 {
		t.Fatalf("log not truncated when empty: %d bytes", st.Size())
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Append([]byte("first"))
	s.Append([]byte("second"))
	s.Close()
	// Simulate a crash mid-write: a header promising more than is there.
	f, _ := os.OpenFile(filepath.Join(dir, "queue.log"), os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{100, 0, 0, 0, 1, 2, 3, 4, 'x'})
	f.Close()

	s, err = Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (torn record dropped)", s.Len())
	}
	if err := s.Append([]byte("third")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, _ = Open(dir, Options{NoSync: true})
	defer s.Close()
	var got []string
	for s.Len() > 0 {
		b, _ := s.Peek()
		got = append(got, string(b))
		s.Ack()
	}
	if fmt.Sprint(got) != "[first second third]" {
		t.Fatalf("got %v", got)
	}
}

func TestCorruptRecordStopsReplay(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{NoSync: true})
	s.Append([]byte("good"))
	s.Append([]byte("flipped"))
	s.Close()
	p := filepath.Join(dir, "queue.log")
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 0xff
	os.WriteFile(p, b, 0o600)
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Len() != 1 {
		t.Fatalf("Len = %d, want 1", s.Len())
	}
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{NoSync: true})
	payload := make([]byte, 64<<10)
	n := 2 * compactAfter / len(payload)
	for i := 0; i < n; i++ {
		payload[0] = byte(i)
		if err := s.Append(payload); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n-3; i++ {
		if err := s.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := os.Stat(filepath.Join(dir, "queue.log"))
	if st.Size() > int64(compactAfter) {
		t.Fatalf("log not compacted: %d bytes", st.Size())
	}
	s.Close()
	s, _ = Open(dir, Options{NoSync: true})
	defer s.Close()
	if s.Len() != 3 {
		t.Fatalf("Len after compaction+reopen = %d, want 3", s.Len())
	}
	b, _ := s.Peek()
	if b[0] != byte(n-3) {
		t.Fatalf("first record after compaction = %d, want %d", b[0], n-3)
	}
}

func TestMaxRecords(t *testing.T) {
	s, _ := Open(t.TempDir(), Options{NoSync: true, MaxRecords: 2})
	defer s.Close()
	s.Append([]byte("a"))
	s.Append([]byte("b"))
	if err := s.Append([]byte("c")); err == nil {
		t.Fatal("append to a full spool succeeded")
	}
}

func BenchmarkAppendAck(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			s, _ := Open(b.TempDir(), Options{NoSync: !sync})
			defer s.Close()
			msg := make([]byte, 300)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.Append(msg)
				s.Peek()
				s.Ack()
			}
		})
	}
}

func TestAppendBatchPeekNAckN(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var batch [][]byte
	for i := 0; i < 10; i++ {
		batch = append(batch, []byte(fmt.Sprintf("rec-%d", i)))
	}
	if err := s.AppendBatch(batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.PeekN(4)
	if err != nil || len(got) != 4 || string(got[0]) != "rec-0" || string(got[3]) != "rec-3" {
		t.Fatalf("PeekN(4) = %q, %v", got, err)
	}
	if err := s.AckN(3); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err = s.PeekN(100)
	if err != nil || len(got) != 7 || string(got[0]) != "rec-3" || string(got[6]) != "rec-9" {
		t.Fatalf("after reopen PeekN = %q, %v", got, err)
	}
	if err := s.AckN(7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PeekN(1); !errors.Is(err, ErrEmpty) {
		t.Fatalf("PeekN on empty = %v, want ErrEmpty", err)
	}
}

// TestBounds: the bytes queued, a record's size and one read are bounded,
// with errors naming the spool and the limit, and a log holding more than
// the limit is refused on open.
func TestBounds(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true, MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 92) // 100 bytes with its header
	for i := range 10 {
		if err := s.Append(rec); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	err = s.Append(rec)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "limit of 1000 bytes") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("append past MaxBytes: %v", err)
	}
	if err := s.Append(make([]byte, MaxRecord+1)); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized record: %v", err)
	}
	if err := s.Ack(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(rec); err != nil {
		t.Fatalf("append after an ack freed room: %v", err)
	}
	s.Close()
	// The same log with a smaller limit: refused with a clear error.
	if _, err := Open(dir, Options{MaxBytes: 500}); err == nil || !strings.Contains(err.Error(), "more than the limit of 500") {
		t.Fatalf("open of a log over the limit: %v", err)
	}
	// A hostile log of many large records is read a bounded slice at a time.
	dir2 := t.TempDir()
	s2, err := Open(dir2, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	big := make([]byte, MaxRecord)
	for range 8 {
		if err := s2.Append(big); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s2.PeekN(512)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range recs {
		total += len(r)
	}
	if total > maxPeekBytes+maxStoredRecord || len(recs) < 1 {
		t.Fatalf("PeekN read %d records, %d bytes", len(recs), total)
	}
}
