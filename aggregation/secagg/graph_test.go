package secagg

import (
	"fmt"
	"slices"
	"testing"
)

// TestNeighbours checks the graphs' defining properties for many sizes:
// sorted lists without the participant itself, symmetry, exactly k
// neighbours, the Harary structure over the permutation, adjacent agreeing
// with Neighbours, and connectivity.
func TestNeighbours(t *testing.T) {
	for n := 2; n <= 24; n++ {
		for k := 0; k < n; k++ {
			if k%2 == 1 && n%2 == 1 {
				continue
			}
			cfg := testConfig(n, n, k, 1)
			if k > 0 {
				cfg.Threshold = (k+1)/2 + 1 // more than half of k+1
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("n=%d k=%d: %v", n, k, err)
			}
			t.Run(fmt.Sprintf("n=%d/k=%d", n, k), func(t *testing.T) { checkGraph(t, cfg) })
		}
	}
}

func checkGraph(t *testing.T, cfg Config) {
	n, k := cfg.N, cfg.Degree
	g := newGraph(cfg)
	want := k
	if k == 0 {
		want = n - 1
	}
	lists := map[uint32][]uint32{}
	for id := uint32(1); id <= uint32(n); id++ {
		nb := cfg.Neighbours(id)
		lists[id] = nb
		if len(nb) != want {
			t.Fatalf("participant %d has %d neighbours %v, want %d", id, len(nb), nb, want)
		}
		if !slices.IsSorted(nb) || slices.Contains(nb, id) || len(slices.Compact(slices.Clone(nb))) != len(nb) {
			t.Fatalf("Neighbours(%d) = %v: not sorted, distinct, without itself", id, nb)
		}
		for v := uint32(1); v <= uint32(n); v++ {
			if g.adjacent(id, v) != slices.Contains(nb, v) {
				t.Fatalf("adjacent(%d, %d) = %v, but Neighbours(%d) = %v", id, v, g.adjacent(id, v), id, nb)
			}
		}
		if k > 0 {
			// Harary H(k, n): neighbours at ring distance 1..k/2, plus
			// the opposite position for odd k.
			for _, v := range nb {
				d := (g.pos[v] - g.pos[id] + n) % n
				d = min(d, n-d)
				if d == 0 || (d > k/2 && !(k%2 == 1 && 2*d == n)) {
					t.Fatalf("participants %d and %d are neighbours at ring distance %d, k = %d", id, v, d, k)
				}
			}
		}
	}
	for u, nb := range lists {
		for _, v := range nb {
			if !slices.Contains(lists[v], u) {
				t.Fatalf("%d lists %d as neighbour but not the other way round", u, v)
			}
		}
	}
	all := newIDSet(n)
	for id := uint32(1); id <= uint32(n); id++ {
		all.add(id)
	}
	if parts := g.components(all); k != 1 && !slices.Equal(parts, []int{n}) {
		t.Fatalf("components = %v, want one of %d", parts, n)
	}
	if cfg.Neighbours(0) != nil || cfg.Neighbours(uint32(n+1)) != nil {
		t.Fatal("Neighbours of an id out of range is not nil")
	}
}

// TestGraphSeed checks that the graph depends on GraphSeed (the server
// must not be able to pick it, so it must matter) and not on anything
// else in the configuration.
func TestGraphSeed(t *testing.T) {
	a := testConfig(40, 4, 6, 1)
	b := a
	b.GraphSeed[0] ^= 1
	c := a
	c.Session = []byte("another session")
	c.Dim = 99
	differ := false
	for id := uint32(1); id <= 40; id++ {
		if !slices.Equal(a.Neighbours(id), b.Neighbours(id)) {
			differ = true
		}
		if !slices.Equal(a.Neighbours(id), c.Neighbours(id)) {
			t.Fatalf("participant %d: the graph changes with Session or Dim", id)
		}
	}
	if !differ {
		t.Fatal("another GraphSeed gives the same graph")
	}
}

// TestComponents checks the connectivity helper on a ring (2-regular)
// cut into pieces.
func TestComponents(t *testing.T) {
	cfg := testConfig(10, 2, 2, 1)
	g := newGraph(cfg)
	s := newIDSet(10)
	for p := range 10 {
		if p != 0 && p != 3 {
			s.add(g.at[p])
		}
	}
	// Positions 1-2 and 4-9 are left.
	if got := g.components(s); !slices.Equal(got, []int{6, 2}) {
		t.Fatalf("components = %v, want [6 2]", got)
	}
	s.add(g.at[3])
	if got := g.components(s); !slices.Equal(got, []int{9}) {
		t.Fatalf("components = %v, want [9]", got)
	}
}
