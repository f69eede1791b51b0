package dataset

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestExcerpt(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("a", 40), strings.Repeat("a", 40)},
		{strings.Repeat("a", 41), strings.Repeat("a", 40) + "…"},
		// "é" is two bytes: a cut at byte 40 would split the 20th.
		{"a" + strings.Repeat("é", 30), "a" + strings.Repeat("é", 19) + "…"},
		{strings.Repeat("é", 30), strings.Repeat("é", 20) + "…"},
	} {
		got := Excerpt(tc.in)
		if got != tc.want {
			t.Errorf("Excerpt(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Excerpt(%q) = %q, not valid UTF-8", tc.in, got)
		}
	}
}
