package participant

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	rot := `{"old_fingerprint":"sha256:` + d + `","new_fingerprint":"sha256:` + strings.Repeat("cd", 32) +
		`","at":"2026-06-01T12:00:00Z","sha256":"` + d + `","envelope":{"payloadType":"x","payload":"","signatures":[]}}`
	f.Add([]byte(`{"round":7,"digest":"` + d + `","rotations":[` + rot + `]}`))
	f.Add([]byte(`{"round":7,"digest":"` + d + `","rotations":[` + rot + `,` + rot + `]}`))
	f.Add([]byte(`{"round":7,"digest":"` + d + `","rotations":[` + strings.Replace(rot, "sha256:", "md5:", 1) + `]}`))
	f.Add([]byte(`{"round":7,"digest":"` + d + `","rotations":[{"at":"2026-06-01T12:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := loadState(path)
		if err != nil {
			return
		}
		acc, cp, revealed, rotations := st.Accepted, st.Checkpoint, st.Revealed, st.rotations
		if acc == nil || !isHexDigest(acc.Digest) {
			t.Fatalf("loadState accepted %+v", acc)
		}
		again := filepath.Join(dir, "again.json")
		if err := saveState(again, st); err != nil {
			t.Fatalf("saveState(loaded state) = %v", err)
		}
		st2, err := loadState(again)
		acc2, cp2, revealed2, rotations2 := st2.Accepted, st2.Checkpoint, st2.Revealed, st2.rotations
		if err != nil || *acc2 != *acc || !bytes.Equal(cp2, cp) || !maps.Equal(revealed2, revealed) {
			t.Fatalf("state changed across a save: %+v %v, then %+v %v (%v)", acc, revealed, acc2, revealed2, err)
		}
		if len(rotations2) != len(rotations) {
			t.Fatalf("state lost rotations across a save: %d, then %d", len(rotations), len(rotations2))
		}
		for i := range rotations {
			a, b := rotations[i], rotations2[i]
			if a.OldFingerprint != b.OldFingerprint || a.NewFingerprint != b.NewFingerprint || !a.At.Equal(b.At) ||
				a.SHA256 != b.SHA256 || !json.Valid(b.Envelope) {
				t.Fatalf("rotation %d changed across a save: %+v, then %+v", i, a, b)
			}
		}
	})
}
