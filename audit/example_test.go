package audit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedguard/fedguard/audit"
)

// exampleKey makes a checkpoint signing key for origin. A coordinator
// keeps skey secret and gives vkey to auditors and participants.
func exampleKey(origin string) (note.Signer, note.Verifiers) {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		log.Fatal(err)
	}
	return signer, note.VerifierList(verifier)
}

// The life of an audit log: the coordinator opens it, appends events,
// signs a checkpoint after each round and exports it; an auditor verifies
// the export offline with the coordinator's public key.
func Example() {
	const origin = "fedguard.example/FED"
	signer, verifiers := exampleKey(origin)
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{Origin: origin, Signer: signer})
	if err != nil {
		log.Fatal(err)
	}
	events, err := l.Append(context.Background(),
		audit.Entry{Kind: audit.KindCoordinatorStarted, Actor: audit.ActorCoordinator,
			Payload: audit.CoordinatorStarted{Version: "v1.0.0", Federation: "FED"}},
		audit.Entry{Kind: audit.KindRoundOpened, Actor: audit.ActorCoordinator, Round: 1,
			Payload: audit.RoundOpened{Attempt: 0, Deadline: "2025-11-25T10:00:00Z"}},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("appended events %d and %d\n", events[0].Seq, events[1].Seq)
	cp, err := l.Checkpoint()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("signed a checkpoint of size %d\n", cp.Size)
	// An event after the checkpoint: chained, not signed yet.
	if _, err := l.Append(context.Background(), audit.Entry{Kind: audit.KindCoordinatorStopped,
		Actor: audit.ActorCoordinator, Payload: audit.CoordinatorStopped{Reason: "example"}}); err != nil {
		log.Fatal(err)
	}
	var export bytes.Buffer
	if err := l.Export(&export); err != nil {
		log.Fatal(err)
	}
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}

	sum, err := audit.Verify(&export, audit.VerifyOptions{Verifiers: verifiers, Origin: origin})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("verified %d events: %d signed, %d only chained\n", sum.Events, sum.Covered, sum.Uncovered)
	// Output:
	// appended events 0 and 1
	// signed a checkpoint of size 2
	// verified 3 events: 2 signed, 1 only chained
}

// A proof shows one event is in the signed log, without the rest of it.
// The log here is kept in memory (a MemStore), as in tests that need no
// file; audit.Open keeps the same bytes in a bbolt file.
func ExampleVerifyProof() {
	const origin = "fedguard.example/FED"
	signer, verifiers := exampleKey(origin)
	s, err := audit.NewMemStore(origin)
	if err != nil {
		log.Fatal(err)
	}
	l, err := audit.New(s, audit.Options{Signer: signer})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	for _, name := range []string{"hospital-a", "hospital-b", "hospital-c"} {
		if _, err := l.Append(context.Background(), audit.Entry{Kind: audit.KindUpdateReceived, Actor: name, Round: 1,
			Payload: audit.UpdateReceived{Attempt: 0, Samples: 1000}}); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(); err != nil {
		log.Fatal(err)
	}

	// The coordinator hands hospital-b a proof of its update's event...
	p, err := l.Prove(1)
	if err != nil {
		log.Fatal(err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		log.Fatal(err)
	}
	// ...which it checks with the coordinator's public key alone.
	ev, cp, err := audit.VerifyProof(data, verifiers)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("event %d (%s by %s) is in the signed log of %d events\n", ev.Seq, ev.Kind, ev.Actor, cp.Size)
	// Output:
	// event 1 (update_received by hospital-b) is in the signed log of 3 events
}
