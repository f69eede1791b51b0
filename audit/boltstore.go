package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedguard/fedguard/internal/boltfile"
)

// BoltStore is the Store of a log database file (bbolt), in the layout of
// layout.go. Each Append is one transaction, fsynced before it returns.
type BoltStore struct {
	db       *bolt.DB
	path     string
	origin   string
	readOnly bool

	closed atomic.Bool

	// failCommit, when set (by tests), fails batches inside the transaction.
	failCommit func() error
}

var _ Store = (*BoltStore)(nil)

// BoltOptions configure OpenBoltStore.
type BoltOptions struct {
	// Origin is required to create a database, and checked against the
	// stored one (if not empty) when opening one.
	Origin string
	// ReadOnly opens the file with a shared lock; Append and
	// AddCheckpoint then fail with ErrReadOnly.
	ReadOnly bool
}

// OpenBoltStore opens the log database at path, creating it (mode 0600,
// in an existing directory) if it is absent and not ReadOnly. It checks
// the schema version and origin, and that the head agrees with the stored
// events: the last event's hash, its chain link and the number of events
// and tree hashes. A disagreement is an error wrapping ErrCorrupt. So is
// an existing file that is empty (0 bytes) or not a sound bbolt database
// (package internal/boltfile checks every page before use): an empty file
// is a lost log, never made a new one.
func OpenBoltStore(path string, opts BoltOptions) (*BoltStore, error) {
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout, ReadOnly: opts.ReadOnly})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("the database is in use by another process (a running coordinator?): %w", err)
		}
		if errors.Is(err, boltfile.ErrEmpty) || errors.Is(err, boltfile.ErrDamaged) {
			// Never made anew: an empty file is a lost log, not a new one.
			return nil, &corruptError{detail: err.Error(), cause: err}
		}
		return nil, err
	}
	s := &BoltStore{db: db, path: path, readOnly: opts.ReadOnly}
	load := func(tx *bolt.Tx) error {
		var err error
		if s.origin, err = checkMeta(tx, opts.Origin); err != nil {
			return err
		}
		_, _, err = checkHead(tx)
		return err
	}
	if opts.ReadOnly {
		err = db.View(load)
	} else {
		err = db.Update(load)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// checkMeta creates the buckets of a new database (tx is writable) or
// checks an existing one's schema version and origin. It returns the
// log's origin.
func checkMeta(tx *bolt.Tx, origin string) (string, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if !tx.Writable() {
			return "", errors.New("not an audit log: it has no meta bucket")
		}
		// Never add our buckets to some other program's database.
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			return fmt.Errorf("not an audit log: it has a %q bucket but no meta bucket", name)
		}); err != nil {
			return "", err
		}
		if origin == "" {
			return "", errors.New("creating a log needs Options.Origin")
		}
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return "", fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta = tx.Bucket(bucketMeta)
		head := tx.Bucket(bucketHead)
		var zero Hash
		for _, kv := range []struct {
			b    *bolt.Bucket
			k, v []byte
		}{
			{meta, keySchemaVersion, []byte(schemaVersion)},
			{meta, keyOrigin, []byte(origin)},
			{head, keyCount, u64Key(0)},
			{head, keyLastHash, zero[:]},
		} {
			if err := kv.b.Put(kv.k, kv.v); err != nil {
				return "", err
			}
		}
		return origin, nil
	}
	version, stored := meta.Get(keySchemaVersion), meta.Get(keyOrigin)
	if version == nil || stored == nil {
		return "", corruptf("its meta bucket has no schema_version or origin")
	}
	if string(version) != schemaVersion {
		if v, err := strconv.Atoi(string(version)); err == nil && v > 1 {
			return "", fmt.Errorf("schema version %s was written by a newer fedguard; this build reads version %s", version, schemaVersion)
		}
		return "", fmt.Errorf("unknown schema version %q; this build reads version %s", version, schemaVersion)
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return "", corruptf("bucket %q is missing", name)
		}
	}
	if origin != "" && origin != string(stored) {
		return "", fmt.Errorf("the log's origin is %q, not %q", stored, origin)
	}
	return string(stored), nil
}

// checkHead reads the head and checks it against the end of the stored
// log: cheap checks (a few reads) that catch a head or tail that is not
// what the last committed transaction wrote.
func checkHead(tx *bolt.Tx) (uint64, Hash, error) {
	count, last, err := readHead(tx)
	if err != nil {
		return 0, Hash{}, err
	}
	events := tx.Bucket(bucketEvents)
	c := events.Cursor()
	lastKey, lastVal := c.Last()
	firstKey, _ := c.First()
	treeLast, _ := tx.Bucket(bucketTree).Cursor().Last()
	cpLast, _ := tx.Bucket(bucketCheckpoints).Cursor().Last()
	if count == 0 {
		switch {
		case lastKey != nil:
			return 0, Hash{}, corruptf("the head says the log is empty, but events are stored")
		case last != Hash{}:
			return 0, Hash{}, corruptf("the head of the empty log has a last hash")
		case treeLast != nil:
			return 0, Hash{}, corruptf("the head says the log is empty, but tree hashes are stored")
		case cpLast != nil:
			return 0, Hash{}, corruptf("the head says the log is empty, but checkpoints are stored")
		}
		return 0, Hash{}, nil
	}
	if lastKey == nil {
		return 0, Hash{}, corruptf("the head says %d events, but none are stored", count)
	}
	if seq, err := parseU64(lastKey); err != nil || seq != count-1 {
		return 0, Hash{}, corruptf("the head says %d events, but the last stored event has key %x", count, lastKey)
	}
	if seq, err := parseU64(firstKey); err != nil || seq != 0 {
		return 0, Hash{}, corruptf("the first stored event has key %x, not 0", firstKey)
	}
	ev, err := decodeEvent(lastVal)
	if err != nil {
		return 0, Hash{}, corruptf("event %d: %v", count-1, err)
	}
	if ev.Seq != count-1 {
		return 0, Hash{}, corruptf("the event stored as %d says it is event %d", count-1, ev.Seq)
	}
	if ev.Hash != last {
		return 0, Hash{}, corruptf("the head's last hash %s is not the hash %s of event %d", last, ev.Hash, count-1)
	}
	var prev Hash
	if count >= 2 {
		v := events.Get(u64Key(count - 2))
		if v == nil {
			return 0, Hash{}, corruptf("event %d is missing", count-2)
		}
		prev = sha256.Sum256(v)
	}
	if ev.Prev != prev {
		return 0, Hash{}, corruptf("event %d does not link to event %d: its prev is %s, not %s", count-1, int64(count)-2, ev.Prev, prev)
	}
	wantTree := uint64(tlog.StoredHashCount(int64(count))) - 1
	if idx, err := parseU64(treeLast); err != nil || idx != wantTree {
		return 0, Hash{}, corruptf("%d events need tree hashes up to index %d, but the last stored has key %x", count, wantTree, treeLast)
	}
	leaf := tx.Bucket(bucketTree).Get(u64Key(uint64(tlog.StoredHashIndex(0, int64(count-1)))))
	if want := tlog.RecordHash(lastVal); !bytes.Equal(leaf, want[:]) {
		return 0, Hash{}, corruptf("the tree's leaf hash of event %d does not match the event", count-1)
	}
	if cpLast != nil {
		if size, err := parseU64(cpLast); err != nil || size > count {
			return 0, Hash{}, corruptf("a checkpoint has key %x, beyond the %d events stored", cpLast, count)
		}
	}
	return count, last, nil
}

// readHead reads head/count and head/last_hash.
func readHead(tx *bolt.Tx) (uint64, Hash, error) {
	head := tx.Bucket(bucketHead)
	count, err := parseU64(head.Get(keyCount))
	if err != nil {
		return 0, Hash{}, corruptf("head count: %v", err)
	}
	var last Hash
	v := head.Get(keyLastHash)
	if len(v) != len(last) {
		return 0, Hash{}, corruptf("head last hash is %d bytes", len(v))
	}
	copy(last[:], v)
	return count, last, nil
}

// Path returns the database file's path.
func (s *BoltStore) Path() string { return s.path }

// Origin returns the log's origin.
func (s *BoltStore) Origin() string { return s.origin }

// Head returns the stored head, checked against the end of the log as
// OpenBoltStore checks it.
func (s *BoltStore) Head() (uint64, Hash, error) {
	var size uint64
	var last Hash
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		size, last, err = checkHead(tx)
		return err
	})
	return size, last, err
}

// view runs fn in a read transaction.
func (s *BoltStore) view(fn func(*bolt.Tx) error) error { return s.tx(false, fn) }

// update runs fn in a write transaction.
func (s *BoltStore) update(fn func(*bolt.Tx) error) error { return s.tx(true, fn) }

// tx runs fn in a transaction, reporting a closed database as ErrClosed.
func (s *BoltStore) tx(writable bool, fn func(*bolt.Tx) error) error {
	if writable && s.readOnly {
		return ErrReadOnly
	}
	if s.closed.Load() {
		return ErrClosed
	}
	run := s.db.View
	if writable {
		run = s.db.Update
	}
	err := run(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Append stores a batch in one transaction.
func (s *BoltStore) Append(b Batch) error {
	return s.update(func(tx *bolt.Tx) error {
		size, _, err := readHead(tx)
		if err != nil {
			return err
		}
		if err := b.check(size); err != nil {
			return err
		}
		events, tree, head := tx.Bucket(bucketEvents), tx.Bucket(bucketTree), tx.Bucket(bucketHead)
		// Keys only ever grow: fill pages completely instead of splitting
		// them half-empty, as bbolt's own Compact does.
		events.FillPercent, tree.FillPercent = 1, 1
		for i, enc := range b.Events {
			seq := b.Start + uint64(i)
			if err := events.Put(u64Key(seq), bytes.Clone(enc)); err != nil {
				return fmt.Errorf("store event %d: %w", seq, err)
			}
		}
		idx := uint64(tlog.StoredHashCount(int64(b.Start)))
		for j := range b.Hashes {
			if err := tree.Put(u64Key(idx+uint64(j)), bytes.Clone(b.Hashes[j][:])); err != nil {
				return fmt.Errorf("store tree hash %d: %w", idx+uint64(j), err)
			}
		}
		if err := head.Put(keyCount, u64Key(b.Start+uint64(len(b.Events)))); err != nil {
			return err
		}
		if err := head.Put(keyLastHash, bytes.Clone(b.Last[:])); err != nil {
			return err
		}
		if s.failCommit != nil {
			return s.failCommit()
		}
		return nil
	})
}

// ReadEvents reads events in one read transaction.
func (s *BoltStore) ReadEvents(from uint64, max, maxBytes int) ([][]byte, error) {
	var out [][]byte
	err := s.view(func(tx *bolt.Tx) error {
		size, _, err := readHead(tx)
		if err != nil {
			return err
		}
		if from > size {
			return fmt.Errorf("events from %d of a log of %d", from, size)
		}
		c := tx.Bucket(bucketEvents).Cursor()
		k, v := c.Seek(u64Key(from))
		for read := 0; from+uint64(len(out)) < size && len(out) < max && (len(out) == 0 || read < maxBytes); k, v = c.Next() {
			want := from + uint64(len(out))
			if seq, err := parseU64(k); err != nil || seq != want {
				return corruptf("event %d is missing", want)
			}
			out = append(out, bytes.Clone(v))
			read += len(v)
		}
		return nil
	})
	return out, err
}

// ReadHashes reads stored tree hashes in one read transaction.
func (s *BoltStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var out []tlog.Hash
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = treeReader(tx.Bucket(bucketTree)).ReadHashes(indexes)
		return err
	})
	return out, err
}

// treeReader reads stored tree hashes from b for tlog.
func treeReader(b *bolt.Bucket) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			v := b.Get(u64Key(uint64(idx)))
			if len(v) != tlog.HashSize {
				return nil, corruptf("tree hash %d is missing", idx)
			}
			copy(out[i][:], v)
		}
		return out, nil
	})
}

// Checkpoints reads every stored checkpoint note.
func (s *BoltStore) Checkpoints() ([]StoredCheckpoint, error) {
	var cps []StoredCheckpoint
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			size, err := parseU64(k)
			if err != nil {
				return corruptf("checkpoint key %x: %v", k, err)
			}
			cps = append(cps, StoredCheckpoint{Size: size, Note: bytes.Clone(v)})
			return nil
		})
	})
	return cps, err
}

// LatestCheckpoint reads the stored checkpoint note of the largest size.
func (s *BoltStore) LatestCheckpoint() (StoredCheckpoint, bool, error) {
	var cp StoredCheckpoint
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
		if k == nil {
			return nil
		}
		size, err := parseU64(k)
		if err != nil {
			return corruptf("checkpoint key %x: %v", k, err)
		}
		cp, ok = StoredCheckpoint{Size: size, Note: bytes.Clone(v)}, true
		return nil
	})
	return cp, ok, err
}

// AddCheckpoint stores a checkpoint note in one transaction.
func (s *BoltStore) AddCheckpoint(c StoredCheckpoint) (StoredCheckpoint, error) {
	err := s.update(func(tx *bolt.Tx) error {
		size, _, err := readHead(tx)
		if err != nil {
			return err
		}
		if err := checkAddCheckpoint(c, size); err != nil {
			return err
		}
		b := tx.Bucket(bucketCheckpoints)
		if v := b.Get(u64Key(c.Size)); v != nil {
			// Another AddCheckpoint stored this size first.
			c = StoredCheckpoint{Size: c.Size, Note: bytes.Clone(v)}
			return nil
		}
		c.Note = bytes.Clone(c.Note)
		return b.Put(u64Key(c.Size), c.Note)
	})
	if err != nil {
		return StoredCheckpoint{}, err
	}
	return c, nil
}

// Close closes the database file.
func (s *BoltStore) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("audit: close %s: %w", s.path, err)
	}
	return nil
}
