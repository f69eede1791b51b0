package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedguard/fedguard/internal/boltfile"
)

// Tuning of the log. The batch bounds keep one group commit's transaction
// (and the memory it pins until its fsync) modest while still letting
// thousands of concurrent appends share one fsync.
const (
	// LockTimeout is how long Open waits for the database's file lock
	// before reporting that another process (a running coordinator) has it.
	LockTimeout = 2 * time.Second

	// maxBatchEntries and maxBatchBytes bound one group commit. A single
	// Append larger than either still commits, alone.
	maxBatchEntries = 4096
	maxBatchBytes   = 16 << 20

	// readChunkEvents and readChunkBytes bound one read transaction of
	// Events and Export: long reads are split so that they never hold a
	// read transaction open for long, which would stall bbolt's writer
	// when it needs to grow the file.
	readChunkEvents = 1024
	readChunkBytes  = 4 << 20
)

// Options configure Open.
type Options struct {
	// Origin is the checkpoint origin line and the name of the signing key,
	// e.g. "fedguard.example/FED". It is required to create a log and fixed
	// then; when reopening, it must match the stored origin or be empty.
	Origin string
	// Signer signs checkpoints; its Name must be Origin. Without a Signer,
	// Checkpoint returns an error: read-only tools need no private key.
	Signer note.Signer
	// Now is the clock of event times; the default is time.Now. Times are
	// stored in UTC with nanosecond precision.
	Now func() time.Time
	// ReadOnly opens the database with a shared lock, so that tools can
	// read it while no coordinator has it open; Append and Checkpoint then
	// fail with ErrReadOnly.
	ReadOnly bool
}

// Log is an append-only audit log in a bbolt file. Its methods are safe for
// concurrent use. Appends are group-committed by one writer goroutine: each
// returns once its events are fsynced, and concurrent appends share fsyncs.
type Log struct {
	db       *bolt.DB
	path     string
	origin   string
	signer   note.Signer
	now      func() time.Time
	readOnly bool

	wake    chan struct{} // nudges the writer; buffered, one token
	stopped chan struct{} // closed when the writer has exited

	mu     sync.Mutex
	closed bool
	queue  []*appendRequest
	size   uint64 // committed events
	last   Hash   // hash of event size-1
	broken error  // set when the head could not be re-read after a failed commit

	// failCommit, when set (by tests), fails batches inside the transaction.
	failCommit func() error
}

// Entry is one event to append; the log assigns its sequence number, time
// and hashes.
type Entry struct {
	Kind  string
	Actor string
	Round uint64
	// Payload is marshalled with encoding/json (a json.RawMessage is
	// compacted and kept); it must be a JSON object. Nil means {}.
	Payload any
}

// appendRequest is one Append call waiting for the writer.
type appendRequest struct {
	entries []pendingEntry
	bytes   int
	events  []Event // set by the writer before done is closed
	err     error
	done    chan struct{}
}

// pendingEntry is an Entry validated and with its payload marshalled.
type pendingEntry struct {
	kind, actor string
	round       uint64
	payload     []byte
}

// corruptError describes an inconsistency in the database; it matches
// ErrCorrupt under errors.Is.
type corruptError struct {
	detail string
	cause  error // the file-level fault (boltfile.ErrEmpty, ErrDamaged), if any
}

func (e *corruptError) Error() string        { return "database is corrupt: " + e.detail }
func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }
func (e *corruptError) Unwrap() error        { return e.cause }

func corruptf(format string, args ...any) error {
	return &corruptError{detail: fmt.Sprintf(format, args...)}
}

// Open opens the log database at path, creating it (mode 0600, in an
// existing directory) if it is absent and not ReadOnly. It checks the
// schema version and origin, and that the head agrees with the stored
// events: the last event's hash, its chain link and the number of events
// and tree hashes. A disagreement is an error wrapping ErrCorrupt. So is
// an existing file that is empty (0 bytes) or not a sound bbolt database
// (package internal/boltfile checks every page before use): an empty
// file is a lost log, never made a new one. The full check of every event
// is Check, or Verify on an Export.
func Open(path string, opts Options) (*Log, error) {
	if opts.Origin != "" {
		if err := checkOrigin(opts.Origin); err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", path, err)
		}
	}
	db, err := boltfile.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout, ReadOnly: opts.ReadOnly})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("audit: open %s: the database is in use by another process (a running coordinator?): %w", path, err)
		}
		if errors.Is(err, boltfile.ErrEmpty) || errors.Is(err, boltfile.ErrDamaged) {
			// Never made anew: an empty file is a lost log, not a new one.
			return nil, fmt.Errorf("audit: open %s: %w", path, &corruptError{detail: err.Error(), cause: err})
		}
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	l := &Log{
		db:       db,
		path:     path,
		signer:   opts.Signer,
		now:      opts.Now,
		readOnly: opts.ReadOnly,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
	}
	if l.now == nil {
		l.now = time.Now
	}
	load := func(tx *bolt.Tx) error {
		var err error
		if l.origin, err = checkMeta(tx, opts.Origin); err != nil {
			return err
		}
		l.size, l.last, err = checkHead(tx)
		return err
	}
	if opts.ReadOnly {
		err = db.View(load)
	} else {
		err = db.Update(load)
	}
	if err == nil && l.signer != nil && l.signer.Name() != l.origin {
		err = fmt.Errorf("the signer's key is named %q, but checkpoints of this log need a key named after its origin %q", l.signer.Name(), l.origin)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	if opts.ReadOnly {
		close(l.stopped)
	} else {
		go l.run()
	}
	return l, nil
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

// Origin returns the log's origin, the first line of its checkpoints.
func (l *Log) Origin() string { return l.origin }

// Size returns the number of committed events.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Close waits for the appends already queued to commit, then closes the
// database. Later calls of any method, Close included, return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	l.nudge()
	<-l.stopped
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("audit: close %s: %w", l.path, err)
	}
	return nil
}

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// view runs fn in a read transaction, reporting a database closed under
// it as ErrClosed.
func (l *Log) view(fn func(*bolt.Tx) error) error {
	err := l.db.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Append appends entries as consecutive events and returns them, with
// their sequence numbers, times and hashes, once they are committed and
// fsynced. Entries are checked first: a bad entry fails this call alone,
// with an error naming it, and nothing of it is stored.
//
// Concurrent calls are group-committed: one writer goroutine takes every
// pending call (up to 4096 events) into one transaction, so they share one
// fsync, while a lone call commits at once. Each call's events are
// contiguous and in order. If the transaction fails, every call in it gets
// the error and none of their events is stored.
//
// If ctx is done before the entries are queued, Append returns ctx.Err()
// and stores nothing. If ctx is done while they wait for the writer,
// Append returns an error wrapping ctx.Err(), but the events may still be
// committed (under sequence numbers the caller then does not learn).
func (l *Log) Append(ctx context.Context, entries ...Entry) ([]Event, error) {
	if l.readOnly {
		return nil, ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := &appendRequest{entries: make([]pendingEntry, len(entries)), done: make(chan struct{})}
	for i, e := range entries {
		p, err := prepare(e)
		if err != nil {
			return nil, fmt.Errorf("audit: append: entry %d (kind %q): %w", i, e.Kind, err)
		}
		req.entries[i] = p
		req.bytes += len(p.payload) + len(p.actor)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if l.broken != nil {
		err := l.broken
		l.mu.Unlock()
		return nil, err
	}
	l.queue = append(l.queue, req)
	l.mu.Unlock()
	l.nudge()
	select {
	case <-req.done:
		return req.events, req.err
	case <-ctx.Done():
		return nil, fmt.Errorf("audit: append: gave up waiting for the commit, which may still store the events: %w", ctx.Err())
	}
}

// prepare checks an entry and marshals its payload.
func prepare(e Entry) (pendingEntry, error) {
	if err := checkKind(e.Kind); err != nil {
		return pendingEntry{}, err
	}
	if err := checkActor(e.Actor); err != nil {
		return pendingEntry{}, err
	}
	p, err := marshalPayload(e.Payload)
	if err != nil {
		return pendingEntry{}, err
	}
	return pendingEntry{kind: e.Kind, actor: e.Actor, round: e.Round, payload: p}, nil
}

// nudge wakes the writer without blocking.
func (l *Log) nudge() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run is the writer goroutine: it commits batches of queued appends until
// the log is closed and the queue is empty.
func (l *Log) run() {
	defer close(l.stopped)
	for {
		batch := l.nextBatch()
		if batch == nil {
			return
		}
		l.commit(batch)
		if len(batch) > 1 {
			// Several appenders are active, and those just answered
			// usually append again at once. Yield to let them queue:
			// taking the next batch first makes batches alternate between
			// the appenders that waited and those just answered, each
			// about half the size, halving the events per fsync (measured:
			// 32 events per commit with 64 appenders, 41 with the yield).
			// No timer: a lone appender never gets here, so never waits.
			runtime.Gosched()
		}
	}
}

// nextBatch waits for queued appends and takes as many as fit in one
// batch (at least one), or returns nil once the log is closed and drained.
func (l *Log) nextBatch() []*appendRequest {
	l.mu.Lock()
	for len(l.queue) == 0 {
		if l.closed {
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		<-l.wake
		l.mu.Lock()
	}
	n, entries, size := 0, 0, 0
	for ; n < len(l.queue); n++ {
		r := l.queue[n]
		if n > 0 && (entries+len(r.entries) > maxBatchEntries || size+r.bytes > maxBatchBytes) {
			break
		}
		entries += len(r.entries)
		size += r.bytes
	}
	batch := l.queue[:n:n]
	l.queue = append([]*appendRequest(nil), l.queue[n:]...)
	l.mu.Unlock()
	return batch
}

// commit writes a batch in one transaction and answers its requests.
func (l *Log) commit(batch []*appendRequest) {
	l.mu.Lock()
	size, last := l.size, l.last
	l.mu.Unlock()
	err := l.db.Update(func(tx *bolt.Tx) error {
		var err error
		size, last, err = l.writeBatch(tx, batch, size, last)
		return err
	})
	if err != nil {
		err = fmt.Errorf("audit: append: commit failed, nothing of this batch is stored: %w", err)
		for _, r := range batch {
			r.events, r.err = nil, err
		}
		l.reloadHead()
	} else {
		l.mu.Lock()
		l.size, l.last = size, last
		l.mu.Unlock()
	}
	for _, r := range batch {
		close(r.done)
	}
}

// writeBatch stores the batch's events after the head (size, last) and
// returns the new head.
func (l *Log) writeBatch(tx *bolt.Tx, batch []*appendRequest, size uint64, last Hash) (uint64, Hash, error) {
	events, tree, head := tx.Bucket(bucketEvents), tx.Bucket(bucketTree), tx.Bucket(bucketHead)
	// Keys only ever grow: fill pages completely instead of splitting them
	// half-empty, as bbolt's own Compact does.
	events.FillPercent, tree.FillPercent = 1, 1
	hashes := treeReader(tree)
	for _, r := range batch {
		r.events = make([]Event, len(r.entries))
		for i, p := range r.entries {
			ns, err := unixNano(l.now())
			if err != nil {
				return 0, Hash{}, err
			}
			ev := Event{Seq: size, Kind: p.kind, Actor: p.actor, Round: p.round, Time: time.Unix(0, ns).UTC(), Payload: p.payload, Prev: last}
			enc := appendEncoding(make([]byte, 0, fixedLen+len(p.kind)+len(p.actor)+len(p.payload)), &ev, ns)
			ev.Hash = sha256.Sum256(enc)
			if err := events.Put(u64Key(size), enc); err != nil {
				return 0, Hash{}, fmt.Errorf("store event %d: %w", size, err)
			}
			stored, err := tlog.StoredHashes(int64(size), enc, hashes)
			if err != nil {
				return 0, Hash{}, fmt.Errorf("tree hashes of event %d: %w", size, err)
			}
			idx := uint64(tlog.StoredHashIndex(0, int64(size)))
			for j := range stored {
				if err := tree.Put(u64Key(idx+uint64(j)), stored[j][:]); err != nil {
					return 0, Hash{}, fmt.Errorf("store tree hash %d: %w", idx+uint64(j), err)
				}
			}
			r.events[i] = ev
			last = ev.Hash
			size++
		}
	}
	if err := head.Put(keyCount, u64Key(size)); err != nil {
		return 0, Hash{}, err
	}
	if err := head.Put(keyLastHash, bytes.Clone(last[:])); err != nil {
		return 0, Hash{}, err
	}
	if l.failCommit != nil {
		if err := l.failCommit(); err != nil {
			return 0, Hash{}, err
		}
	}
	return size, last, nil
}

// reloadHead re-reads the head after a failed commit, so that the next
// batch continues from what is on disk whatever the failure left in
// memory. If even that fails, the log refuses further appends.
func (l *Log) reloadHead() {
	var size uint64
	var last Hash
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		size, last, err = checkHead(tx)
		return err
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.broken = fmt.Errorf("audit: append: the log's head could not be re-read after a failed commit; reopen the log: %w", err)
		return
	}
	l.size, l.last = size, last
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

// Checkpoint signs and stores a checkpoint of the log's current size, and
// returns it. If the latest checkpoint already covers every event, it
// returns that one instead of signing the same tree again. It fails on an
// empty log (there is nothing to vouch for) and without Options.Signer.
func (l *Log) Checkpoint() (Checkpoint, error) {
	if l.readOnly {
		return Checkpoint{}, ErrReadOnly
	}
	if l.signer == nil {
		return Checkpoint{}, errors.New("audit: checkpoint: the log was opened without a signer")
	}
	if l.isClosed() {
		return Checkpoint{}, ErrClosed
	}
	var (
		size   uint64
		root   tlog.Hash
		latest Checkpoint
		have   bool
	)
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		if size, _, err = readHead(tx); err != nil {
			return err
		}
		if latest, have, err = lastCheckpoint(tx); err != nil || (have && latest.Size >= size) {
			return err
		}
		if size == 0 {
			return errors.New("the log is empty")
		}
		root, err = tlog.TreeHash(int64(size), treeReader(tx.Bucket(bucketTree)))
		return err
	})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	if have && latest.Size >= size {
		return latest, nil
	}
	cp, err := signCheckpoint(l.signer, l.origin, size, root)
	if err != nil {
		return Checkpoint{}, err
	}
	err = l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		if v := b.Get(u64Key(size)); v != nil {
			// Another Checkpoint call stored this size first.
			var err error
			cp, err = parseStoredCheckpoint(v)
			return err
		}
		return b.Put(u64Key(size), cp.Note)
	})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint of size %d: %w", size, err)
	}
	return cp, nil
}

// lastCheckpoint returns the stored checkpoint of the largest size.
func lastCheckpoint(tx *bolt.Tx) (Checkpoint, bool, error) {
	k, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
	if k == nil {
		return Checkpoint{}, false, nil
	}
	cp, err := parseStoredCheckpoint(v)
	if err != nil {
		return Checkpoint{}, false, corruptf("checkpoint %x: %v", k, err)
	}
	if size, err := parseU64(k); err != nil || size != cp.Size {
		return Checkpoint{}, false, corruptf("checkpoint stored under key %x is of size %d", k, cp.Size)
	}
	return cp, true, nil
}

// LatestCheckpoint returns the stored checkpoint of the largest size, and
// false if there is none yet.
func (l *Log) LatestCheckpoint() (Checkpoint, bool, error) {
	if l.isClosed() {
		return Checkpoint{}, false, ErrClosed
	}
	var cp Checkpoint
	var ok bool
	err := l.view(func(tx *bolt.Tx) error {
		var err error
		cp, ok, err = lastCheckpoint(tx)
		return err
	})
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	return cp, ok, nil
}

// Checkpoints calls fn with every stored checkpoint in size order,
// stopping at fn's first error, which it returns.
func (l *Log) Checkpoints(fn func(Checkpoint) error) error {
	cps, err := l.checkpoints()
	if err != nil {
		return err
	}
	for _, cp := range cps {
		if err := fn(cp); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) checkpoints() ([]Checkpoint, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	var cps []Checkpoint
	err := l.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			cp, err := parseStoredCheckpoint(v)
			if err != nil {
				return corruptf("checkpoint %x: %v", k, err)
			}
			if size, err := parseU64(k); err != nil || size != cp.Size {
				return corruptf("checkpoint stored under key %x is of size %d", k, cp.Size)
			}
			cps = append(cps, cp)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoints: %w", err)
	}
	return cps, nil
}

// Events calls fn with each committed event from sequence number from on,
// in order, stopping at fn's first error, which it returns. It reads in
// chunks, each in its own read transaction, and calls fn outside them, so
// a slow fn does not hold up appends; events appended meanwhile are not
// included. It checks that each event links to the one before it.
func (l *Log) Events(from uint64, fn func(Event) error) error {
	if l.isClosed() {
		return ErrClosed
	}
	return l.events(from, l.Size(), fn)
}

// events calls fn with events [from, to).
func (l *Log) events(from, to uint64, fn func(Event) error) error {
	var prev Hash // hash of event from-1
	first := true
	for from < to {
		var chunk []Event
		err := l.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			if first && from > 0 {
				v := b.Get(u64Key(from - 1))
				if v == nil {
					return corruptf("event %d is missing", from-1)
				}
				prev = sha256.Sum256(v)
			}
			first = false
			c := b.Cursor()
			k, v := c.Seek(u64Key(from))
			for read := 0; from+uint64(len(chunk)) < to && len(chunk) < readChunkEvents && read < readChunkBytes; k, v = c.Next() {
				want := from + uint64(len(chunk))
				if seq, err := parseU64(k); err != nil || seq != want {
					return corruptf("event %d is missing", want)
				}
				ev, err := decodeEvent(v)
				if err != nil {
					return corruptf("event %d: %v", want, err)
				}
				if ev.Seq != want {
					return corruptf("the event stored as %d says it is event %d", want, ev.Seq)
				}
				if ev.Prev != prev {
					return corruptf("event %d does not link to event %d", want, int64(want)-1)
				}
				prev = ev.Hash
				chunk = append(chunk, ev)
				read += len(v)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: read events: %w", err)
		}
		for _, ev := range chunk {
			if err := fn(ev); err != nil {
				return err
			}
		}
		from += uint64(len(chunk))
	}
	return nil
}
