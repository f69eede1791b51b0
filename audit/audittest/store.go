// Package audittest holds the conformance suite of audit.Store, which
// every implementation passes (audit's bbolt file and memory stores), as
// x/mod's sumdb/storage.TestStorage does for its storage.
package audittest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/internal/fedtest/hammer"
)

// Origin is the origin of the stores the suite asks for.
const Origin = "fedguard.example/audittest"

// Factory makes the stores the suite tests.
type Factory struct {
	// New returns a new, empty store of a log of origin Origin.
	New func(t *testing.T) audit.Store
	// Reopen closes s and opens what it stored again, to check that
	// appended events and checkpoints are durable. Nil for a store that
	// keeps nothing beyond itself (memory): the durability test is
	// skipped.
	Reopen func(t *testing.T, s audit.Store) audit.Store
}

// TestStore runs the conformance suite against the stores f makes.
func TestStore(t *testing.T, f Factory) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, f) })
	t.Run("AppendOrder", func(t *testing.T) { testAppendOrder(t, f) })
	t.Run("RefusedBatch", func(t *testing.T) { testRefusedBatch(t, f) })
	t.Run("ReadBack", func(t *testing.T) { testReadBack(t, f) })
	t.Run("TreeHashes", func(t *testing.T) { testTreeHashes(t, f) })
	t.Run("Checkpoints", func(t *testing.T) { testCheckpoints(t, f) })
	t.Run("Durable", func(t *testing.T) { testDurable(t, f) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, f) })
	t.Run("ConcurrentReaders", func(t *testing.T) { testConcurrentReaders(t, f) })
}

// model is the suite's own record of a log: its events and the tree
// hashes tlog gives them, computed without any Store.
type model struct {
	encs   [][]byte
	hashes []tlog.Hash
	last   audit.Hash
}

func (m *model) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		if idx < 0 || idx >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("model: no hash %d", idx)
		}
		out[i] = m.hashes[idx]
	}
	return out, nil
}

// batch makes the next n events of m (real event encodings, chained) and
// records them.
func (m *model) batch(t *testing.T, n int) audit.Batch {
	t.Helper()
	b := audit.Batch{Start: uint64(len(m.encs))}
	for range n {
		seq := uint64(len(m.encs))
		ev := audit.Event{
			Seq: seq, Kind: audit.KindUpdateReceived, Actor: fmt.Sprintf("hospital-%02d", seq%7), Round: seq / 10,
			Time:    time.Date(2025, 3, 1, 9, 0, 0, int(seq)*1001, time.UTC),
			Payload: fmt.Appendf(nil, `{"attempt":1,"sha256":"%064x","samples":%d}`, seq, 100+seq), Prev: m.last,
		}
		enc, err := ev.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		hs, err := tlog.StoredHashes(int64(seq), enc, m)
		if err != nil {
			t.Fatal(err)
		}
		m.encs = append(m.encs, enc)
		m.hashes = append(m.hashes, hs...)
		m.last = sha256.Sum256(enc)
		b.Events = append(b.Events, slices.Clone(enc))
		b.Hashes = append(b.Hashes, hs...)
	}
	b.Last = m.last
	return b
}

// fill appends batches of the given sizes to s, as m makes them.
func fill(t *testing.T, s audit.Store, m *model, sizes ...int) {
	t.Helper()
	for _, n := range sizes {
		if err := s.Append(m.batch(t, n)); err != nil {
			t.Fatalf("Append(%d events from %d): %v", n, len(m.encs)-n, err)
		}
	}
}

// filled returns a new store of f, closed when the test ends, with
// batches of the given sizes appended, and its model.
func filled(t *testing.T, f Factory, sizes ...int) (audit.Store, *model) {
	t.Helper()
	s := f.New(t)
	t.Cleanup(func() { s.Close() })
	m := &model{}
	fill(t, s, m, sizes...)
	return s, m
}

// checkHead checks s's head against m.
func checkHead(t *testing.T, s audit.Store, m *model) {
	t.Helper()
	size, last, err := s.Head()
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	if size != uint64(len(m.encs)) || last != m.last {
		t.Fatalf("Head = %d, %s; want %d, %s", size, last, len(m.encs), m.last)
	}
}

// checkContent checks that s holds exactly m's events and tree hashes.
func checkContent(t *testing.T, s audit.Store, m *model) {
	t.Helper()
	checkHead(t, s, m)
	var got [][]byte
	for from := uint64(0); from < uint64(len(m.encs)); {
		encs, err := s.ReadEvents(from, 7, 1<<20)
		if err != nil || len(encs) == 0 {
			t.Fatalf("ReadEvents(%d) = %d events, %v", from, len(encs), err)
		}
		got = append(got, encs...)
		from += uint64(len(encs))
	}
	if !slices.EqualFunc(got, m.encs, slices.Equal) {
		t.Fatalf("the stored events are not those appended, in order")
	}
	indexes := make([]int64, len(m.hashes))
	for i := range indexes {
		indexes[i] = int64(i)
	}
	hs, err := s.ReadHashes(indexes)
	if err != nil {
		t.Fatalf("ReadHashes(all %d): %v", len(indexes), err)
	}
	if !slices.Equal(hs, m.hashes) {
		t.Fatal("the stored tree hashes are not those appended")
	}
}

func testEmpty(t *testing.T, f Factory) {
	s := f.New(t)
	defer s.Close()
	if s.Origin() != Origin {
		t.Errorf("Origin = %q, want %q", s.Origin(), Origin)
	}
	checkHead(t, s, &model{})
	if encs, err := s.ReadEvents(0, 10, 1<<20); err != nil || len(encs) != 0 {
		t.Errorf("ReadEvents(0) of an empty store = %d events, %v; want none", len(encs), err)
	}
	if _, err := s.ReadEvents(1, 10, 1<<20); err == nil {
		t.Error("ReadEvents(1) of an empty store succeeded")
	}
	if _, err := s.ReadHashes([]int64{0}); err == nil {
		t.Error("ReadHashes([0]) of an empty store succeeded")
	}
	if cps, err := s.Checkpoints(); err != nil || len(cps) != 0 {
		t.Errorf("Checkpoints = %v, %v; want none", cps, err)
	}
	if _, ok, err := s.LatestCheckpoint(); ok || err != nil {
		t.Errorf("LatestCheckpoint = %t, %v; want none", ok, err)
	}
	if _, err := s.AddCheckpoint(audit.StoredCheckpoint{Size: 1, Note: []byte("x")}); err == nil {
		t.Error("AddCheckpoint of size 1 on an empty store succeeded")
	}
}

func testAppendOrder(t *testing.T, f Factory) {
	s := f.New(t)
	defer s.Close()
	m := &model{}
	// Batches of one event, of many, and across the tree's levels.
	fill(t, s, m, 1, 1, 5, 1, 64, 3, 129)
	checkContent(t, s, m)
}

func testRefusedBatch(t *testing.T, f Factory) {
	s, m := filled(t, f, 10)
	next := *m
	next.encs, next.hashes = slices.Clone(m.encs), slices.Clone(m.hashes)
	good := next.batch(t, 3)
	for _, tc := range []struct {
		name string
		edit func(b *audit.Batch)
	}{
		{"starting past the head", func(b *audit.Batch) { b.Start++ }},
		{"starting before the head", func(b *audit.Batch) { b.Start-- }},
		{"a tree hash short", func(b *audit.Batch) { b.Hashes = b.Hashes[:len(b.Hashes)-1] }},
		{"a tree hash too many", func(b *audit.Batch) { b.Hashes = append(b.Hashes, tlog.Hash{}) }},
		{"empty", func(b *audit.Batch) { b.Events, b.Hashes = nil, nil }},
	} {
		b := good
		b.Events, b.Hashes = slices.Clone(good.Events), slices.Clone(good.Hashes)
		tc.edit(&b)
		if err := s.Append(b); err == nil {
			t.Errorf("Append of a batch %s succeeded", tc.name)
		}
		checkContent(t, s, m) // nothing of it stored
	}
	if err := s.Append(good); err != nil {
		t.Fatalf("Append after refusals: %v", err)
	}
	checkContent(t, s, &next)
	if err := s.Append(good); err == nil {
		t.Error("Append of the same batch twice succeeded")
	}
}

func testReadBack(t *testing.T, f Factory) {
	s, m := filled(t, f, 20)
	for _, tc := range []struct {
		from          uint64
		max, maxBytes int
		want          int
	}{
		{0, 100, 1 << 20, 20},
		{5, 3, 1 << 20, 3},
		{18, 100, 1 << 20, 2},
		{20, 100, 1 << 20, 0},
		{0, 100, 1, 1},                  // always one
		{3, 100, len(m.encs[3]) + 1, 2}, // stops once past maxBytes
		{3, 100, len(m.encs[3]), 1},     // …or at it
		{0, 1, 1 << 20, 1},              // max
		{19, 100, 0, 1},                 // one, whatever maxBytes
		{0, 20, len(m.encs[0]) + len(m.encs[1]), 2},
	} {
		encs, err := s.ReadEvents(tc.from, tc.max, tc.maxBytes)
		if err != nil {
			t.Fatalf("ReadEvents(%d, %d, %d): %v", tc.from, tc.max, tc.maxBytes, err)
		}
		if len(encs) != tc.want {
			t.Errorf("ReadEvents(%d, %d, %d) = %d events, want %d", tc.from, tc.max, tc.maxBytes, len(encs), tc.want)
		}
		for i, e := range encs {
			if !slices.Equal(e, m.encs[tc.from+uint64(i)]) {
				t.Errorf("ReadEvents(%d, …)[%d] is not event %d", tc.from, i, tc.from+uint64(i))
			}
		}
	}
	if _, err := s.ReadEvents(21, 10, 1<<20); err == nil {
		t.Error("ReadEvents beyond the head succeeded")
	}
	// What the store returns is the caller's: changing it changes nothing
	// stored, and neither does changing what was appended.
	encs, err := s.ReadEvents(0, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	encs[0][0] ^= 1
	b := m.batch(t, 1)
	if err := s.Append(b); err != nil {
		t.Fatal(err)
	}
	b.Events[0][0] ^= 1
	b.Hashes[0][0] ^= 1
	hs, err := s.ReadHashes([]int64{0})
	if err != nil {
		t.Fatal(err)
	}
	hs[0][0] ^= 1
	checkContent(t, s, m)
}

func testTreeHashes(t *testing.T, f Factory) {
	s, m := filled(t, f, 1, 2, 30, 100, 1, 66)
	n := int64(len(m.encs))
	// The store is the tlog.HashReader of tree hashes, roots and proofs,
	// as the Log uses it: they must be what the model gives.
	for _, size := range []int64{1, 2, 3, 33, 64, 100, 134, n} {
		want, err := tlog.TreeHash(size, m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tlog.TreeHash(size, s)
		if err != nil || got != want {
			t.Fatalf("TreeHash(%d) from the store = %v, %v; want %v", size, got, err, want)
		}
		for _, i := range []int64{0, size / 2, size - 1} {
			p, err := tlog.ProveRecord(size, i, s)
			if err != nil {
				t.Fatalf("ProveRecord(%d, %d): %v", size, i, err)
			}
			if err := tlog.CheckRecord(p, size, want, i, tlog.RecordHash(m.encs[i])); err != nil {
				t.Fatalf("the store's proof of record %d in tree %d does not check: %v", i, size, err)
			}
		}
		if size > 1 {
			p, err := tlog.ProveTree(size, size/2, s)
			if err != nil {
				t.Fatal(err)
			}
			old, _ := tlog.TreeHash(size/2, m)
			if err := tlog.CheckTree(p, size, want, size/2, old); err != nil {
				t.Fatalf("the store's proof of tree %d in tree %d does not check: %v", size/2, size, err)
			}
		}
	}
	// Tiles, as a tile server would serve them from the same hashes.
	tiles := tlog.NewTiles(2, 0, n)
	for _, tile := range tiles {
		data, err := tlog.ReadTileData(tile, s)
		if err != nil {
			t.Fatalf("ReadTileData(%v): %v", tile, err)
		}
		want, err := tlog.ReadTileData(tile, m)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(data, want) {
			t.Fatalf("tile %v from the store is not the model's", tile)
		}
	}
	if _, err := s.ReadHashes([]int64{int64(len(m.hashes))}); err == nil {
		t.Error("ReadHashes of an index not stored succeeded")
	}
	if _, err := s.ReadHashes([]int64{-1}); err == nil {
		t.Error("ReadHashes(-1) succeeded")
	}
}

func testCheckpoints(t *testing.T, f Factory) {
	s, _ := filled(t, f, 30)
	add := func(size uint64, note string) audit.StoredCheckpoint {
		t.Helper()
		c, err := s.AddCheckpoint(audit.StoredCheckpoint{Size: size, Note: []byte(note)})
		if err != nil {
			t.Fatalf("AddCheckpoint(%d): %v", size, err)
		}
		return c
	}
	// Out of order: they are kept by size.
	add(20, "note 20")
	add(5, "note 5")
	if c := add(20, "another note 20"); string(c.Note) != "note 20" {
		t.Errorf("AddCheckpoint of a stored size returned %q, want the first, %q", c.Note, "note 20")
	}
	add(30, "note 30")
	for _, size := range []uint64{0, 31} {
		if _, err := s.AddCheckpoint(audit.StoredCheckpoint{Size: size, Note: []byte("x")}); err == nil {
			t.Errorf("AddCheckpoint(%d) of a log of 30 events succeeded", size)
		}
	}
	if _, err := s.AddCheckpoint(audit.StoredCheckpoint{Size: 10}); err == nil {
		t.Error("AddCheckpoint of an empty note succeeded")
	}
	want := []audit.StoredCheckpoint{{Size: 5, Note: []byte("note 5")}, {Size: 20, Note: []byte("note 20")}, {Size: 30, Note: []byte("note 30")}}
	checkCheckpoints(t, s, want)
}

func checkCheckpoints(t *testing.T, s audit.Store, want []audit.StoredCheckpoint) {
	t.Helper()
	cps, err := s.Checkpoints()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(cps, want, func(a, b audit.StoredCheckpoint) bool { return a.Size == b.Size && slices.Equal(a.Note, b.Note) }) {
		t.Fatalf("Checkpoints = %s, want %s", describe(cps...), describe(want...))
	}
	latest, ok, err := s.LatestCheckpoint()
	if err != nil || !ok || latest.Size != want[len(want)-1].Size || !slices.Equal(latest.Note, want[len(want)-1].Note) {
		t.Fatalf("LatestCheckpoint = %s, %t, %v; want %s", describe(latest), ok, err, describe(want[len(want)-1]))
	}
}

func testDurable(t *testing.T, f Factory) {
	if f.Reopen == nil {
		t.Skip("the store keeps nothing beyond itself")
	}
	s := f.New(t)
	m := &model{}
	fill(t, s, m, 1, 40, 7)
	if _, err := s.AddCheckpoint(audit.StoredCheckpoint{Size: 41, Note: []byte("note 41")}); err != nil {
		t.Fatal(err)
	}
	s = f.Reopen(t, s)
	if s.Origin() != Origin {
		t.Errorf("Origin after reopening = %q, want %q", s.Origin(), Origin)
	}
	checkContent(t, s, m)
	checkCheckpoints(t, s, []audit.StoredCheckpoint{{Size: 41, Note: []byte("note 41")}})
	// It goes on from where it was.
	fill(t, s, m, 3)
	s = f.Reopen(t, s)
	checkContent(t, s, m)
	s.Close()
}

func testClosed(t *testing.T, f Factory) {
	s := f.New(t)
	m := &model{}
	fill(t, s, m, 5)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, audit.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	check("Append", s.Append(m.batch(t, 1)))
	_, _, err := s.Head()
	check("Head", err)
	_, err = s.ReadEvents(0, 1, 1)
	check("ReadEvents", err)
	_, err = s.ReadHashes([]int64{0})
	check("ReadHashes", err)
	_, err = s.Checkpoints()
	check("Checkpoints", err)
	_, _, err = s.LatestCheckpoint()
	check("LatestCheckpoint", err)
	_, err = s.AddCheckpoint(audit.StoredCheckpoint{Size: 1, Note: []byte("x")})
	check("AddCheckpoint", err)
	check("Close", s.Close())
}

// testConcurrentReaders reads while one writer appends: every reader sees
// a head whose events and tree hashes are all there and agree with it
// (run it with -race).
func testConcurrentReaders(t *testing.T, f Factory) {
	s := f.New(t)
	defer s.Close()
	m := &model{}
	const batches = 40
	// The model's roots, before the store has any of it.
	var all []audit.Batch
	for i := range batches {
		all = append(all, m.batch(t, 1+i%5))
	}
	roots := map[uint64]tlog.Hash{}
	for n := int64(1); n <= int64(len(m.encs)); n++ {
		r, err := tlog.TreeHash(n, m)
		if err != nil {
			t.Fatal(err)
		}
		roots[uint64(n)] = r
	}
	stop := hammer.Start(4, func(r int) bool {
		size, last, err := s.Head()
		if err != nil {
			t.Errorf("reader %d: Head: %v", r, err)
			return false
		}
		if size == 0 {
			return true
		}
		encs, err := s.ReadEvents(size-1, 1, 1<<20)
		if err != nil || len(encs) != 1 || audit.Hash(sha256.Sum256(encs[0])) != last {
			t.Errorf("reader %d: the last of %d events does not hash to the head's (%v)", r, size, err)
			return false
		}
		if root, err := tlog.TreeHash(int64(size), s); err != nil || root != roots[size] {
			t.Errorf("reader %d: TreeHash(%d) = %v, %v; want %v", r, size, root, err, roots[size])
			return false
		}
		return true
	})
	for _, b := range all {
		if err := s.Append(b); err != nil {
			t.Error(err)
			break
		}
	}
	stop()
	checkContent(t, s, m)
}

func describe(cps ...audit.StoredCheckpoint) string {
	var parts []string
	for _, c := range cps {
		parts = append(parts, fmt.Sprintf("%d:%q", c.Size, c.Note))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
