package coordinator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/fedguard/fedguard/dataset"
)

// memStore is a stateStore in memory, for tests and tools that need no
// file. It keeps what store keeps, in the same encodings (records and
// lists as JSON), so that both read back the same values; a write builds
// its changes aside and installs them at once, which is its all or
// nothing. Handles made by reopen share the contents, as two opens of one
// file would.
type memStore struct {
	data   *memData
	closed bool // guarded by data.mu
}

// memData is what a memStore holds; its maps are replaced, never mutated.
type memData struct {
	mu        sync.Mutex
	hasLast   bool
	lastRound uint64
	scaling   []byte // JSON dataset.Scaling
	models    map[uint64][]byte
	records   map[uint64][]byte // JSON RoundRecord
	manifests map[uint64][]byte
	lists     map[string][]byte // JSON []string
}

// newMemStore returns an empty memStore: a new federation's.
func newMemStore() *memStore {
	return &memStore{data: &memData{
		models: map[uint64][]byte{}, records: map[uint64][]byte{},
		manifests: map[uint64][]byte{}, lists: map[string][]byte{},
	}}
}

// reopen returns a new handle on m's contents, as a restart would see them.
func (m *memStore) reopen() *memStore { return &memStore{data: m.data} }

// locked runs fn with the contents locked, unless m is closed.
func (m *memStore) locked(fn func(d *memData) error) error {
	m.data.mu.Lock()
	defer m.data.mu.Unlock()
	if m.closed {
		return errStoreClosed
	}
	return fn(m.data)
}

func (m *memStore) close() error {
	m.data.mu.Lock()
	defer m.data.mu.Unlock()
	m.closed = true
	return nil
}

func (m *memStore) load() (p persisted, ok bool, err error) {
	err = m.locked(func(d *memData) error {
		if !d.hasLast {
			return nil
		}
		p.lastRound = d.lastRound
		p.model = bytes.Clone(d.models[d.lastRound])
		if p.model == nil {
			return fmt.Errorf("%w: no model for round %d", ErrCorrupt, p.lastRound)
		}
		if p.lastRound > 0 {
			var rec RoundRecord
			if err := json.Unmarshal(d.records[p.lastRound], &rec); err != nil {
				return fmt.Errorf("%w: round %d record: %v", ErrCorrupt, p.lastRound, err)
			}
			p.cohort = rec.Cohort
		}
		if d.scaling != nil {
			p.scaling = new(dataset.Scaling)
			if err := json.Unmarshal(d.scaling, p.scaling); err != nil {
				return fmt.Errorf("%w: scaling: %v", ErrCorrupt, err)
			}
			if p.manifest = bytes.Clone(d.manifests[p.lastRound]); p.manifest == nil {
				return fmt.Errorf("%w: no signed manifest for round %d", ErrCorrupt, p.lastRound)
			}
		}
		ok = true
		return nil
	})
	return p, ok, err
}

func (m *memStore) saveInitial(model []byte) error {
	return m.locked(func(d *memData) error {
		models := maps.Clone(d.models)
		models[0] = bytes.Clone(model)
		d.models, d.hasLast, d.lastRound = models, true, 0
		return nil
	})
}

func (m *memStore) saveScaling(sc dataset.Scaling, genesis []byte) error {
	b, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	return m.locked(func(d *memData) error {
		manifests := maps.Clone(d.manifests)
		manifests[0] = bytes.Clone(genesis)
		d.manifests, d.scaling = manifests, b
		return nil
	})
}

func (m *memStore) commitRound(rec RoundRecord, model, manifest []byte, keep int) error {
	if _, err := modelDigest(rec); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return m.locked(func(d *memData) error {
		models, records, manifests := maps.Clone(d.models), maps.Clone(d.records), maps.Clone(d.manifests)
		models[rec.Round] = bytes.Clone(model)
		records[rec.Round] = b
		manifests[rec.Round] = bytes.Clone(manifest)
		if rec.Round >= uint64(keep) {
			cut := rec.Round - uint64(keep) + 1
			maps.DeleteFunc(models, func(r uint64, _ []byte) bool { return r < cut })
		}
		d.models, d.records, d.manifests = models, records, manifests
		d.hasLast, d.lastRound = true, rec.Round
		return nil
	})
}

// roundValue returns a copy of round's value in the map of, or nil.
func (m *memStore) roundValue(of func(*memData) map[uint64][]byte, round uint64) (out []byte, err error) {
	err = m.locked(func(d *memData) error {
		out = bytes.Clone(of(d)[round])
		return nil
	})
	return out, err
}

func (m *memStore) manifest(round uint64) ([]byte, error) {
	return m.roundValue(func(d *memData) map[uint64][]byte { return d.manifests }, round)
}

func (m *memStore) model(round uint64) ([]byte, error) {
	return m.roundValue(func(d *memData) map[uint64][]byte { return d.models }, round)
}

func (m *memStore) rounds() ([]RoundRecord, error) {
	var out []RoundRecord
	err := m.locked(func(d *memData) error {
		for _, r := range slices.Sorted(maps.Keys(d.records)) {
			var rec RoundRecord
			if err := json.Unmarshal(d.records[r], &rec); err != nil {
				return fmt.Errorf("%w: round %d: %v", ErrCorrupt, r, err)
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

func (m *memStore) stateList(key []byte) (out []string, err error) {
	err = m.locked(func(d *memData) error {
		out, err = decodeStateList(key, d.lists[string(key)])
		return err
	})
	return out, err
}

func (m *memStore) putStateList(key []byte, list []string) error {
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return m.locked(func(d *memData) error {
		lists := maps.Clone(d.lists)
		lists[string(key)] = b
		d.lists = lists
		return nil
	})
}

func (m *memStore) readModel(round uint64, off int64, dst []byte) error {
	return m.locked(func(d *memData) error {
		v, ok := d.models[round]
		if !ok {
			return fmt.Errorf("%w: round %d", errModelGone, round)
		}
		if off < 0 || off > int64(len(v)) || int64(len(dst)) > int64(len(v))-off {
			return fmt.Errorf("%w: read of %d bytes at %d from a model of %d bytes", ErrCorrupt, len(dst), off, len(v))
		}
		copy(dst, v[off:])
		return nil
	})
}
