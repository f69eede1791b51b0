package audit

import (
	"strings"
	"testing"
)

// TestVerifyProofTrailing: a proof followed by anything but white space is
// refused as "data after the proof". The decoder's More, which VerifyProof
// asked before it shared strictjson's check, reports false before a
// closing bracket or brace, so a proof with a stray "]" or "}" after it
// verified.
func TestVerifyProofTrailing(t *testing.T) {
	_, verifiers, _, _, proofs := provedLog(t, 3)
	for _, tail := range []string{"]", "}", "{}", "0", " x", "\n]"} {
		data := append(append([]byte(nil), proofs[1]...), tail...)
		if _, _, err := VerifyProof(data, verifiers); err == nil || !strings.Contains(err.Error(), "data after the proof") {
			t.Errorf("VerifyProof(proof + %q) = %v, want data after the proof", tail, err)
		}
	}
	for _, tail := range []string{"", "\n", " \r\n\t"} {
		data := append(append([]byte(nil), proofs[1]...), tail...)
		if _, _, err := VerifyProof(data, verifiers); err != nil {
			t.Errorf("VerifyProof(proof + %q) = %v, want it to verify", tail, err)
		}
	}
}
