package audit

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// MemStore is a Store in memory: a log that lasts as long as the process,
// for tests and simulations that need no file (New(NewMemStore(origin),
// opts)). It holds exactly the bytes a BoltStore would.
type MemStore struct {
	origin string

	mu          sync.RWMutex
	closed      bool
	events      [][]byte
	hashes      []tlog.Hash
	last        Hash
	checkpoints []StoredCheckpoint // by size
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store of a log named origin.
func NewMemStore(origin string) (*MemStore, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, fmt.Errorf("audit: new memory store: %w", err)
	}
	return &MemStore{origin: origin}, nil
}

// Origin returns the log's origin.
func (s *MemStore) Origin() string { return s.origin }

// Head returns the number of events and the last one's hash.
func (s *MemStore) Head() (uint64, Hash, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, Hash{}, ErrClosed
	}
	return uint64(len(s.events)), s.last, nil
}

// Append stores a batch.
func (s *MemStore) Append(b Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := b.check(uint64(len(s.events))); err != nil {
		return err
	}
	for _, e := range b.Events {
		s.events = append(s.events, bytes.Clone(e))
	}
	s.hashes = append(s.hashes, b.Hashes...)
	s.last = b.Last
	return nil
}

// ReadEvents returns copies of stored events.
func (s *MemStore) ReadEvents(from uint64, max, maxBytes int) ([][]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if from > uint64(len(s.events)) {
		return nil, fmt.Errorf("events from %d of a log of %d", from, len(s.events))
	}
	var out [][]byte
	for read, i := 0, from; i < uint64(len(s.events)) && len(out) < max && (len(out) == 0 || read < maxBytes); i++ {
		out = append(out, bytes.Clone(s.events[i]))
		read += len(s.events[i])
	}
	return out, nil
}

// ReadHashes returns stored tree hashes.
func (s *MemStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		if idx < 0 || idx >= int64(len(s.hashes)) {
			return nil, corruptf("tree hash %d is missing", idx)
		}
		out[i] = s.hashes[idx]
	}
	return out, nil
}

// Checkpoints returns copies of the stored checkpoint notes, by size.
func (s *MemStore) Checkpoints() ([]StoredCheckpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]StoredCheckpoint, len(s.checkpoints))
	for i, c := range s.checkpoints {
		out[i] = StoredCheckpoint{Size: c.Size, Note: bytes.Clone(c.Note)}
	}
	return out, nil
}

// LatestCheckpoint returns a copy of the checkpoint note of the largest
// size.
func (s *MemStore) LatestCheckpoint() (StoredCheckpoint, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return StoredCheckpoint{}, false, ErrClosed
	}
	if len(s.checkpoints) == 0 {
		return StoredCheckpoint{}, false, nil
	}
	c := s.checkpoints[len(s.checkpoints)-1]
	return StoredCheckpoint{Size: c.Size, Note: bytes.Clone(c.Note)}, true, nil
}

// AddCheckpoint stores a checkpoint note unless one of its size is stored.
func (s *MemStore) AddCheckpoint(c StoredCheckpoint) (StoredCheckpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return StoredCheckpoint{}, ErrClosed
	}
	if err := checkAddCheckpoint(c, uint64(len(s.events))); err != nil {
		return StoredCheckpoint{}, err
	}
	i, found := slices.BinarySearchFunc(s.checkpoints, c.Size, func(x StoredCheckpoint, size uint64) int {
		return cmp.Compare(x.Size, size)
	})
	if !found {
		c.Note = bytes.Clone(c.Note)
		s.checkpoints = slices.Insert(s.checkpoints, i, c)
	}
	stored := s.checkpoints[i]
	return StoredCheckpoint{Size: stored.Size, Note: bytes.Clone(stored.Note)}, nil
}

// Close marks the store closed; its contents are dropped.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	s.events, s.hashes, s.checkpoints = nil, nil, nil
	return nil
}
