package participant

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/manifest"
)

// FuzzLoadState feeds arbitrary state files to the agent's loader: it must
// never panic, and what it accepts must save to a file it loads as the
// same record, since the agent rewrites the file after every round.
func FuzzLoadState(f *testing.F) {
	d := strings.Repeat("ab", 32)
	f.Add([]byte(`{"round":7,"digest":"` + d + `"}`))
	f.Add([]byte(`{"round":7,"digest":"` + d + `","revealed":["` + d + `","` + strings.Repeat("0", 64) + `"]}` + "\n"))
	f.Add([]byte(`{"round":-1,"digest":"` + d + `"}`))
	f.Add([]byte(`{"round":7,"digest":"` + strings.ToUpper(d) + `"}`))
	f.Add([]byte(`{"round":7,"digest":"` + d + `"} {}`))
	f.Add([]byte(`{"round":7,"digest":"` + d + `","extra":1}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		acc, cp, revealed, err := loadState(path)
		if err != nil {
			return
		}
		if acc == nil || !isHexDigest(acc.Digest) {
			t.Fatalf("loadState accepted %+v", acc)
		}
		again := filepath.Join(dir, "again.json")
		if err := saveState(again, manifest.Accepted{Round: acc.Round, Digest: acc.Digest}, cp, revealed); err != nil {
			t.Fatalf("saveState(loaded state) = %v", err)
		}
		acc2, cp2, revealed2, err := loadState(again)
		if err != nil || *acc2 != *acc || !bytes.Equal(cp2, cp) || !maps.Equal(revealed2, revealed) {
			t.Fatalf("state changed across a save: %+v %v, then %+v %v (%v)", acc, revealed, acc2, revealed2, err)
		}
	})
}
