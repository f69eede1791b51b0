package aggregation

// # Kernel paths
//
// The kernels run one of several implementations ("paths") of the same
// arithmetic: the portable Go loops (purego, every architecture), AVX2
// assembly (every amd64 CPU since 2013-2015), AVX-512 assembly, and NEON
// (Advanced SIMD) assembly on arm64. Every path
// gives the same bits (see kernel.go). At package initialisation the best
// path the CPU offers is chosen, unless the environment variable
// FEDGUARD_KERNEL names one: then that path runs, so that each one can be
// forced, benchmarked and tested on one machine.
//
// A forced path the CPU or the build lacks is refused at first use, not at
// program start (a package initialiser cannot return an error): New and
// Kernel return an error wrapping ErrKernel, so the coordinator refuses to
// start and `fedguard bench aggregate` prints the reason. A process that
// never builds a rule is not affected.

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// EnvKernel is the environment variable that forces a kernel path:
// "avx512", "avx2" or "purego" on amd64, "neon" or "purego" on arm64
// (empty: the best the CPU offers).
const EnvKernel = "FEDGUARD_KERNEL"

// ErrKernel marks a kernel path that FEDGUARD_KERNEL forces and this CPU or
// build cannot run.
var ErrKernel = errors.New("aggregation: kernel path unavailable")

// kernelPath is one implementation of the kernels, in increasing preference
// among those of one architecture.
type kernelPath uint8

const (
	pathPurego kernelPath = iota
	pathAVX2
	pathAVX512
	pathNEON
	numPaths
)

var pathNames = [numPaths]string{"purego", "avx2", "avx512", "neon"}

func (p kernelPath) String() string {
	if p < numPaths {
		return pathNames[p]
	}
	return fmt.Sprintf("kernelPath(%d)", p)
}

var (
	// kernel is the path the dispatchers (kernel_amd64.go, kernel_arm64.go)
	// run. Tests set it
	// to each available path in turn (withPaths).
	kernel kernelPath
	// kernelErr is the refusal of a forced path, returned by New.
	kernelErr error
)

func init() {
	kernel, kernelErr = selectKernel(os.Getenv(EnvKernel), availablePaths())
}

// selectKernel chooses the path for the value env of FEDGUARD_KERNEL among
// avail (increasing preference, never empty): the last one when env is
// empty, else the one env names. When env names an unknown or unavailable
// path it returns the portable path (which can always run) and an error.
func selectKernel(env string, avail []kernelPath) (kernelPath, error) {
	if env == "" {
		return avail[len(avail)-1], nil
	}
	names := make([]string, len(avail))
	for i, p := range avail {
		names[i] = p.String()
	}
	for p, name := range pathNames {
		if env != name {
			continue
		}
		for _, a := range avail {
			if a == kernelPath(p) {
				return a, nil
			}
		}
		return pathPurego, fmt.Errorf("%w: %s=%s, but this CPU or build offers only %s",
			ErrKernel, EnvKernel, env, strings.Join(names, ", "))
	}
	return pathPurego, fmt.Errorf("%w: %s=%q is not a kernel path (this CPU or build offers %s)",
		ErrKernel, EnvKernel, env, strings.Join(names, ", "))
}

// Kernel returns the name of the kernel path the rules run ("avx512",
// "avx2", "neon" or "purego"), or an error wrapping ErrKernel when FEDGUARD_KERNEL
// forces a path this CPU or build lacks.
func Kernel() (string, error) {
	if kernelErr != nil {
		return "", kernelErr
	}
	return kernel.String(), nil
}

// KernelPaths returns the names of the kernel paths this CPU and build can
// run, the portable one first.
func KernelPaths() []string {
	avail := availablePaths()
	names := make([]string, len(avail))
	for i, p := range avail {
		names[i] = p.String()
	}
	return names
}
