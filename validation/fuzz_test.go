package validation

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func seedFiles(f *testing.F, pattern string) {
	f.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseExpectations: whatever parses survives Marshal → Parse unchanged,
// and Marshal is stable.
func FuzzParseExpectations(f *testing.F) {
	seedFiles(f, "testdata/*.json")
	seedFiles(f, "testdata/*.proposed.golden")
	seedFiles(f, "../examples/expectations-wdbc.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseExpectations(data)
		if err != nil {
			return
		}
		b, err := e.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v) = %v", e, err)
		}
		e2, err := ParseExpectations(b)
		if err != nil {
			t.Fatalf("ParseExpectations(Marshal(e)) = %v\n%s", err, b)
		}
		if diff := cmp.Diff(e, e2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		b2, _ := e2.Marshal()
		if !bytes.Equal(b, b2) {
			t.Fatalf("Marshal not stable:\n%s\n%s", b, b2)
		}
	})
}

// FuzzCheck: Check and Propose never panic, counts never exceed totals,
// and a file always meets the expectations proposed from it.
func FuzzCheck(f *testing.F) {
	seedFiles(f, "testdata/*.csv")
	f.Add([]byte("a,y\n1,x\n,y\n0x1p-2,x\n"))
	exp, err := LoadExpectations("testdata/expect.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Check(bytes.NewReader(data), exp)
		if err == nil {
			for _, fd := range rep.Findings {
				if fd.Count < 0 || fd.Total < 0 || fd.Count > fd.Total {
					t.Fatalf("finding %+v: count out of [0, total]", fd)
				}
			}
		}
		first, _, _ := strings.Cut(string(data), "\n")
		cols := strings.Split(first, ",")
		label := strings.TrimSpace(cols[len(cols)-1])
		e, err := Propose(bytes.NewReader(data), label)
		if err != nil {
			return
		}
		rep, err = Check(bytes.NewReader(data), e)
		if err != nil || rep.Errors() > 0 {
			t.Fatalf("Check(data, Propose(data)) = %+v, %v; want no errors", rep.Findings, err)
		}
	})
}
