package coordinator_test

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
)

// ranFederation is the data directory of a federation that closed two
// rounds and was stopped, with a copy of it as it was after round 1.
type ranFederation struct {
	cfg    coordinator.Config
	data   string // final data directory
	after1 string // copy of the data directory after round 1
}

// twoRounds runs a federation of three hospitals through two rounds.
func twoRounds(t *testing.T) ranFederation {
	t.Helper()
	var ran ranFederation
	f := newFederation(t, abc)
	s := start(t, f.cfg)
	ps := f.connect(t, s, abc...)
	fixScaling(t, ps)
	for round := uint64(1); round <= 2; round++ {
		assignments(t, ps)
		submitAll(t, round, ps, map[string]update{
			"hospital-a": {deltas(round*3 + 1), 10, nil},
			"hospital-b": {deltas(round*3 + 2), 20, nil},
			"hospital-c": {deltas(round*3 + 3), 30, nil},
		})
		waitRounds(t, s.c, int(round), 10*time.Second)
		if round == 1 {
			// A backup taken between the rounds, of a stopped
			// coordinator, so the copy is consistent.
			if err := s.stop(t); err != nil {
				t.Fatal(err)
			}
			ran.after1 = copyDir(t, f.cfg.DataDir)
			s = start(t, f.cfg)
			ps = f.connect(t, s, abc...)
		}
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	ran.cfg, ran.data = f.cfg, f.cfg.DataDir
	return ran
}

// copyDir copies the files of dir into a new temporary directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		copyFile(t, filepath.Join(dir, e.Name()), filepath.Join(out, e.Name()))
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
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
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// damageFile changes the file at path with fn.
func damageFile(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fillPage sets every byte of page n (4096 bytes) to v.
func fillPage(n int, v byte) func([]byte) []byte {
	return func(b []byte) []byte {
		for i := n * 4096; i < (n+1)*4096 && i < len(b); i++ {
			b[i] = v
		}
		return b
	}
}

// usedPages returns the bbolt page ids of leaf and branch pages in use.
func usedPages(t *testing.T, path string) []int {
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

// TestStartupChecks is the regression test of issue 12 items 4 and 5: on
// main, a missing or empty state.db restarted the federation at round 0, a
// 0-byte audit.db became a new log, an older state.db or audit.db was
// taken as is, damaged files crashed the process, and a broken chain was
// appended to. Each case must now be refused, by New and by CheckData
// alike, with an error naming the fault; a sound directory starts.
func TestStartupChecks(t *testing.T) {
	fx := twoRounds(t)
	state := func(d string) string { return filepath.Join(d, coordinator.StateFile) }
	auditDB := func(d string) string { return filepath.Join(d, coordinator.AuditFile) }
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		init  bool  // New WithInit
		want  error // nil: starts
		says  string
	}{
		{"sound", func(*testing.T, string) {}, false, nil, ""},
		{"sound, with --init", func(*testing.T, string) {}, true, nil, ""},
		{"state.db missing", func(t *testing.T, d string) { os.Remove(state(d)) }, false, coordinator.ErrDataMismatch, "state.db is missing"},
		{"state.db missing, with --init", func(t *testing.T, d string) { os.Remove(state(d)) }, true, coordinator.ErrDataMismatch, "starting over at round 0 would fork it"},
		{"state.db empty", func(t *testing.T, d string) { os.Truncate(state(d), 0) }, true, coordinator.ErrCorrupt, "is empty (0 bytes)"},
		{"audit.db missing", func(t *testing.T, d string) { os.Remove(auditDB(d)) }, true, coordinator.ErrDataMismatch, "audit log"},
		{"audit.db empty", func(t *testing.T, d string) { os.Truncate(auditDB(d), 0) }, true, audit.ErrCorrupt, "is empty (0 bytes)"},
		{"state.db from the round-1 backup", func(t *testing.T, d string) { copyFile(t, state(fx.after1), state(d)) }, false, coordinator.ErrDataMismatch, "records coordinator_stopped of round 2"},
		{"audit.db from the round-1 backup", func(t *testing.T, d string) { copyFile(t, auditDB(fx.after1), auditDB(d)) }, false, coordinator.ErrDataMismatch, "audit.db is older than state.db"},
		{"state.db cut short", func(t *testing.T, d string) {
			damageFile(t, state(d), func(b []byte) []byte { return b[:len(b)/3] })
		}, false, coordinator.ErrCorrupt, "cut short"},
		{"audit.db cut short", func(t *testing.T, d string) {
			damageFile(t, auditDB(d), func(b []byte) []byte { return b[:len(b)/3] })
		}, false, audit.ErrCorrupt, "cut short"},
		{"state.db page of 0xFF", func(t *testing.T, d string) {
			damageFile(t, state(d), fillPage(usedPages(t, state(d))[0], 0xFF))
		}, false, coordinator.ErrCorrupt, "damaged"},
		{"audit.db page of 0xFF", func(t *testing.T, d string) {
			damageFile(t, auditDB(d), fillPage(usedPages(t, auditDB(d))[0], 0xFF))
		}, false, audit.ErrCorrupt, "damaged"},
		{"audit.db page zeroed", func(t *testing.T, d string) {
			ids := usedPages(t, auditDB(d))
			damageFile(t, auditDB(d), fillPage(ids[len(ids)/2], 0))
		}, false, audit.ErrCorrupt, ""},
		{"audit.db meta pages zeroed", func(t *testing.T, d string) {
			damageFile(t, auditDB(d), func(b []byte) []byte { return fillPage(1, 0)(fillPage(0, 0)(b)) })
		}, false, audit.ErrCorrupt, "neither meta page is intact"},
		{"audit event changed in place", func(t *testing.T, d string) {
			// One flipped digit in an early event, inside a value: bbolt's
			// structure and the log's head stay sound.
			damageFile(t, auditDB(d), func(b []byte) []byte {
				i := strings.Index(string(b), `"federation":"`)
				if i < 0 {
					t.Fatal("no event with a federation field in audit.db")
				}
				b[i+len(`"federation":"`)] ^= 1
				return b
			})
		}, false, audit.ErrCorrupt, "does not match the event"},
		{"both missing", func(t *testing.T, d string) { os.Remove(state(d)); os.Remove(auditDB(d)) }, false, coordinator.ErrNoFederation, "run the coordinator once with --init"},
		{"both missing, with --init", func(t *testing.T, d string) { os.Remove(state(d)); os.Remove(auditDB(d)) }, true, nil, ""},
	}
	quiet := slog.New(slog.DiscardHandler)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fx.cfg
			cfg.DataDir = copyDir(t, fx.data)
			tt.setup(t, cfg.DataDir)
			check := func(what string, err error) {
				t.Helper()
				if tt.want == nil {
					if err != nil {
						t.Fatalf("%s: %v, want a start", what, err)
					}
					return
				}
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("%s = %v, want an error wrapping %q that says %q", what, err, tt.want, tt.says)
				}
			}
			if tt.name != "both missing, with --init" {
				_, err := coordinator.CheckData(cfg)
				check("CheckData", err)
			}
			opts := []coordinator.Option{coordinator.WithLogger(quiet)}
			if tt.init {
				opts = append(opts, coordinator.WithInit())
			}
			c, err := coordinator.New(cfg, opts...)
			if err == nil {
				defer c.Close()
			}
			check("New", err)
			if err != nil {
				t.Logf("refused: %v", err)
			}
		})
	}
}
