package health

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestDueHeap(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	var d dueHeap
	var want []time.Duration
	for round := range 3 {
		for i := range 200 {
			at := time.Duration(r.IntN(50)) // duplicates on purpose
			d.push(at, int32(i))
			want = append(want, at)
		}
		slices.Sort(want)
		// Pop half, interleaving with pushes in the next round.
		for range len(want) / 2 {
			if got := d.pop().at; got != want[0] {
				t.Fatalf("round %d: pop %d, want %d", round, got, want[0])
			}
			want = want[1:]
		}
	}
	for len(want) > 0 {
		if got := d.pop().at; got != want[0] {
			t.Fatalf("pop %d, want %d", got, want[0])
		}
		want = want[1:]
	}
	if d.len() != 0 {
		t.Errorf("len %d after popping all", d.len())
	}
}

func TestRingQueue(t *testing.T) {
	t.Parallel()
	var q ringQueue
	next, popped := 0, 0
	// Pushes (n > 0) and pops (n < 0) interleaved so that the ring wraps
	// and grows while it holds entries.
	for _, n := range []int{10, -5, 30, -25, 100, -60, 7} {
		for range n {
			q.push(flight{tag: int32(next)})
			next++
		}
		for range -n {
			if f := q.pop(); int(f.tag) != popped {
				t.Fatalf("pop %d, want %d", f.tag, popped)
			}
			popped++
		}
	}
	if q.len() != next-popped {
		t.Errorf("len %d, want %d", q.len(), next-popped)
	}
	for q.len() > 0 {
		if f := q.pop(); int(f.tag) != popped {
			t.Fatalf("pop %d, want %d", f.tag, popped)
		}
		popped++
	}
}
