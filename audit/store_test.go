package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/fedguard/fedguard/audit"
	"github.com/fedguard/fedguard/audit/audittest"
)

func TestBoltStore(t *testing.T) {
	audittest.TestStore(t, audittest.Factory{
		New: func(t *testing.T) audit.Store {
			s, err := audit.OpenBoltStore(filepath.Join(t.TempDir(), "audit.db"), audit.BoltOptions{Origin: audittest.Origin})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		Reopen: func(t *testing.T, s audit.Store) audit.Store {
			path := s.(*audit.BoltStore).Path()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err := audit.OpenBoltStore(path, audit.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	})
}

func TestMemStore(t *testing.T) {
	audittest.TestStore(t, audittest.Factory{
		New: func(t *testing.T) audit.Store {
			s, err := audit.NewMemStore(audittest.Origin)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}

// TestLogOnMemStore runs a Log on a MemStore, as tests of other packages
// do when the file is not the point: appends, a checkpoint, a proof and an
// export that verifies.
func TestLogOnMemStore(t *testing.T) {
	s, err := audit.NewMemStore(audittest.Origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, verifiers := exampleKey(audittest.Origin)
	l, err := audit.New(s, audit.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := range 10 {
		if _, err := l.Append(ctx, audit.Entry{Kind: audit.KindRoundOpened, Actor: audit.ActorCoordinator, Round: uint64(i + 1), Payload: audit.RoundOpened{Attempt: 0}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	p, err := l.Prove(4)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.VerifyProof(raw, verifiers); err != nil {
		t.Fatalf("VerifyProof: %v", err)
	}
	sum, err := l.Check(verifiers)
	if err != nil || sum.Events != 10 || sum.Covered != 10 {
		t.Fatalf("Check = %+v, %v", sum, err)
	}
	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(&buf, audit.VerifyOptions{Verifiers: verifiers}); err != nil {
		t.Fatalf("Verify(export): %v", err)
	}
	if _, err := audit.New(s, audit.Options{Origin: "fedguard.example/other"}); err == nil {
		t.Error("New with another origin than the store's succeeded")
	}
}
