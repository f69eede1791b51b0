package coordinator

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/dataset"
)

// storeImpl makes stores of one stateStore implementation for the
// conformance suite: open gives a new, empty store (closed when the test
// ends), reopen closes s and returns a store over what s committed, as a
// restart after a crash would find it.
type storeImpl struct {
	open   func(t *testing.T) stateStore
	reopen func(t *testing.T, s stateStore) stateStore
}

// TestStateStoreConformance runs the stateStore suite against the bbolt
// store (reopened from its file) and the in-memory one.
func TestStateStoreConformance(t *testing.T) {
	impls := map[string]storeImpl{
		"bbolt": {
			open: func(t *testing.T) stateStore { return openTestStore(t, t.TempDir()) },
			reopen: func(t *testing.T, s stateStore) stateStore {
				bs := s.(*store)
				return reopen(t, bs, filepath.Dir(bs.db.Path()))
			},
		},
		"mem": {
			open: func(t *testing.T) stateStore {
				s := newMemStore()
				t.Cleanup(func() { s.close() })
				return s
			},
			reopen: func(t *testing.T, s stateStore) stateStore {
				ms := s.(*memStore)
				if err := ms.close(); err != nil {
					t.Fatalf("close store: %v", err)
				}
				return ms.reopen()
			},
		},
	}
	for name, impl := range impls {
		t.Run(name, func(t *testing.T) { testStateStore(t, impl) })
	}
}

// testStateStore is the conformance suite of stateStore: what the
// coordinator relies on, read back after a reopen so that it checks what
// was committed, not what a handle remembers.
func testStateStore(t *testing.T, impl storeImpl) {
	t.Run("NewStore", func(t *testing.T) {
		s := impl.open(t)
		for range 2 {
			if _, ok, err := s.load(); ok || err != nil {
				t.Fatalf("load() of a new store = ok %v, %v; want not ok, nil", ok, err)
			}
			if recs, err := s.rounds(); len(recs) != 0 || err != nil {
				t.Fatalf("rounds() of a new store = %v, %v", recs, err)
			}
			if m, err := s.manifest(0); m != nil || err != nil {
				t.Fatalf("manifest(0) of a new store = %q, %v", m, err)
			}
			if l, err := s.stateList(keyEnrolled); l != nil || err != nil {
				t.Fatalf("stateList(enrolled) of a new store = %q, %v", l, err)
			}
			s = impl.reopen(t, s)
		}
	})

	t.Run("SaveCommitLoad", func(t *testing.T) {
		s := impl.open(t)
		if err := s.saveInitial(modelBytes(0)); err != nil {
			t.Fatal(err)
		}
		s = impl.reopen(t, s)
		p, ok, err := s.load()
		if err != nil || !ok {
			t.Fatalf("load() after saveInitial = ok %v, %v", ok, err)
		}
		if p.lastRound != 0 || !slices.Equal(p.model, modelBytes(0)) || p.scaling != nil || p.manifest != nil || p.cohort != nil {
			t.Errorf("load() after saveInitial = %+v; want round 0, model %x, nothing else", p, modelBytes(0))
		}

		sc := dataset.Scaling{Mean: []float64{1.5, -2}, Std: []float64{0.25, 3}}
		if err := s.saveScaling(sc, manifestBytes(0)); err != nil {
			t.Fatal(err)
		}
		s = impl.reopen(t, s)
		if p, _, err := s.load(); err != nil || p.lastRound != 0 || !slices.Equal(p.manifest, manifestBytes(0)) || p.scaling == nil {
			t.Errorf("load() after saveScaling = %+v, %v; want round 0 with its manifest and the scaling", p, err)
		}
		var want []RoundRecord
		for r := uint64(1); r <= 3; r++ {
			rec := record(r, modelBytes(r))
			rec.Attempt = uint32(r) // each round's attempt comes back as committed
			want = append(want, rec)
			if err := s.commitRound(rec, modelBytes(r), manifestBytes(r), 5); err != nil {
				t.Fatalf("commitRound(%d) = %v", r, err)
			}
		}
		s = impl.reopen(t, s)
		p, ok, err = s.load()
		if err != nil || !ok {
			t.Fatalf("load() after 3 rounds = ok %v, %v", ok, err)
		}
		if p.lastRound != 3 || !slices.Equal(p.model, modelBytes(3)) || !slices.Equal(p.cohort, want[2].Cohort) {
			t.Errorf("load() after 3 rounds = round %d, model %x, cohort %v; want round 3, %x, %v", p.lastRound, p.model, p.cohort, modelBytes(3), want[2].Cohort)
		}
		if diff := cmp.Diff(&sc, p.scaling); diff != "" {
			t.Errorf("load() scaling mismatch (-want +got):\n%s", diff)
		}
		if !slices.Equal(p.manifest, manifestBytes(3)) {
			t.Errorf("load() manifest = %q, want %q", p.manifest, manifestBytes(3))
		}
		for r := uint64(0); r <= 3; r++ {
			if m, err := s.manifest(r); err != nil || !slices.Equal(m, manifestBytes(r)) {
				t.Errorf("manifest(%d) = %q, %v; want %q", r, m, err, manifestBytes(r))
			}
			if m, err := s.model(r); err != nil || !slices.Equal(m, modelBytes(r)) {
				t.Errorf("model(%d) = %x, %v; want %x", r, m, err, modelBytes(r))
			}
		}
		if m, err := s.manifest(4); err != nil || m != nil {
			t.Errorf("manifest(4) = %q, %v; want nil, nil", m, err)
		}
		got, err := s.rounds()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rounds() mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		s := impl.open(t)
		m := modelBytes(0)
		if err := s.saveInitial(m); err != nil {
			t.Fatal(err)
		}
		m[0] ^= 0xff // the caller's buffer is its own after the call
		got, err := s.model(0)
		if err != nil || !slices.Equal(got, modelBytes(0)) {
			t.Fatalf("model(0) after the caller changed its buffer = %x, %v; want %x", got, err, modelBytes(0))
		}
		got[0] ^= 0xff
		if again, _ := s.model(0); !slices.Equal(again, modelBytes(0)) {
			t.Errorf("model(0) after the caller changed a result = %x, want %x", again, modelBytes(0))
		}
	})

	t.Run("KeepModels", func(t *testing.T) {
		for _, tt := range []struct{ keep, rounds int }{
			{1, 1}, {1, 6}, {2, 6}, {3, 7}, {5, 4}, {5, 5}, {5, 12}, {20, 3},
		} {
			t.Run(fmt.Sprintf("keep=%d,rounds=%d", tt.keep, tt.rounds), func(t *testing.T) {
				s := impl.open(t)
				if err := s.saveInitial(modelBytes(0)); err != nil {
					t.Fatal(err)
				}
				for r := uint64(1); r <= uint64(tt.rounds); r++ {
					if err := s.commitRound(record(r, modelBytes(r)), modelBytes(r), manifestBytes(r), tt.keep); err != nil {
						t.Fatalf("commitRound(%d) = %v", r, err)
					}
				}
				s = impl.reopen(t, s)
				var want, got []uint64
				for r := max(0, tt.rounds-tt.keep+1); r <= tt.rounds; r++ {
					want = append(want, uint64(r))
				}
				for r := range uint64(tt.rounds + 2) {
					m, err := s.model(r)
					if err != nil {
						t.Fatal(err)
					}
					if m != nil {
						got = append(got, r)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("keep %d after %d rounds: stored models %v, want %v", tt.keep, tt.rounds, got, want)
				}
				// Records and manifests are never pruned, and the last
				// model still loads.
				if recs, err := s.rounds(); err != nil || len(recs) != tt.rounds {
					t.Errorf("rounds() = %d records, %v; want %d", len(recs), err, tt.rounds)
				}
				if m, err := s.manifest(1); err != nil || !slices.Equal(m, manifestBytes(1)) {
					t.Errorf("manifest(1) = %q, %v; want it kept", m, err)
				}
				if p, ok, err := s.load(); err != nil || !ok || p.lastRound != uint64(tt.rounds) || !slices.Equal(p.model, modelBytes(uint64(tt.rounds))) {
					t.Errorf("load() = round %d, ok %v, %v; want round %d with its model", p.lastRound, ok, err, tt.rounds)
				}
			})
		}
	})

	t.Run("ReadModel", func(t *testing.T) {
		// readModel serves GetModel and the round's close a chunk at a
		// time: every range of a kept model reads back its bytes, a
		// dropped model is errModelGone, a range outside is ErrCorrupt.
		s := impl.open(t)
		if err := s.saveInitial(modelBytes(0)); err != nil {
			t.Fatal(err)
		}
		for r := uint64(1); r <= 3; r++ {
			if err := s.commitRound(record(r, modelBytes(r)), modelBytes(r), manifestBytes(r), 2); err != nil {
				t.Fatalf("commitRound(%d) = %v", r, err)
			}
		}
		s = impl.reopen(t, s)
		for _, r := range []uint64{2, 3} {
			want := modelBytes(r)
			for off := range len(want) + 1 {
				for n := range len(want) - off + 1 {
					got := make([]byte, n)
					if err := s.readModel(r, int64(off), got); err != nil || !slices.Equal(got, want[off:off+n]) {
						t.Fatalf("readModel(%d, %d, %d bytes) = %x, %v; want %x", r, off, n, got, err, want[off:off+n])
					}
				}
			}
			for _, bad := range []struct{ off, n int }{{-1, 1}, {0, len(want) + 1}, {len(want), 1}, {len(want) + 4, 0}} {
				if err := s.readModel(r, int64(bad.off), make([]byte, bad.n)); !errors.Is(err, ErrCorrupt) {
					t.Errorf("readModel(%d, %d, %d bytes) = %v, want ErrCorrupt", r, bad.off, bad.n, err)
				}
			}
		}
		for _, r := range []uint64{0, 1, 4} {
			if err := s.readModel(r, 0, make([]byte, 4)); !errors.Is(err, errModelGone) {
				t.Errorf("readModel(%d) of a model not kept = %v, want errModelGone", r, err)
			}
		}
	})

	t.Run("RoundsOrder", func(t *testing.T) {
		s := impl.open(t)
		// Numerically ordered rounds whose decimal or little-endian
		// encodings sort differently.
		want := []uint64{1, 2, 9, 10, 100, 255, 256, 65536, 1 << 40}
		order := slices.Clone(want)
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, r := range order {
			if err := s.commitRound(record(r, modelBytes(r)), modelBytes(r), manifestBytes(r), 1000); err != nil {
				t.Fatal(err)
			}
		}
		s = impl.reopen(t, s)
		recs, err := s.rounds()
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range recs {
			got = append(got, r.Round)
		}
		if !slices.Equal(got, want) {
			t.Errorf("rounds() order = %v, want %v", got, want)
		}
		// The last round is the last committed, not the highest.
		if p, _, err := s.load(); err != nil || p.lastRound != order[len(order)-1] {
			t.Errorf("load() = round %d, %v; want the last committed, %d", p.lastRound, err, order[len(order)-1])
		}
	})

	t.Run("StateLists", func(t *testing.T) {
		s := impl.open(t)
		for _, key := range [][]byte{keyEnrolled, keyRevoked, keyOpenSecure} {
			want := []string{string(key) + "-a", string(key) + "-b"}
			if err := s.putStateList(key, want); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.putStateList(keyRevoked, []string{"replaced"}); err != nil {
			t.Fatal(err)
		}
		if err := s.putStateList(keyOpenSecure, []string{}); err != nil {
			t.Fatal(err)
		}
		s = impl.reopen(t, s)
		for key, want := range map[string][]string{
			string(keyEnrolled):   {"enrolled-a", "enrolled-b"},
			string(keyRevoked):    {"replaced"},
			string(keyOpenSecure): {},
		} {
			got, err := s.stateList([]byte(key))
			if err != nil || got == nil || !slices.Equal(got, want) {
				t.Errorf("stateList(%s) = %q, %v; want %q", key, got, err, want)
			}
		}
		// The lists are independent of the rounds.
		if _, ok, err := s.load(); ok || err != nil {
			t.Errorf("load() with only lists = ok %v, %v; want a new store", ok, err)
		}
	})

	t.Run("FailedWriteChangesNothing", func(t *testing.T) {
		s := impl.open(t)
		if err := s.saveInitial(modelBytes(0)); err != nil {
			t.Fatal(err)
		}
		if err := s.commitRound(record(1, modelBytes(1)), modelBytes(1), manifestBytes(1), 2); err != nil {
			t.Fatal(err)
		}
		// A record that cannot be encoded fails the commit before anything
		// of it is written: neither its model nor its manifest, nor the
		// pruning of round 0's model.
		bad := record(2, modelBytes(2))
		bad.HoldoutLoss = math.NaN()
		if err := s.commitRound(bad, modelBytes(2), manifestBytes(2), 1); err == nil {
			t.Fatal("commitRound of a record with a NaN succeeded")
		}
		s = impl.reopen(t, s)
		p, _, err := s.load()
		if err != nil || p.lastRound != 1 || !slices.Equal(p.model, modelBytes(1)) {
			t.Errorf("load() after a failed commit = round %d, %v; want round 1", p.lastRound, err)
		}
		for r, want := range map[uint64]bool{0: true, 1: true, 2: false} {
			m, _ := s.model(r)
			mf, _ := s.manifest(r)
			if (m != nil) != want || (r == 2 && mf != nil) {
				t.Errorf("after a failed commit: model(%d) present %v, manifest %q; want model present %v", r, m != nil, mf, want)
			}
		}
	})

	// The state's model digest is taken from the record, not hashed again
	// from the model: a record without a well-formed digest is refused
	// before anything is written, and the digest kept is the record's.
	t.Run("ModelDigestFromRecord", func(t *testing.T) {
		s := impl.open(t)
		if err := s.saveInitial(modelBytes(0)); err != nil {
			t.Fatal(err)
		}
		for _, digest := range []string{"", "ab", strings.Repeat("zz", 32), strings.Repeat("ab", 33)} {
			rec := record(1, modelBytes(1))
			rec.ModelSHA256 = digest
			if err := s.commitRound(rec, modelBytes(1), manifestBytes(1), 2); err == nil {
				t.Errorf("commitRound with model digest %q succeeded", digest)
			}
		}
		if err := s.commitRound(record(1, modelBytes(1)), modelBytes(1), manifestBytes(1), 2); err != nil {
			t.Fatal(err)
		}
		s = impl.reopen(t, s)
		// load checks the kept digest against the model and the record.
		if p, ok, err := s.load(); err != nil || !ok || p.lastRound != 1 {
			t.Errorf("load() after commitRound = round %d, %v, %v; want round 1", p.lastRound, ok, err)
		}
	})

	t.Run("RefusesAfterClose", func(t *testing.T) {
		s := impl.open(t)
		if err := s.saveInitial(modelBytes(0)); err != nil {
			t.Fatal(err)
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		if err := s.close(); err != nil {
			t.Errorf("second close = %v, want nil", err)
		}
		calls := map[string]func() error{
			"load":         func() error { _, _, err := s.load(); return err },
			"saveInitial":  func() error { return s.saveInitial(modelBytes(0)) },
			"saveScaling":  func() error { return s.saveScaling(dataset.Scaling{}, manifestBytes(0)) },
			"commitRound":  func() error { return s.commitRound(record(1, modelBytes(1)), modelBytes(1), manifestBytes(1), 2) },
			"manifest":     func() error { _, err := s.manifest(0); return err },
			"model":        func() error { _, err := s.model(0); return err },
			"rounds":       func() error { _, err := s.rounds(); return err },
			"stateList":    func() error { _, err := s.stateList(keyEnrolled); return err },
			"putStateList": func() error { return s.putStateList(keyEnrolled, []string{"x"}) },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, errStoreClosed) {
				t.Errorf("%s after close = %v, want errStoreClosed", name, err)
			}
		}
	})
}
