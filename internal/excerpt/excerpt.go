// Package excerpt shortens untrusted text before an error message quotes
// it, so that a message names enough of a value to find it and never a
// whole field a peer or a file made as long as it could: a participant's
// reason, a certificate's name, a data file's cell.
//
// The cut falls on a rune boundary, so the excerpt of valid UTF-8 is valid
// UTF-8 (a %q of it shows the characters, not the escaped halves of one),
// and a shortened excerpt ends with "…".
package excerpt

import "unicode/utf8"

// Of returns s if it is at most n bytes long, and otherwise its longest
// prefix of at most n bytes that ends on a rune boundary, followed by "…".
func Of(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
