package coordinator

import "github.com/fedguard/fedguard/dataset"

// DriftShiftOf exposes driftOf's largest shift to the external tests.
func DriftShiftOf(st dataset.Stats, ref dataset.Scaling) (shift, varianceRatio float64, ok bool) {
	d, ok := driftOf(st, ref)
	return d.Shift, d.VarianceRatio, ok
}
