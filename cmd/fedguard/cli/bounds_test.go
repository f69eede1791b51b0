package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// zeroFile returns a path in dir behind which stands /dev/zero: a file
// that never ends, as a FIFO or a device named on a command line is.
func zeroFile(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Symlink("/dev/zero", p); err != nil {
		t.Skipf("no /dev/zero: %v", err)
	}
	return p
}

// TestAuditProofReadBounded: audit verify -proof reads at most
// maxProofBytes and refuses a longer file by its size. Before, it read the
// first 16 MiB of a file that never ends and reported whatever the proof
// parser made of them.
func TestAuditProofReadBounded(t *testing.T) {
	dir := t.TempDir()
	_, _, keyPath, _ := signedModel(t, dir)
	endless := zeroFile(t, dir, "endless.proof")
	runSteps(t, []cliStep{
		{"file", []string{"audit", "verify", "--proof", "--key", keyPath, endless}, 1, nil, "proof " + endless + ": larger than 16777216 bytes"},
	})
}
