package audit

import (
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// CheckSummary describes a stored log that Check accepted.
type CheckSummary struct {
	// Events is the number of events and Head the hash of the last one
	// (zeros for an empty log).
	Events uint64
	Head   Hash
	// Checkpoints is the number of stored checkpoints; Covered and Root
	// are the size and root of the latest one (0 and zeros if none).
	Checkpoints int
	Covered     uint64
	Root        tlog.Hash
}

// Check verifies the stored log in place, as Verify does an export, so
// that a coordinator never appends to a damaged chain: every event's
// encoding, sequence number and link to the one before it; every stored
// hash of the Merkle tree, recomputed from the events; and every checkpoint's signature, by a key of
// verifiers named after the origin (skipped when verifiers is nil), and
// its root, recomputed from the stored tree. It reads in chunks, each in
// its own read transaction, and costs one pass over the events.
//
// A fault is an error wrapping ErrCorrupt that names the first event or
// checkpoint at fault. What Check cannot see is a log cut back to an
// earlier checkpoint, or replaced by another signed log: compare
// CheckSummary with a record kept elsewhere (the coordinator compares it
// with its state database).
func (l *Log) Check(verifiers note.Verifiers) (CheckSummary, error) {
	if l.isClosed() {
		return CheckSummary{}, ErrClosed
	}
	size := l.Size()
	cps, err := l.checkpoints()
	if err != nil {
		return CheckSummary{}, err
	}
	sum := CheckSummary{Events: size, Checkpoints: len(cps)}
	if len(cps) > 0 {
		last := cps[len(cps)-1]
		sum.Covered, sum.Root = last.Size, last.Root
	}
	var prev Hash
	for next := uint64(0); next < size; {
		encs, err := l.store.ReadEvents(next, int(min(size-next, readChunkEvents)), readChunkBytes)
		if err == nil && len(encs) == 0 {
			err = corruptf("event %d is missing", next)
		}
		if err == nil {
			err = l.checkEvents(next, encs, &prev)
		}
		if err != nil {
			return CheckSummary{}, fmt.Errorf("audit: check: %w", err)
		}
		next += uint64(len(encs))
	}
	if prev != l.lastHash() {
		return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("the head's last hash is not the hash of event %d", int64(size)-1))
	}
	sum.Head = prev
	for _, cp := range cps {
		if verifiers != nil {
			signed, err := OpenCheckpoint(cp.Note, verifiers)
			if err != nil {
				return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("checkpoint %d: %v", cp.Size, err))
			}
			if signed.Size != cp.Size || signed.Root != cp.Root || signed.Origin != l.origin {
				return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("checkpoint %d: the signed note says otherwise", cp.Size))
			}
		}
		if cp.Origin != l.origin {
			return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("checkpoint %d has origin %q, not the log's %q", cp.Size, cp.Origin, l.origin))
		}
		root, err := tlog.TreeHash(int64(cp.Size), l.store)
		if err != nil {
			return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("checkpoint %d: %v", cp.Size, err))
		}
		if root != cp.Root {
			return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("checkpoint %d signs root %s, but the stored events give %s", cp.Size, Hash(cp.Root), Hash(root)))
		}
	}
	return sum, nil
}

// checkEvents checks the stored events encs, from seq next on, after the
// event of hash *prev, and the tree hashes they add; it leaves *prev the
// hash of the last. It reads the chunk's tree hashes in one call.
func (l *Log) checkEvents(next uint64, encs [][]byte, prev *Hash) error {
	lo := tlog.StoredHashIndex(0, int64(next))
	hi := tlog.StoredHashCount(int64(next) + int64(len(encs)))
	indexes := make([]int64, hi-lo)
	for i := range indexes {
		indexes[i] = lo + int64(i)
	}
	stored, err := l.store.ReadHashes(indexes)
	if err != nil {
		return err
	}
	// Hashes before the chunk come from the store; the chunk's own are
	// the stored ones, each checked before a later event reads it.
	hashes := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < lo {
				h, err := l.store.ReadHashes([]int64{x})
				if err != nil {
					return nil, err
				}
				out[i] = h[0]
				continue
			}
			out[i] = stored[x-lo]
		}
		return out, nil
	})
	for _, v := range encs {
		ev, err := decodeEvent(v)
		if err != nil {
			return corruptf("event %d: %v", next, err)
		}
		if ev.Seq != next {
			return corruptf("the event stored as %d says it is event %d", next, ev.Seq)
		}
		if ev.Prev != *prev {
			return corruptf("event %d does not link to event %d", next, int64(next)-1)
		}
		idx := tlog.StoredHashIndex(0, int64(next))
		if stored[idx-lo] != tlog.RecordHash(v) {
			return corruptf("the tree's leaf hash of event %d does not match the event", next)
		}
		// Event next adds its leaf and the interior hashes it completes
		// (about one on average), from hashes checked before it: so every
		// stored hash is checked once.
		want, err := tlog.StoredHashes(int64(next), v, hashes)
		if err != nil {
			return corruptf("tree hashes of event %d: %v", next, err)
		}
		for j := range want {
			if stored[idx-lo+int64(j)] != want[j] {
				return corruptf("tree hash %d, added with event %d, is not what the events give", idx+int64(j), next)
			}
		}
		*prev = sha256.Sum256(v)
		next++
	}
	return nil
}

// lastHash returns the hash of the last committed event.
func (l *Log) lastHash() Hash {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}
