// Package protofuzz fuzzes the checks fedguard runs on wire messages: a
// corpus seeded with the encodings of chosen messages, and a check called
// with every fuzzed input that decodes as the message.
//
// It is its own package, below internal/fedtest, so that the internal
// tests of packages fedtest imports (coordinator) can use it without an
// import cycle.
package protofuzz

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// Seed adds the wire encoding of each of msgs to f's corpus.
func Seed[P proto.Message](f *testing.F, msgs ...P) {
	f.Helper()
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatalf("protofuzz: encode seed %v: %v", m, err)
		}
		f.Add(b)
	}
}

// Fuzz fuzzes check with every input that decodes as an M. An input that
// does not decode is passed over: gRPC's codec refuses it before any check
// of fedguard's runs.
func Fuzz[M any, P interface {
	*M
	proto.Message
}](f *testing.F, check func(t *testing.T, m P)) {
	f.Helper()
	f.Fuzz(func(t *testing.T, data []byte) {
		m := P(new(M))
		if proto.Unmarshal(data, m) != nil {
			return
		}
		check(t, m)
	})
}
