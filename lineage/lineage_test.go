package lineage_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/fedtest/golden"
	"github.com/fedguard/fedguard/lineage"
	"github.com/fedguard/fedguard/manifest"
)

func TestVersion(t *testing.T) {
	salt := lineage.SaltFor([]byte("a CA certificate"))
	base := lineage.Description{FileSHA256: sha256.Sum256([]byte("id,x,y\n1,2,a\n")), Columns: []string{"x", "y"}, Rows: []int{0, 2, 5}}
	v0, err := salt.Version(base)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := salt.Version(base); again != v0 {
		t.Fatalf("Version is not deterministic: %s then %s", v0, again)
	}
	// Every part of the description, and the salt, changes the version.
	for _, tc := range []struct {
		name string
		salt lineage.Salt
		d    lineage.Description
	}{
		{"other federation", lineage.SaltFor([]byte("another CA certificate")), base},
		{"other file", salt, lineage.Description{FileSHA256: sha256.Sum256([]byte("id,x,y\n1,2,b\n")), Columns: base.Columns, Rows: base.Rows}},
		{"other columns", salt, lineage.Description{FileSHA256: base.FileSHA256, Columns: []string{"y", "x"}, Rows: base.Rows}},
		{"columns split differently", salt, lineage.Description{FileSHA256: base.FileSHA256, Columns: []string{"xy"}, Rows: base.Rows}},
		{"other rows", salt, lineage.Description{FileSHA256: base.FileSHA256, Columns: base.Columns, Rows: []int{0, 2, 6}}},
		{"fewer rows", salt, lineage.Description{FileSHA256: base.FileSHA256, Columns: base.Columns, Rows: []int{0, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.salt.Version(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if v == v0 {
				t.Fatalf("Version(%+v) = Version(base) = %s", tc.d, v)
			}
		})
	}
	for _, rows := range [][]int{{2, 1}, {1, 1}, {-1}} {
		if _, err := salt.Version(lineage.Description{Rows: rows}); err == nil {
			t.Errorf("Version(rows %v) = nil error, want one: rows must be strictly increasing from 0", rows)
		}
	}
	if p, err := lineage.ParseVersion(v0.String()); err != nil || p != v0 {
		t.Errorf("ParseVersion(%s) = %s, %v", v0, p, err)
	}
	for _, bad := range []string{"", strings.ToUpper(v0.String()), v0.String()[:62], v0.String() + "0"} {
		if _, err := lineage.ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) = nil error", bad)
		}
	}
}

// TestVersionKnownAnswer pins the encoding: a change to it changes every
// recorded data version, and needs a new prefix.
func TestVersionKnownAnswer(t *testing.T) {
	salt := lineage.SaltFor([]byte("ca"))
	v, err := salt.Version(lineage.Description{FileSHA256: sha256.Sum256([]byte("f")), Columns: []string{"a", "label"}, Rows: []int{0, 1, 300}})
	if err != nil {
		t.Fatal(err)
	}
	want := golden.File(t, filepath.Join("testdata", "version.golden"), []byte(v.String()+"\n"))
	if got := v.String() + "\n"; got != string(want) {
		t.Errorf("Version = %s, want %s (testdata/version.golden)", got, want)
	}
}

func TestTrace(t *testing.T) {
	d := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	round := func(n uint64, included ...manifest.Contributor) manifest.Round {
		return manifest.Round{Federation: "fed", Round: n, ModelSHA256: d("model " + string(rune('0'+n))), Included: included}
	}
	c := func(name, data string) manifest.Contributor {
		if data == "" {
			return manifest.Contributor{Name: name}
		}
		return manifest.Contributor{Name: name, DataSHA256: d(data)}
	}
	rounds := []manifest.Round{
		round(0),
		round(1, c("a", "a1"), c("b", "b1")),
		round(2, c("a", "a1"), c("c", "")),
		round(3, c("a", "a2"), c("b", "b1")),
		round(4),
	}
	tr, err := lineage.Trace(rounds, 3)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := lineage.WriteTable(&buf, tr); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(tr, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := buf.String() + "\n" + string(js) + "\n"
	golden.Check(t, filepath.Join("testdata", "trace.golden"), []byte(got))

	for _, tt := range []struct {
		name   string
		rounds []manifest.Round
		upTo   uint64
		want   string
	}{
		{"a round missing", []manifest.Round{rounds[0], rounds[1], rounds[3]}, 3, "no manifest of round 2, which the model of round 3 builds on"},
		// An auditor asking for round 50 of a 20-round log was told that
		// round 21 is missing.
		{"past the newest", rounds[:2], 3, "no manifest of round 3: the newest is round 1"},
		{"a round twice", append(rounds, round(2)), 3, "two manifests of round 2"},
	} {
		if _, err := lineage.Trace(tt.rounds, tt.upTo); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Trace(%s) = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
