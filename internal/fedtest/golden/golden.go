// Package golden holds fedguard's golden files in one way: the -update
// flag every golden test shares, the file rewritten from what the code
// gives under it, and the comparison otherwise.
//
// A golden file pins a wire or file format: rewrite one only for a stated
// reason (a deliberate, versioned change), and say it in the commit
// message. A package whose tests import golden must not define its own
// -update flag.
//
// It is its own package, below internal/fedtest, so that the tests of
// packages fedtest imports can use it without an import cycle.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files from what the code gives (only for a stated reason)")

// Updating reports whether the test runs with -update: the golden files
// are to be rewritten.
func Updating() bool { return *update }

// File returns the golden file at path for got: under -update it first
// writes got there (making its folder). A missing file fails the test.
func File(t testing.TB, path string, got []byte) []byte {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	return want
}

// Check fails the test, with a diff, unless got is the golden file at
// path (File).
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if diff := cmp.Diff(string(File(t, path, got)), string(got)); diff != "" {
		t.Errorf("%s differs from its golden file (-want +got):\n%s", path, diff)
	}
}
