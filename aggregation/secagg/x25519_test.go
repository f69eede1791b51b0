package secagg

import (
	"bytes"
	"crypto/ecdh"
	mrand "math/rand/v2"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
)

// TestAgreeMatchesStdlib checks agree (circl's x25519.Shared) against the
// standard library's X25519, an independent implementation, on random
// keys: the pair-mask seeds are the same whichever library computes them.
func TestAgreeMatchesStdlib(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(9, 9))
	for i := range 64 {
		var priv, peer x25519.Key
		for j := range priv {
			priv[j], peer[j] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		var pub x25519.Key
		x25519.KeyGen(&pub, &peer)
		got, err := agree(&priv, &pub)
		if err != nil {
			t.Fatalf("agree(%x, %x): %v", priv, pub, err)
		}
		k, err := ecdh.X25519().NewPrivateKey(priv[:])
		if err != nil {
			t.Fatal(err)
		}
		p, err := ecdh.X25519().NewPublicKey(pub[:])
		if err != nil {
			t.Fatal(err)
		}
		want, err := k.ECDH(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], want) {
			t.Fatalf("key pair %d: agree = %x, crypto/ecdh = %x", i, got, want)
		}
	}
}

// BenchmarkX25519 times one agreement with circl's x25519.Shared (what
// agree uses) and with the standard library's crypto/ecdh, the private
// key parsed once as the server would for each dropped participant. The
// server makes one agreement per pair of a dropped participant and a
// survivor (90,000 at n = 1,000 with 10 % dropping), so this chooses the
// library: circl measured 1.5–2.2× faster here (docs/capacity.md).
func BenchmarkX25519(b *testing.B) {
	var priv, peer, pub x25519.Key
	for i := range priv {
		priv[i], peer[i] = byte(3*i+1), byte(5*i+2)
	}
	x25519.KeyGen(&pub, &peer)
	b.Run("circl", func(b *testing.B) {
		var out x25519.Key
		for b.Loop() {
			if !x25519.Shared(&out, &priv, &pub) {
				b.Fatal("low-order key")
			}
		}
	})
	b.Run("crypto-ecdh", func(b *testing.B) {
		k, err := ecdh.X25519().NewPrivateKey(priv[:])
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			p, err := ecdh.X25519().NewPublicKey(pub[:])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := k.ECDH(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
