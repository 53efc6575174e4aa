package balancer

import (
	"fmt"
	"testing"
)

// TestAdminStateKeepsBackendOutOfPicks drains, maints and weights-to-0 one
// member of three under every strategy: it gets no pick until set ready (or
// given a weight again), and the other two take every pick.
func TestAdminStateKeepsBackendOutOfPicks(t *testing.T) {
	t.Parallel()
	hold := []struct {
		name    string
		out     func(b *Backend)
		back    func(b *Backend)
		display AdminState
	}{
		{"drain", func(b *Backend) { b.SetAdminState(AdminDrain) }, func(b *Backend) { b.SetAdminState(AdminReady) }, AdminDrain},
		{"maint", func(b *Backend) { b.SetAdminState(AdminMaint) }, func(b *Backend) { b.SetAdminState(AdminReady) }, AdminMaint},
		{"weight 0", func(b *Backend) { b.SetWeight(0, 1) }, func(b *Backend) { b.SetWeight(1, 1) }, AdminReady},
	}
	for _, s := range benchStrategies {
		for _, h := range hold {
			t.Run(s.name+"/"+h.name, func(t *testing.T) {
				t.Parallel()
				bs := testBackends(3)
				p := mustPool(t, testMembers(bs), s.opts)
				h.out(bs[1])
				if bs[1].Up() || !bs[1].Healthy() || bs[1].AdminState() != h.display {
					t.Fatalf("after %s: Up %v Healthy %v AdminState %v", h.name, bs[1].Up(), bs[1].Healthy(), bs[1].AdminState())
				}
				waitSettled(t, p)
				for _, k := range testKeys(1, 3000) {
					if i := p.Pick(k, 0); i != 0 && i != 2 {
						t.Fatalf("pick %d (%s) while %s", i, addressOf(p, i), h.name)
					}
					// A retry that tried both others must not fall
					// back to the held-out member either.
					if i := p.Pick(k, 1|1<<2); i == 1 {
						t.Fatalf("retry picked the member held out by %s", h.name)
					}
				}
				h.back(bs[1])
				if !bs[1].Up() {
					t.Fatalf("not Up after undoing %s", h.name)
				}
				waitSettled(t, p)
				seen := false
				for _, k := range testKeys(2, 3000) {
					if p.Pick(k, 0) == 1 {
						seen = true
						break
					}
				}
				if !seen {
					t.Fatalf("no pick of the member after undoing %s", h.name)
				}
			})
		}
	}
}

// TestAdminStateBits checks that the admin bits and health combine: ready
// does not make a down or ejected backend Up, and a weight of 0 outlives
// AdminReady.
func TestAdminStateBits(t *testing.T) {
	t.Parallel()
	b := NewBackend("10.0.0.1:80")
	b.SetAdminState(AdminDrain)
	b.SetHealthy(true)
	if b.Up() {
		t.Fatal("drained backend Up after a health pass")
	}
	b.SetAdminState(AdminMaint)
	if b.AdminState() != AdminMaint {
		t.Fatalf("AdminState %v, want maint (maint replaces drain)", b.AdminState())
	}
	b.SetEjected(true)
	b.SetAdminState(AdminReady)
	if b.Up() {
		t.Fatal("ejected backend Up after ready")
	}
	b.SetEjected(false)
	if !b.Up() {
		t.Fatal("not Up: healthy, not ejected, ready")
	}
	b.SetWeight(0, 3)
	b.SetAdminState(AdminReady)
	if b.Up() {
		t.Fatal("weight 0 undone by ready")
	}
	b.SetWeight(5, 3)
	if !b.Up() {
		t.Fatal("weight 5 did not bring the backend back")
	}
}

// TestWeightOverride checks the reload rule: an override holds while the
// config's weight is the one it replaced, and is dropped once that changes.
func TestWeightOverride(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		set        int // -1: no override
		configured int // the config's weight at the next build
		want       int
		overridden bool
		up         bool // after DropStaleWeight(configured)
	}{
		{"no override", -1, 2, 2, false, true},
		{"override, config unchanged", 7, 2, 7, true, true},
		{"override, config changed", 7, 4, 4, false, true},
		{"weight 0, config unchanged", 0, 2, 0, true, false},
		{"weight 0, config changed", 0, 4, 4, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := NewBackend("10.0.0.1:80")
			b.SetHealthy(true)
			if tc.set >= 0 {
				b.SetWeight(tc.set, 2)
			}
			if w, ok := b.Weight(tc.configured); w != tc.want || ok != tc.overridden {
				t.Fatalf("Weight(%d) = %d, %v; want %d, %v", tc.configured, w, ok, tc.want, tc.overridden)
			}
			b.DropStaleWeight(tc.configured)
			if b.Up() != tc.up {
				t.Fatalf("Up %v after DropStaleWeight(%d), want %v", b.Up(), tc.configured, tc.up)
			}
			if w, ok := b.Weight(2); tc.configured != 2 && (ok || w != 2) {
				t.Fatalf("stale override kept: Weight(2) = %d, %v", w, ok)
			}
		})
	}
}

func TestParseAdminState(t *testing.T) {
	t.Parallel()
	for _, s := range []AdminState{AdminReady, AdminDrain, AdminMaint} {
		got, err := ParseAdminState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseAdminState(%q) = %v, %v", s.String(), got, err)
		}
	}
	if _, err := ParseAdminState("up"); err == nil {
		t.Error("ParseAdminState(up): no error")
	}
	if got := fmt.Sprint(AdminState(9)); got != "AdminState(9)" {
		t.Errorf("String of an invalid state: %q", got)
	}
}
