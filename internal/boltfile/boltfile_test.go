package boltfile_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedguard/fedguard/internal/boltfile"
)

const pageSize = 4096

// makeDB writes a database of a few hundred pages: nested buckets, small
// values and values that span overflow pages.
func makeDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"a", "b", "c"} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			inner, err := b.CreateBucket([]byte("inner"))
			if err != nil {
				return err
			}
			for i := range 2000 {
				if err := b.Put(fmt.Appendf(nil, "key-%06d", i), fmt.Appendf(nil, "value %d of bucket %s", i, name)); err != nil {
					return err
				}
			}
			if err := inner.Put([]byte("big"), make([]byte, 5*pageSize)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// damage returns a change to a database file.
type damage func(t *testing.T, path string, b []byte) []byte

func fill(page int, v byte) damage {
	return func(t *testing.T, path string, b []byte) []byte {
		if (page+1)*pageSize > len(b) {
			t.Fatalf("page %d is past the end of the %d-byte file", page, len(b))
		}
		for i := page * pageSize; i < (page+1)*pageSize; i++ {
			b[i] = v
		}
		return b
	}
}

// pageOf returns the id of the nth page of type typ ("leaf", "branch",
// "freelist", "overflow"), and the database's size in bytes (its
// high-water mark: the file may be longer).
func pageOf(t *testing.T, path, typ string, nth int) (int, int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, size := -1, 0
	err = db.View(func(tx *bolt.Tx) error {
		size = int(tx.Size())
		for i := 2; i < size/pageSize; i++ {
			p, err := tx.Page(i)
			if err != nil || p == nil {
				continue
			}
			if p.Type == typ || typ == "overflow" && p.OverflowCount > 0 {
				if nth == 0 {
					id = i
					if typ == "overflow" {
						id++
					}
					return nil
				}
				nth--
			}
		}
		return nil
	})
	if err != nil || id < 0 {
		t.Fatalf("no %s page (%v)", typ, err)
	}
	return id, size
}

func fillType(typ string, nth int, v byte) damage {
	return func(t *testing.T, path string, b []byte) []byte {
		id, _ := pageOf(t, path, typ, nth)
		return fill(id, v)(t, path, b)
	}
}

func cut(n func(size int) int) damage {
	return func(t *testing.T, path string, b []byte) []byte { return b[:n(len(b))] }
}

// cutUsed cuts n bytes from the database's used pages (and all after).
func cutUsed(n int) damage {
	return func(t *testing.T, path string, b []byte) []byte {
		_, size := pageOf(t, path, "leaf", 0)
		return b[:size-n]
	}
}

func flips(seed uint64, n int) damage {
	return func(t *testing.T, path string, b []byte) []byte {
		r := rand.New(rand.NewPCG(seed, 1))
		for range n {
			i := r.IntN(len(b))
			b[i] ^= byte(1 + r.IntN(255))
		}
		return b
	}
}

func TestOpenDamaged(t *testing.T) {
	tests := []struct {
		name   string
		damage damage
		want   error // nil: any outcome but a crash (the damage may miss)
	}{
		{"empty", cut(func(int) int { return 0 }), boltfile.ErrEmpty},
		{"one byte", cut(func(int) int { return 1 }), boltfile.ErrDamaged},
		{"half", cut(func(n int) int { return n / 2 }), boltfile.ErrDamaged},
		{"last page cut", cutUsed(pageSize), boltfile.ErrDamaged},
		{"one byte short", cutUsed(1), boltfile.ErrDamaged},
		{"meta pages zeroed", func(t *testing.T, path string, b []byte) []byte { return fill(1, 0)(t, path, fill(0, 0)(t, path, b)) }, boltfile.ErrDamaged},
		{"meta pages 0xFF", func(t *testing.T, path string, b []byte) []byte {
			return fill(1, 0xFF)(t, path, fill(0, 0xFF)(t, path, b))
		}, boltfile.ErrDamaged},
		{"leaf page zeroed", fillType("leaf", 0, 0), boltfile.ErrDamaged},
		{"leaf page 0xFF", fillType("leaf", 3, 0xFF), boltfile.ErrDamaged},
		{"branch page 0xFF", fillType("branch", 0, 0xFF), boltfile.ErrDamaged},
		{"branch page zeroed", fillType("branch", 1, 0), boltfile.ErrDamaged},
		{"freelist page 0xFF", fillType("freelist", 0, 0xFF), boltfile.ErrDamaged},
		{"overflow page 0xFF", fillType("overflow", 0, 0xFF), nil},
	}
	for seed := range uint64(40) {
		tests = append(tests, struct {
			name   string
			damage damage
			want   error
		}{fmt.Sprintf("flips seed %d", seed), flips(seed, 1+int(seed%8)*16), nil})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := makeDB(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			damaged := tt.damage(t, path, b)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{true, false} {
				db, err := boltfile.Open(path, 0o600, &bolt.Options{ReadOnly: ro, Timeout: time.Second})
				if err == nil {
					db.Close()
				}
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Fatalf("read-only %v: Open = %v, want an error wrapping %v", ro, err, tt.want)
				}
				if err != nil {
					t.Logf("read-only %v: %v", ro, err)
				}
			}
		})
	}
}

func TestOpenSound(t *testing.T) {
	path := makeDB(t)
	db, err := boltfile.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("Open of a sound database: %v", err)
	}
	db.Close()
	if _, err := boltfile.Open(filepath.Join(t.TempDir(), "missing.db"), 0o600, &bolt.Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only Open of a missing file = %v, want ErrNotExist", err)
	}
}
