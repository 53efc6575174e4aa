package deadlines

import (
	"testing"
	"time"
)

type elem struct{ dl Entry[elem] }

// TestQueuesStayBounded: deadlines of ever new durations (timeouts a reload
// changed, again and again) do not grow a Set's lists for good, and every
// deadline still fires in order.
func TestQueuesStayBounded(t *testing.T) {
	var s Set[elem]
	elems := make([]elem, 3*maxQueues)
	for i := range elems {
		elems[i].dl.Owner = &elems[i]
		s.Arm(&elems[i].dl, 1, int64(i), time.Duration(1000+i))
		if i%2 == 0 {
			s.Disarm(&elems[i].dl)
		}
	}
	if n := len(s.queues); n > maxQueues+len(elems)/2 || n > 2*maxQueues {
		t.Fatalf("%d lists for %d live deadlines", n, len(elems)/2)
	}
	fired := 0
	for {
		e, kind := s.Due(1 << 40)
		if e == nil {
			break
		}
		if kind != 1 || e.dl.Armed() {
			t.Fatalf("deadline %d came out with kind %d, armed %v", fired, kind, e.dl.Armed())
		}
		fired++
	}
	if fired != len(elems)/2 {
		t.Fatalf("%d deadlines left in the lists, want %d", fired, len(elems)/2)
	}
}

// TestDueInOrder: of one duration, deadlines expire in the order they were
// armed, only once passed; Next names the earliest.
func TestDueInOrder(t *testing.T) {
	var s Set[elem]
	var a, b, c elem
	for _, e := range []*elem{&a, &b, &c} {
		e.dl.Owner = e
	}
	s.Arm(&a.dl, 1, 0, 10)
	s.Arm(&b.dl, 2, 5, 10)
	s.Arm(&c.dl, 3, 1, 100)
	if at, ok := s.Next(); !ok || at != 10 {
		t.Fatalf("Next = %d, %v; want 10", at, ok)
	}
	if e, _ := s.Due(9); e != nil {
		t.Fatal("a deadline came out before it passed")
	}
	if e, k := s.Due(15); e != &a || k != 1 {
		t.Fatalf("Due(15) = %p, %d; want a, 1", e, k)
	}
	if e, k := s.Due(15); e != &b || k != 2 {
		t.Fatalf("Due(15) again = %p, %d; want b, 2", e, k)
	}
	if e, _ := s.Due(15); e != nil {
		t.Fatal("c came out before it passed")
	}
	s.Disarm(&c.dl)
	if _, ok := s.Next(); ok {
		t.Fatal("Next with nothing armed")
	}
}
