package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
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

// Options configure Open and New.
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

// Log is an append-only audit log, kept in a Store: a bbolt file (Open) or
// memory (New with a MemStore). Its methods are safe for concurrent use.
// Appends are group-committed by one writer goroutine: each returns once
// its events are stored (fsynced, in a file), and concurrent appends share
// one Store.Append.
type Log struct {
	store    Store
	name     string // for errors: the file's path, or the origin
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
	s, err := OpenBoltStore(path, BoltOptions{Origin: opts.Origin, ReadOnly: opts.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	l, err := newLog(s, path, opts)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return l, nil
}

// New returns a Log kept in s, such as a MemStore. Options.Origin, if
// set, must be the store's; Options.ReadOnly refuses appends and
// checkpoints. Closing the Log closes s.
func New(s Store, opts Options) (*Log, error) {
	l, err := newLog(s, s.Origin(), opts)
	if err != nil {
		return nil, fmt.Errorf("audit: new log %s: %w", s.Origin(), err)
	}
	return l, nil
}

func newLog(s Store, name string, opts Options) (*Log, error) {
	if opts.Origin != "" && opts.Origin != s.Origin() {
		return nil, fmt.Errorf("the log's origin is %q, not %q", s.Origin(), opts.Origin)
	}
	l := &Log{
		store:    s,
		name:     name,
		origin:   s.Origin(),
		signer:   opts.Signer,
		now:      opts.Now,
		readOnly: opts.ReadOnly,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
	}
	if l.now == nil {
		l.now = time.Now
	}
	var err error
	if l.size, l.last, err = s.Head(); err != nil {
		return nil, err
	}
	if l.signer != nil && l.signer.Name() != l.origin {
		return nil, fmt.Errorf("the signer's key is named %q, but checkpoints of this log need a key named after its origin %q", l.signer.Name(), l.origin)
	}
	if opts.ReadOnly {
		close(l.stopped)
	} else {
		go l.run()
	}
	return l, nil
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
	if err := l.store.Close(); err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("audit: close %s: %w", l.name, err)
	}
	return nil
}

func (l *Log) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
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

// commit writes a batch with one Store.Append and answers its requests.
func (l *Log) commit(batch []*appendRequest) {
	l.mu.Lock()
	size, last := l.size, l.last
	l.mu.Unlock()
	b, err := l.buildBatch(batch, size, last)
	if err == nil {
		err = l.store.Append(b)
	}
	if err != nil {
		err = fmt.Errorf("audit: append: commit failed, nothing of this batch is stored: %w", err)
		for _, r := range batch {
			r.events, r.err = nil, err
		}
		l.reloadHead()
	} else {
		l.mu.Lock()
		l.size, l.last = size+uint64(len(b.Events)), b.Last
		l.mu.Unlock()
	}
	for _, r := range batch {
		close(r.done)
	}
}

// buildBatch makes the batch's events after the head (size, last): their
// encodings, hashes and the tree hashes they add.
func (l *Log) buildBatch(batch []*appendRequest, size uint64, last Hash) (Batch, error) {
	b := Batch{Start: size, Last: last}
	base := tlog.StoredHashCount(int64(size))
	// The tree hashes of this batch's earlier events, then the store's:
	// the few roots of complete subtrees left of the batch, which its
	// events share, so they are read once.
	before := map[int64]tlog.Hash{}
	hashes := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		var missing []int64
		for _, idx := range indexes {
			if _, ok := before[idx]; idx < base && !ok {
				missing = append(missing, idx)
			}
		}
		if len(missing) > 0 {
			got, err := l.store.ReadHashes(missing)
			if err != nil {
				return nil, err
			}
			for i, idx := range missing {
				before[idx] = got[i]
			}
		}
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			if idx < base {
				out[i] = before[idx]
			} else {
				out[i] = b.Hashes[idx-base]
			}
		}
		return out, nil
	})
	for _, r := range batch {
		r.events = make([]Event, len(r.entries))
		for i, p := range r.entries {
			ns, err := unixNano(l.now())
			if err != nil {
				return Batch{}, err
			}
			ev := Event{Seq: size, Kind: p.kind, Actor: p.actor, Round: p.round, Time: time.Unix(0, ns).UTC(), Payload: p.payload, Prev: b.Last}
			enc := appendEncoding(make([]byte, 0, fixedLen+len(p.kind)+len(p.actor)+len(p.payload)), &ev, ns)
			ev.Hash = sha256.Sum256(enc)
			stored, err := tlog.StoredHashes(int64(size), enc, hashes)
			if err != nil {
				return Batch{}, fmt.Errorf("tree hashes of event %d: %w", size, err)
			}
			b.Events = append(b.Events, enc)
			b.Hashes = append(b.Hashes, stored...)
			r.events[i] = ev
			b.Last = ev.Hash
			size++
		}
	}
	return b, nil
}

// reloadHead re-reads the head after a failed commit, so that the next
// batch continues from what is stored whatever the failure left in
// memory. If even that fails, the log refuses further appends.
func (l *Log) reloadHead() {
	size, last, err := l.store.Head()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.broken = fmt.Errorf("audit: append: the log's head could not be re-read after a failed commit; reopen the log: %w", err)
		return
	}
	l.size, l.last = size, last
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
	size, root, latest, have, err := l.checkpointState()
	if errors.Is(err, ErrClosed) {
		return Checkpoint{}, ErrClosed
	}
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
	stored, err := l.store.AddCheckpoint(StoredCheckpoint{Size: size, Note: cp.Note})
	if err == nil && !bytes.Equal(stored.Note, cp.Note) {
		// Another Checkpoint call stored this size first.
		cp, err = parseStoredCheckpoint(stored.Note)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint of size %d: %w", size, err)
	}
	return cp, nil
}

// checkpointState reads what Checkpoint needs: the stored size, the root
// of its tree, and the latest checkpoint. The root is only computed when
// the latest checkpoint does not cover the size.
func (l *Log) checkpointState() (size uint64, root tlog.Hash, latest Checkpoint, have bool, err error) {
	// The latest checkpoint first: it never covers more than the head
	// read after it.
	if latest, have, err = l.latestCheckpoint(); err != nil {
		return
	}
	if size, _, err = l.store.Head(); err != nil {
		return
	}
	if have && latest.Size >= size {
		return
	}
	if size == 0 {
		err = errors.New("the log is empty")
		return
	}
	root, err = tlog.TreeHash(int64(size), l.store)
	return
}

// latestCheckpoint returns the stored checkpoint of the largest size.
func (l *Log) latestCheckpoint() (Checkpoint, bool, error) {
	sc, ok, err := l.store.LatestCheckpoint()
	if err != nil || !ok {
		return Checkpoint{}, false, err
	}
	cp, err := storedCheckpoint(sc)
	if err != nil {
		return Checkpoint{}, false, err
	}
	return cp, true, nil
}

// storedCheckpoint parses a stored checkpoint note, checking it is of the
// size it is stored under.
func storedCheckpoint(sc StoredCheckpoint) (Checkpoint, error) {
	cp, err := parseStoredCheckpoint(sc.Note)
	if err != nil {
		return Checkpoint{}, corruptf("checkpoint %x: %v", u64Key(sc.Size), err)
	}
	if cp.Size != sc.Size {
		return Checkpoint{}, corruptf("checkpoint stored under key %x is of size %d", u64Key(sc.Size), cp.Size)
	}
	return cp, nil
}

// LatestCheckpoint returns the stored checkpoint of the largest size, and
// false if there is none yet.
func (l *Log) LatestCheckpoint() (Checkpoint, bool, error) {
	if l.isClosed() {
		return Checkpoint{}, false, ErrClosed
	}
	cp, ok, err := l.latestCheckpoint()
	if errors.Is(err, ErrClosed) {
		return Checkpoint{}, false, ErrClosed
	}
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
	stored, err := l.store.Checkpoints()
	if errors.Is(err, ErrClosed) {
		return nil, ErrClosed
	}
	cps := make([]Checkpoint, 0, len(stored))
	for _, sc := range stored {
		if err != nil {
			break
		}
		var cp Checkpoint
		cp, err = storedCheckpoint(sc)
		cps = append(cps, cp)
	}
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
	if from > 0 && from < to {
		v, err := l.store.ReadEvents(from-1, 1, 0)
		if err == nil && len(v) == 0 {
			err = corruptf("event %d is missing", from-1)
		}
		if err != nil {
			return readError(err)
		}
		prev = sha256.Sum256(v[0])
	}
	for from < to {
		encs, err := l.store.ReadEvents(from, int(min(to-from, readChunkEvents)), readChunkBytes)
		if err == nil && len(encs) == 0 {
			err = corruptf("event %d is missing", from)
		}
		if err != nil {
			return readError(err)
		}
		chunk := make([]Event, len(encs))
		for i, v := range encs {
			want := from + uint64(i)
			ev, err := decodeEvent(v)
			if err != nil {
				return readError(corruptf("event %d: %v", want, err))
			}
			if ev.Seq != want {
				return readError(corruptf("the event stored as %d says it is event %d", want, ev.Seq))
			}
			if ev.Prev != prev {
				return readError(corruptf("event %d does not link to event %d", want, int64(want)-1))
			}
			prev = ev.Hash
			chunk[i] = ev
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

// readError wraps an error of reading events, leaving ErrClosed as it is.
func readError(err error) error {
	if errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("audit: read events: %w", err)
}
