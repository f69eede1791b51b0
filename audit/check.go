package audit

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	bolt "go.etcd.io/bbolt"
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
		err := l.view(func(tx *bolt.Tx) error {
			events, tree := tx.Bucket(bucketEvents), tx.Bucket(bucketTree)
			hashes := treeReader(tree)
			c := events.Cursor()
			k, v := c.Seek(u64Key(next))
			for read := 0; next < size && read < readChunkBytes; k, v = c.Next() {
				if seq, err := parseU64(k); err != nil || seq != next {
					return corruptf("event %d is missing", next)
				}
				ev, err := decodeEvent(v)
				if err != nil {
					return corruptf("event %d: %v", next, err)
				}
				if ev.Seq != next {
					return corruptf("the event stored as %d says it is event %d", next, ev.Seq)
				}
				if ev.Prev != prev {
					return corruptf("event %d does not link to event %d", next, int64(next)-1)
				}
				leaf := tree.Get(u64Key(uint64(tlog.StoredHashIndex(0, int64(next)))))
				if want := tlog.RecordHash(v); !bytes.Equal(leaf, want[:]) {
					return corruptf("the tree's leaf hash of event %d does not match the event", next)
				}
				// Event next adds its leaf and the interior hashes it
				// completes (about one on average), from hashes checked
				// before it: so every stored hash is checked once.
				stored, err := tlog.StoredHashes(int64(next), v, hashes)
				if err != nil {
					return corruptf("tree hashes of event %d: %v", next, err)
				}
				idx := uint64(tlog.StoredHashIndex(0, int64(next)))
				for j, h := range stored {
					if got := tree.Get(u64Key(idx + uint64(j))); !bytes.Equal(got, h[:]) {
						return corruptf("tree hash %d, added with event %d, is not what the events give", idx+uint64(j), next)
					}
				}
				prev = sha256.Sum256(v)
				read += len(v)
				next++
			}
			return nil
		})
		if err != nil {
			return CheckSummary{}, fmt.Errorf("audit: check: %w", err)
		}
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
		var root tlog.Hash
		err := l.view(func(tx *bolt.Tx) error {
			var err error
			root, err = tlog.TreeHash(int64(cp.Size), treeReader(tx.Bucket(bucketTree)))
			return err
		})
		if err != nil {
			return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("checkpoint %d: %v", cp.Size, err))
		}
		if root != cp.Root {
			return CheckSummary{}, fmt.Errorf("audit: check: %w", corruptf("checkpoint %d signs root %s, but the stored events give %s", cp.Size, Hash(cp.Root), Hash(root)))
		}
	}
	return sum, nil
}

// lastHash returns the hash of the last committed event.
func (l *Log) lastHash() Hash {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}
