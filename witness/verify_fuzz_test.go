package witness_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedguard/fedguard/witness"
)

// FuzzVerify feeds arbitrary files to Verify, as `fedguard audit verify
// -witness` reads the files hospitals hand the auditor. It must never
// panic; every refusal wraps exactly one of ErrMalformed, ErrCertificate
// and ErrSignature, as Verify promises; and what it accepts is the one
// hospital's witness of the one checkpoint its coordinator signed.
// (FuzzParse covers the file format alone, without the keys.)
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, f.TempDir(), "clinic-net")
	good := fx.sign(f)
	f.Add(good)
	if seed, err := os.ReadFile(filepath.Join("testdata", "witness.json")); err == nil {
		f.Add(seed) // another CA's
	}
	f.Add([]byte(`{}`))
	opts := witness.VerifyOptions{CA: fx.ca.Certificate(), Log: fx.verifier}
	kinds := []error{witness.ErrMalformed, witness.ErrCertificate, witness.ErrSignature}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := witness.Verify(data, opts)
		if err != nil {
			n := 0
			for _, k := range kinds {
				if errors.Is(err, k) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Verify refused with %v, which wraps %d of its kinds, want 1", err, n)
			}
			return
		}
		if v.Witness.Name != "hospital-a" || v.Checkpoint.Size != fx.cp.Size || v.Checkpoint.Root != fx.cp.Root {
			t.Fatalf("Verify accepted %+v; the only witness is hospital-a's of checkpoint %d", v, fx.cp.Size)
		}
	})
}
