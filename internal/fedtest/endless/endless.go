// Package endless lays out files that never end, for the tests that every
// file fedguard reads (a certificate, a key, a CRL, a rotation file, a
// proof, a data set) is read up to its bound and no further, instead of
// until memory runs out.
//
// It is its own package, below internal/fedtest, so that the internal
// tests of packages fedtest imports (certs, coordinator) can use it
// without an import cycle.
package endless

import (
	"os"
	"path/filepath"
	"testing"
)

// File returns dir/name made a link to /dev/zero: a file that never ends,
// as a FIFO or a device named in a configuration or on a command line is.
// Where there is no /dev/zero the test is skipped.
func File(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Symlink("/dev/zero", p); err != nil {
		t.Skipf("no /dev/zero: %v", err)
	}
	return p
}
