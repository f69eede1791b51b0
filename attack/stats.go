package attack

import (
	"math"
	"runtime"
	"sync"

	"github.com/fedguard/fedguard/model"
)

// mean returns the coordinate-wise mean of vs (at least one vector of
// length d), in float64.
func mean(vs [][]float32, d int) []float64 {
	mu := make([]float64, d)
	for _, v := range vs {
		for j, x := range v {
			mu[j] += float64(x)
		}
	}
	inv := 1 / float64(len(vs))
	for j := range mu {
		mu[j] *= inv
	}
	return mu
}

// std returns the coordinate-wise standard deviation of vs around mu with
// the m−1 denominator; all zeros when there is a single vector.
func std(vs [][]float32, mu []float64) []float64 {
	sd := make([]float64, len(mu))
	if len(vs) < 2 {
		return sd
	}
	for _, v := range vs {
		for j, x := range v {
			e := float64(x) - mu[j]
			sd[j] += e * e
		}
	}
	inv := 1 / float64(len(vs)-1)
	for j := range sd {
		sd[j] = math.Sqrt(sd[j] * inv)
	}
	return sd
}

// to32 rounds x to float32, saturating at ±math.MaxFloat32 (x beyond the
// float32 range rounds to an infinity, which model.Saturate brings back)
// and mapping a NaN, which the attacks never produce from finite inputs,
// to 0.
func to32(x float64) float32 {
	if math.IsNaN(x) {
		return 0
	}
	return model.Saturate(float32(x))
}

// vec32 returns v rounded to float32 (see to32).
func vec32(v []float64) []float32 {
	out := make([]float32, len(v))
	for j, x := range v {
		out[j] = to32(x)
	}
	return out
}

// copies returns f independent float32 copies of v.
func copies(v []float64, f int) [][]float32 {
	out := make([][]float32, f)
	if f == 0 {
		return out
	}
	out[0] = vec32(v)
	for i := 1; i < f; i++ {
		out[i] = append([]float32(nil), out[0]...)
	}
	return out
}

// scaled returns c·v for each v of vs, in float64 then rounded (see to32).
func scaled(vs [][]float32, c float64) [][]float32 {
	out := make([][]float32, len(vs))
	for i, v := range vs {
		w := make([]float32, len(v))
		for j, x := range v {
			w[j] = to32(c * float64(x))
		}
		out[i] = w
	}
	return out
}

// sign returns −1, 0 or 1.
func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// pairwise returns the squared Euclidean distances between the vectors of
// vs as an m×m row-major matrix, accumulated in float64. The m(m−1)/2
// pairs are spread over the cores; each is computed by one goroutine in a
// fixed order, so the result does not depend on the scheduling.
func pairwise(vs [][]float32) []float64 {
	m := len(vs)
	out := make([]float64, m*m)
	workers := min(runtime.GOMAXPROCS(0), m)
	if m < 2 {
		return out
	}
	next := make(chan int, m)
	for i := range m - 1 {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				for j := i + 1; j < m; j++ {
					s := sqDist(vs[i], vs[j])
					out[i*m+j], out[j*m+i] = s, s
				}
			}
		})
	}
	wg.Wait()
	return out
}

// sqDist returns ‖x − y‖² in float64.
func sqDist(x, y []float32) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	j := 0
	for ; j+4 <= len(x); j += 4 {
		e0 := float64(x[j]) - float64(y[j])
		e1 := float64(x[j+1]) - float64(y[j+1])
		e2 := float64(x[j+2]) - float64(y[j+2])
		e3 := float64(x[j+3]) - float64(y[j+3])
		s0 += e0 * e0
		s1 += e1 * e1
		s2 += e2 * e2
		s3 += e3 * e3
	}
	for ; j < len(x); j++ {
		e := float64(x[j]) - float64(y[j])
		s0 += e * e
	}
	return (s0 + s1) + (s2 + s3)
}
