package coordinator_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/coordinator"
)

// FuzzParseConfig: parsing never panics, validating what parses never
// panics, and a parsed configuration survives a marshal/parse round trip.
func FuzzParseConfig(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := coordinator.ParseConfig(b)
		if err != nil {
			return
		}
		_ = c.Validate()
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(parsed config): %v", err)
		}
		again, err := coordinator.ParseConfig(out)
		if err != nil {
			t.Fatalf("ParseConfig(Marshal(c)) = %v for %s", err, out)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("config changed in a round trip (-first +second):\n%s", diff)
		}
	})
}
