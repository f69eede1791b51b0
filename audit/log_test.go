package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/fedguard/fedguard/internal/fedtest/hammer"
)

// TestRoundTrip appends, reopens, appends again, checkpoints, exports and
// verifies, checking that every read gives back what Append returned.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	signer, verifiers := randomKey(t, testOrigin)
	path := filepath.Join(t.TempDir(), "audit.db")
	clock := fixedClock()
	open := func() *Log {
		t.Helper()
		l, err := Open(path, Options{Origin: testOrigin, Signer: signer, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	l := open()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	var want []Event
	first, err := l.Append(ctx,
		Entry{Kind: KindCoordinatorStarted, Actor: ActorCoordinator, Payload: CoordinatorStarted{Version: "v1", Federation: "FED"}},
		Entry{Kind: KindEnrolment, Actor: ActorCoordinator, Payload: Enrolment{Enrolled: []string{"a", "b"}}},
		Entry{Kind: KindRoundOpened, Actor: ActorCoordinator, Round: 1, Payload: json.RawMessage(` { "attempt" : 0 } `)},
	)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, first...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = open()
	defer l.Close()
	if got := l.Size(); got != 3 {
		t.Fatalf("Size after reopening = %d, want 3", got)
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		evs, err := l.Append(ctx, Entry{Kind: KindUpdateReceived, Actor: fmt.Sprintf("hospital <%d> & co", i), Round: 1, Payload: nil})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, evs...)
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	tail, err := l.Append(ctx, Entry{Kind: KindCoordinatorStopped, Actor: ActorCoordinator, Payload: CoordinatorStopped{Reason: "test \u2028 done"}})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, tail...)

	// Returned events form a chain.
	var prev Hash
	for i, e := range want {
		if e.Seq != uint64(i) || e.Prev != prev {
			t.Fatalf("event %d: seq %d, prev %v; want seq %d, prev %v", i, e.Seq, e.Prev, i, prev)
		}
		enc, err := e.MarshalBinary()
		if err != nil || Hash(sha256.Sum256(enc)) != e.Hash {
			t.Fatalf("event %d: hash is not SHA-256 of the encoding (%v)", i, err)
		}
		prev = e.Hash
	}
	if got := string(want[2].Payload); got != `{"attempt":0}` {
		t.Errorf("raw payload stored as %s, want it compacted", got)
	}
	if got := string(want[3].Payload); got != `{}` {
		t.Errorf("nil payload stored as %s, want {}", got)
	}

	var got []Event
	if err := l.Events(0, func(e Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Events(0) mismatch (-want +got):\n%s", diff)
	}
	got = nil
	if err := l.Events(22, func(e Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[22:], got); diff != "" {
		t.Errorf("Events(22) mismatch (-want +got):\n%s", diff)
	}

	var sizes []uint64
	if err := l.Checkpoints(func(c Checkpoint) error { sizes = append(sizes, c.Size); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sizes, []uint64{3, 23}) {
		t.Errorf("checkpoint sizes = %v, want [3 23]", sizes)
	}

	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil {
		t.Fatal(err)
	}
	sum, err := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{Verifiers: verifiers, Origin: testOrigin})
	if err != nil {
		t.Fatalf("Verify(Export) = %v", err)
	}
	wantSum := Summary{Events: 24, Checkpoints: 2, Covered: 23, Uncovered: 1, Origin: testOrigin, Root: sum.Root}
	if sum != wantSum {
		t.Errorf("Verify(Export) = %+v, want %+v", sum, wantSum)
	}
	cp, ok, err := l.LatestCheckpoint()
	if err != nil || !ok || cp.Root != sum.Root || cp.Size != 23 {
		t.Errorf("LatestCheckpoint = %+v, %v, %v; want size 23 with the verified root %v", cp, ok, err, sum.Root)
	}
}

// TestExportMatchesBuilder checks that the in-memory export builder that
// the mutation tests and benchmarks use writes what Log.Export writes.
func TestExportMatchesBuilder(t *testing.T) {
	signer, _ := testKey(t, testOrigin, "builder")
	l, _ := openTestLog(t, signer)
	b := newExportBuilder(t, testOrigin, signer)
	for i := range 40 {
		if _, err := l.Append(context.Background(), synthEntry(i)); err != nil {
			t.Fatal(err)
		}
		b.add(synthEntry(i))
		if i == 9 || i == 29 {
			if _, err := l.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			b.checkpoint()
		}
	}
	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), string(b.export()); got != want {
		t.Errorf("Log.Export differs from the builder:\n got %.600s\nwant %.600s", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	signer, _ := randomKey(t, testOrigin)
	otherSigner, _ := randomKey(t, "other.example/log")
	newDB := func(t *testing.T) string {
		path := filepath.Join(t.TempDir(), "audit.db")
		l, err := Open(path, Options{Origin: testOrigin})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		opts    Options
		wantErr string
	}{
		{"no origin to create", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a.db") }, Options{}, "needs Options.Origin"},
		{"invalid origin", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a.db") }, Options{Origin: "has space"}, "spaces"},
		{"directory missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "no", "a.db") }, Options{Origin: testOrigin}, "no such file"},
		{"read-only of a missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a.db") }, Options{ReadOnly: true}, "no such file"},
		{"other origin", newDB, Options{Origin: "other.example/log"}, `origin is "fedguard.example/FED", not "other.example/log"`},
		{"signer not named after the origin", newDB, Options{Signer: otherSigner}, "named after its origin"},
		{"newer schema", func(t *testing.T) string {
			p := newDB(t)
			editDB(t, p, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("2")) })
			return p
		}, Options{}, "newer fedguard"},
		{"unknown schema", func(t *testing.T) string {
			p := newDB(t)
			editDB(t, p, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("x")) })
			return p
		}, Options{}, `unknown schema version "x"`},
		{"another program's database", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "state.db")
			editDB(t, p, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("rounds")); return err })
			return p
		}, Options{Origin: testOrigin}, `not an audit log: it has a "rounds" bucket`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path(t)
			l, err := Open(path, tt.opts)
			if err == nil {
				l.Close()
				t.Fatalf("Open = nil error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open = %v, want an error naming %s and containing %q", err, path, tt.wantErr)
			}
		})
	}
	// A valid reopen, with and without the origin, for contrast.
	path := newDB(t)
	for _, opts := range []Options{{}, {Origin: testOrigin, Signer: signer}, {ReadOnly: true}} {
		l, err := Open(path, opts)
		if err != nil {
			t.Fatalf("Open(%+v) = %v", opts, err)
		}
		if l.Origin() != testOrigin {
			t.Errorf("Origin() = %q, want %q", l.Origin(), testOrigin)
		}
		l.Close()
	}
}

// TestOpenCorrupt damages a database the ways a head check can see and
// checks that Open refuses each with ErrCorrupt.
func TestOpenCorrupt(t *testing.T) {
	signer, _ := randomKey(t, testOrigin)
	tests := []struct {
		name   string
		damage func(tx *bolt.Tx) error
	}{
		{"head count too high", func(tx *bolt.Tx) error { return tx.Bucket(bucketHead).Put(keyCount, u64Key(6)) }},
		{"head count too low", func(tx *bolt.Tx) error { return tx.Bucket(bucketHead).Put(keyCount, u64Key(4)) }},
		{"head count malformed", func(tx *bolt.Tx) error { return tx.Bucket(bucketHead).Put(keyCount, []byte{1}) }},
		{"last hash edited", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketHead).Put(keyLastHash, bytes.Repeat([]byte{1}, 32))
		}},
		{"last event deleted", func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Delete(u64Key(4)) }},
		{"first event deleted", func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Delete(u64Key(0)) }},
		{"last event edited", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			return b.Put(u64Key(4), flipPayloadByte(b.Get(u64Key(4))))
		}},
		{"last event replaced by a re-hashed one", func(tx *bolt.Tx) error {
			// An edit that also fixes the head's hash: the chain link to
			// event 3 or the tree's leaf still gives it away.
			b := tx.Bucket(bucketEvents)
			e, err := decodeEvent(b.Get(u64Key(4)))
			if err != nil {
				return err
			}
			e.Actor = "mallory"
			enc, err := e.MarshalBinary()
			if err != nil {
				return err
			}
			h := sha256.Sum256(enc)
			if err := tx.Bucket(bucketHead).Put(keyLastHash, h[:]); err != nil {
				return err
			}
			return b.Put(u64Key(4), enc)
		}},
		{"event before the last edited", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			return b.Put(u64Key(3), flipPayloadByte(b.Get(u64Key(3))))
		}},
		{"tree hash deleted", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketTree).Cursor()
			k, _ := c.Last()
			return tx.Bucket(bucketTree).Delete(k)
		}},
		{"checkpoint beyond the events", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketCheckpoints).Put(u64Key(9), []byte("x"))
		}},
		{"events bucket deleted", func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketEvents) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, path := openTestLog(t, signer)
			appendSynth(t, l, 5)
			mustCheckpoint(t, l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// Undamaged, it opens.
			if l, err := Open(path, Options{}); err != nil {
				t.Fatalf("Open before damage = %v", err)
			} else {
				l.Close()
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tt.damage); err != nil {
				t.Fatal(err)
			}
			db.Close()
			l, err = Open(path, Options{})
			if err == nil {
				l.Close()
				t.Fatal("Open of a damaged database = nil error")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Open = %v, want an error wrapping ErrCorrupt", err)
			}
		})
	}
}

// TestOpenInUse checks that a second process-like open of a database in
// use fails after the lock timeout with a message saying so.
func TestOpenInUse(t *testing.T) {
	l, path := openTestLog(t, nil)
	start := time.Now()
	ro, err := Open(path, Options{ReadOnly: true})
	if err == nil {
		ro.Close()
		t.Fatal("read-only Open of a database open for writing = nil error")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("Open = %v, want it to say the database is in use", err)
	}
	// bbolt polls the lock every 50ms, so it may give up a poll early.
	if d := time.Since(start); d < LockTimeout-200*time.Millisecond {
		t.Errorf("Open gave up after %v, well before the lock timeout %v", d, LockTimeout)
	}
	l.Close()
	ro, err = Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open after Close = %v", err)
	}
	ro.Close()
}

func TestReadOnly(t *testing.T) {
	signer, verifiers := randomKey(t, testOrigin)
	l, path := openTestLog(t, signer)
	if _, err := l.Append(context.Background(), synthEntry(0), synthEntry(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	l.Close()

	// Two readers at once: shared locks.
	r1, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := Open(path, Options{ReadOnly: true, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r1.Append(context.Background(), synthEntry(2)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Append on a read-only log = %v, want ErrReadOnly", err)
	}
	if _, err := r2.Checkpoint(); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Checkpoint on a read-only log = %v, want ErrReadOnly", err)
	}
	var buf bytes.Buffer
	if err := r1.Export(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(&buf, VerifyOptions{Verifiers: verifiers}); err != nil {
		t.Errorf("Verify(read-only Export) = %v", err)
	}
	if _, err := r2.Prove(1); err != nil {
		t.Errorf("Prove on a read-only log = %v", err)
	}
}

// TestConcurrentAppend runs 64 appenders of 200 events each and checks
// that every call got contiguous sequence numbers holding its own entries,
// that together they fill 0..N-1 once each, that fsyncs were shared, and
// that the result verifies after a reopen.
func TestConcurrentAppend(t *testing.T) {
	const goroutines, perGoroutine = 64, 200
	signer, verifiers := randomKey(t, testOrigin)
	l, path := openTestLog(t, signer)
	var commits atomic.Int64
	l.store.(*BoltStore).failCommit = func() error { commits.Add(1); return nil }

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	seen := make([]atomic.Int32, goroutines*perGoroutine)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perGoroutine; {
				n := min(1+(g+i)%4, perGoroutine-i) // calls of 1 to 4 entries
				entries := make([]Entry, n)
				for j := range entries {
					entries[j] = Entry{Kind: "test_event", Actor: fmt.Sprintf("g%d", g), Round: uint64(i + j)}
				}
				evs, err := l.Append(context.Background(), entries...)
				if err != nil {
					errs <- err
					return
				}
				for j, e := range evs {
					if e.Seq != evs[0].Seq+uint64(j) || e.Actor != entries[j].Actor || e.Round != entries[j].Round {
						errs <- fmt.Errorf("goroutine %d: call's event %d is seq %d (%s, round %d); want seq %d (%s, round %d)",
							g, j, e.Seq, e.Actor, e.Round, evs[0].Seq+uint64(j), entries[j].Actor, entries[j].Round)
						return
					}
					seen[e.Seq].Add(1)
				}
				i += n
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for seq := range seen {
		if n := seen[seq].Load(); n != 1 {
			t.Fatalf("seq %d was returned %d times, want once", seq, n)
		}
	}
	const total = goroutines * perGoroutine
	if c := commits.Load(); c >= total/4 {
		t.Errorf("%d commits for %d events in %d goroutines: appends are not group-committed", c, total, goroutines)
	}
	t.Logf("%d events in %d commits", total, commits.Load())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, err := Open(path, Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != total {
		t.Fatalf("Size after reopen = %d, want %d", l.Size(), total)
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil {
		t.Fatal(err)
	}
	sum, err := Verify(&buf, VerifyOptions{Verifiers: verifiers})
	if err != nil || sum.Events != total || sum.Covered != total {
		t.Fatalf("Verify = %+v, %v; want %d events, all covered", sum, err, total)
	}
}

// TestAppendInvalid checks that a bad entry fails its own call, with an
// error naming it, stores nothing, and does not disturb other appenders.
func TestAppendInvalid(t *testing.T) {
	good := Entry{Kind: "ok", Actor: "a"}
	tests := []struct {
		name    string
		entries []Entry
		wantErr string
	}{
		{"bad kind", []Entry{good, {Kind: "Bad", Actor: "a"}}, "entry 1 (kind \"Bad\"): kind \"Bad\": only a-z and _"},
		{"no actor", []Entry{{Kind: "ok"}}, "entry 0 (kind \"ok\"): actor must be"},
		{"array payload", []Entry{good, good, {Kind: "ok", Actor: "a", Payload: []int{1}}}, "entry 2 (kind \"ok\"): payload is not a JSON object"},
		{"unmarshallable payload", []Entry{{Kind: "ok", Actor: "a", Payload: make(chan int)}}, "entry 0 (kind \"ok\"): payload: json: unsupported type"},
		{"huge payload", []Entry{{Kind: "ok", Actor: "a", Payload: map[string]string{"x": strings.Repeat("y", MaxPayloadLen)}}}, "limit"},
	}
	l, _ := openTestLog(t, nil)
	// Good appends run alongside throughout.
	var goodErr atomic.Value
	stop := hammer.Start(4, func(int) bool {
		if _, err := l.Append(context.Background(), good); err != nil {
			goodErr.Store(err)
			return false
		}
		return true
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := l.Append(context.Background(), tt.entries...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Append = %v, %v; want an error containing %q", evs, err, tt.wantErr)
			}
		})
	}
	stop()
	if err, _ := goodErr.Load().(error); err != nil {
		t.Fatalf("a valid Append failed alongside invalid ones: %v", err)
	}
	// Nothing of the invalid calls was stored: every event is a good one.
	if err := l.Events(0, func(e Event) error {
		if e.Kind != "ok" || e.Actor != "a" || string(e.Payload) != "{}" {
			return fmt.Errorf("unexpected event %+v", e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestAppendCommitFailure fails commits inside the transaction and checks
// that each call in a failed batch gets the error, that none of its events
// is stored, and that appends afterwards continue without a gap.
func TestAppendCommitFailure(t *testing.T) {
	signer, verifiers := randomKey(t, testOrigin)
	l, path := openTestLog(t, signer)
	injected := errors.New("injected failure")
	var calls atomic.Int64
	l.store.(*BoltStore).failCommit = func() error {
		if calls.Add(1)%3 == 2 { // every third commit fails
			return injected
		}
		return nil
	}
	var (
		mu     sync.Mutex
		stored []Event
		failed int
		wg     sync.WaitGroup
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				evs, err := l.Append(context.Background(), Entry{Kind: "ok", Actor: fmt.Sprintf("g%d", g), Round: uint64(i)}, Entry{Kind: "ok", Actor: fmt.Sprintf("g%d", g), Round: uint64(i)})
				mu.Lock()
				switch {
				case errors.Is(err, injected):
					if evs != nil {
						t.Errorf("failed Append returned events %v", evs)
					}
					failed++
				case err != nil:
					t.Errorf("Append = %v, want success or the injected error", err)
				default:
					stored = append(stored, evs...)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed == 0 || len(stored) == 0 {
		t.Fatalf("%d failed and %d stored events: the test did not exercise both", failed, len(stored))
	}
	slices.SortFunc(stored, func(a, b Event) int { return int(a.Seq) - int(b.Seq) })
	for i, e := range stored {
		if e.Seq != uint64(i) {
			t.Fatalf("stored event %d has seq %d: a failed batch left a gap or a duplicate", i, e.Seq)
		}
	}
	if l.Size() != uint64(len(stored)) {
		t.Fatalf("Size = %d, want %d (the events of successful appends)", l.Size(), len(stored))
	}
	l.store.(*BoltStore).failCommit = nil
	l.Close()

	l, err := Open(path, Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got []Event
	if err := l.Events(0, func(e Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stored, got); diff != "" {
		t.Fatalf("stored events after reopen mismatch (-want +got):\n%s", diff)
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(&buf, VerifyOptions{Verifiers: verifiers}); err != nil {
		t.Fatalf("Verify after failed commits = %v", err)
	}
}

func TestAppendContext(t *testing.T) {
	l, _ := openTestLog(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, Entry{Kind: "ok", Actor: "a"}); err != context.Canceled {
		t.Errorf("Append with a cancelled context = %v, want context.Canceled", err)
	}
	if l.Size() != 0 {
		t.Errorf("Size = %d after a cancelled Append, want 0", l.Size())
	}
	if evs, err := l.Append(context.Background()); err != nil || evs != nil {
		t.Errorf("Append() = %v, %v; want nothing", evs, err)
	}
}

// TestAppendCancelledWhileQueued checks the documented behaviour of a
// context cancelled after the entries were queued: Append returns at once
// with the context's error, and the events are still committed.
func TestAppendCancelledWhileQueued(t *testing.T) {
	l, path := openTestLog(t, nil)
	release := make(chan struct{})
	inCommit := make(chan struct{}, 1)
	l.store.(*BoltStore).failCommit = func() error { // holds the writer inside a commit
		select {
		case inCommit <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	firstDone := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), Entry{Kind: "first", Actor: "a"})
		firstDone <- err
	}()
	ctx, cancel := context.WithCancel(context.Background())
	secondDone := make(chan error, 1)
	go func() {
		// Queue only once the first append holds the writer, so that the
		// second waits in the queue.
		<-inCommit
		_, err := l.Append(ctx, Entry{Kind: "second", Actor: "a"})
		secondDone <- err
	}()
	for l.queueLen() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-secondDone; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "may still store") {
		t.Errorf("Append cancelled while queued = %v, want context.Canceled and a warning that it may still commit", err)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var kinds []string
	if err := l.Events(0, func(e Event) error { kinds = append(kinds, e.Kind); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kinds, []string{"first", "second"}) {
		t.Errorf("stored kinds = %v, want [first second]: the cancelled append was queued, so it commits", kinds)
	}
}

func (l *Log) queueLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// TestClose checks that Close lets queued appends commit, that appends
// racing it either commit or get ErrClosed, and that everything after it
// gets ErrClosed.
func TestClose(t *testing.T) {
	signer, _ := randomKey(t, testOrigin)
	l, path := openTestLog(t, signer)
	var (
		mu    sync.Mutex
		acked []uint64
		wg    sync.WaitGroup
	)
	started := make(chan struct{}, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				evs, err := l.Append(context.Background(), Entry{Kind: "ok", Actor: "a"})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append racing Close = %v, want success or ErrClosed", err)
					return
				}
				mu.Lock()
				acked = append(acked, evs[0].Seq)
				mu.Unlock()
				if i == 0 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range 16 {
		<-started
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	ctx := context.Background()
	checks := []struct {
		name string
		err  error
	}{
		{"Close", l.Close()},
		{"Append", func() error { _, err := l.Append(ctx, Entry{Kind: "ok", Actor: "a"}); return err }()},
		{"Checkpoint", func() error { _, err := l.Checkpoint(); return err }()},
		{"LatestCheckpoint", func() error { _, _, err := l.LatestCheckpoint(); return err }()},
		{"Events", l.Events(0, func(Event) error { return nil })},
		{"Checkpoints", l.Checkpoints(func(Checkpoint) error { return nil })},
		{"Export", l.Export(new(bytes.Buffer))},
		{"Prove", func() error { _, err := l.Prove(0); return err }()},
	}
	for _, c := range checks {
		if c.err != ErrClosed {
			t.Errorf("%s after Close = %v, want ErrClosed", c.name, c.err)
		}
	}

	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Size() != uint64(len(acked)) {
		t.Fatalf("Size after reopen = %d, but %d appends were acknowledged", l.Size(), len(acked))
	}
	slices.Sort(acked)
	for i, s := range acked {
		if s != uint64(i) {
			t.Fatalf("acknowledged seqs are not 0..%d: found %d at %d", len(acked)-1, s, i)
		}
	}
}

func TestCheckpoint(t *testing.T) {
	ctx := context.Background()
	signer, verifiers := randomKey(t, testOrigin)
	l, path := openTestLog(t, signer)
	if _, err := l.Checkpoint(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Checkpoint of an empty log = %v, want an error saying it is empty", err)
	}
	if _, ok, err := l.LatestCheckpoint(); ok || err != nil {
		t.Errorf("LatestCheckpoint of an empty log = %v, %v; want none", ok, err)
	}
	if _, err := l.Append(ctx, synthEntry(0), synthEntry(1)); err != nil {
		t.Fatal(err)
	}
	cp1, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Checkpoint()
	if err != nil || !bytes.Equal(again.Note, cp1.Note) {
		t.Errorf("Checkpoint without new events = %q, %v; want the same checkpoint %q", again.Note, err, cp1.Note)
	}
	opened, err := OpenCheckpoint(cp1.Note, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cp1, opened); diff != "" {
		t.Errorf("OpenCheckpoint(Checkpoint().Note) mismatch (-want +got):\n%s", diff)
	}
	if _, err := l.Append(ctx, synthEntry(2)); err != nil {
		t.Fatal(err)
	}
	cp2, err := l.Checkpoint()
	if err != nil || cp2.Size != 3 {
		t.Fatalf("Checkpoint after an append = %+v, %v; want size 3", cp2, err)
	}
	latest, ok, err := l.LatestCheckpoint()
	if err != nil || !ok || !bytes.Equal(latest.Note, cp2.Note) {
		t.Errorf("LatestCheckpoint = %+v, %v, %v; want %+v", latest, ok, err, cp2)
	}
	var n int
	if err := l.Checkpoints(func(Checkpoint) error { n++; return nil }); err != nil || n != 2 {
		t.Errorf("Checkpoints saw %d (%v), want 2", n, err)
	}
	l.Close()

	// Without a signer, a checkpoint cannot be made, but can be read.
	l, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Checkpoint(); err == nil || !strings.Contains(err.Error(), "without a signer") {
		t.Errorf("Checkpoint without a signer = %v, want an error saying so", err)
	}
	if latest, ok, err := l.LatestCheckpoint(); err != nil || !ok || latest.Size != 3 {
		t.Errorf("LatestCheckpoint after reopen = %+v, %v, %v; want size 3", latest, ok, err)
	}
}

// TestEventsChunks reads across the boundaries of Events' read chunks.
func TestEventsChunks(t *testing.T) {
	l, _ := openTestLog(t, nil)
	const n = 2*readChunkEvents + 100
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{Kind: "ok", Actor: "a", Round: uint64(i)}
	}
	if _, err := l.Append(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{0, 1, readChunkEvents - 1, readChunkEvents, n - 1, n, n + 5} {
		next := from
		err := l.Events(from, func(e Event) error {
			if e.Seq != next || e.Round != next {
				return fmt.Errorf("got event %d (round %d), want %d", e.Seq, e.Round, next)
			}
			next++
			return nil
		})
		if err != nil {
			t.Fatalf("Events(%d): %v", from, err)
		}
		if want := max(from, n); next != want {
			t.Errorf("Events(%d) stopped before %d, want %d", from, next, want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := l.Events(0, func(Event) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("Events with a failing fn = %v after %d calls, want fn's error after 1", err, calls)
	}
}

// TestEventsCorrupt checks that Events and Export notice damage in the
// middle of the log, which Open's head check does not read.
func TestEventsCorrupt(t *testing.T) {
	l, path := openTestLog(t, nil)
	appendSynth(t, l, 10)
	l.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		return b.Put(u64Key(4), flipPayloadByte(b.Get(u64Key(4))))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	l, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open = %v (the damage is not at the head)", err)
	}
	defer l.Close()
	if err := l.Export(new(bytes.Buffer)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "event 5 does not link to event 4") {
		t.Errorf("Export = %v, want ErrCorrupt naming event 5's link", err)
	}
}
