package certs

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteJSONAtomic: the file holds v's JSON and a newline with the
// permission asked for, replaces what was there, and a value JSON cannot
// encode leaves the old file in place with json.Marshal's error.
func TestWriteJSONAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type rec struct {
		Round  uint64 `json:"round"`
		Digest string `json:"digest"`
	}
	if err := WriteJSONAtomic(path, rec{Round: 7, Digest: "ab"}, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\"round\":7,\"digest\":\"ab\"}\n"; string(got) != want {
		t.Errorf("WriteJSONAtomic wrote %q, want %q", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := WriteJSONAtomic(path, math.NaN(), 0o600); err == nil || err.Error() != "json: unsupported value: NaN" {
		t.Errorf("WriteJSONAtomic(NaN) = %v, want json.Marshal's unsupported-value error", err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(got) {
		t.Errorf("after a failed write the file holds %q, want %q", again, got)
	}
}
