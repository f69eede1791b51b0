package excerpt_test

import (
	"fmt"
	"strings"

	"github.com/fedguard/fedguard/internal/excerpt"
)

// A value within the bound is quoted whole; a longer one is cut on a rune
// boundary ("é" is two bytes, "€" three) and marked.
func ExampleOf() {
	fmt.Printf("%q\n", excerpt.Of("hospital-a", 64))
	fmt.Printf("%q\n", excerpt.Of("abcde", 4))
	fmt.Printf("%q\n", excerpt.Of("aééé", 4))
	fmt.Printf("%q\n", excerpt.Of(strings.Repeat("€", 30), 64))
	// Output:
	// "hospital-a"
	// "abcd…"
	// "aé…"
	// "€€€€€€€€€€€€€€€€€€€€€…"
}
