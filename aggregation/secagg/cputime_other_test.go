//go:build !unix

package secagg

import "time"

// processCPU returns 0: CPU times are measured on unix systems only.
func processCPU() time.Duration { return 0 }
