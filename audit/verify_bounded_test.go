package audit

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestVerifyErrorsQuoteBounded: a refused export line is quoted cut short,
// never whole. An export comes from the coordinator, which the auditor
// does not trust, and a line may be MaxLineLen (1 MiB) long: a field of
// that length would otherwise land whole in the error the auditor reads.
func TestVerifyErrorsQuoteBounded(t *testing.T) {
	const maxErr = 1024
	b, verifiers := baseExport(t)
	base := splitLines(b.export())
	long := strings.Repeat("x", 512<<10)
	for _, tc := range []struct {
		name string
		re   *regexp.Regexp
		with string
	}{
		{"time", regexp.MustCompile(`"time":"[^"]*"`), `"time":"` + long + `"`},
		{"kind", regexp.MustCompile(`"kind":"[^"]*"`), `"kind":"` + long + `"`},
		{"actor", regexp.MustCompile(`"actor":"[^"]*"`), `"actor":"` + long + `\u0000"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := make([][]byte, len(base))
			copy(lines, base)
			lines[1] = tc.re.ReplaceAll(bytes.Clone(base[1]), []byte(tc.with))
			if bytes.Equal(lines[1], base[1]) {
				t.Fatalf("line 1 has no %s field: %s", tc.name, base[1])
			}
			_, err := Verify(bytes.NewReader(joinLines(lines)), VerifyOptions{Verifiers: verifiers})
			if err == nil {
				t.Fatal("Verify accepted the export")
			}
			if n := len(err.Error()); n > maxErr {
				t.Errorf("error of %d bytes, want at most %d: %.300s…", n, maxErr, err)
			}
		})
	}
}
