package bridge

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func TestQueueLatestStateWinsEventsKept(t *testing.T) {
	q := NewQueue("t", 10, slog.New(slog.DiscardHandler))
	q.PutState(&State{UPS: "a", Seq: 1})
	q.PutEvent(&Event{UPS: "a", Type: EventOnBatt})
	q.PutState(&State{UPS: "b", Seq: 1})
	q.PutState(&State{UPS: "a", Seq: 2})
	q.PutEvent(&Event{UPS: "a", Type: EventLowBatt})

	var got []string
	ctx := context.Background()
	for q.Len() > 0 {
		m, _ := q.Next(ctx)
		switch m.Kind {
		case MessageState:
			got = append(got, "state:"+m.State.UPS+":"+string(rune('0'+m.State.Seq)))
		case MessageEvent:
			got = append(got, "event:"+string(m.Event.Type))
		}
	}
	want := []string{"event:ONBATT", "state:b:1", "state:a:2", "event:LOWBATT"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestQueueOverflowDropsOldestAndCounts(t *testing.T) {
	q := NewQueue("t", 3, slog.New(slog.DiscardHandler))
	for _, typ := range []EventType{EventOnBatt, EventLowBatt, EventFSD, EventOnline} {
		q.PutEvent(&Event{Type: typ})
	}
	if q.Dropped() != 1 {
		t.Fatalf("dropped = %d, want 1", q.Dropped())
	}
	m, _ := q.Next(context.Background())
	if m.Event.Type != EventLowBatt {
		t.Fatalf("first event %s, want LOWBATT (oldest dropped)", m.Event.Type)
	}
}

func TestQueueCloseDrainsThenEnds(t *testing.T) {
	q := NewQueue("t", 10, slog.New(slog.DiscardHandler))
	q.PutEvent(&Event{Type: EventOnBatt})
	q.Close()
	q.PutEvent(&Event{Type: EventOnline}) // after close: ignored
	ctx := context.Background()
	if m, ok := q.Next(ctx); !ok || m.Event.Type != EventOnBatt {
		t.Fatalf("Next = %+v %v", m, ok)
	}
	if _, ok := q.Next(ctx); ok {
		t.Fatal("Next after drain returned a message")
	}
}

func TestQueueNextWaitsAndHonoursContext(t *testing.T) {
	q := NewQueue("t", 10, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := q.Next(ctx); ok {
		t.Fatal("Next on an empty queue returned a message")
	}
	go q.PutEvent(&Event{Type: EventOnBatt})
	m, ok := q.Next(context.Background())
	if !ok || m.Event.Type != EventOnBatt {
		t.Fatalf("Next = %+v %v", m, ok)
	}
}
