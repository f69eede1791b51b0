package manifest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/manifest"
)

// Example walks through a federation's first two rounds: the coordinator
// signs the manifests, a participant verifies each one and checks that it
// extends what it accepted before, then persists its place in the chain.
func Example() {
	tmp, err := os.MkdirTemp("", "fedguard-manifest-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	// Coordinator: a signing identity, made once.
	signer, created, err := manifest.LoadOrCreateSigner(filepath.Join(tmp, "coordinator"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created signing key:", created)

	// Participant: pins signing.pub at enrolment.
	keys, err := manifest.LoadPublicKeys(filepath.Join(tmp, "coordinator", manifest.PublicFile))
	if err != nil {
		log.Fatal(err)
	}
	acceptedFile := filepath.Join(tmp, "accepted.json")

	parent := ""
	for round, model := range []string{"initial model", "model after round 1"} {
		// Coordinator: the round closes; sign its manifest.
		modelSum := sha256.Sum256([]byte(model))
		r := manifest.Round{
			Federation:    "hospitals-eu",
			Round:         uint64(round),
			Parent:        parent,
			ModelSHA256:   hex.EncodeToString(modelSum[:]),
			NumParams:     31,
			ModelSpec:     json.RawMessage(`{"kind":"logistic"}`),
			ScalingSHA256: hex.EncodeToString(make([]byte, 32)),
			Parameters:    json.RawMessage(`{}`),
			Closed:        time.Date(2026, 3, 1, 9, round, 0, 0, time.UTC),
		}
		if round > 0 {
			r.Rule = "median"
			r.Included = []manifest.Contributor{{Name: "st-mary", Samples: 100, UpdateSHA256: hex.EncodeToString(make([]byte, 32)), Norm: 1}}
		}
		envelope, digest, err := manifest.Sign(signer, r)
		if err != nil {
			log.Fatal(err)
		}
		parent = hex.EncodeToString(digest[:])

		// Participant: verify, check the chain and the model, then persist.
		v, err := manifest.Verify(envelope, keys, "hospitals-eu")
		if err != nil {
			log.Fatal(err)
		}
		last, err := manifest.LoadAccepted(acceptedFile)
		if err != nil {
			log.Fatal(err)
		}
		if err := manifest.Extends(last, []manifest.Verified{v}); err != nil {
			log.Fatal(err)
		}
		if err := v.CheckModel(sha256.Sum256([]byte(model))); err != nil {
			log.Fatal(err)
		}
		if err := manifest.SaveAccepted(acceptedFile, v.Accepted()); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("accepted round %d of %s, model %s…\n", v.Round.Round, v.Round.Federation, v.Round.ModelSHA256[:12])
	}
	// Output:
	// created signing key: true
	// accepted round 0 of hospitals-eu, model 0760aa85c6e6…
	// accepted round 1 of hospitals-eu, model dd3cb94d14f5…
}

// ExampleOpen shows a manifest refused because another key signed it: the
// participant learns why from the error's Reason.
func ExampleOpen() {
	coordinator, err := manifest.GenerateSigner(nil)
	if err != nil {
		log.Fatal(err)
	}
	impostor, err := manifest.GenerateSigner(nil)
	if err != nil {
		log.Fatal(err)
	}
	r := manifest.Round{
		Federation:    "hospitals-eu",
		ModelSHA256:   hex.EncodeToString(make([]byte, 32)),
		NumParams:     1,
		ModelSpec:     json.RawMessage(`{}`),
		ScalingSHA256: hex.EncodeToString(make([]byte, 32)),
		Parameters:    json.RawMessage(`{}`),
		Closed:        time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
	}
	forged, _, err := manifest.Sign(impostor, r)
	if err != nil {
		log.Fatal(err)
	}

	_, _, err = manifest.Open(forged, coordinator.Public())
	fmt.Println(errors.Is(err, manifest.ErrBadSignature))

	_, err = manifest.Verify(forged, coordinator.Public(), "hospitals-eu")
	var refusal *manifest.RefusalError
	if errors.As(err, &refusal) {
		fmt.Println(refusal.Reason, refusal.Round)
	}
	// Output:
	// true
	// bad_signature 0
}

// ExampleSigner_NoteSigner signs an audit checkpoint as a signed note with
// the coordinator's Ed25519 key; an auditor opens it with the verifier made
// from the pinned public keys.
func ExampleSigner_NoteSigner() {
	signer, err := manifest.GenerateSigner(nil)
	if err != nil {
		log.Fatal(err)
	}
	const name = "fedguard/hospitals-eu"
	ns, err := signer.NoteSigner(name)
	if err != nil {
		log.Fatal(err)
	}
	checkpoint := "fedguard/hospitals-eu\n42\n3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	signed, err := note.Sign(&note.Note{Text: checkpoint}, ns)
	if err != nil {
		log.Fatal(err)
	}

	nv, err := signer.Public().NoteVerifier(name)
	if err != nil {
		log.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(nv))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(n.Text)
	fmt.Println(len(n.Sigs), n.Sigs[0].Name)
	// Output:
	// fedguard/hospitals-eu
	// 42
	// 3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
	// 1 fedguard/hospitals-eu
}

// ExampleFollowRotations rotates a coordinator's keys: the old and the new
// keys both sign the rotation manifest, the first manifest of the new keys
// carries it, and a participant that pinned the old keys follows it and
// verifies that manifest. A rotation signed by the new keys alone is
// refused.
func ExampleFollowRotations() {
	old, err := manifest.GenerateSigner(nil)
	if err != nil {
		log.Fatal(err)
	}
	next, err := manifest.GenerateSigner(nil)
	if err != nil {
		log.Fatal(err)
	}
	genesis := manifest.Round{
		Federation: "hospitals-eu", ModelSHA256: hex.EncodeToString(make([]byte, 32)), NumParams: 31,
		ModelSpec: json.RawMessage(`{}`), ScalingSHA256: hex.EncodeToString(make([]byte, 32)),
		Parameters: json.RawMessage(`{}`), Closed: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
	}
	_, genesisDigest, err := manifest.Sign(old, genesis)
	if err != nil {
		log.Fatal(err)
	}

	// Coordinator: the old keys signed up to round 0; rotate.
	rotation, _, err := manifest.SignRotation(old, next, manifest.Rotation{
		Federation: "hospitals-eu", Seq: 1, AfterRound: 0,
		AfterManifest: hex.EncodeToString(genesisDigest[:]), Rotated: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		log.Fatal(err)
	}
	round1 := genesis
	round1.Round, round1.Parent, round1.Rule = 1, hex.EncodeToString(genesisDigest[:]), "median"
	round1.KeyRotations = []json.RawMessage{rotation}
	env, _, err := manifest.Sign(next, round1)
	if err != nil {
		log.Fatal(err)
	}

	// Participant: the manifest does not verify under the pinned keys; it
	// follows the rotation it carries, from its pinned keys.
	pinned := old.Public()
	_, err = manifest.Verify(env, pinned, "hospitals-eu")
	fmt.Println("under the pinned keys:", err != nil)
	keys, applied, err := manifest.FollowRotations(pinned, "hospitals-eu", manifest.CarriedRotations(env))
	if err != nil {
		log.Fatal(err)
	}
	v, err := manifest.Verify(env, keys, "hospitals-eu")
	fmt.Println("rotations followed:", len(applied), "round", v.Round.Round, "verified:", err == nil)

	// A rotation signed by the new keys alone is refused.
	var e map[string]any
	_ = json.Unmarshal(rotation, &e)
	e["signatures"] = e["signatures"].([]any)[2:]
	newOnly, _ := json.Marshal(e)
	_, _, err = manifest.FollowRotations(pinned, "hospitals-eu", [][]byte{newOnly})
	var ref *manifest.RefusalError
	fmt.Println("new keys alone:", errors.As(err, &ref) && ref.Reason == manifest.ReasonBadRotation)
	// Output:
	// under the pinned keys: true
	// rotations followed: 1 round 1 verified: true
	// new keys alone: true
}
