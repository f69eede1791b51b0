package simulation

import (
	"errors"
	"testing"
)

// FuzzParseShard feeds arbitrary -shard values to ParseShard. It must
// never panic; every refusal wraps ErrOptions; what it accepts has
// 1 ≤ K ≤ N and prints (String) to a value that parses back to itself.
func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"1/1", "2/4", " 3 / 4 ", "0/4", "5/4", "1/0", "-1/2", "1/2/3", "", "/", "+1/+2", "9223372036854775807/9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShard(s)
		if err != nil {
			if !errors.Is(err, ErrOptions) {
				t.Fatalf("ParseShard(%q) = %v, which does not wrap ErrOptions", s, err)
			}
			return
		}
		if sh.K < 1 || sh.N < 1 || sh.K > sh.N {
			t.Fatalf("ParseShard(%q) = %v", s, sh)
		}
		again, err := ParseShard(sh.String())
		if err != nil || again != sh {
			t.Fatalf("ParseShard(%q) = %v, but ParseShard(%q) = %v, %v", s, sh, sh.String(), again, err)
		}
	})
}
