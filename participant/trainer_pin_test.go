package participant_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/internal/fedtest"
	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
)

// pinTrainer is a shell trainer for the exec contract that returns the
// model unchanged and, when its directory holds a file named "mutate",
// changes its own directory (version.txt) after its first run: trainer
// code edited while the agent runs.
const pinTrainer = `#!/bin/sh
set -eu
here=$(dirname "$0")
ln "$FEDGUARD_MODEL" "$FEDGUARD_OUTPUT" 2>/dev/null || cp "$FEDGUARD_MODEL" "$FEDGUARD_OUTPUT"
printf '{"samples": 10}\n' > "$FEDGUARD_METRICS"
if [ -e "$here/mutate" ]; then echo changed >> "$here/version.txt"; fi
`

// pinFederation is a real coordinator (fedtest, mutual TLS, bbolt) for
// the WDBC logistic model over testdata/wdbc60.csv, with pin as its
// trainer_digest, and one hospital whose exec trainer runs the shell
// trainer in codeDir. It returns the agent's log and Run's result.
type pinFederation struct {
	cfg  coordinator.Config
	logs *fedtest.LogBuffer
	err  error
}

// writePinTrainer writes the pinTrainer into a fresh directory (with a
// "mutate" file when mutate is set) and returns the directory, the
// script and the directory's digest.
func writePinTrainer(t *testing.T, mutate bool) (dir, script, digest string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "trainer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script = filepath.Join(dir, "train.sh")
	if err := os.WriteFile(script, []byte(pinTrainer), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "version.txt"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if mutate {
		if err := os.WriteFile(filepath.Join(dir, "mutate"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	digest, err := participant.TrainerDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, script, digest
}

// runPinned runs a two-round federation whose coordinator pins pin (empty:
// nothing) and whose one hospital trains with tr.
func runPinned(t *testing.T, pin string, tr participant.Trainer) pinFederation {
	t.Helper()
	f := fedtest.New(t, federation, hospital)
	cfg := f.Config([]string{hospital})
	cfg.MinParticipants = 1
	cfg.Model = coordinator.ModelConfig{Kind: "logreg", Features: features, Label: "diagnosis", Classes: []string{"B", "M"}}
	cfg.Training = coordinator.TrainingConfig{Rounds: 2, LocalEpochs: 1, LearningRate: 0.1, BatchSize: 16}
	cfg.CohortTimeout = coordinator.Duration(5 * time.Second)
	cfg.RoundTimeout = coordinator.Duration(30 * time.Second)
	cfg.StatsTimeout = coordinator.Duration(5 * time.Second)
	cfg.LongPoll = coordinator.Duration(2 * time.Second)
	cfg.Seed = 7
	cfg.TrainerDigest = pin
	s := fedtest.Serve(t, cfg)
	keys, err := manifest.LoadPublicKeys(filepath.Join(cfg.DataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	a, logs := newAgent(t, s.Addr, f.ClientTLS(t, hospital, s.Addr), tr, keys, withState(filepath.Join(t.TempDir(), "accepted.json")),
		func(c *participant.Config) { c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if serr := s.Stop(); serr != nil && !errors.Is(serr, context.Canceled) {
		t.Logf("coordinator: %v", serr)
	}
	return pinFederation{cfg: cfg, logs: logs, err: err}
}

// refusals are the manifest_refused events of the coordinator's audit log.
func (p pinFederation) refusals(t *testing.T) []audit.ManifestRefused {
	t.Helper()
	var out []audit.ManifestRefused
	for _, e := range fedtest.AuditEvents(t, p.cfg, audit.KindManifestRefused) {
		if e.Actor != hospital {
			t.Errorf("manifest_refused by %q, want %q", e.Actor, hospital)
		}
		out = append(out, fedtest.Payload[audit.ManifestRefused](t, e))
	}
	return out
}

// pins returns the trainer digests of the signed manifests of rounds
// 0..n-1, checked with the federation's key.
func (p pinFederation) pins(t *testing.T, n int) []string {
	t.Helper()
	keys, err := manifest.LoadPublicKeys(filepath.Join(p.cfg.DataDir, manifest.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for r := range n {
		m, err := coordinator.ExportModel(p.cfg.DataDir, int64(r))
		if err != nil {
			t.Fatal(err)
		}
		v, err := manifest.Verify(m.Manifest, keys, federation)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v.Round.TrainerDigest)
	}
	return out
}

// TestTrainerPinnedInManifest runs a real coordinator that pins its
// hospitals' trainer (trainer_digest) and an agent whose exec trainer is
// a real shell process: with the pinned code it trains both rounds, and
// every manifest names the pin; with other code it refuses, and the
// refusal is logged at the hospital and recorded in the federation's
// audit log, as a refused manifest is; the hospital's own allow-list
// applies on top of the pin, at start and when the code changes between
// rounds.
func TestTrainerPinnedInManifest(t *testing.T) {
	t.Parallel()
	t.Run("pinned code trains", func(t *testing.T) {
		dir, script, digest := writePinTrainer(t, false)
		tr := &participant.ExecTrainer{Command: []string{"sh", script}, Code: dir, Approved: []string{digest},
			Dir: filepath.Join(t.TempDir(), "work"), Local: newTrainer()}
		p := runPinned(t, digest, tr)
		if p.err != nil {
			t.Fatalf("Run = %v, want nil\n%s", p.err, p.logs)
		}
		for r, pin := range p.pins(t, 3) {
			if pin != digest {
				t.Errorf("manifest of round %d pins trainer %q, want %q", r, pin, digest)
			}
		}
		if got := p.refusals(t); len(got) != 0 {
			t.Errorf("audit log records refusals %+v, want none", got)
		}
		if !strings.Contains(p.logs.String(), "trainer_digest="+digest) {
			t.Errorf("agent log does not name the trainer digest %s", digest)
		}
	})
	t.Run("other code is refused", func(t *testing.T) {
		dir, script, digest := writePinTrainer(t, false)
		pin := "sha256:" + strings.Repeat("ab", 32)
		tr := &participant.ExecTrainer{Command: []string{"sh", script}, Code: dir,
			Dir: filepath.Join(t.TempDir(), "work"), Local: newTrainer()}
		p := runPinned(t, pin, tr)
		var ref *manifest.RefusalError
		if !errors.Is(p.err, participant.ErrManifestRefused) || !errors.As(p.err, &ref) || ref.Reason != manifest.ReasonTrainerMismatch {
			t.Fatalf("Run = %v, want a trainer_mismatch refusal", p.err)
		}
		got := p.refusals(t)
		if len(got) != 1 || got[0].Reason != string(manifest.ReasonTrainerMismatch) || got[0].ManifestRound != 0 ||
			!strings.Contains(got[0].Detail, pin) || !strings.Contains(got[0].Detail, digest) {
			t.Errorf("audit log records refusals %+v, want one trainer_mismatch of round 0 naming %s and %s", got, pin, digest)
		}
		if !strings.Contains(p.logs.String(), `msg="trainer refused: not training on this model"`) ||
			!strings.Contains(p.logs.String(), "reason=trainer_mismatch") {
			t.Errorf("agent log lacks the refusal:\n%s", p.logs)
		}
		if strings.Contains(p.logs.String(), "running external trainer") {
			t.Error("the agent ran the trainer the manifest does not pin")
		}
	})
	t.Run("built-in trainer is refused", func(t *testing.T) {
		p := runPinned(t, "sha256:"+strings.Repeat("ab", 32), newTrainer())
		got := p.refusals(t)
		if len(got) != 1 || got[0].Reason != string(manifest.ReasonTrainerMismatch) || !strings.Contains(got[0].Detail, "built-in") {
			t.Errorf("audit log records refusals %+v, want one trainer_mismatch naming the built-in trainer", got)
		}
	})
	t.Run("allow-list refuses at start", func(t *testing.T) {
		dir, script, digest := writePinTrainer(t, false)
		tr := &participant.ExecTrainer{Command: []string{"sh", script}, Code: dir, Approved: []string{"sha256:" + strings.Repeat("cd", 32)},
			Dir: filepath.Join(t.TempDir(), "work"), Local: newTrainer()}
		p := runPinned(t, digest, tr)
		if !errors.Is(p.err, participant.ErrTrainerNotApproved) || !errors.Is(p.err, participant.ErrManifestRefused) {
			t.Fatalf("Run = %v, want ErrTrainerNotApproved reported as a refusal", p.err)
		}
		got := p.refusals(t)
		if len(got) != 1 || got[0].Reason != string(manifest.ReasonTrainerNotApproved) || !strings.Contains(got[0].Detail, digest) {
			t.Errorf("audit log records refusals %+v, want one trainer_not_approved naming %s", got, digest)
		}
		if !strings.Contains(p.logs.String(), "reason=trainer_not_approved") {
			t.Errorf("agent log lacks the refusal:\n%s", p.logs)
		}
	})
	t.Run("allow-list refuses code changed after a round", func(t *testing.T) {
		dir, script, digest := writePinTrainer(t, true)
		tr := &participant.ExecTrainer{Command: []string{"sh", script}, Code: dir, Approved: []string{digest},
			Dir: filepath.Join(t.TempDir(), "work"), Local: newTrainer()}
		p := runPinned(t, digest, tr)
		got := p.refusals(t)
		if len(got) != 1 || got[0].Reason != string(manifest.ReasonTrainerNotApproved) || got[0].ManifestRound != 1 {
			t.Fatalf("Run = %v; audit log records refusals %+v, want one trainer_not_approved of round 1", p.err, got)
		}
		if n := strings.Count(p.logs.String(), "update accepted"); n != 1 {
			t.Errorf("agent submitted %d updates, want 1 (round 1, before its code changed)", n)
		}
	})
}
