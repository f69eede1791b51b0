package excerpt

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abcd", 4, "abcd"},
		{"abcde", 4, "abcd…"},
		{"abcde", 0, "…"},
		// "é" is two bytes: a cut at byte 4 of "aéé" would split the second.
		{"aééé", 4, "aé…"},
		{"éééé", 4, "éé…"},
		// "€" is three bytes.
		{strings.Repeat("€", 30), 64, strings.Repeat("€", 21) + "…"},
	} {
		got := Of(tc.in, tc.n)
		if got != tc.want {
			t.Errorf("Of(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Of(%q, %d) = %q, not valid UTF-8", tc.in, tc.n, got)
		}
	}
}
