package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// exportLine is one line of `fedguard audit export`, as far as the tests
// read it.
type exportLine struct {
	Type    string          `json:"type"`
	Seq     uint64          `json:"seq"`
	Kind    string          `json:"kind"`
	Actor   string          `json:"actor"`
	Round   uint64          `json:"round"`
	Payload json.RawMessage `json:"payload"`
}

// exportAudit runs `fedguard audit export` on a data directory's audit log
// and returns the file and its parsed lines.
func exportAudit(t *testing.T, dataDir string) (string, []string, []exportLine) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	mustFedguard(t, "audit", "export", "--db", filepath.Join(dataDir, coordinator.AuditFile), "--out", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	lines := make([]exportLine, len(raw))
	for i, l := range raw {
		if err := json.Unmarshal([]byte(l), &lines[i]); err != nil {
			t.Fatalf("export line %d: %v\n%s", i+1, err, l)
		}
	}
	return out, raw, lines
}

// checkAuditTrail is what a compliance officer does with a coordinator's
// data directory after a federation trained rounds rounds: export, verify
// with the public key, prove one event, read the report; and it checks that
// edits to the export and a wrong key are caught.
func checkAuditTrail(t *testing.T, dataDir string, rounds int) {
	t.Helper()
	pub := filepath.Join(dataDir, manifest.PublicFile)
	export, raw, lines := exportAudit(t, dataDir)
	if out := mustFedguard(t, "audit", "verify", "--key", pub, export); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify printed %q, want OK", out)
	}
	kinds := map[string]int{}
	update := -1 // line index of an update_received (secure: secure_session) event
	field := `"samples":`
	for i, l := range lines {
		kinds[l.Kind]++
		if (l.Kind == "update_received" || l.Kind == "secure_session") && update < 0 {
			update = i
			if l.Kind == "secure_session" {
				field = `"weight":`
			}
		}
	}
	// Every round closed, was signed and was announced; round 0's
	// manifest vouches for the initial model.
	for kind, want := range map[string]int{"round_closed": rounds, "manifest_signed": rounds + 1, "round_opened": rounds, "coordinator_started": 1} {
		if kinds[kind] < want {
			t.Errorf("export has %d %s events, want at least %d (all kinds: %v)", kinds[kind], kind, want, kinds)
		}
	}
	if update < 0 {
		t.Fatal("export has no update_received or secure_session event")
	}

	// One event, proved against the signed checkpoint, checked offline.
	proof := filepath.Join(t.TempDir(), "proof.json")
	mustFedguard(t, "audit", "prove", "--db", filepath.Join(dataDir, coordinator.AuditFile), "--seq", fmt.Sprint(lines[update].Seq), "--out", proof)
	if out := mustFedguard(t, "audit", "verify", "--key", pub, "--proof", proof); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify --proof printed %q, want OK", out)
	}

	// An edited sample count (or bucket weight) is caught and named.
	edited := strings.Replace(raw[update], field, field+"1", 1)
	if edited == raw[update] {
		t.Fatalf("%s line has no %s field: %s", lines[update].Kind, field, raw[update])
	}
	mutated := filepath.Join(t.TempDir(), "edited.jsonl")
	all := append(append(append([]string{}, raw[:update]...), edited), raw[update+1:]...)
	if err := os.WriteFile(mutated, []byte(strings.Join(all, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runFedguard(t, 30*time.Second, "audit", "verify", "--key", pub, mutated)
	if code := exitCode(err); code != 1 || !strings.Contains(errOut, fmt.Sprintf("event %d", lines[update].Seq)) {
		t.Errorf("verify of an export with an edited sample count: exit %d, stderr %q; want exit 1 naming event %d", code, errOut, lines[update].Seq)
	}

	// Another key does not vouch for this log.
	other := t.TempDir()
	if _, _, err := manifest.LoadOrCreateSigner(other); err != nil {
		t.Fatal(err)
	}
	_, errOut, err = runFedguard(t, 30*time.Second, "audit", "verify", "--key", filepath.Join(other, manifest.PublicFile), export)
	if code := exitCode(err); code != 1 || !strings.Contains(errOut, "checkpoint") {
		t.Errorf("verify with another coordinator's key: exit %d, stderr %q; want exit 1 about a checkpoint", code, errOut)
	}

	report := mustFedguard(t, "audit", "report", "--db", filepath.Join(dataDir, coordinator.AuditFile), "--key", pub)
	for r := 1; r <= rounds; r++ {
		if !strings.Contains(report, fmt.Sprintf("## Round %d\n", r)) {
			t.Errorf("report has no section for round %d", r)
		}
	}
	if n := strings.Count(report, "signature verified"); n < rounds {
		t.Errorf("report says %q %d times, want once per round (%d):\n%s", "signature verified", n, rounds, report)
	}
	if strings.Contains(report, "INVALID") || strings.Contains(report, "NOT VERIFIED") {
		t.Errorf("report of an untouched log flags a problem:\n%s", report)
	}
	html := mustFedguard(t, "audit", "report", "--db", filepath.Join(dataDir, coordinator.AuditFile), "--html", "--round", "1")
	if !strings.Contains(html, "<html") || !strings.Contains(html, "Round 1") || strings.Contains(html, "Round 2<") {
		t.Errorf("report --html --round 1 is not an HTML page about round 1 alone")
	}
}

// exitCode is a finished command's exit status (0 for a nil error).
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// refusals is what the hospitals' runs returned: the refusal reason per
// hospital ("" when Run returned nil).
func refusals(t *testing.T, errs map[string]error) map[string]manifest.Reason {
	t.Helper()
	out := map[string]manifest.Reason{}
	for name, err := range errs {
		var ref *manifest.RefusalError
		switch {
		case err == nil:
			out[name] = ""
		case errors.Is(err, participant.ErrManifestRefused) && errors.As(err, &ref):
			out[name] = ref.Reason
		default:
			t.Errorf("%s: Run = %v, want nil or a manifest refusal", name, err)
		}
	}
	return out
}

// refusedInLog returns the manifest_refused events of a data directory's
// audit log by participant (the coordinator must have stopped).
func refusedInLog(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	_, _, lines := exportAudit(t, dataDir)
	out := map[string]string{}
	for _, l := range lines {
		if l.Kind != "manifest_refused" {
			continue
		}
		var p struct{ Reason string }
		if err := json.Unmarshal(l.Payload, &p); err != nil {
			t.Fatal(err)
		}
		out[l.Actor] = p.Reason
	}
	return out
}

// TestManifestRefusals attacks hospitals with what a compromised or
// careless operator could serve, using the real coordinator on copies of
// its own data directory: a restored old backup (rollback), a second
// history grown from a backup (fork), and a replaced signing key. Every
// hospital refuses before training, says why in its own error, and the
// refusal lands in the serving coordinator's audit log.
func TestManifestRefusals(t *testing.T) {
	dir, _, _ := demoFederation(t)
	hospitals := []string{"hospital-a", "hospital-b"}
	live := filepath.Join(dir, "coordinator", "data")
	config := func(dataDir string, rounds int) string {
		cfg := fedConfig(t, dir, demo.Federation, hospitals, 2, rounds)
		cfg.DataDir = dataDir
		return writeConfig(t, dir, cfg)
	}
	// train runs the hospitals (keeping their accepted manifests in
	// stateDir/NAME.json) against a coordinator on dataDir that trains up
	// to rounds; it returns what each hospital's Run returned and the
	// stopped coordinator.
	train := func(dataDir, stateDir string, rounds int, expectRefusal bool) map[string]error {
		t.Helper()
		coord := startCoordinator(t, config(dataDir, rounds))
		keys, err := manifest.LoadPublicKeys(filepath.Join(live, manifest.PublicFile)) // pinned: always the original key
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			t.Fatal(err)
		}
		agents := map[string]*participant.Agent{}
		for _, h := range hospitals {
			agents[h] = pinnedAgent(t, dir, h, coord.Addr, nil, keys, filepath.Join(stateDir, h+".json"))
		}
		errs := runAgents(t, context.Background(), agents)(90 * time.Second)
		if expectRefusal {
			// The coordinator waits for a cohort that will never come.
			if err := coord.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-coord.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("coordinator on %s still running 30 s after the hospitals stopped with %v", dataDir, errs)
		}
		if err := coord.Wait(); err != nil {
			t.Errorf("coordinator on %s exited with %v", dataDir, err)
		}
		return errs
	}
	hospitalState := filepath.Join(dir, "hospitals")

	// Round 1, then a backup, then rounds 2 and 3: the hospitals have
	// accepted the manifest of round 3 (the final model's, sent when the
	// training finished).
	for _, err := range train(live, hospitalState, 1, false) {
		if err != nil {
			t.Fatalf("first round: Run = %v", err)
		}
	}
	backup := filepath.Join(dir, "backup-round-1")
	fedtest.CopyDir(t, live, backup)
	for _, err := range train(live, hospitalState, 3, false) {
		if err != nil {
			t.Fatalf("rounds 2 and 3: Run = %v", err)
		}
	}

	t.Run("rollback", func(t *testing.T) {
		restored := filepath.Join(dir, "restored")
		fedtest.CopyDir(t, backup, restored)
		got := refusals(t, train(restored, hospitalState, 3, true))
		for _, h := range hospitals {
			if got[h] != manifest.ReasonRollback {
				t.Errorf("%s: refusal reason %q, want %q", h, got[h], manifest.ReasonRollback)
			}
		}
		if logged := refusedInLog(t, restored); logged["hospital-a"] != "rollback" || logged["hospital-b"] != "rollback" {
			t.Errorf("audit log of the rolled-back coordinator records refusals %v, want rollback from both", logged)
		}
	})

	t.Run("fork", func(t *testing.T) {
		forked := filepath.Join(dir, "forked")
		fedtest.CopyDir(t, backup, forked)
		// Rounds 2 and 3 run again on the backup, with hospitals that
		// never saw the original (fresh state): a second, different
		// history, whose round 4 the original hospitals are offered.
		for _, err := range train(forked, filepath.Join(dir, "other-hospitals"), 3, false) {
			if err != nil {
				t.Fatalf("second history: Run = %v", err)
			}
		}
		got := refusals(t, train(forked, hospitalState, 4, true))
		for _, h := range hospitals {
			if got[h] != manifest.ReasonFork {
				t.Errorf("%s: refusal reason %q, want %q", h, got[h], manifest.ReasonFork)
			}
		}
		if logged := refusedInLog(t, forked); logged["hospital-a"] != "fork" {
			t.Errorf("audit log of the forked coordinator records refusals %v, want fork", logged)
		}
	})

	t.Run("another key", func(t *testing.T) {
		rekeyed := filepath.Join(dir, "rekeyed")
		fedtest.CopyDir(t, live, rekeyed)
		other := t.TempDir()
		if _, _, err := manifest.LoadOrCreateSigner(other); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{manifest.KeyFile, manifest.PublicFile, manifest.CosignPublicFile} {
			if err := os.Remove(filepath.Join(rekeyed, f)); err != nil {
				t.Fatal(err)
			}
		}
		fedtest.CopyDir(t, other, rekeyed)
		// The coordinator checks its audit log and its last manifest
		// against its own keys at start-up: with another key in place it
		// refuses to start, rather than sign rounds every hospital would
		// refuse (participant/integrity_test.go covers that refusal).
		_, errOut, err := runFedguard(t, 30*time.Second, "coordinator", "--config", config(rekeyed, 5))
		if exitCode(err) != 1 || !strings.Contains(errOut, "not signed by a trusted key") {
			t.Errorf("coordinator with another key: %v, %q; want exit 1 saying a checkpoint is not signed by a trusted key", err, errOut)
		}
		// Nothing was appended: the log still verifies with the pinned key.
		export, _, _ := exportAudit(t, rekeyed)
		if _, errOut, err := runFedguard(t, 30*time.Second, "audit", "verify", "--key", filepath.Join(live, manifest.PublicFile), export); err != nil {
			t.Errorf("verify of the re-keyed directory's log with the pinned key: %v, %q", err, errOut)
		}
	})
}
