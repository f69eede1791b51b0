package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
)

// SeedSize is the size of a mask seed: a pairwise mask seed agreed with
// X25519 and HKDF, or a participant's self-mask seed.
const SeedSize = 32

// maskChunk is how much keystream is made at a time. The keystream and the
// zeros it is made from (16 KiB together) stay in the 32 KiB L1 data cache
// while the chunk is added to the vector, so the vector itself is read and
// written once, from memory, as by a bare keystream pass. Measured with
// BenchmarkAddMask on Zen 4, 4 and 8 KiB chunks are equally fast; 64 KiB
// chunks (which spill to L2) are about 7 % slower.
const maskChunk = 8 << 10

// zeroChunk is the plaintext the keystream is encrypted from: AES-CTR of
// zeros is the bare keystream, and reading a fixed block of zeros costs
// less than clearing the buffer before every chunk.
var zeroChunk [maskChunk]byte

// chunkPool recycles keystream buffers: the buffer escapes through the
// cipher.Stream interface, and allocating it anew would cost every call a
// heap allocation.
var chunkPool = sync.Pool{New: func() any { return new([maskChunk]byte) }}

// AddMask adds (negate false) or subtracts (negate true) the mask expanded
// from seed to dst, word by word modulo 2^32. The mask is the AES-128-CTR
// keystream under key seed[:16] and initial counter block seed[16:], read
// as little-endian 32-bit words: a cryptographic generator, as the
// protocol's privacy rests on masks no one can predict without the seed
// (never a non-cryptographic generator, never a short seed).
//
// The keystream is made maskChunk bytes at a time and added with AVX2 where
// the CPU has it (add_amd64.s), so a mask costs little more than its
// keystream (see BenchmarkAddMask).
func AddMask(dst []uint32, seed *[SeedSize]byte, negate bool) {
	block, err := aes.NewCipher(seed[:16])
	if err != nil {
		panic("secagg: " + err.Error()) // 16-byte keys are always valid
	}
	ctr := cipher.NewCTR(block, seed[16:])
	buf := chunkPool.Get().(*[maskChunk]byte)
	for len(dst) > 0 {
		n := min(len(dst), maskChunk/4)
		ks := buf[:4*n]
		ctr.XORKeyStream(ks, zeroChunk[:4*n])
		addWords(dst[:n], ks, negate)
		dst = dst[n:]
	}
	// The buffer holds mask material: wipe it before it is reused by
	// another call (cheap next to the keystream of even one chunk).
	clear(buf[:])
	chunkPool.Put(buf)
}

// addMasks adds n masks to dst on up to GOMAXPROCS goroutines. Each
// goroutine takes the next mask, gets its seed and sign from seed (so that
// deriving seeds, X25519 and HKDF on the server, runs on every core too)
// and expands it into its own accumulator: dst for the first, a private
// vector for each other, added to dst at the end. Addition modulo 2^32 is
// associative and commutative, so the result does not depend on
// scheduling. On an error of seed, dst is left partly masked and the first
// error is returned.
func addMasks(dst []uint32, n int, seed func(i int) ([SeedSize]byte, bool, error)) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	acc := make([][]uint32, max(workers, 1))
	acc[0] = dst
	var (
		next   atomic.Int64
		failed atomic.Bool
		errs   = make([]error, len(acc))
		wg     sync.WaitGroup
	)
	work := func(w int) {
		if w > 0 {
			acc[w] = make([]uint32, len(dst))
		}
		for !failed.Load() {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			s, negate, err := seed(i)
			if err != nil {
				errs[w] = err
				failed.Store(true)
				return
			}
			AddMask(acc[w], &s, negate)
			clear(s[:])
		}
	}
	for w := 1; w < workers; w++ {
		wg.Go(func() { work(w) })
	}
	work(0)
	wg.Wait()
	for w, a := range acc[1:] {
		if errs[w+1] == nil && a != nil {
			addVectors(dst, a)
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// addVectorsGeneric sets dst[i] += src[i] modulo 2^32: the portable loop
// of addVectors.
func addVectorsGeneric(dst, src []uint32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// addWordsGeneric adds (or subtracts) the little-endian 32-bit words of ks
// to dst, modulo 2^32: the portable loop, and the reference the assembly
// of add_amd64.s is tested against.
func addWordsGeneric(dst []uint32, ks []byte, negate bool) {
	if negate {
		for i := range dst {
			dst[i] -= binary.LittleEndian.Uint32(ks[4*i:])
		}
		return
	}
	for i := range dst {
		dst[i] += binary.LittleEndian.Uint32(ks[4*i:])
	}
}
