//go:build !unix

package privacy

import "time"

// cpuTime is not measured here; the benchmarks then report wall time only.
func cpuTime() (time.Duration, bool) { return 0, false }
