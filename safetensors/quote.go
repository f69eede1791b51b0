package safetensors

import (
	"fmt"

	"github.com/fedguard/fedguard/internal/excerpt"
)

// maxQuoted bounds what an error quotes of a name or token from a file,
// in bytes, and maxQuotedDims what it prints of a shape: a header may be
// MaxHeaderSize bytes, all of it one tensor's name or shape.
const (
	maxQuoted     = 80
	maxQuotedDims = 8
)

// short is s cut to maxQuoted bytes for an error message.
func short(s string) string { return excerpt.Of(s, maxQuoted) }

// shortShape prints shape for an error message, its first maxQuotedDims
// dimensions and how many there are when it has more.
func shortShape(shape []int) string {
	if len(shape) <= maxQuotedDims {
		return fmt.Sprint(shape)
	}
	return fmt.Sprintf("%v… (%d dimensions)", shape[:maxQuotedDims], len(shape))
}
