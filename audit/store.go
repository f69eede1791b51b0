package audit

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Store keeps a log's bytes: the events' canonical encodings, the stored
// hashes of its Merkle tree (tlog's stored-hash indexes), its checkpoint
// notes and its head. A Log does the rest (encoding, hashing, signing,
// group commit, the checks of the chain), so that every Store holds
// exactly the same bytes. [Open] uses the bbolt file ([OpenBoltStore]);
// [NewMemStore] keeps a log in memory, for tests and simulations that
// need no file.
//
// A Store is safe for concurrent use by one writer (Append,
// AddCheckpoint) and any number of readers. What it returns is the
// caller's to keep, and what it is given it copies. After Close, every
// method returns an error wrapping ErrClosed. Package audit/audittest
// holds the conformance suite every implementation passes.
type Store interface {
	// Origin returns the log's origin, fixed when the store was created.
	Origin() string
	// Head returns the number of stored events and the Hash of the last
	// one (zeros when there is none).
	Head() (size uint64, last Hash, err error)
	// Append stores a batch after the head, atomically and durably: when
	// it returns nil, the events, their tree hashes and the new head are
	// stored and survive a crash; when it returns an error, nothing of the
	// batch is stored.
	Append(b Batch) error
	// ReadEvents returns the encodings of the events from seq from on, in
	// order: at most max of them (max > 0), and no more once their total
	// length reaches maxBytes (but always one, if there is one). It
	// returns none when from is the head's size, and an error beyond.
	ReadEvents(from uint64, max, maxBytes int) ([][]byte, error)
	// ReadHashes returns the stored tree hashes at the given indexes (a
	// tlog.HashReader); an index not stored is an error.
	ReadHashes(indexes []int64) ([]tlog.Hash, error)
	// Checkpoints returns the stored checkpoint notes, by size.
	Checkpoints() ([]StoredCheckpoint, error)
	// LatestCheckpoint returns the stored checkpoint note of the largest
	// size, and false when there is none.
	LatestCheckpoint() (StoredCheckpoint, bool, error)
	// AddCheckpoint stores note as the checkpoint of the tree of size
	// events (0 < size <= the head's size), unless one of that size is
	// stored already; it returns the one stored, durably.
	AddCheckpoint(c StoredCheckpoint) (StoredCheckpoint, error)
	// Close releases the store. Later calls of any method, Close
	// included, return ErrClosed.
	Close() error
}

// Batch is what one Append stores: events Start, Start+1, … and the tree
// hashes they add.
type Batch struct {
	// Start is the head's size before the batch; the store refuses a
	// batch that does not start there.
	Start uint64
	// Events are the events' canonical encodings (Event.MarshalBinary).
	Events [][]byte
	// Hashes are the tree hashes the events add, in index order from
	// tlog.StoredHashIndex(0, Start): tlog.StoredHashes of each event.
	Hashes []tlog.Hash
	// Last is the Hash of the batch's last event, the new head's.
	Last Hash
}

// StoredCheckpoint is a checkpoint note as a Store keeps it, under the
// size of the tree it signs.
type StoredCheckpoint struct {
	Size uint64
	Note []byte
}

// check checks a batch against the head (size) it is to follow.
func (b *Batch) check(size uint64) error {
	if b.Start != size {
		return fmt.Errorf("a batch starting at event %d cannot follow the head at %d events", b.Start, size)
	}
	if len(b.Events) == 0 {
		return errors.New("an empty batch")
	}
	end := b.Start + uint64(len(b.Events))
	if want := tlog.StoredHashCount(int64(end)) - tlog.StoredHashCount(int64(b.Start)); int64(len(b.Hashes)) != want {
		return fmt.Errorf("%d events from %d add %d tree hashes, not %d", len(b.Events), b.Start, want, len(b.Hashes))
	}
	return nil
}

// checkAddCheckpoint checks a checkpoint to add against the head's size.
func checkAddCheckpoint(c StoredCheckpoint, size uint64) error {
	if c.Size == 0 || c.Size > size {
		return fmt.Errorf("a checkpoint of size %d for a log of %d events", c.Size, size)
	}
	if len(c.Note) == 0 {
		return errors.New("an empty checkpoint note")
	}
	return nil
}
