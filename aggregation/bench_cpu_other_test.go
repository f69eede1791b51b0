//go:build !unix

package aggregation

// cpuSeconds is not measured here: the cpu-ms metric reads 0.
func cpuSeconds() float64 { return 0 }
