package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"testing"
)

// TestAddMask checks the mask against AES-128-CTR computed independently,
// across chunk boundaries, and that subtracting undoes adding.
func TestAddMask(t *testing.T) {
	var seed [SeedSize]byte
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	for _, n := range []int{0, 1, 3, maskChunk/4 - 1, maskChunk / 4, maskChunk/4 + 5, 3*maskChunk/4 + 2} {
		block, _ := aes.NewCipher(seed[:16])
		ks := make([]byte, 4*n)
		cipher.NewCTR(block, seed[16:]).XORKeyStream(ks, ks)
		dst := make([]uint32, n)
		for i := range dst {
			dst[i] = uint32(i) * 2654435761
		}
		orig := append([]uint32(nil), dst...)
		AddMask(dst, &seed, false)
		for i := range dst {
			if want := orig[i] + binary.LittleEndian.Uint32(ks[4*i:]); dst[i] != want {
				t.Fatalf("n=%d: word %d = %#x, want %#x", n, i, dst[i], want)
			}
		}
		AddMask(dst, &seed, true)
		for i := range dst {
			if dst[i] != orig[i] {
				t.Fatalf("n=%d: word %d after add and subtract = %#x, want %#x", n, i, dst[i], orig[i])
			}
		}
	}
	// Another seed gives another mask.
	a, b := make([]uint32, 8), make([]uint32, 8)
	other := seed
	other[31] ^= 1
	AddMask(a, &seed, false)
	AddMask(b, &other, false)
	if a[0] == b[0] && a[7] == b[7] {
		t.Error("seeds differing in one IV bit give the same mask")
	}
}

// BenchmarkAddMask expands and adds one mask over a million words, against
// the bare AES-128-CTR keystream of the same length as the baseline; add-go
// is the same with the portable addition loop instead of the assembly.
func BenchmarkAddMask(b *testing.B) {
	const d = 1_000_000
	var seed [SeedSize]byte
	b.Run("keystream-floor", func(b *testing.B) {
		buf := make([]byte, 4*d)
		block, _ := aes.NewCipher(seed[:16])
		b.SetBytes(4 * d)
		for i := 0; i < b.N; i++ {
			cipher.NewCTR(block, seed[16:]).XORKeyStream(buf, buf)
		}
	})
	b.Run("add", func(b *testing.B) {
		dst := make([]uint32, d)
		b.SetBytes(4 * d)
		for i := 0; i < b.N; i++ {
			AddMask(dst, &seed, false)
		}
	})
	b.Run("add-go", func(b *testing.B) {
		saved := haveAVX2
		defer func() { haveAVX2 = saved }()
		haveAVX2 = false
		dst := make([]uint32, d)
		b.SetBytes(4 * d)
		for i := 0; i < b.N; i++ {
			AddMask(dst, &seed, false)
		}
	})
}
