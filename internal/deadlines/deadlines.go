// Package deadlines keeps the deadlines of an event loop (proxy/loop*.go,
// proxy/tcp/loop*.go) without the heap or runtime timers: every deadline of
// one kind is armed with the same duration (a listener's read_timeout, a
// pool's connect_timeout...), so a FIFO list per duration is kept in expiry
// order by appending. Arming, disarming and expiring are a few pointer
// writes; the lists are intrusive (an Entry lives in its element), so none
// of them allocates once a duration has its list.
//
// A Set and its Entries belong to one goroutine: nothing here locks.
package deadlines

import "time"

// Entry is an element's place in a Set: a field of the element, whose
// Owner points back at it (set once, when the element is made).
type Entry[T any] struct {
	Owner *T
	// Kind says what the armed deadline is for (the loop's own codes);
	// 0 when none is armed.
	Kind uint8
	// At is when it expires, on the loop's clock.
	At int64

	q          *queue[T]
	prev, next *Entry[T]
}

// Armed reports whether a deadline is armed.
func (e *Entry[T]) Armed() bool { return e.q != nil }

// queue holds the entries armed with one duration, in the order they were
// armed, which is the order they expire in.
type queue[T any] struct {
	d          int64
	head, tail *Entry[T]
}

// maxQueues is how many durations a Set keeps lists for before it drops
// the empty ones.
const maxQueues = 64

// Set is one loop's armed deadlines.
type Set[T any] struct {
	queues []*queue[T]
}

// Arm sets e's deadline of kind (not 0) to d after now; d <= 0 disarms it.
func (s *Set[T]) Arm(e *Entry[T], kind uint8, now int64, d time.Duration) {
	s.Disarm(e)
	if d <= 0 {
		return
	}
	var q *queue[T]
	for _, tq := range s.queues {
		if tq.d == int64(d) {
			q = tq
			break
		}
	}
	if q == nil {
		// A new duration. Past maxQueues (reloads changed timeouts many
		// times), drop the empty queues first, so their number follows
		// the durations in use; below it, a queue that is empty for a
		// moment stays and costs no allocation when used again.
		if len(s.queues) >= maxQueues {
			kept := s.queues[:0]
			for _, tq := range s.queues {
				if tq.head != nil {
					kept = append(kept, tq)
				}
			}
			clear(s.queues[len(kept):])
			s.queues = kept
		}
		q = &queue[T]{d: int64(d)}
		s.queues = append(s.queues, q)
	}
	e.q, e.Kind, e.At = q, kind, now+int64(d)
	e.prev, e.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = e
	} else {
		q.head = e
	}
	q.tail = e
}

// Disarm takes e's deadline off, if one is armed.
func (s *Set[T]) Disarm(e *Entry[T]) {
	q := e.q
	if q == nil {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.q, e.prev, e.next, e.Kind = nil, nil, nil, 0
}

// Next is when the earliest armed deadline expires; ok is false when none
// is armed.
func (s *Set[T]) Next() (at int64, ok bool) {
	for _, q := range s.queues {
		if q.head != nil && (!ok || q.head.At < at) {
			at, ok = q.head.At, true
		}
	}
	return at, ok
}

// Due disarms and returns an element whose deadline passed at now, with
// the kind it was armed with; nil when none did. The caller handles it
// and asks again (handling may arm and disarm others).
func (s *Set[T]) Due(now int64) (owner *T, kind uint8) {
	for _, q := range s.queues {
		if e := q.head; e != nil && e.At <= now {
			kind = e.Kind
			s.Disarm(e)
			return e.Owner, kind
		}
	}
	return nil, 0
}
