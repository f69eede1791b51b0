package participant_test

import (
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/fedguard/fedguard/manifest"
	"github.com/fedguard/fedguard/participant"
	fedguardv1 "github.com/fedguard/fedguard/proto/fedguard/v1"
)

// resign returns r, edited, signed with s.
func resign(t *testing.T, s *manifest.Signer, r manifest.Round, edit func(*manifest.Round)) []byte {
	edit(&r)
	env, _ := sign(t, s, r)
	return env
}

// resignSpec is resign with an edit of the round's model_spec, decoded
// as a generic JSON object.
func resignSpec(t *testing.T, s *manifest.Signer, r manifest.Round, edit func(spec map[string]any)) []byte {
	return resign(t, s, r, func(r *manifest.Round) {
		var spec map[string]any
		if err := json.Unmarshal(r.ModelSpec, &spec); err != nil {
			t.Fatal(err)
		}
		edit(spec)
		var err error
		if r.ModelSpec, err = json.Marshal(spec); err != nil {
			t.Fatal(err)
		}
	})
}

// editEnvelope decodes env as a generic JSON object, edits it and encodes
// it again. It runs on server goroutines, so it reports with Errorf.
func editEnvelope(t *testing.T, env []byte, edit func(e map[string]any)) []byte {
	var e map[string]any
	if err := json.Unmarshal(env, &e); err != nil {
		t.Errorf("decode envelope: %v", err)
		return nil
	}
	edit(e)
	out, err := json.Marshal(e)
	if err != nil {
		t.Errorf("encode envelope: %v", err)
	}
	return out
}

// otherDigest is a digest of no model the fake ever had.
func otherDigest(label string) string {
	d := sha256.Sum256([]byte(label))
	return hex.EncodeToString(d[:])
}

// loadState reads the agent's state file as a test would after a restart.
func loadState(t *testing.T, path string) *manifest.Accepted {
	t.Helper()
	acc, err := manifest.LoadAccepted(path)
	if err != nil {
		t.Fatalf("LoadAccepted(%s) = %v", path, err)
	}
	return acc
}

// checkRefused checks that err is Run's refusal of a manifest of round
// for reason, and that the agent reported exactly that refusal to fake and
// counted it.
func checkRefused(t *testing.T, err error, a *participant.Agent, fake *fakeCoordinator, reason manifest.Reason, round uint64) {
	t.Helper()
	if !errors.Is(err, participant.ErrManifestRefused) {
		t.Fatalf("Run = %v, want ErrManifestRefused", err)
	}
	var ref *manifest.RefusalError
	if !errors.As(err, &ref) {
		t.Fatalf("Run = %v, want a *manifest.RefusalError in the chain", err)
	}
	if ref.Reason != reason || ref.Round != round {
		t.Errorf("Run refused for %q at manifest round %d, want %q at round %d (%v)", ref.Reason, ref.Round, reason, round, err)
	}
	_, refusals := fake.manifestLog()
	want := []*fedguardv1.ReportRefusalRequest{{ManifestRound: round, Reason: string(reason)}}
	if diff := cmp.Diff(want, refusals, protocmp.Transform(),
		protocmp.IgnoreFields(&fedguardv1.ReportRefusalRequest{}, "detail")); diff != "" {
		t.Errorf("ReportRefusal calls mismatch (-want +got):\n%s", diff)
	}
	for _, r := range refusals {
		if r.GetDetail() == "" || len(r.GetDetail()) > 1024 {
			t.Errorf("ReportRefusal detail %q, want a non-empty explanation of at most 1024 bytes", r.GetDetail())
		}
	}
	if got := a.Stats().ModelsRefused; got != 1 {
		t.Errorf("Stats().ModelsRefused = %d, want 1", got)
	}
}

// TestRefusesManifest has the fake act as a malicious or broken
// coordinator: the real one cannot be made to misbehave. Each attack
// replaces one assignment; the agent must stop before downloading or
// training on the model, tell the coordinator why, and keep its record of
// the last manifest it accepted.
func TestRefusesManifest(t *testing.T) {
	t.Parallel()
	other, err := manifest.GenerateSigner(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	type attack func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment
	tests := []struct {
		name string
		// at is the round whose first offer is attacked: by then the agent
		// has trained rounds 1..at-1 and accepted manifests 0..at-2.
		at uint64
		// attack returns the assignment to send instead of asg; it runs
		// with f.mu held.
		attack attack
		reason manifest.Reason
		round  uint64 // of the refused manifest, as the agent reports it
	}{
		{
			name: "no manifest", at: 1,
			attack: func(_ *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = nil
				return asg
			},
			reason: manifest.ReasonUnsigned, round: 0,
		},
		{
			name: "signatures stripped", at: 2,
			attack: func(t *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = editEnvelope(t, asg.GetManifest(), func(e map[string]any) { e["signatures"] = []any{} })
				return asg
			},
			reason: manifest.ReasonUnsigned, round: 1, // the round the payload claims
		},
		{
			name: "Ed25519 signature alone", at: 1,
			attack: func(t *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = editEnvelope(t, asg.GetManifest(), func(e map[string]any) {
					e["signatures"] = e["signatures"].([]any)[:1]
				})
				return asg
			},
			reason: manifest.ReasonUnsigned, round: 0,
		},
		{
			name: "signed by another key", at: 1,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = resign(t, other, f.chain[0].round, func(*manifest.Round) {})
				return asg
			},
			reason: manifest.ReasonBadSignature, round: 0,
		},
		{
			// The Ed25519 signature is the coordinator's own, the
			// ML-DSA-65 one another key's: both must verify.
			name: "ML-DSA-65 signature by another key", at: 2,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				var forged []any
				editEnvelope(t, resign(t, other, f.chain[1].round, func(*manifest.Round) {}), func(e map[string]any) {
					forged = e["signatures"].([]any)
				})
				asg.Manifest = editEnvelope(t, asg.GetManifest(), func(e map[string]any) {
					e["signatures"].([]any)[1] = forged[1]
				})
				return asg
			},
			reason: manifest.ReasonBadSignature, round: 1,
		},
		{
			name: "payload changed after signing", at: 2,
			attack: func(t *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = editEnvelope(t, asg.GetManifest(), func(e map[string]any) {
					payload, err := base64.StdEncoding.DecodeString(e["payload"].(string))
					if err != nil {
						t.Errorf("decode payload: %v", err)
					}
					payload = []byte(strings.Replace(string(payload), `"rule":"fedavg"`, `"rule":"mean__"`, 1))
					e["payload"] = base64.StdEncoding.EncodeToString(payload)
				})
				return asg
			},
			reason: manifest.ReasonBadSignature, round: 1,
		},
		{
			name: "not an envelope", at: 1,
			attack: func(_ *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = []byte("trust me")
				return asg
			},
			reason: manifest.ReasonMalformed, round: 0,
		},
		{
			name: "another federation", at: 1,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = resign(t, f.signer, f.chain[0].round, func(r *manifest.Round) { r.Federation = "otherfed" })
				return asg
			},
			reason: manifest.ReasonWrongFederation, round: 0,
		},
		{
			name: "manifest vouches for another model", at: 2,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = resign(t, f.signer, f.chain[1].round, func(r *manifest.Round) { r.ModelSHA256 = otherDigest("poisoned model") })
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 1,
		},
		{
			name: "assignment names another model", at: 2,
			attack: func(_ *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				d := sha256.Sum256([]byte("poisoned model"))
				asg.ModelSha256 = d[:]
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 1,
		},
		{
			// A well-formed manifest of round 1 for the model round 1
			// starts from: everything matches except the round, and the
			// chain from genesis would verify.
			name: "manifest of the wrong round", at: 1,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = resign(t, f.signer, f.chain[0].round, func(r *manifest.Round) {
					r.Round, r.Attempt, r.Rule = 1, 1, "fedavg"
					r.Parent = hex.EncodeToString(f.chain[0].digest[:])
				})
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 1,
		},
		{
			name: "another feature scaling", at: 1,
			attack: func(_ *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				sc := proto.Clone(asg.GetScaling()).(*fedguardv1.FeatureScaling)
				sc.Mean[0] += 1
				asg.Scaling = sc
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 0,
		},
		{
			name: "no feature scaling", at: 2,
			attack: func(_ *testing.T, _ *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Scaling = nil
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 1,
		},
		{
			name: "another parameter count", at: 2,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = resign(t, f.signer, f.chain[1].round, func(r *manifest.Round) { r.NumParams++ })
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 1,
		},
		{
			// Same parameter count, features in another order: the model
			// would read the wrong columns.
			name: "features reordered", at: 2,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = resignSpec(t, f.signer, f.chain[1].round, func(spec map[string]any) {
					fs := spec["features"].([]any)
					fs[0], fs[1] = fs[1], fs[0]
				})
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 1,
		},
		{
			// A federation started from an initial model names its tensor
			// layout; a layout other than the one the agent and its
			// trainer exchange is refused.
			name: "another tensor layout", at: 2,
			attack: func(t *testing.T, f *fakeCoordinator, asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				asg.Manifest = resignSpec(t, f.signer, f.chain[1].round, func(spec map[string]any) {
					spec["layout_sha256"] = strings.Repeat("ab", 32)
				})
				return asg
			},
			reason: manifest.ReasonModelMismatch, round: 1,
		},
		{
			// The coordinator is restored from a backup taken while round
			// 2 was open and offers it again: its manifest (round 1) is
			// older than the accepted one (round 2).
			name: "rollback by one round", at: 4,
			attack: func(_ *testing.T, f *fakeCoordinator, _ *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				f.restoreLocked(2)
				return f.assignment()
			},
			reason: manifest.ReasonRollback, round: 1,
		},
		{
			name: "rollback to the initial model", at: 4,
			attack: func(_ *testing.T, f *fakeCoordinator, _ *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				f.restoreLocked(1)
				return f.assignment()
			},
			reason: manifest.ReasonRollback, round: 0,
		},
		{
			// Round 1 is closed again with another update and round 2
			// retried from that model: a second manifest of round 1.
			name: "fork: accepted round closed again", at: 3,
			attack: func(_ *testing.T, f *fakeCoordinator, _ *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				f.restoreLocked(1)
				f.advanceLocked("hospital-b")
				f.attempt = 2 // the agent already submitted attempt 1
				return f.assignment()
			},
			reason: manifest.ReasonFork, round: 1,
		},
		{
			// Same model, but the record of how it was made is rewritten
			// (an exclusion added): still another manifest of round 1.
			name: "fork: accepted manifest rewritten, same model", at: 3,
			attack: func(t *testing.T, f *fakeCoordinator, _ *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				l := f.chain[1]
				l.round.Excluded = []manifest.Exclusion{{Name: "hospital-c", Reason: "no update before the deadline"}}
				l.env, l.digest = sign(t, f.signer, l.round)
				f.restoreLocked(2)
				f.chain[1] = l
				f.attempt = 2
				return f.assignment()
			},
			reason: manifest.ReasonFork, round: 1,
		},
		{
			// History is rewritten from round 1 and goes on: the offered
			// manifest of round 2 names the rewritten round 1 as parent.
			name: "fork: rewritten history continued", at: 3,
			attack: func(_ *testing.T, f *fakeCoordinator, _ *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				f.restoreLocked(1)
				f.advanceLocked("hospital-b")
				f.advanceLocked("hospital-b")
				return f.assignment()
			},
			reason: manifest.ReasonFork, round: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t)
			fake := newFake(t, 5)
			var (
				attacked                   bool
				getModelsBefore, submitted int
				wantState                  *manifest.Accepted
			)
			fake.offer = func(asg *fedguardv1.RoundAssignment) *fedguardv1.RoundAssignment {
				if attacked || asg.GetRound() != tt.at {
					return asg
				}
				attacked, getModelsBefore, submitted = true, fake.getModels, fake.submits
				if tt.at >= 2 {
					wantState = fake.chain[tt.at-2].accepted()
				}
				return tt.attack(t, fake, asg)
			}
			_, addr := p.serve(t, fake, "127.0.0.1:0")
			state := filepath.Join(t.TempDir(), "accepted.json")
			a, logs := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
			err := run(t, a, 15*time.Second)
			checkRefused(t, err, a, fake, tt.reason, tt.round)

			fake.mu.Lock()
			ok, before, wantSubmits := attacked, getModelsBefore, submitted
			fake.mu.Unlock()
			if !ok {
				t.Fatalf("the fake never offered round %d", tt.at)
			}
			_, getModels, submits, _ := fake.counts()
			if submits != wantSubmits || submits != int(tt.at-1) {
				t.Errorf("SubmitUpdate calls = %d, want %d (none after the refusal)", submits, tt.at-1)
			}
			if getModels != before {
				t.Errorf("GetModel calls = %d, want %d: the agent downloaded a model it had refused", getModels, before)
			}
			if st := a.Stats(); st.Rounds != tt.at-1 || st.Retries != 0 {
				t.Errorf("Stats() = %+v, want %d rounds and no retry", st, tt.at-1)
			}
			if diff := cmp.Diff(wantState, loadState(t, state)); diff != "" {
				t.Errorf("state file mismatch (-want +got): the refused manifest must not be recorded\n%s", diff)
			}
			if s := logs.String(); !strings.Contains(s, "round manifest refused") || !strings.Contains(s, "reason="+string(tt.reason)) {
				t.Errorf("log does not report the refusal with reason %s:\n%s", tt.reason, s)
			}
		})
	}
}

// TestMissedRounds has an agent join a federation whose round 4 is open:
// it must fetch the manifests between the last one it accepted and the
// offered one (round 3) with GetManifest, and check the whole path.
func TestMissedRounds(t *testing.T) {
	t.Parallel()
	other, err := manifest.GenerateSigner(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const none = -1 // no state: first contact
	tests := []struct {
		name     string
		accepted int // round of the manifest in the state file, or none
		// serve replaces the envelope GetManifest sends for round; nil
		// serves the real one. It runs with f.mu held.
		serve func(t *testing.T, f *fakeCoordinator, round uint64, env []byte) []byte
		// answer, when set, answers GetManifest instead.
		answer      func(f *fakeCoordinator, round uint64) (*fedguardv1.GetManifestResponse, error)
		wantFetched []uint64
		reason      manifest.Reason // empty: accepted, and the agent trains
		round       uint64
	}{
		{name: "accepted round 1", accepted: 1, wantFetched: []uint64{2}},
		{name: "first contact", accepted: none, wantFetched: []uint64{0, 1, 2}},
		{name: "accepted round 3", accepted: 3, wantFetched: nil},
		{
			// The fetched round 2 names another parent than the accepted
			// round 1. Missed manifests are accepted one at a time, each
			// against the last, so the forged one itself is the fork.
			name: "wrong parent", accepted: 1,
			serve: func(t *testing.T, f *fakeCoordinator, round uint64, env []byte) []byte {
				if round != 2 {
					return env
				}
				return resign(t, f.signer, f.chain[2].round, func(r *manifest.Round) { r.Parent = otherDigest("another history") })
			},
			wantFetched: []uint64{2}, reason: manifest.ReasonFork, round: 2,
		},
		{
			// On first contact the chain is checked from its genesis: a
			// re-signed genesis for another initial model is accepted (the
			// key vouches for it), but the real round 1 does not extend
			// it, and the agent stops there.
			name: "first contact, other genesis", accepted: none,
			serve: func(t *testing.T, f *fakeCoordinator, round uint64, env []byte) []byte {
				if round != 0 {
					return env
				}
				return resign(t, f.signer, f.chain[0].round, func(r *manifest.Round) { r.ModelSHA256 = otherDigest("another initial model") })
			},
			wantFetched: []uint64{0, 1}, reason: manifest.ReasonFork, round: 1,
		},
		{
			// Asked for round 2, the coordinator sends round 1: the path
			// then jumps from round 1 to round 3.
			name: "another round served", accepted: 1,
			serve: func(_ *testing.T, f *fakeCoordinator, _ uint64, _ []byte) []byte {
				return f.chain[1].env
			},
			wantFetched: []uint64{2}, reason: manifest.ReasonGap, round: 3,
		},
		{
			// A coordinator that cannot show the history a manifest
			// builds on cannot be checked.
			name: "history missing", accepted: 1,
			answer: func(_ *fakeCoordinator, round uint64) (*fedguardv1.GetManifestResponse, error) {
				return nil, status.Errorf(codes.NotFound, "round %d has no manifest", round)
			},
			wantFetched: []uint64{2}, reason: manifest.ReasonGap, round: 2,
		},
		{
			name: "answer labelled with another round", accepted: 1,
			answer: func(f *fakeCoordinator, round uint64) (*fedguardv1.GetManifestResponse, error) {
				return &fedguardv1.GetManifestResponse{Round: round + 1, Manifest: f.chain[round].env}, nil
			},
			wantFetched: []uint64{2}, reason: manifest.ReasonMalformed, round: 3,
		},
		{
			name: "unsigned", accepted: 1,
			serve:       func(*testing.T, *fakeCoordinator, uint64, []byte) []byte { return nil },
			wantFetched: []uint64{2}, reason: manifest.ReasonUnsigned, round: 0,
		},
		{
			name: "signed by another key", accepted: 1,
			serve: func(t *testing.T, f *fakeCoordinator, round uint64, _ []byte) []byte {
				return resign(t, other, f.chain[round].round, func(*manifest.Round) {})
			},
			wantFetched: []uint64{2}, reason: manifest.ReasonBadSignature, round: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKI(t)
			fake := newFake(t, 5)
			// Rounds 1 to 3 ran without this hospital.
			fake.reportStats(t)
			fake.mu.Lock()
			for range 3 {
				fake.advanceLocked("hospital-b")
			}
			if tt.serve != nil {
				fake.serveManifest = func(round uint64, env []byte) []byte { return tt.serve(t, fake, round, env) }
			}
			if tt.answer != nil {
				fake.answerManifest = func(round uint64) (*fedguardv1.GetManifestResponse, error) { return tt.answer(fake, round) }
			}
			fake.mu.Unlock()
			state := filepath.Join(t.TempDir(), "accepted.json")
			var wantState *manifest.Accepted
			if tt.accepted != none {
				wantState = fake.closed(uint64(tt.accepted)).accepted()
				if err := manifest.SaveAccepted(state, *wantState); err != nil {
					t.Fatal(err)
				}
			}
			a, _ := p.agentFor(t, fake, withState(state))
			err := run(t, a, 15*time.Second)

			fetched, _ := fake.manifestLog()
			if !slices.Equal(fetched, tt.wantFetched) {
				t.Errorf("GetManifest rounds = %v, want %v", fetched, tt.wantFetched)
			}
			if tt.reason != "" {
				checkRefused(t, err, a, fake, tt.reason, tt.round)
				if _, getModels, submits, _ := fake.counts(); getModels != 0 || submits != 0 {
					t.Errorf("GetModel calls %d, SubmitUpdate calls %d after a refusal, want 0, 0", getModels, submits)
				}
				if diff := cmp.Diff(wantState, loadState(t, state)); diff != "" {
					t.Errorf("state file mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			if _, refusals := fake.manifestLog(); len(refusals) != 0 || a.Stats().ModelsRefused != 0 {
				t.Errorf("refusals %v, ModelsRefused %d; want none", refusals, a.Stats().ModelsRefused)
			}
			fake.mu.Lock()
			var rounds []uint64
			for _, r := range fake.records {
				rounds = append(rounds, r.asg.GetRound())
			}
			startOK := len(fake.records) > 0 && slices.Equal(fake.records[0].start, fake.chain[3].global)
			fake.mu.Unlock()
			if !slices.Equal(rounds, []uint64{4, 5}) || !startOK {
				t.Errorf("updates for rounds %v (first from round 3's model: %v), want rounds [4 5]", rounds, startOK)
			}
			if diff := cmp.Diff(fake.closed(5).accepted(), loadState(t, state)); diff != "" {
				t.Errorf("state file mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStateSurvivesRestart runs successive agents, as after restarts of the
// hospital's process, on one state file: each must start from the manifest
// the previous one accepted, read at New.
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 2)
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	state := filepath.Join(t.TempDir(), "accepted.json")

	first, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
	if err := run(t, first, 15*time.Second); err != nil {
		t.Fatalf("first agent: Run = %v, want nil", err)
	}
	checkUpdates(t, fake, 2)
	if diff := cmp.Diff(fake.closed(2).accepted(), loadState(t, state)); diff != "" {
		t.Fatalf("state after two rounds mismatch (-want +got):\n%s", diff)
	}

	// A restarted agent resumes at round 3 from the recorded round 2 (the
	// final manifest of the first run): the offered manifest is that one,
	// so it fetches nothing (on first contact it would fetch rounds 0 and
	// 1).
	fake.mu.Lock()
	fake.rounds = 3
	fake.mu.Unlock()
	resumed, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
	if err := run(t, resumed, 15*time.Second); err != nil {
		t.Fatalf("resumed agent: Run = %v, want nil", err)
	}
	if fetched, _ := fake.manifestLog(); len(fetched) != 0 {
		t.Errorf("resumed agent fetched manifests %v, want none: it did not start from its state file", fetched)
	}
	checkUpdates(t, fake, 3)
	accepted := fake.closed(3).accepted()
	if diff := cmp.Diff(accepted, loadState(t, state)); diff != "" {
		t.Fatalf("state after three rounds mismatch (-want +got):\n%s", diff)
	}

	// The coordinator is restored from a backup taken while round 2 was
	// open; it offers round 2 again, on the manifest of round 1.
	fake.mu.Lock()
	fake.restoreLocked(2)
	fake.mu.Unlock()
	restarted, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
	err := run(t, restarted, 15*time.Second)
	checkRefused(t, err, restarted, fake, manifest.ReasonRollback, 1)
	if _, _, submits, _ := fake.counts(); submits != 3 {
		t.Errorf("SubmitUpdate calls = %d, want 3 (none on the rolled-back model)", submits)
	}
	if diff := cmp.Diff(accepted, loadState(t, state)); diff != "" {
		t.Errorf("state after the refusal mismatch (-want +got):\n%s", diff)
	}

	// Control: without that record the same offer is acceptable (first
	// contact, checked from genesis), so the refusal above came from the
	// state file.
	fresh, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(filepath.Join(t.TempDir(), "accepted.json")))
	if err := run(t, fresh, 15*time.Second); err != nil {
		t.Fatalf("agent without state: Run = %v, want nil", err)
	}
	if _, _, submits, _ := fake.counts(); submits != 5 {
		t.Errorf("SubmitUpdate calls = %d, want 5", submits)
	}
}

// newWithStateFile makes an agent (never run) whose state file is path,
// so that the test sees what New makes of that file.
func newWithStateFile(t *testing.T, path string) (*participant.Agent, error) {
	t.Helper()
	signer, err := manifest.GenerateSigner(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return participant.New(participant.Config{
		Coordinator:     "127.0.0.1:1",
		TLS:             &tls.Config{Certificates: []tls.Certificate{{}}},
		Trainer:         newTrainer(),
		Federation:      federation,
		CoordinatorKeys: signer.Public(),
		StateFile:       path,
	})
}

func TestCorruptStateFile(t *testing.T) {
	t.Parallel()
	digest := otherDigest("a manifest")
	tests := []struct {
		name  string
		write func(path string) error
	}{
		{"empty", func(path string) error { return os.WriteFile(path, nil, 0o600) }},
		{"not JSON", func(path string) error { return os.WriteFile(path, []byte("round 3\n"), 0o600) }},
		{"torn write", func(path string) error { return os.WriteFile(path, []byte(`{"round":3,"dig`), 0o600) }},
		{"digest not hex", func(path string) error {
			return os.WriteFile(path, []byte(`{"round":3,"digest":"`+strings.ToUpper(digest)+`"}`), 0o600)
		}},
		{"no digest", func(path string) error { return os.WriteFile(path, []byte(`{"round":3}`), 0o600) }},
		{"unknown field", func(path string) error {
			return os.WriteFile(path, []byte(`{"round":3,"digest":"`+digest+`","federation":"testfed"}`), 0o600)
		}},
		{"two records", func(path string) error {
			rec := `{"round":3,"digest":"` + digest + `"}`
			return os.WriteFile(path, []byte(rec+rec), 0o600)
		}},
		{"directory", func(path string) error { return os.Mkdir(path, 0o700) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "accepted.json")
			if err := tt.write(path); err != nil {
				t.Fatal(err)
			}
			a, err := newWithStateFile(t, path)
			if err == nil {
				t.Fatalf("New with a corrupt state file = %v, nil; want an error", a)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "participant: ") || !strings.Contains(msg, path) {
				t.Errorf("New error %q does not name the state file %s", msg, path)
			}
		})
	}
}

// TestStateFileUnwritable: an agent that cannot record the manifest it
// accepts would forget it at the next restart (and could then accept a
// rollback), so it stops before training.
func TestStateFileUnwritable(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	fake := newFake(t, 1)
	_, addr := p.serve(t, fake, "127.0.0.1:0")
	state := filepath.Join(t.TempDir(), "missing-dir", "accepted.json")
	a, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
	err := run(t, a, 15*time.Second)
	if err == nil || errors.Is(err, participant.ErrManifestRefused) || !strings.Contains(err.Error(), "save accepted") {
		t.Fatalf("Run = %v, want a permanent error saving the state", err)
	}
	if _, getModels, submits, _ := fake.counts(); getModels != 0 || submits != 0 {
		t.Errorf("GetModel calls %d, SubmitUpdate calls %d; want 0, 0", getModels, submits)
	}
	if _, refusals := fake.manifestLog(); len(refusals) != 0 {
		t.Errorf("ReportRefusal calls %v, want none: the manifest was fine", refusals)
	}
	if st := a.Stats(); st.Retries != 0 || st.ModelsRefused != 0 {
		t.Errorf("Stats() = %+v, want no retry and no refusal", st)
	}
}

// TestFinalManifest: when the federation finishes, the agent accepts the
// final model's manifest, which WaitRound sends with finished, so that its
// state (and its witness) covers the last round too; a forged final
// manifest is refused and reported like any other.
func TestFinalManifest(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	t.Run("accepted", func(t *testing.T) {
		fake := newFake(t, 2)
		fake.final = func(env []byte) []byte { return env }
		_, addr := p.serve(t, fake, "127.0.0.1:0")
		state := filepath.Join(t.TempDir(), "accepted.json")
		a, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
		if err := run(t, a, 15*time.Second); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if diff := cmp.Diff(fake.closed(2).accepted(), loadState(t, state)); diff != "" {
			t.Fatalf("state after the finish mismatch (-want +got):\n%s", diff)
		}
		want := ""
		if cp := fake.closed(2).round.Checkpoint; cp != nil {
			want = cp.Note
		}
		if st, err := participant.ReadState(state); err != nil || string(st.Checkpoint) != want {
			t.Errorf("ReadState = %+v, %v; want the final manifest's checkpoint %q", st, err, want)
		}
	})
	t.Run("withheld", func(t *testing.T) {
		// A server with a coordinator certificate but not the signing key
		// can say finished; without the signed final manifest the agent
		// must not end its training as if the federation had.
		fake := newFake(t, 2)
		fake.final = func([]byte) []byte { return nil }
		_, addr := p.serve(t, fake, "127.0.0.1:0")
		state := filepath.Join(t.TempDir(), "accepted.json")
		a, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
		err := run(t, a, 15*time.Second)
		checkRefused(t, err, a, fake, manifest.ReasonUnsigned, 2)
		if diff := cmp.Diff(fake.closed(1).accepted(), loadState(t, state)); diff != "" {
			t.Errorf("state after the refusal mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("forged", func(t *testing.T) {
		fake := newFake(t, 2)
		other := newFake(t, 2) // another signer
		fake.final = func(env []byte) []byte {
			return resign(t, other.signer, fake.chain[len(fake.chain)-1].round, func(*manifest.Round) {})
		}
		_, addr := p.serve(t, fake, "127.0.0.1:0")
		state := filepath.Join(t.TempDir(), "accepted.json")
		a, _ := newAgent(t, addr, p.clientTLS, newTrainer(), fake.keys(), withState(state))
		err := run(t, a, 15*time.Second)
		checkRefused(t, err, a, fake, manifest.ReasonBadSignature, 2)
		if diff := cmp.Diff(fake.closed(1).accepted(), loadState(t, state)); diff != "" {
			t.Errorf("state after the refusal mismatch (-want +got):\n%s", diff)
		}
	})
}
