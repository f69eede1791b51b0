package fedtest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// LogBuffer collects a logger's or a process's output for the test to
// read, safe for concurrent writes and reads.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// CopyFile copies the file from to the path to, with from's permission
// bits (a key stays 0600), making to's directory (0700) if it is missing.
func CopyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// CopyDir copies the regular files of src into dst (made, 0700, if
// missing) with CopyFile, as a backup of a stopped coordinator's data
// directory is taken. A file already in dst fails the test: a backup is
// never copied over another.
func CopyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		to := filepath.Join(dst, e.Name())
		if _, err := os.Lstat(to); err == nil {
			t.Fatalf("copy %s into %s: %s exists", src, dst, e.Name())
		}
		CopyFile(t, filepath.Join(src, e.Name()), to)
	}
}

// DamageFile replaces the file at path by fn of its contents, for the
// tests of what a damaged database does.
func DamageFile(t testing.TB, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// FillPage is a DamageFile function that sets every byte of page n (bbolt
// pages of 4096 bytes) to v.
func FillPage(n int, v byte) func([]byte) []byte {
	return func(b []byte) []byte {
		for i := n * 4096; i < (n+1)*4096 && i < len(b); i++ {
			b[i] = v
		}
		return b
	}
}

// UsedPages returns the ids of the bbolt leaf and branch pages in use in
// the file at path (none in use fails the test).
func UsedPages(t testing.TB, path string) []int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []int
	err = db.View(func(tx *bolt.Tx) error {
		for i := 2; i < int(tx.Size()/4096); i++ {
			if p, err := tx.Page(i); err == nil && p != nil && (p.Type == "leaf" || p.Type == "branch") {
				ids = append(ids, i)
			}
		}
		return nil
	})
	if err != nil || len(ids) == 0 {
		t.Fatalf("no pages in use in %s (%v)", path, err)
	}
	return ids
}
