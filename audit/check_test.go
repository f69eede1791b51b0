package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedguard/fedguard/internal/boltfile"
)

// checkLog writes a log of n events with checkpoints after the given
// sizes, closes it and returns its path.
func checkLog(t *testing.T, signer note.Signer, n int, checkpointsAt ...int) string {
	t.Helper()
	l, path := openTestLog(t, signer)
	for i := range n {
		if _, err := l.Append(context.Background(), synthEntry(i)); err != nil {
			t.Fatal(err)
		}
		for _, c := range checkpointsAt {
			if c == i+1 {
				if _, err := l.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// editDB changes the closed log's database with fn, as an editor or a
// flipped bit inside a value would: bbolt's structure stays sound.
func editDB(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func flipValue(bucket []byte, key uint64, edit func([]byte) []byte) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		v := b.Get(u64Key(key))
		if v == nil {
			return fmt.Errorf("no %s/%d", bucket, key)
		}
		return b.Put(u64Key(key), edit(bytes.Clone(v)))
	}
}

func xorLast(b []byte) []byte { b[len(b)-1] ^= 1; return b }

// TestOpenEmptyFile is the regression test of issue 12 item 4: Open made a
// 0-byte audit.db a new, empty log that verified, silently starting a
// second history.
func TestOpenEmptyFile(t *testing.T) {
	signer, _ := testKey(t, testOrigin, "check")
	path := filepath.Join(t.TempDir(), "audit.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		l, err := Open(path, Options{Origin: testOrigin, Signer: signer, ReadOnly: ro})
		if err == nil {
			l.Close()
			t.Fatalf("read-only %v: Open of a 0-byte file succeeded", ro)
		}
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, boltfile.ErrEmpty) {
			t.Fatalf("read-only %v: Open = %v, want ErrCorrupt and boltfile.ErrEmpty", ro, err)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty file was changed: %v, %v", fi.Size(), err)
	}
}

// TestCheck checks a stored log in place: each edit below leaves bbolt's
// structure sound and most leave the head consistent, so Open accepts the
// file, but Check finds the fault.
func TestCheck(t *testing.T) {
	signer, verifiers := testKey(t, testOrigin, "check")
	otherSigner, _ := testKey(t, testOrigin, "other")
	const n = 300
	tests := []struct {
		name string
		edit func(tx *bolt.Tx) error
		want string // in the error; "" for none
	}{
		{"sound", func(*bolt.Tx) error { return nil }, ""},
		{"covered event changed", flipValue(bucketEvents, 50, flipPayloadByte), "leaf hash of event 50 does not match"},
		{"uncovered event changed", flipValue(bucketEvents, 280, flipPayloadByte), "leaf hash of event 280 does not match"},
		{"covered leaf hash changed", flipValue(bucketTree, uint64(tlog.StoredHashIndex(0, 10)), xorLast), "leaf hash of event 10"},
		{"interior hash changed after the last checkpoint", flipValue(bucketTree, uint64(tlog.StoredHashIndex(1, 140)), xorLast), "is not what the events give"},
		{"interior hash changed under a checkpoint", flipValue(bucketTree, uint64(tlog.StoredHashIndex(1, 5)), xorLast), "is not what the events give"},
		{"covered event changed, tree too", func(tx *bolt.Tx) error {
			// An editor who also fixes the leaf: the checkpoint catches it.
			b := tx.Bucket(bucketEvents)
			v := flipPayloadByte(b.Get(u64Key(60)))
			leaf := tlog.RecordHash(v)
			if err := b.Put(u64Key(60), v); err != nil {
				return err
			}
			return tx.Bucket(bucketTree).Put(u64Key(uint64(tlog.StoredHashIndex(0, 60))), leaf[:])
		}, "event 61 does not link to event 60"},
		{"event deleted", func(tx *bolt.Tx) error { return tx.Bucket(bucketEvents).Delete(u64Key(7)) }, "event 7 is missing"},
		{"checkpoint signed by another key", func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketCheckpoints)
			cp, err := parseStoredCheckpoint(b.Get(u64Key(250)))
			if err != nil {
				return err
			}
			forged, err := signCheckpoint(otherSigner, testOrigin, cp.Size, cp.Root)
			if err != nil {
				return err
			}
			return b.Put(u64Key(250), forged.Note)
		}, "checkpoint 250: not signed by a trusted key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := checkLog(t, signer, n, 100, 250)
			editDB(t, path, tt.edit)
			l, err := Open(path, Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			sum, err := l.Check(verifiers)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check of a sound log: %v", err)
				}
				if sum.Events != n || sum.Checkpoints != 2 || sum.Covered != 250 {
					t.Fatalf("Check = %+v, want %d events, 2 checkpoints, 250 covered", sum, n)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("Check = %v, want ErrCorrupt saying %q", err, tt.want)
			}
		})
	}
}

// TestCheckRandomFlips flips random bytes of a real log file: Open and
// Check may each refuse it, and must not crash; if both accept it, the
// log must export and verify, so that nothing is appended to a broken
// chain. This is the start-up check of issue 12 item 5.
func TestCheckRandomFlips(t *testing.T) {
	signer, verifiers := testKey(t, testOrigin, "check")
	clean := checkLog(t, signer, 400, 100, 399)
	orig, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	var refused, accepted int
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 12))
		b := bytes.Clone(orig)
		for range 1 + r.IntN(8) {
			b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		}
		path := filepath.Join(t.TempDir(), "audit.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path, Options{Origin: testOrigin, Signer: signer})
		if err == nil {
			_, err = l.Check(verifiers)
			if err == nil {
				var exp bytes.Buffer
				if err := l.Export(&exp); err != nil {
					t.Fatalf("seed %d: Open and Check accepted the file, but Export fails: %v", seed, err)
				}
				if _, err := Verify(&exp, VerifyOptions{Verifiers: verifiers}); err != nil {
					t.Fatalf("seed %d: Open and Check accepted the file, but its export does not verify: %v", seed, err)
				}
			}
			l.Close()
		}
		if err != nil {
			refused++
			t.Logf("seed %d: %v", seed, err)
		} else {
			accepted++
		}
	}
	t.Logf("%d damaged files refused, %d accepted (the flips missed everything that matters)", refused, accepted)
	if refused == 0 {
		t.Fatal("no damaged file was refused")
	}
}

// BenchmarkStartupCheck measures what a coordinator's start-up costs on a
// log of 20,000 events with a checkpoint every 1,000: Open (the file's
// page walk and the head check) and Check (every event, tree hash and
// checkpoint), beside the baseline of an Export of the same log verified
// with Verify, as an auditor would do it.
func BenchmarkStartupCheck(b *testing.B) {
	signer, verifiers := testKey(b, testOrigin, "bench")
	path := filepath.Join(b.TempDir(), "audit.db")
	l, err := Open(path, Options{Origin: testOrigin, Signer: signer})
	if err != nil {
		b.Fatal(err)
	}
	const n, every = 20_000, 1_000
	for i := 0; i < n; i += every {
		entries := make([]Entry, every)
		for j := range entries {
			entries[j] = synthEntry(i + j)
		}
		if _, err := l.Append(context.Background(), entries...); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Checkpoint(); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			l := openReadOnly(b, path)
			l.Close()
		}
	})
	b.Run("open+check", func(b *testing.B) {
		for b.Loop() {
			l := openReadOnly(b, path)
			if _, err := l.Check(verifiers); err != nil {
				b.Fatal(err)
			}
			l.Close()
		}
	})
	b.Run("baseline-export+verify", func(b *testing.B) {
		for b.Loop() {
			l := openReadOnly(b, path)
			var buf bytes.Buffer
			if err := l.Export(&buf); err != nil {
				b.Fatal(err)
			}
			l.Close()
			if _, err := Verify(&buf, VerifyOptions{Verifiers: verifiers}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// openReadOnly opens the log at path read-only, failing b on an error.
func openReadOnly(b *testing.B, path string) *Log {
	b.Helper()
	l, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	return l
}
