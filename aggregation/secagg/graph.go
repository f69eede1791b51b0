package secagg

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"sort"
)

// graph is the neighbour graph of a session: complete (k = 0), or the
// Harary graph H(k, n) over a permutation of the ids (see
// Config.Neighbours).
type graph struct {
	n, k int
	pos  []int    // pos[id]: id's position, for id in 1..n (k > 0 only)
	at   []uint32 // at[p]: the id at position p (k > 0 only)
}

// newGraph builds cfg's graph; cfg must be valid.
func newGraph(cfg Config) *graph {
	g := &graph{n: cfg.N, k: cfg.Degree}
	if g.k == 0 {
		return g
	}
	type keyed struct {
		key [32]byte
		id  uint32
	}
	ks := make([]keyed, g.n)
	for i := range ks {
		id := uint32(i + 1)
		ks[i] = keyed{sha256.Sum256(newTranscript("graph").fixed(cfg.GraphSeed[:]).u32(id)), id}
	}
	sort.Slice(ks, func(i, j int) bool {
		if c := bytes.Compare(ks[i].key[:], ks[j].key[:]); c != 0 {
			return c < 0
		}
		return ks[i].id < ks[j].id
	})
	g.pos = make([]int, g.n+1)
	g.at = make([]uint32, g.n)
	for p, k := range ks {
		g.at[p] = k.id
		g.pos[k.id] = p
	}
	return g
}

// eachNeighbour calls f for each neighbour of id, in no particular order.
func (g *graph) eachNeighbour(id uint32, f func(uint32)) {
	if g.k == 0 {
		for v := uint32(1); v <= uint32(g.n); v++ {
			if v != id {
				f(v)
			}
		}
		return
	}
	p := g.pos[id]
	for o := 1; o <= g.k/2; o++ {
		f(g.at[(p+o)%g.n])
		f(g.at[(p-o+g.n)%g.n])
	}
	if g.k%2 == 1 {
		f(g.at[(p+g.n/2)%g.n])
	}
}

// neighbours returns id's neighbours, sorted.
func (g *graph) neighbours(id uint32) []uint32 {
	out := make([]uint32, 0, g.degree())
	g.eachNeighbour(id, func(v uint32) { out = append(out, v) })
	slices.Sort(out)
	return out
}

func (g *graph) degree() int {
	if g.k == 0 {
		return g.n - 1
	}
	return g.k
}

// adjacent reports whether a and b are neighbours.
func (g *graph) adjacent(a, b uint32) bool {
	if a == b || a == 0 || b == 0 || a > uint32(g.n) || b > uint32(g.n) {
		return false
	}
	if g.k == 0 {
		return true
	}
	d := g.pos[a] - g.pos[b]
	if d < 0 {
		d = -d
	}
	d = min(d, g.n-d)
	return d <= g.k/2 || (g.k%2 == 1 && 2*d == g.n)
}

// closedCount is |N[id] ∩ s|: how many of id and its neighbours are in s.
func (g *graph) closedCount(id uint32, s *idSet) int {
	if g.k == 0 {
		return s.len()
	}
	c := 0
	if s.has(id) {
		c++
	}
	g.eachNeighbour(id, func(v uint32) {
		if s.has(v) {
			c++
		}
	})
	return c
}

// hasNeighbourIn reports whether some neighbour of id is in s.
func (g *graph) hasNeighbourIn(id uint32, s *idSet) bool {
	if g.k == 0 {
		return s.len() > 1 || (s.len() == 1 && !s.has(id))
	}
	found := false
	g.eachNeighbour(id, func(v uint32) { found = found || s.has(v) })
	return found
}

// components returns the sizes of the connected components of the graph
// induced on s, largest first.
func (g *graph) components(s *idSet) []int {
	seen := newIDSet(g.n)
	var sizes []int
	for _, start := range s.list() {
		if seen.has(start) {
			continue
		}
		size := 0
		queue := []uint32{start}
		seen.add(start)
		for len(queue) > 0 {
			u := queue[0]
			queue = queue[1:]
			size++
			g.eachNeighbour(u, func(v uint32) {
				if s.has(v) && !seen.has(v) {
					seen.add(v)
					queue = append(queue, v)
				}
			})
		}
		sizes = append(sizes, size)
	}
	slices.SortFunc(sizes, func(a, b int) int { return b - a })
	return sizes
}

// idSet is a set of participant ids 1..n.
type idSet struct {
	in []bool
	n  int
}

func newIDSet(n int) *idSet { return &idSet{in: make([]bool, n+1)} }

func idSetOf(n int, ids []uint32) *idSet {
	s := newIDSet(n)
	for _, id := range ids {
		s.add(id)
	}
	return s
}

func (s *idSet) has(id uint32) bool { return int(id) < len(s.in) && s.in[id] }

func (s *idSet) add(id uint32) {
	if !s.in[id] {
		s.in[id] = true
		s.n++
	}
}

func (s *idSet) remove(id uint32) {
	if s.in[id] {
		s.in[id] = false
		s.n--
	}
}

func (s *idSet) len() int { return s.n }

// list returns the members in increasing order.
func (s *idSet) list() []uint32 {
	out := make([]uint32, 0, s.n)
	for id, in := range s.in {
		if in {
			out = append(out, uint32(id))
		}
	}
	return out
}
