package securebucket

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/aggregation/secagg"
)

// TestPhaseTable: the table has an entry, with all four parts, for each
// phase of secagg.Phases and for nothing else.
func TestPhaseTable(t *testing.T) {
	want := map[secagg.Phase]bool{}
	for _, p := range secagg.Phases() {
		want[p] = true
	}
	for i, e := range phases {
		p := secagg.Phase(i)
		switch {
		case e == nil && want[p]:
			t.Errorf("no table entry for %v", p)
		case e != nil && !want[p]:
			t.Errorf("table entry for %v, which is not a phase", p)
		case e != nil:
			if !complete(e) {
				t.Errorf("table entry for %v lacks decode, call, reply or deadline", p)
			}
		}
	}
	if len(phases) <= int(secagg.PhaseUnmasking) {
		t.Errorf("table of %d entries, want one for %v", len(phases), secagg.PhaseUnmasking)
	}
}

// complete reports whether every part of e is set.
func complete(e entry) bool {
	switch p := e.(type) {
	case phase[advertised, map[uint32][]*secagg.AdvertiseKeys]:
		return p.decode != nil && p.call != nil && p.reply != nil && p.deadline != nil
	case phase[*secagg.ShareKeys, map[uint32][]*secagg.EncryptedShare]:
		return p.decode != nil && p.call != nil && p.reply != nil && p.deadline != nil
	case phase[masked, []uint32]:
		return p.decode != nil && p.call != nil && p.reply != nil && p.deadline != nil
	case phase[*secagg.ConsistencySig, map[uint32]*secagg.UnmaskRequest]:
		return p.decode != nil && p.call != nil && p.reply != nil && p.deadline != nil
	case phase[*secagg.UnmaskResponse, struct{}]:
		return p.decode != nil && p.call != nil && p.reply != nil && p.deadline != nil
	}
	return false
}

// TestNoGRPC keeps gRPC out of the package: status codes are made at the
// RPC edge (the coordinator's SecureAggregate handler) only.
func TestNoGRPC(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "google.golang.org/grpc") {
				t.Errorf("%s imports %s: the session must not speak gRPC", f, path)
			}
		}
	}
}
