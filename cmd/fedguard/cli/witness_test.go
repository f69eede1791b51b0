package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"golang.org/x/mod/sumdb/note"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/coordinator"
	"github.com/fedguard/fedguard/demo"
	"github.com/fedguard/fedguard/internal/fedtest/endless"
	"github.com/fedguard/fedguard/manifest"
)

// demoFed is one demo federation run for the tests of this file and the
// lineage tests: real mTLS on loopback, real bbolt files, real agents.
var demoFed struct {
	once sync.Once
	dir  string
	err  error
}

// runDemoFed runs a three-hospital, three-round demo federation once per
// test binary and returns its directory (see demo.Run).
func runDemoFed(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a federation")
	}
	demoFed.once.Do(func() {
		dir, err := os.MkdirTemp("", "fedguard-cli-demo-")
		if err != nil {
			demoFed.err = err
			return
		}
		demoFed.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, demoFed.err = demo.Run(ctx, demo.Options{
			Dir: dir, Rounds: 3, Hospitals: 3, Seed: 1,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, io.Discard)
	})
	if demoFed.err != nil {
		t.Fatalf("demo federation: %v", demoFed.err)
	}
	return demoFed.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if demoFed.dir != "" {
		os.RemoveAll(demoFed.dir)
	}
	os.Exit(code)
}

// runCLI runs fedguard with args and returns its exit code and output.
func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// exportLines exports the demo's audit database and returns its lines.
func exportLines(t *testing.T, dir string) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, _, errOut := runCLI("audit", "export", "-db", filepath.Join(dir, "coordinator", "data", coordinator.AuditFile), "-out", path); code != 0 {
		t.Fatalf("audit export: exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// cutBack returns the export of lines cut back to its checkpoint of
// size events: the header rewritten, later events and checkpoints gone.
// It is what a coordinator hiding its last rounds would hand over.
func cutBack(t *testing.T, lines []string, size uint64) string {
	t.Helper()
	var events, cps []string
	for _, l := range lines[1:] {
		var v struct {
			Type string `json:"type"`
			Seq  uint64 `json:"seq"`
			Size uint64 `json:"size"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("export line %q: %v", l, err)
		}
		switch {
		case v.Type == "checkpoint" && v.Size <= size:
			cps = append(cps, l)
		case v.Type != "checkpoint" && v.Seq < size:
			events = append(events, l)
		}
	}
	var h map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil {
		t.Fatal(err)
	}
	header := fmt.Sprintf(`{"type":"header","format":%q,"origin":%q,"events":%d,"checkpoints":%d}`, h["format"], h["origin"], len(events), len(cps))
	return strings.Join(append(append([]string{header}, events...), cps...), "\n") + "\n"
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWitnessRefutesCutBackAndFork is issue 17's named gap: an export cut
// back exactly to an earlier checkpoint verifies on its own, and must fail
// against a hospital's witness; so must a fork re-signed by the
// coordinator's own key.
func TestWitnessRefutesCutBackAndFork(t *testing.T) {
	dir := runDemoFed(t)
	data := filepath.Join(dir, "coordinator", "data")
	key := filepath.Join(data, manifest.PublicFile)
	ca := filepath.Join(dir, "ca", "ca.crt")
	h := filepath.Join(dir, "hospital-a")

	wpath := filepath.Join(t.TempDir(), "hospital-a.witness.json")
	code, _, errOut := runCLI("participant", "witness", "-state", filepath.Join(h, "accepted.json"),
		"-cert", filepath.Join(h, "hospital-a.crt"), "-key", filepath.Join(h, "hospital-a.key"), "-coordinator-key", key, "-out", wpath)
	if code != 0 {
		t.Fatalf("participant witness: exit %d: %s", code, errOut)
	}
	// A key file that never ends is refused, not read until memory runs
	// out (as it was by tls.LoadX509KeyPair).
	code, _, errOut = runCLI("participant", "witness", "-state", filepath.Join(h, "accepted.json"),
		"-cert", filepath.Join(h, "hospital-a.crt"), "-key", endless.File(t, t.TempDir(), "endless.key"), "-coordinator-key", key, "-out", wpath+".x")
	if want := "endless.key: larger than 1048576 bytes"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("participant witness -key /dev/zero: exit %d, %q; want exit 1 and %q", code, errOut, want)
	}
	// The same from the hospital's configuration file.
	cfg := hospitalConfigWithState(t, dir, "hospital-a", filepath.Join(h, "accepted.json"))
	code, fromConfig, errOut := runCLI("participant", "witness", "-config", cfg)
	if code != 0 || !strings.Contains(fromConfig, `"witness": "hospital-a"`) {
		t.Fatalf("participant witness -config: exit %d, %q, %s", code, fromConfig, errOut)
	}
	wdata, err := os.ReadFile(wpath)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct{ Checkpoint string }
	if err := json.Unmarshal(wdata, &wf); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint([]byte(wf.Checkpoint), keyVerifiersFor(t, key))
	if err != nil {
		t.Fatalf("the witnessed checkpoint is not the coordinator's: %v", err)
	}

	lines := exportLines(t, dir)
	var sizes []uint64
	for _, l := range lines {
		var v struct {
			Type string `json:"type"`
			Size uint64 `json:"size"`
		}
		if json.Unmarshal([]byte(l), &v) == nil && v.Type == "checkpoint" {
			sizes = append(sizes, v.Size)
		}
	}
	// The agent accepted the final model's manifest when the federation
	// finished, so its witness covers every round, the last one included
	// (only the coordinator's shutdown events come after it).
	var lastClosed uint64
	for _, l := range lines {
		var v struct {
			Seq  uint64 `json:"seq"`
			Kind string `json:"kind"`
		}
		if json.Unmarshal([]byte(l), &v) == nil && v.Kind == audit.KindRoundClosed {
			lastClosed = v.Seq
		}
	}
	if cp.Size <= lastClosed {
		t.Errorf("hospital-a witnessed a checkpoint of %d events, the last round closed at event %d: the final round is not witnessed", cp.Size, lastClosed)
	}
	var earlier uint64
	for _, s := range sizes {
		if s < cp.Size {
			earlier = s
		}
	}
	if earlier == 0 {
		t.Fatalf("no checkpoint before the witnessed one (size %d) among %v", cp.Size, sizes)
	}
	full := writeTemp(t, "full.jsonl", strings.Join(lines, "\n")+"\n")
	cut := writeTemp(t, "cut.jsonl", cutBack(t, lines, earlier))
	exact := writeTemp(t, "exact.jsonl", cutBack(t, lines, cp.Size))
	fork := writeTemp(t, "fork.jsonl", forkExport(t, data, cp.Size))

	for _, tc := range []struct {
		name    string
		export  string
		witness bool
		want    string // substring of stdout (success) or stderr (failure)
		fail    bool
	}{
		{name: "full", export: full, witness: true, want: "witnessed: the export extends the checkpoints of 1 witnesses: hospital-a"},
		{name: "witnessed prefix", export: exact, witness: true, want: "witnessed: the export extends"},
		{name: "cut back, no witness (the gap)", export: cut, want: "OK:"},
		{name: "cut back", export: cut, witness: true, fail: true, want: "refuted by witness hospital-a: it saw a signed checkpoint of " + fmt.Sprint(cp.Size) + " events, the export holds only " + fmt.Sprint(earlier)},
		{name: "fork, no witness", export: fork, want: "OK:"},
		{name: "fork", export: fork, witness: true, fail: true, want: "refuted by witness hospital-a: it saw a signed checkpoint of " + fmt.Sprint(cp.Size) + " events whose root is not the export's at that size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"audit", "verify", "-key", key}
			if tc.witness {
				args = append(args, "-ca", ca, "-witness", wpath)
			}
			code, out, errOut := runCLI(append(args, tc.export)...)
			if tc.fail {
				if code != 1 || !strings.Contains(errOut, tc.want) {
					t.Fatalf("audit verify = exit %d, stderr %q; want exit 1 with %q", code, errOut, tc.want)
				}
				return
			}
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("audit verify = exit %d, stdout %q, stderr %q; want %q", code, out, errOut, tc.want)
			}
		})
	}
}

// keyVerifiersFor loads a coordinator's signing.pub as note verifiers.
func keyVerifiersFor(t *testing.T, path string) note.Verifiers {
	t.Helper()
	k, err := manifest.LoadPublicKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	return k.NoteVerifiers()
}

// forkExport builds, with the coordinator's own signing key, a log that
// holds the same events as the demo's up to event size/2, then a changed
// one, then the rest (so it is longer than size events), checkpoints it
// and returns its export: a history the coordinator rewrote and re-signed.
func forkExport(t *testing.T, dataDir string, size uint64) string {
	t.Helper()
	orig, err := audit.Open(filepath.Join(dataDir, coordinator.AuditFile), audit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var events []audit.Event
	if err := orig.Events(0, func(e audit.Event) error { events = append(events, e); return nil }); err != nil {
		t.Fatal(err)
	}
	origin := orig.Origin()
	orig.Close()
	if uint64(len(events)) < size {
		t.Fatalf("the log has %d events, fewer than the witnessed %d", len(events), size)
	}
	s, err := manifest.LoadSigner(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := s.NoteSigner(origin)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	fork, err := audit.Open(filepath.Join(t.TempDir(), "fork.db"), audit.Options{Origin: origin, Signer: ns, Now: func() time.Time { return events[min(i, len(events)-1)].Time }})
	if err != nil {
		t.Fatal(err)
	}
	defer fork.Close()
	changed := int(size / 2)
	for ; i < len(events); i++ {
		e := events[i]
		var payload any = e.Payload
		if i == changed {
			payload = map[string]string{"rewritten": "yes"}
		}
		if _, err := fork.Append(context.Background(), audit.Entry{Kind: e.Kind, Actor: e.Actor, Round: e.Round, Payload: payload}); err != nil {
			t.Fatalf("append event %d: %v", i, err)
		}
	}
	if _, err := fork.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := fork.Export(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// hospitalConfigWithState is hospitalConfig with the agent's state file.
func hospitalConfigWithState(t *testing.T, dir, name, state string) string {
	t.Helper()
	m := readJSON(t, hospitalConfig(t, dir, name))
	m["state"] = state
	return writeJSON(t, t.TempDir(), name+"-state.json", m)
}

// TestParticipantWitnessAfterRotation: after a key rotation the agent pins
// the new keys, and the checkpoint in its state file is the new keys'.
// participant witness follows the rotations the state file records from
// the configured (old) coordinator key and countersigns; a state whose
// rotation the pinned keys did not sign, or that records none, is refused.
// Before, witness checked the checkpoint with the configured key only and
// refused every hospital that had followed a rotation.
func TestParticipantWitnessAfterRotation(t *testing.T) {
	dir := runDemoFed(t)
	h := filepath.Join(dir, "hospital-a")
	data := filepath.Join(dir, "coordinator", "data")
	pinned := filepath.Join(data, manifest.PublicFile)
	st := readJSON(t, filepath.Join(h, "accepted.json"))
	old, err := manifest.LoadSigner(data)
	if err != nil {
		t.Fatal(err)
	}
	next, err := manifest.GenerateSigner(nil)
	if err != nil {
		t.Fatal(err)
	}
	round := uint64(st["round"].(float64))
	rotation := func(from *manifest.Signer) map[string]any {
		env, digest, err := manifest.SignRotation(from, next, manifest.Rotation{
			Federation: demo.Federation, Seq: 1, AfterRound: round, AfterManifest: st["digest"].(string), Rotated: time.Now(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"old_fingerprint": from.Public().Fingerprint(), "new_fingerprint": next.Public().Fingerprint(),
			"at": time.Now().UTC(), "sha256": hex.EncodeToString(digest[:]), "envelope": json.RawMessage(env)}
	}
	// The checkpoint as the new keys sign it.
	cp := st["checkpoint"].(string)
	ns, err := next.NoteSigner(coordinator.AuditOrigin(demo.Federation))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: cp[:strings.Index(cp, "\n\n")+1]}, ns)
	if err != nil {
		t.Fatal(err)
	}
	st["checkpoint"] = string(signed)
	stranger, err := manifest.GenerateSigner(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		rotations []any
		want      string // in the error; empty: witnessed
	}{
		{"followed", []any{rotation(old)}, ""},
		{"not recorded", nil, "does not verify"},
		{"not signed by the pinned keys", []any{rotation(stranger)}, "do not follow from the configured coordinator keys"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st["rotations"] = tt.rotations
			js, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			state := writeTemp(t, "accepted.json", string(js))
			code, out, errOut := runCLI("participant", "witness", "-state", state,
				"-cert", filepath.Join(h, "hospital-a.crt"), "-key", filepath.Join(h, "hospital-a.key"), "-coordinator-key", pinned)
			switch {
			case tt.want == "" && (code != 0 || !strings.Contains(out, `"witness": "hospital-a"`)):
				t.Fatalf("participant witness = exit %d, %q, %s; want the witness", code, out, errOut)
			case tt.want != "" && (code != 1 || !strings.Contains(errOut, tt.want)):
				t.Fatalf("participant witness = exit %d, %s; want exit 1, %q", code, errOut, tt.want)
			}
		})
	}
}
