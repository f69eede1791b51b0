package audit_test

import (
	"bytes"
	"context"
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
// do when the file is not the point (ExampleVerifyProof proves an event
// of one): appends and a checkpoint that Check and an export's Verify
// accept, and a store of another origin refused.
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
	for i := range 10 {
		if _, err := l.Append(context.Background(), audit.Entry{Kind: audit.KindRoundOpened, Actor: audit.ActorCoordinator, Round: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	sum, err := l.Check(verifiers)
	if err != nil || sum.Events != 10 || sum.Covered != 10 {
		t.Fatalf("Check = %+v, %v; want 10 events, all covered", sum, err)
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
