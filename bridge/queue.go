package bridge

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// MessageKind says what a [Message] carries.
type MessageKind int

// Message kinds.
const (
	MessageState MessageKind = iota
	MessageEvent
)

// Message is one item of a sink's queue: a state or an event.
type Message struct {
	Kind  MessageKind
	State *State
	Event *Event
}

// DefaultEventCapacity is a queue's default room for undelivered events.
const DefaultEventCapacity = 4096

// Queue is a sink's bounded inbox. Its policy:
//
//   - States: latest wins. At most one undelivered state per UPS is held; a
//     newer one replaces it and moves to the back, so a state is never
//     delivered before the events that preceded it.
//   - Events: kept in order and never dropped silently. If a sink falls more
//     than the capacity behind, the oldest event is dropped, the drop is
//     logged at error level with the count, and [Queue.Dropped] counts it.
//
// Put never blocks, so a slow sink never blocks the core.
type Queue struct {
	name     string
	capacity int
	log      *slog.Logger

	mu      sync.Mutex
	items   []Message
	events  int
	closed  bool
	wake    chan struct{}
	dropped atomic.Uint64
}

// NewQueue returns a queue holding up to capacity undelivered events.
func NewQueue(name string, capacity int, log *slog.Logger) *Queue {
	if capacity <= 0 {
		capacity = DefaultEventCapacity
	}
	return &Queue{name: name, capacity: capacity, log: log, wake: make(chan struct{}, 1)}
}

func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// PutState queues a state, replacing any undelivered state of the same UPS.
func (q *Queue) PutState(s *State) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	for i, m := range q.items {
		if m.Kind == MessageState && m.State.UPS == s.UPS {
			q.items = append(q.items[:i], q.items[i+1:]...)
			break
		}
	}
	q.items = append(q.items, Message{Kind: MessageState, State: s})
	q.signal()
}

// PutEvent queues an event.
func (q *Queue) PutEvent(e *Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.events >= q.capacity {
		for i, m := range q.items {
			if m.Kind == MessageEvent {
				q.items = append(q.items[:i], q.items[i+1:]...)
				q.events--
				n := q.dropped.Add(1)
				q.log.Error("sink is too slow: event queue full, oldest event dropped",
					"sink", q.name, "ups", m.Event.UPS, "event", string(m.Event.Type), "dropped_total", n)
				break
			}
		}
	}
	q.items = append(q.items, Message{Kind: MessageEvent, Event: e})
	q.events++
	q.signal()
}

// Close marks the end of input; Next returns what is left, then false.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// Next returns the next message, waiting for one. It returns false once the
// queue is closed and empty, or when ctx ends.
func (q *Queue) Next(ctx context.Context) (Message, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			m := q.items[0]
			q.items[0] = Message{}
			q.items = q.items[1:]
			if m.Kind == MessageEvent {
				q.events--
			}
			if len(q.items) > 0 {
				q.signal()
			}
			q.mu.Unlock()
			return m, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return Message{}, false
		}
		select {
		case <-ctx.Done():
			return Message{}, false
		case <-q.wake:
		}
	}
}

// Len returns the number of undelivered messages.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Dropped returns how many events were dropped because the sink was too slow.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }
