//go:build unix

package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOutputToFIFO (trial): an output file named on the command line that
// is not a regular file (a named pipe here; /dev/stdout, a terminal) is
// written to. Every such file went through certs.WriteFileAtomic, which
// renames a new file over the path: `fedguard audit export --out
// /dev/stdout` (or `ca sign --out /dev/stdout`) put nothing on standard
// output, exited 0, and, run as root, replaced /dev/stdout itself with a
// regular file holding the output.
func TestOutputToFIFO(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if code, _, errOut := caRun(t, "ca", "init", "--dir", ca, "--federation", "fifo"); code != 0 {
		t.Fatalf("ca init = %d: %s", code, errOut)
	}
	if code, _, errOut := caRun(t, "participant", "init", "--federation", "fifo", "--name", "hospital-a", "--dir", filepath.Join(dir, "a")); code != 0 {
		t.Fatalf("participant init = %d: %s", code, errOut)
	}
	for _, tt := range []struct {
		name string
		args []string // the output file follows
		want string
	}{
		{"audit export", []string{"audit", "export", "--db", filepath.Join(ca, "audit", "audit.db"), "--out"}, `"type":"header"`},
		{"ca sign", []string{"ca", "sign", "--dir", ca, "--csr", filepath.Join(dir, "a", "hospital-a.csr"), "--out"}, "BEGIN CERTIFICATE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "out.fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			// Opened for reading first (without waiting for a writer), so
			// that the command's open for writing does not block; the
			// output fits in the pipe's buffer.
			r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if code, out, errOut := caRun(t, append(tt.args, fifo)...); code != 0 {
				t.Fatalf("%s to a FIFO = %d, %q, %q", tt.name, code, out, errOut)
			}
			fi, err := os.Lstat(fifo)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != os.ModeNamedPipe {
				t.Errorf("after %s, %s is %v, want the named pipe it was", tt.name, fifo, fi.Mode())
			}
			got, err := io.ReadAll(r)
			if err != nil && !strings.Contains(err.Error(), "resource temporarily unavailable") {
				t.Fatal(err)
			}
			if !strings.Contains(string(got), tt.want) {
				t.Errorf("the reader of the pipe got %q, want %s's output", got, tt.name)
			}
		})
	}
}
