package certs

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestValidateNameExcerpt checks that a long name is quoted cut on a rune
// boundary: a byte cut at 80 split "€" (three bytes) and the message showed
// its halves as \x escapes.
func TestValidateNameExcerpt(t *testing.T) {
	name := "a" + strings.Repeat("€", 40)
	err := ValidateName(name)
	if err == nil {
		t.Fatalf("ValidateName(%q) = nil, want an error", name)
	}
	msg := err.Error()
	if want := `"a` + strings.Repeat("€", 26) + `…"`; !strings.Contains(msg, want) || !utf8.ValidString(msg) || strings.Contains(msg, `\x`) {
		t.Errorf("ValidateName(%q) = %q, want it to quote %s", name, msg, want)
	}
}
