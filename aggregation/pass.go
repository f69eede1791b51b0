package aggregation

// passBlock is the number of coordinates of one task of Pass: its float32
// accumulator (16 KB) stays in L1 while every update's slice is added.
const passBlock = 4096

// Pass sets dst = Σ xs in float32 (every xs[i] at least len(dst) long): one
// streaming read of every input, the memory floor of any rule that reads
// them all. Benchmarks divide a rule's time by this pass's, measured in the
// same run (`fedguard bench aggregate`). It runs on all cores, blocks of
// 4096 coordinates each summed in L1 with the widest add the CPU has,
// whatever FEDGUARD_KERNEL forces, so that a forced slow path is never
// flattered by a slow baseline. It returns the path that ran ("avx2",
// "neon" or "purego").
func Pass(dst []float32, xs [][]float32) string {
	d := len(dst)
	tasks := (d + passBlock - 1) / passBlock
	parallel(tasks, d*len(xs), func(_, t int) {
		lo := t * passBlock
		hi := min(lo+passBlock, d)
		acc := dst[lo:hi]
		clear(acc)
		for _, x := range xs {
			passAdd32(acc, x[lo:hi])
		}
	})
	return passPath.String()
}

// add32Generic sets acc[i] += x[i] in float32.
func add32Generic(acc, x []float32) {
	x = x[:len(acc)]
	for i := range acc {
		acc[i] += x[i]
	}
}
