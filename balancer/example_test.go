package balancer_test

import (
	"fmt"

	"frontdoor/balancer"
)

// newMembers makes healthy backends for the examples; in frontdoor the health
// checker marks them up.
func newMembers(addrs ...string) []balancer.Member {
	members := make([]balancer.Member, len(addrs))
	for i, a := range addrs {
		b := balancer.NewBackend(a)
		b.SetHealthy(true)
		members[i] = balancer.Member{Backend: b, Weight: 1}
	}
	return members
}

// A request's whole cycle through a pool: pick, count it in flight, retry on
// another member after a failure, release.
func Example() {
	members := newMembers("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	pool, err := balancer.NewPool(members, balancer.Options{Strategy: balancer.LeastConn})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	// Three requests are busy: two on the first backend, one on the second.
	pool.Acquire(0)
	pool.Acquire(0)
	pool.Acquire(1)

	var tried uint64
	i := pool.PickAcquire(0, tried)
	fmt.Println("first try:", pool.Members()[i].Backend.Address())
	// Suppose that backend failed: release it and try another.
	pool.Release(i)
	tried |= 1 << (i % 64)
	j := pool.PickAcquire(0, tried)
	fmt.Println("retry:", pool.Members()[j].Backend.Address(), "retry avoids first:", j != i)
	pool.Release(j)

	for _, m := range members {
		m.Backend.SetHealthy(false)
	}
	if pool.Pick(0, 0) < 0 {
		fmt.Println(balancer.ErrNoBackend)
	}
	// Output:
	// first try: 127.0.0.1:9003
	// retry: 127.0.0.1:9002 retry avoids first: true
	// balancer: no healthy backend
}

func ExampleNewPool() {
	members := newMembers("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	members[2].Weight = 2
	pool, err := balancer.NewPool(members, balancer.Options{Strategy: balancer.RoundRobin})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	for range 8 {
		fmt.Print(pool.Pick(0, 0), " ")
	}
	fmt.Println()
	// Output: 0 2 1 2 0 2 1 2
}

// Consistent hashing maps a key to the same backend in every process that
// has the same backends, listed in any order, and moves only the keys of a
// backend that goes down.
func ExampleNewPool_consistentHash() {
	a := newMembers("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80")
	b := newMembers("10.0.0.3:80", "10.0.0.1:80", "10.0.0.4:80", "10.0.0.2:80")
	opts := balancer.Options{Strategy: balancer.ConsistentHash, BoundedLoad: 1.25}
	pa, err := balancer.NewPool(a, opts)
	if err != nil {
		panic(err)
	}
	defer pa.Close()
	pb, err := balancer.NewPool(b, opts)
	if err != nil {
		panic(err)
	}
	defer pb.Close()

	const key = 0x9e3779b97f4a7c15 // e.g. xxhash of a user ID
	ia, ib := pa.Pick(key, 0), pb.Pick(key, 0)
	fmt.Println(a[ia].Backend.Address(), b[ib].Backend.Address())
	// Output: 10.0.0.2:80 10.0.0.2:80
}

// An operator drains a backend for a deploy: it takes no new request while
// those in flight finish, and comes back with AdminReady.
func ExampleBackend_SetAdminState() {
	members := newMembers("127.0.0.1:9001", "127.0.0.1:9002")
	pool, err := balancer.NewPool(members, balancer.Options{})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	b := members[0].Backend
	b.SetAdminState(balancer.AdminDrain)
	fmt.Println(b.AdminState(), b.Healthy(), b.Up())
	for range 3 {
		fmt.Println(pool.Members()[pool.Pick(0, 0)].Backend.Address())
	}
	b.SetAdminState(balancer.AdminReady)
	fmt.Println(b.AdminState(), b.Up())
	// Output:
	// drain true false
	// 127.0.0.1:9002
	// 127.0.0.1:9002
	// 127.0.0.1:9002
	// ready true
}

// A runtime weight replaces the configured one while the config keeps that
// weight; a reload that edits the weight drops it.
func ExampleBackend_SetWeight() {
	b := balancer.NewBackend("127.0.0.1:9001")
	b.SetWeight(5, 1) // the config says weight 1
	fmt.Println(b.Weight(1))
	fmt.Println(b.Weight(3)) // the file now says 3
	b.DropStaleWeight(3)
	fmt.Println(b.Weight(1))
	// Output:
	// 5 true
	// 3 false
	// 1 false
}

func ExampleParseAdminState() {
	s, err := balancer.ParseAdminState("maint")
	fmt.Println(s, err)
	_, err = balancer.ParseAdminState("up")
	fmt.Println(err)
	// Output:
	// maint <nil>
	// balancer: unknown admin state "up"; want ready, drain or maint
}

// Round robin over backends of weights 1, 2 and 3 with the weight-2 one
// down: its share goes to the others in proportion to their weights, 1:3.
// (Here it was down before the pool was built; a backend that goes down
// later leaves the schedule once the pool's rebuild lands, and slow start,
// Options.SlowStart, ramps it back in when it returns.)
func ExampleNewPool_memberDown() {
	members := newMembers("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003")
	members[1].Weight, members[2].Weight = 2, 3
	members[1].Backend.SetHealthy(false)
	pool, err := balancer.NewPool(members, balancer.Options{Strategy: balancer.RoundRobin})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	for range 8 {
		fmt.Print(pool.Pick(0, 0), " ")
	}
	fmt.Println()
	// Output: 0 2 2 2 0 2 2 2
}
