package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/manifest"
)

// TestCoordinatorInit (issue 12, "an empty or missing file is never a new
// history unless an explicit --init says so"): `coordinator init` creates
// a new federation's state.db, audit.db and signing keys and exits, so a
// service manager only ever resumes; it says what it made, and it refuses
// a directory that holds a federation or part of one. The coordinator
// then resumes the federation without --init (--check-data passes). On
// main before this command, `coordinator init` failed with a usage error
// and the only way to create a federation was a foreground run with --init.
func TestCoordinatorInit(t *testing.T) {
	cfgPath := "../../../examples/coordinator.json"
	tmp := t.TempDir()
	fresh := filepath.Join(tmp, "fresh")
	keysFirst := filepath.Join(tmp, "keys-first")
	auditOnly := filepath.Join(tmp, "audit-only")
	if err := os.MkdirAll(auditOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(auditOnly, coordinator.AuditFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	steps := []cliStep{
		{"resume before init", []string{"coordinator", "--config", cfgPath, "--data-dir", fresh, "--check-data"}, 1, nil, "no federation"},
		{"init", []string{"coordinator", "init", "--config", cfgPath, "--data-dir", fresh}, 0, []string{
			"created federation breast-cancer in " + fresh,
			filepath.Join(fresh, coordinator.StateFile),
			filepath.Join(fresh, coordinator.AuditFile),
			"created " + filepath.Join(fresh, manifest.KeyFile) + ", fingerprint ",
			filepath.Join(fresh, manifest.PublicFile),
		}, ""},
		{"resumes without --init", []string{"coordinator", "--config", cfgPath, "--data-dir", fresh, "--check-data"}, 0, []string{"OK: " + fresh}, ""},
		{"init again refused", []string{"coordinator", "init", "--config", cfgPath, "--data-dir", fresh}, 1, nil, "already holds a federation: " + filepath.Join(fresh, coordinator.StateFile) + " exists"},
		{"init over a lone audit.db refused", []string{"coordinator", "init", "--config", cfgPath, "--data-dir", auditOnly}, 1, nil, "already holds a federation: " + filepath.Join(auditOnly, coordinator.AuditFile) + " exists"},
		{"keys made first", []string{"coordinator", "--config", cfgPath, "--data-dir", keysFirst, "--init-keys"}, 0, []string{"created manifest-signing keys"}, ""},
		{"init keeps the keys", []string{"coordinator", "init", "--config", cfgPath, "--data-dir", keysFirst}, 0, []string{"kept the existing " + filepath.Join(keysFirst, manifest.KeyFile)}, ""},
		{"init missing config", []string{"coordinator", "init", "--data-dir", fresh}, 2, nil, "-config is required"},
		{"init extra argument", []string{"coordinator", "init", "--config", cfgPath, "now"}, 2, nil, "unexpected argument"},
	}
	runSteps(t, steps)
	// The refused init left the lone file alone.
	if fi, err := os.Stat(filepath.Join(auditOnly, coordinator.AuditFile)); err != nil || fi.Size() != 0 {
		t.Errorf("refused init touched %s: %v", auditOnly, err)
	}
	if _, err := os.Stat(filepath.Join(auditOnly, coordinator.StateFile)); err == nil {
		t.Errorf("refused init created %s", filepath.Join(auditOnly, coordinator.StateFile))
	}
}

// TestCheckDataInUse: --check-data on the data directory of a running
// coordinator cannot check it (the coordinator holds state.db's lock).
// It said "FAILED: DIR", the verdict on a damaged pair, which sends an
// operator to the backups; it must say the check did not run, and why.
func TestCheckDataInUse(t *testing.T) {
	cfgPath := "../../../examples/coordinator.json"
	dir := filepath.Join(t.TempDir(), "data")
	runSteps(t, []cliStep{
		{"init", []string{"coordinator", "init", "--config", cfgPath, "--data-dir", dir}, 0, nil, ""},
	})
	// The lock a running coordinator holds.
	db, err := bolt.Open(filepath.Join(dir, coordinator.StateFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	code, out, errOut := caRun(t, "coordinator", "--config", cfgPath, "--data-dir", dir, "--check-data")
	if code != 1 || strings.Contains(out, "FAILED") || !strings.Contains(out, "NOT CHECKED: "+dir) ||
		!strings.Contains(errOut, "in use by a running coordinator") {
		t.Errorf("--check-data on a directory in use = exit %d\nstdout: %s\nstderr: %s\nwant exit 1, NOT CHECKED (not FAILED), saying it is in use", code, out, errOut)
	}
}
