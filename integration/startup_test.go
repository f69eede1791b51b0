package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// TestDamagedDataFiles runs the real binary on a real data directory
// whose files were damaged, as processes, so that a Go panic (exit 2) or a
// SIGSEGV/SIGBUS (killed by a signal) fails the test as surely as a wrong
// verdict: the regression test of issue 12 item 5 (truncated files and a
// page of 0xFF crashed the coordinator and the audit tools, and random
// flips went unnoticed) and item 4 (an empty audit.db or a missing
// state.db started a second history).
func TestDamagedDataFiles(t *testing.T) {
	fedtest.SkipIfShort(t, "runs a federation and many processes")
	dir, _, _ := demoFederation(t)
	hospitals := []string{"hospital-a", "hospital-b"}
	live := filepath.Join(dir, "coordinator", "data")
	cfg := fedConfig(t, dir, demo.Federation, hospitals, 2, 2)
	cfgPath := writeConfig(t, dir, cfg)

	// Without --init, a new data directory is not a federation yet.
	_, errOut, err := runFedguard(t, 30*time.Second, "coordinator", "--config", cfgPath)
	if exitCode(err) != 1 || !strings.Contains(errOut, "--init") {
		t.Fatalf("coordinator on a new data directory without --init: %v, stderr %q; want exit 1 advising --init", err, errOut)
	}
	if _, err := os.Stat(filepath.Join(live, coordinator.StateFile)); err == nil {
		t.Fatal("the refused start created state.db")
	}

	// Two rounds, then the coordinator exits on its own.
	coord := startCoordinator(t, cfgPath)
	keys, err := manifest.LoadPublicKeys(filepath.Join(live, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	agents := map[string]*participant.Agent{}
	for _, h := range hospitals {
		agents[h] = pinnedAgent(t, dir, h, coord.Addr, nil, keys, filepath.Join(dir, h+".json"))
	}
	for h, err := range runAgents(t, context.Background(), agents)(90 * time.Second) {
		if err != nil {
			t.Fatalf("%s: Run = %v", h, err)
		}
	}
	if err := coord.waitExit(30 * time.Second); err != nil {
		t.Fatalf("coordinator exited with %v", err)
	}

	stateFile := func(d string) string { return filepath.Join(d, coordinator.StateFile) }
	auditFile := func(d string) string { return filepath.Join(d, coordinator.AuditFile) }
	edit := func(t *testing.T, path string, fn func(b []byte) []byte) { fedtest.DamageFile(t, path, fn) }
	fill := fedtest.FillPage
	// usedPage is the nth bbolt page in use in the file at path, wrapping around.
	usedPage := func(t *testing.T, path string, nth int) int {
		ids := fedtest.UsedPages(t, path)
		return ids[nth%len(ids)]
	}
	type damage struct {
		name    string
		apply   func(t *testing.T, d string)
		says    string // in the coordinator's refusal; "" for any refusal
		state   bool   // state.db is damaged: the audit tools still work
		mayBeOK bool   // random damage that may miss what matters
	}
	damages := []damage{
		{name: "audit.db cut short", apply: func(t *testing.T, d string) {
			edit(t, auditFile(d), func(b []byte) []byte { return b[:len(b)/2] })
		}, says: "cut short"},
		{name: "audit.db page of 0xFF", apply: func(t *testing.T, d string) {
			edit(t, auditFile(d), fill(usedPage(t, auditFile(d), 0), 0xFF))
		}, says: "damaged"},
		{name: "audit.db page zeroed", apply: func(t *testing.T, d string) {
			edit(t, auditFile(d), fill(usedPage(t, auditFile(d), 3), 0))
		}, says: "damaged"},
		{name: "audit.db empty", apply: func(t *testing.T, d string) { os.Truncate(auditFile(d), 0) }, says: "empty (0 bytes)"},
		{name: "state.db cut short", apply: func(t *testing.T, d string) {
			edit(t, stateFile(d), func(b []byte) []byte { return b[:len(b)/2] })
		}, says: "cut short", state: true},
		{name: "state.db page of 0xFF", apply: func(t *testing.T, d string) {
			edit(t, stateFile(d), fill(usedPage(t, stateFile(d), 0), 0xFF))
		}, says: "damaged", state: true},
		{name: "state.db empty", apply: func(t *testing.T, d string) { os.Truncate(stateFile(d), 0) }, says: "empty (0 bytes)", state: true},
		{name: "state.db missing", apply: func(t *testing.T, d string) { os.Remove(stateFile(d)) }, says: "would fork it", state: true},
	}
	for seed := range uint64(12) {
		damages = append(damages, damage{name: fmt.Sprintf("audit.db random flips %d", seed), mayBeOK: true, apply: func(t *testing.T, d string) {
			edit(t, auditFile(d), func(b []byte) []byte {
				r := rand.New(rand.NewPCG(seed, 5))
				for range 1 + r.IntN(16) {
					b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
				}
				return b
			})
		}})
	}
	// crashed reports a process that did not end with a verdict: a Go
	// panic exits 2 (as does a usage error, which none of these is), a
	// fault kills the process by a signal (-1 here).
	crashed := func(err error, errOut string) bool {
		c := exitCode(err)
		return (c != 0 && c != 1) || strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "SIG")
	}
	// Each case damages its own copy of the data directory and runs its
	// processes on it: the cases wait on process start-up and fsync more
	// than they compute, so they run side by side.
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "data")
			fedtest.CopyDir(t, live, data)
			d.apply(t, data)
			c := cfg
			c.DataDir = data
			path := writeConfig(t, t.TempDir(), c)
			pub := filepath.Join(data, manifest.PublicFile)

			// The coordinator, with and without --init, and its check.
			for _, args := range [][]string{
				{"coordinator", "--config", path, "--check-data"},
				{"coordinator", "--config", path},
				{"coordinator", "--config", path, "--init"},
			} {
				out, errOut, err := runFedguard(t, time.Minute, args...)
				if crashed(err, errOut) {
					t.Fatalf("fedguard %s crashed: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut)
				}
				if d.mayBeOK && err == nil {
					continue
				}
				if exitCode(err) != 1 || !strings.Contains(errOut, d.says) {
					t.Fatalf("fedguard %s: %v\nstdout:\n%s\nstderr:\n%s\nwant exit 1 saying %q", strings.Join(args, " "), err, out, errOut, d.says)
				}
			}

			// The audit tools: a verdict, never a crash; a damaged audit
			// log is an error, and one they accept verifies.
			export := filepath.Join(t.TempDir(), "audit.jsonl")
			for _, args := range [][]string{
				{"audit", "check", "--db", auditFile(data), "--key", pub},
				{"audit", "export", "--db", auditFile(data), "--out", export},
				{"audit", "report", "--db", auditFile(data), "--key", pub},
				{"audit", "model", "--data-dir", data, "--key", pub, "--out", t.TempDir()},
			} {
				_, errOut, err := runFedguard(t, time.Minute, args...)
				if crashed(err, errOut) {
					t.Fatalf("fedguard %s crashed: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut)
				}
				stateTool := args[1] == "model"
				switch {
				case d.mayBeOK:
				case d.state != stateTool && err != nil:
					t.Errorf("fedguard %s on a sound file: %v\n%s", strings.Join(args, " "), err, errOut)
				case d.state == stateTool && err == nil:
					t.Errorf("fedguard %s on the damaged file succeeded", strings.Join(args, " "))
				}
			}
			if d.mayBeOK {
				_, _, checkErr := runFedguard(t, time.Minute, "audit", "check", "--db", auditFile(data), "--key", pub)
				if checkErr == nil {
					if _, errOut, err := runFedguard(t, time.Minute, "audit", "verify", "--key", pub, export); err != nil {
						t.Errorf("audit check accepted the flipped file, but its export does not verify: %v\n%s", err, errOut)
					}
				}
			}
		})
	}
}
