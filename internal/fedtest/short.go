package fedtest

import "testing"

// SkipIfShort skips a long test in short mode (`make test-short`, go test
// -short), saying why it is long and that `make test` runs it.
func SkipIfShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("long (%s): skipped by -short; `make test` runs it", why)
	}
}
