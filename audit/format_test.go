package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// writeFormatLog writes the log of testdata/v1.db: 60 events appended
// one call at a time (so each is its own transaction), a batch of 20 in
// one call, and checkpoints after 10, 40 and 80 events, with a fixed
// clock and key.
func writeFormatLog(tb testing.TB, path string) {
	tb.Helper()
	signer, _ := testKey(tb, testOrigin, "format v1")
	l, err := Open(path, Options{Origin: testOrigin, Signer: signer, Now: fixedClock()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for i := range 60 {
		if _, err := l.Append(ctx, synthEntry(i)); err != nil {
			tb.Fatal(err)
		}
		if i+1 == 10 || i+1 == 40 {
			if _, err := l.Checkpoint(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	batch := make([]Entry, 20)
	for i := range batch {
		batch[i] = synthEntry(60 + i)
	}
	if _, err := l.Append(ctx, batch...); err != nil {
		tb.Fatal(err)
	}
	if _, err := l.Checkpoint(); err != nil {
		tb.Fatal(err)
	}
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
}

// TestBoltFileFormat pins the database file format: the log writeFormatLog
// writes holds, bucket by bucket, byte for byte the keys and values of
// testdata/v1.db, which the code before the Store interface wrote; and
// that file opens, checks and exports as it did. The file is never
// rewritten by a test: a new layout takes a new schema version, and a
// v2.db beside this one. (The pages themselves differ from run to run
// even for the same code, as bbolt lays them out, so the keys and values
// are what is pinned.)
func TestBoltFileFormat(t *testing.T) {
	golden := filepath.Join("testdata", "v1.db")
	path := filepath.Join(t.TempDir(), "audit.db")
	writeFormatLog(t, path)
	if diff := cmp.Diff(dumpBolt(t, golden), dumpBolt(t, path)); diff != "" {
		t.Errorf("the log written differs from %s, bucket by bucket (-want +got):\n%s", golden, diff)
	}

	// The checked-in file opens, checks and exports, and so does the new.
	_, verifiers := testKey(t, testOrigin, "format v1")
	var exports [][]byte
	for _, src := range []string{golden, path} {
		l, err := Open(tempCopy(t, src), Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("Open(%s): %v", src, err)
		}
		sum, err := l.Check(verifiers)
		if err != nil {
			t.Fatalf("Check(%s): %v", src, err)
		}
		if sum.Events != 80 || sum.Checkpoints != 3 || sum.Covered != 80 {
			t.Errorf("Check(%s) = %+v, want 80 events, 3 checkpoints covering 80", src, sum)
		}
		var buf bytes.Buffer
		if err := l.Export(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{Verifiers: verifiers}); err != nil {
			t.Fatalf("Verify(export of %s): %v", src, err)
		}
		exports = append(exports, buf.Bytes())
		l.Close()
	}
	if !bytes.Equal(exports[0], exports[1]) {
		t.Error("the exports of the checked-in and the new file differ")
	}
}

// dumpBolt returns every bucket's keys and values of the bbolt file at
// path, read from a copy.
func dumpBolt(t *testing.T, path string) map[string]map[string][]byte {
	t.Helper()
	db, err := bolt.Open(tempCopy(t, path), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]map[string][]byte{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			kv := map[string][]byte{}
			out[string(name)] = kv
			return b.ForEach(func(k, v []byte) error {
				kv[string(k)] = bytes.Clone(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no buckets", path)
	}
	return out
}

// tempCopy copies the file at path into a new temporary directory, so
// that opening it (even read-only, bbolt locks it) leaves it untouched.
func tempCopy(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp
}
