package boltfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/fedguard/fedguard/internal/boltfile"
)

// FuzzOpen opens arbitrary bytes as a bbolt file, read-only and
// read-write: every outcome but a crash (a panic or a fault, which end the
// fuzzing process) is fine, and an error must be ErrEmpty or ErrDamaged
// (or bbolt's own refusal of a bad meta page, which Precheck already
// reports as ErrDamaged).
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 4096})
	if err != nil {
		f.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("events"))
		if err != nil {
			return err
		}
		for i := range 300 {
			if err := b.Put([]byte{byte(i >> 8), byte(i)}, make([]byte, 40)); err != nil {
				return err
			}
		}
		return b.Put([]byte("big"), make([]byte, 9000))
	})
	if err != nil {
		f.Fatal(err)
	}
	db.Close()
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add(seed[:3*4096])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "x.db")
		for _, ro := range []bool{true, false} {
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := boltfile.Open(p, 0o600, &bolt.Options{ReadOnly: ro, Timeout: 1})
			if err == nil {
				// Reading what Open accepted must not crash either.
				if err := db.View(func(tx *bolt.Tx) error {
					return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return b.ForEach(func(_, _ []byte) error { return nil }) })
				}); err != nil {
					t.Logf("read after Open: %v", err)
				}
				db.Close()
				continue
			}
			if !errors.Is(err, boltfile.ErrEmpty) && !errors.Is(err, boltfile.ErrDamaged) {
				t.Logf("read-only %v: %v", ro, err)
			}
		}
	})
}
