package model

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// net is a validated Spec with the offsets of each layer in the parameter vector.
type net struct {
	sizes []int // L0 = features, ..., LL = classes
	wOff  []int // wOff[l]: start of W_l (l >= 1)
	bOff  []int // bOff[l]: start of b_l
}

// newNet validates the spec, the parameter length and the data shapes.
func newNet(s Spec, params []float32, x [][]float64, y []int) (*net, error) {
	if s.Kind == Tensors {
		return nil, ErrNotBuiltIn
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if want := s.NumParams(); len(params) != want {
		return nil, fmt.Errorf("%d parameters, spec %v needs %d", len(params), s.Kind, want)
	}
	for i, v := range params {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("parameter %d is %v: %w", i, v, ErrNonFinite)
		}
	}
	if len(x) == 0 {
		return nil, errors.New("empty data")
	}
	if len(x) != len(y) {
		return nil, fmt.Errorf("%d rows but %d labels", len(x), len(y))
	}
	for i, row := range x {
		if len(row) != s.Features {
			return nil, fmt.Errorf("row %d has %d features, spec has %d", i, len(row), s.Features)
		}
		for j, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("row %d feature %d is %v", i, j, v)
			}
		}
		if y[i] < 0 || y[i] >= s.Classes {
			return nil, fmt.Errorf("row %d label %d outside [0, %d)", i, y[i], s.Classes)
		}
	}
	n := &net{sizes: s.sizes()}
	n.wOff = make([]int, len(n.sizes))
	n.bOff = make([]int, len(n.sizes))
	off := 0
	for l := 1; l < len(n.sizes); l++ {
		n.wOff[l] = off
		off += n.sizes[l] * n.sizes[l-1]
		n.bOff[l] = off
		off += n.sizes[l]
	}
	return n, nil
}

// workspace holds every buffer a batch needs, allocated once per Train/Evaluate call
// so that the SGD loop allocates nothing.
type workspace struct {
	act   [][]float64 // act[l]: batch × L_l activations (act[0] the inputs, act[L] the probabilities)
	delta [][]float64 // delta[l]: batch × L_l loss gradient w.r.t. layer l's pre-activation
	loss  []float64   // per-row cross-entropy of the last forward pass with labels
}

func (n *net) workspace(batch int) *workspace {
	ws := &workspace{
		act:   make([][]float64, len(n.sizes)),
		delta: make([][]float64, len(n.sizes)),
		loss:  make([]float64, batch),
	}
	for l, sz := range n.sizes {
		ws.act[l] = make([]float64, batch*sz)
		if l > 0 {
			ws.delta[l] = make([]float64, batch*sz)
		}
	}
	return ws
}

func dense(rows, cols int, data []float64) blas64.General {
	return blas64.General{Rows: rows, Cols: cols, Stride: cols, Data: data[:rows*cols]}
}

// forward runs the rows idx of x through the network and returns the batch × classes
// probabilities (backed by ws). If y is not nil it also stores each row's
// cross-entropy −log p(y) in ws.loss, computed from the log-sum-exp so it stays finite.
func (n *net) forward(ws *workspace, w []float64, x [][]float64, idx []int, y []int) blas64.General {
	b := len(idx)
	f := n.sizes[0]
	for r, i := range idx {
		copy(ws.act[0][r*f:(r+1)*f], x[i])
	}
	last := len(n.sizes) - 1
	for l := 1; l <= last; l++ {
		in, out := n.sizes[l-1], n.sizes[l]
		a := dense(b, in, ws.act[l-1])
		wm := dense(out, in, w[n.wOff[l]:])
		z := dense(b, out, ws.act[l])
		bias := w[n.bOff[l] : n.bOff[l]+out]
		for r := range b {
			copy(z.Data[r*out:(r+1)*out], bias)
		}
		blas64.Gemm(blas.NoTrans, blas.Trans, 1, a, wm, 1, z)
		if l < last {
			for i, v := range z.Data {
				if v < 0 {
					z.Data[i] = 0
				}
			}
			continue
		}
		for r := range b {
			row := z.Data[r*out : (r+1)*out]
			m := row[0]
			for _, v := range row[1:] {
				m = max(m, v)
			}
			zy := 0.0
			if y != nil {
				zy = row[y[idx[r]]] - m
			}
			sum := 0.0
			for i, v := range row {
				e := math.Exp(v - m)
				row[i] = e
				sum += e
			}
			if y != nil {
				// log p_y = z_y - m - log(sum), finite even when p_y underflows.
				ws.loss[r] = math.Log(sum) - zy
			}
			inv := 1 / sum
			for i := range row {
				row[i] *= inv
			}
		}
	}
	return dense(b, n.sizes[last], ws.act[last])
}

// gradient computes, over the rows idx, the gradient g (same layout as w) and value of
// the objective mean CE + l2/2·Σ‖W_l‖². It is what Train descends; tests compare it
// with finite differences.
func (n *net) gradient(ws *workspace, w, g []float64, x [][]float64, y []int, idx []int, l2 float64) float64 {
	b := len(idx)
	p := n.forward(ws, w, x, idx, y)
	last := len(n.sizes) - 1
	c := n.sizes[last]
	loss := 0.0
	for r := range b {
		loss += ws.loss[r]
	}
	loss /= float64(b)

	// d(mean CE)/dz = (p - onehot(y)) / b.
	dz := ws.delta[last][:b*c]
	inv := 1 / float64(b)
	for r, i := range idx {
		for k := range c {
			dz[r*c+k] = p.Data[r*c+k] * inv
		}
		dz[r*c+y[i]] -= inv
	}
	for l := last; l >= 1; l-- {
		in, out := n.sizes[l-1], n.sizes[l]
		d := dense(b, out, ws.delta[l])
		a := dense(b, in, ws.act[l-1])
		wm := dense(out, in, w[n.wOff[l]:])
		gw := dense(out, in, g[n.wOff[l]:])
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, d, a, 0, gw)
		gb := g[n.bOff[l] : n.bOff[l]+out]
		clear(gb)
		for r := range b {
			row := d.Data[r*out : (r+1)*out]
			for k, v := range row {
				gb[k] += v
			}
		}
		if l2 != 0 {
			reg := 0.0
			for i, v := range wm.Data {
				gw.Data[i] += l2 * v
				reg += v * v
			}
			loss += l2 / 2 * reg
		}
		if l > 1 {
			da := dense(b, in, ws.delta[l-1])
			blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, d, wm, 0, da)
			// ReLU: the gradient passes where the activation was positive.
			for i, v := range a.Data {
				if v <= 0 {
					da.Data[i] = 0
				}
			}
		}
	}
	return loss
}
