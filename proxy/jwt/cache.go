package jwt

import (
	"math/bits"
	"sync/atomic"
)

// entry is one verified token. It is immutable once stored in the cache.
type entry struct {
	token    string // the full token, compared on every hit (no collision can pass)
	hash     uint64 // xxhash of token
	fp       uint64 // fingerprint of the key set that verified it
	deadline int64  // unix nanoseconds; a hit needs now < deadline
	// values[i] is the header value for forward[i]; nil when the claim is
	// absent (the header is then not set). str holds the same as strings.
	values [][]byte
	str    []string
	// sub is the token's sub claim when it is a string, for the access
	// log; nil otherwise.
	sub []byte
}

// cache is a bounded, lock-free set of verified tokens: a power-of-two array
// of atomic slots, and every token has two candidate slots derived from its
// hash. A lookup is two atomic loads and a comparison; an insert overwrites
// an empty or stale candidate, else the one that expires first. Concurrent
// inserts may overwrite each other; that only costs a later re-verification.
type cache struct {
	slots []atomic.Pointer[entry]
	mask  uint64
}

// newCache returns a cache of at least size slots (rounded up to a power of
// two, at least 2).
func newCache(size int) *cache {
	n := 2
	for n < size {
		n <<= 1
	}
	return &cache{slots: make([]atomic.Pointer[entry], n), mask: uint64(n - 1)}
}

func (c *cache) index(h uint64) (uint64, uint64) {
	i := h & c.mask
	j := bits.RotateLeft64(h, 32) & c.mask
	if j == i {
		j = i ^ 1
	}
	return i, j
}

// get returns the live entry for tok (hash h) verified by key set fp, or nil.
func (c *cache) get(tok []byte, h, fp uint64, now int64) *entry {
	i, j := c.index(h)
	if e := c.slots[i].Load(); e != nil && e.hash == h && e.token == string(tok) {
		if e.fp == fp && now < e.deadline {
			return e
		}
		return nil
	}
	if e := c.slots[j].Load(); e != nil && e.hash == h && e.token == string(tok) {
		if e.fp == fp && now < e.deadline {
			return e
		}
	}
	return nil
}

// getString is get for a token held as a string (net/http).
func (c *cache) getString(tok string, h, fp uint64, now int64) *entry {
	i, j := c.index(h)
	for _, k := range [2]uint64{i, j} {
		if e := c.slots[k].Load(); e != nil && e.hash == h && e.token == tok {
			if e.fp == fp && now < e.deadline {
				return e
			}
			return nil
		}
	}
	return nil
}

// put stores e in one of its two slots.
func (c *cache) put(e *entry, now int64) {
	i, j := c.index(e.hash)
	a, b := c.slots[i].Load(), c.slots[j].Load()
	switch {
	case a == nil || a.stale(e, now):
		c.slots[i].Store(e)
	case b == nil || b.stale(e, now):
		c.slots[j].Store(e)
	case b.deadline < a.deadline:
		c.slots[j].Store(e)
	default:
		c.slots[i].Store(e)
	}
}

// stale reports whether e may be replaced by n without losing anything:
// it expired, was verified by other keys, or is the same token.
func (e *entry) stale(n *entry, now int64) bool {
	return now >= e.deadline || e.fp != n.fp || (e.hash == n.hash && e.token == n.token)
}
