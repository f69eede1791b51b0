package certs

import "testing"

// FuzzParseSerial feeds arbitrary command-line values to ParseSerial
// (`fedguard ca revoke -serial`). It must never panic; what it accepts is
// a positive number that prints (as fedguard prints serials) and parses
// back to itself; and its error quotes the value bounded, not whole.
func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"1a2b", "0x1A:2B", " 01:ff ", "0", "-1", "+1", "0x", "", "0x0x1", "1_0", "ffffffffffffffffffffffffffffffffffffffffff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSerial(s)
		if err != nil {
			if len(err.Error()) > 1024 {
				t.Fatalf("ParseSerial error of %d bytes", len(err.Error()))
			}
			return
		}
		if n.Sign() <= 0 {
			t.Fatalf("ParseSerial(%q) = %v, not positive", s, n)
		}
		again, err := ParseSerial(serialHex(n))
		if err != nil || again.Cmp(n) != 0 {
			t.Fatalf("ParseSerial(%q) = %v, but ParseSerial(%q) = %v, %v", s, n, serialHex(n), again, err)
		}
	})
}
