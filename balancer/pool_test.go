package balancer

import (
	"math"
	"strings"
	"sync"
	"testing"
)

func TestBackendState(t *testing.T) {
	t.Parallel()
	b := NewBackend("127.0.0.1:9001")
	if b.Up() || b.Healthy() || b.Ejected() {
		t.Fatal("a new backend must be down, not ejected")
	}
	steps := []struct {
		healthy, ejected bool
		up               bool
	}{
		{healthy: true, up: true},
		{healthy: true, ejected: true},
		{healthy: false, ejected: true},
		{healthy: false},
		{healthy: true, up: true},
	}
	for _, s := range steps {
		b.SetHealthy(s.healthy)
		b.SetEjected(s.ejected)
		if b.Up() != s.up || b.Healthy() != s.healthy || b.Ejected() != s.ejected {
			t.Fatalf("after SetHealthy(%v), SetEjected(%v): Up %v Healthy %v Ejected %v",
				s.healthy, s.ejected, b.Up(), b.Healthy(), b.Ejected())
		}
	}
	if b.ID() != NewBackend("127.0.0.1:9001").ID() || b.ID() == NewBackend("127.0.0.1:9002").ID() {
		t.Fatal("ID must depend on the address alone")
	}
	if b.Address() != "127.0.0.1:9001" {
		t.Fatalf("Address = %q", b.Address())
	}
}

func TestBackendNotifiesOnlyUpTransitions(t *testing.T) {
	t.Parallel()
	bs := testBackends(2)
	p := mustPool(t, testMembers(bs), Options{Strategy: ConsistentHash})
	builds := func() int64 {
		waitSettled(t, p)
		return p.builds.Load()
	}
	base := builds()
	bs[0].SetHealthy(true) // no change
	bs[0].SetEjected(false)
	if got := builds(); got != base {
		t.Fatalf("%d rebuilds without a state change", got-base)
	}
	bs[0].SetEjected(true) // down
	if got := builds(); got != base+1 {
		t.Fatalf("ejecting an up member: %d rebuilds, want 1", got-base)
	}
	bs[0].SetHealthy(false) // still down: Up unchanged
	bs[0].SetEjected(false) // still down (unhealthy)
	if got := builds(); got != base+1 {
		t.Fatalf("changes that keep the member down: %d rebuilds, want none", got-base-1)
	}
	bs[0].SetHealthy(true) // up again
	if got := builds(); got != base+2 {
		t.Fatalf("member back up: %d rebuilds in all, want 2", got-base)
	}
}

func TestNewPoolErrors(t *testing.T) {
	t.Parallel()
	b := testBackends(3)
	ok := testMembers(b)
	tests := []struct {
		name    string
		members []Member
		opts    Options
		err     string
	}{
		{name: "no members", opts: Options{}, err: "at least one backend"},
		{name: "nil backend", members: []Member{{Weight: 1}}, err: "nil backend"},
		{name: "zero weight", members: testMembers(b, 0), err: "weight 0"},
		{name: "weight too large", members: testMembers(b, MaxWeight+1), err: "outside 1..1000"},
		{name: "unknown strategy", members: ok, opts: Options{Strategy: "random"}, err: `unknown strategy "random"`},
		{name: "bounded load 1", members: ok, opts: Options{Strategy: ConsistentHash, BoundedLoad: 1}, err: "not above 1"},
		{name: "bounded load negative", members: ok, opts: Options{Strategy: ConsistentHash, BoundedLoad: -2}, err: "not above 1"},
		{name: "bounded load NaN", members: ok, opts: Options{Strategy: ConsistentHash, BoundedLoad: math.NaN()}, err: "not above 1"},
		{name: "table not prime", members: ok, opts: Options{Strategy: ConsistentHash, TableSize: 1000}, err: "not a prime"},
		{name: "table too small", members: ok, opts: Options{Strategy: ConsistentHash, TableSize: 293}, err: "below 100 x 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPool(tc.members, tc.opts)
			if err == nil {
				p.Close()
				t.Fatalf("NewPool succeeded, want error with %q", tc.err)
			}
			if !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "balancer: ") {
				t.Fatalf("NewPool error %q, want one with %q", err, tc.err)
			}
		})
	}
	// Options that other strategies ignore.
	for _, s := range []string{"", RoundRobin, LeastConn} {
		p, err := NewPool(ok, Options{Strategy: s, TableSize: 4, BoundedLoad: 0.5})
		if err != nil {
			t.Fatalf("strategy %q with hash options: %v", s, err)
		}
		p.Close()
	}
}

func TestPoolAcquireRelease(t *testing.T) {
	t.Parallel()
	for _, opts := range []Options{
		{Strategy: RoundRobin},
		{Strategy: LeastConn},
		{Strategy: ConsistentHash},
		{Strategy: ConsistentHash, BoundedLoad: 1.5},
	} {
		bs := testBackends(4)
		p := mustPool(t, testMembers(bs), opts)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for k := range 2000 {
					key := uint64(g*2000 + k)
					i := p.PickAcquire(key, 0)
					if i < 0 {
						t.Errorf("%+v: PickAcquire = -1", opts)
						return
					}
					j := p.Pick(key, 1<<i)
					p.Acquire(j)
					p.Release(j)
					p.Release(i)
				}
			})
		}
		wg.Wait()
		if got := p.InFlight(); got != 0 {
			t.Errorf("%+v: pool in flight %d after releases", opts, got)
		}
		for i, b := range bs {
			if b.InFlight() != 0 {
				t.Errorf("%+v: member %d in flight %d after releases", opts, i, b.InFlight())
			}
		}
	}
}

func TestEmptyPool(t *testing.T) {
	t.Parallel()
	for _, s := range []string{RoundRobin, LeastConn, ConsistentHash} {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			p, err := NewPool(nil, Options{Strategy: s, AllowEmpty: true})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if i := p.Pick(7, 0); i != -1 {
				t.Fatalf("Pick = %d, want -1", i)
			}
			if i := p.PickAcquire(7, 0); i != -1 {
				t.Fatalf("PickAcquire = %d, want -1", i)
			}
			if n := p.InFlight(); n != 0 || len(p.Members()) != 0 {
				t.Fatalf("InFlight %d, members %d", n, len(p.Members()))
			}
		})
	}
}
