//go:build unix

package participant

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/internal/fedtest/endless"
)

// TestAgentFilesNotRegular: the agent's own files (the state file and the
// privacy ledger beside it) replaced by a named pipe or a link to a
// device are refused at once with a clear error, instead of blocking the
// agent's start for good (a pipe nobody writes to) or reading a device.
func TestAgentFilesNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	zero := endless.File(t, dir, "zero")
	loaders := map[string]func(string) error{
		"state":  func(p string) error { _, err := loadState(p); return err },
		"ledger": func(p string) error { _, err := loadLedger(p); return err },
	}
	for name, load := range loaders {
		for _, path := range []string{fifo, zero} {
			done := make(chan error, 1)
			go func() { done <- load(path) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("%s at %s: %v, want a refusal of a file that is not regular", name, filepath.Base(path), err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("%s at %s: still reading after 5 s", name, filepath.Base(path))
			}
		}
	}
}
