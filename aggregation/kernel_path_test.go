package aggregation

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestSelectKernel(t *testing.T) {
	all := []kernelPath{pathPurego, pathAVX2, pathAVX512}
	noAVX512 := []kernelPath{pathPurego, pathAVX2}
	portable := []kernelPath{pathPurego}
	arm := []kernelPath{pathPurego, pathNEON}
	for _, c := range []struct {
		env     string
		avail   []kernelPath
		want    kernelPath
		wantErr string // substring; "" for no error
	}{
		{"", all, pathAVX512, ""},
		{"", noAVX512, pathAVX2, ""},
		{"", portable, pathPurego, ""},
		{"avx512", all, pathAVX512, ""},
		{"avx2", all, pathAVX2, ""},
		{"purego", all, pathPurego, ""},
		{"purego", portable, pathPurego, ""},
		{"avx512", noAVX512, pathPurego, "FEDGUARD_KERNEL=avx512, but this CPU or build offers only purego, avx2"},
		{"avx2", portable, pathPurego, "offers only purego"},
		{"AVX2", all, pathPurego, `"AVX2" is not a kernel path`},
		{"neon", noAVX512, pathPurego, "FEDGUARD_KERNEL=neon, but this CPU or build offers only purego, avx2"},
		{"", arm, pathNEON, ""},
		{"neon", arm, pathNEON, ""},
		{"purego", arm, pathPurego, ""},
		{"avx2", arm, pathPurego, "FEDGUARD_KERNEL=avx2, but this CPU or build offers only purego, neon"},
		{"NEON", arm, pathPurego, `"NEON" is not a kernel path`},
	} {
		t.Run(c.env+"/"+strconv.Itoa(len(c.avail)), func(t *testing.T) {
			got, err := selectKernel(c.env, c.avail)
			if got != c.want {
				t.Errorf("path = %v, want %v", got, c.want)
			}
			switch {
			case c.wantErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case c.wantErr != "" && (!errors.Is(err, ErrKernel) || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("err = %v, want ErrKernel containing %q", err, c.wantErr)
			}
		})
	}
}

// envEmulator names the user-mode emulator that runs this test binary
// (`make test-arm64` sets it to qemu-aarch64-static), so that TestKernelEnv
// can run it again where binfmt_misc does not know the architecture.
const envEmulator = "FEDGUARD_TEST_EMULATOR"

// TestKernelEnv runs this test binary again with FEDGUARD_KERNEL set, so
// that the variable is read by the package initialiser as in production:
// each available path is taken, and a path the CPU lacks makes New refuse.
func TestKernelEnv(t *testing.T) {
	if v, ok := os.LookupEnv("FEDGUARD_KERNEL_CHILD"); ok {
		name, err := Kernel()
		_, newErr := New(Config{Rule: NameMedian, F: 1})
		fmt.Printf("child kernel=%q err=%v new=%v want=%s\n", name, err, newErr, v)
		return
	}
	run := func(env string) string {
		args := []string{os.Args[0], "-test.run=^TestKernelEnv$", "-test.count=1"}
		if emu := os.Getenv(envEmulator); emu != "" {
			args = append([]string{emu}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), EnvKernel+"="+env, "FEDGUARD_KERNEL_CHILD="+env)
		out, err := cmd.CombinedOutput()
		if errors.Is(err, syscall.ENOEXEC) {
			// A cross-compiled binary under qemu-user cannot exec itself
			// unless binfmt_misc is set up or FEDGUARD_TEST_EMULATOR
			// names the emulator.
			t.Skipf("cannot run the test binary again here: %v", err)
		}
		if err != nil {
			t.Fatalf("%s=%s: %v\n%s", EnvKernel, env, err, out)
		}
		for line := range strings.Lines(string(out)) {
			if strings.HasPrefix(line, "child ") {
				return strings.TrimSpace(line)
			}
		}
		t.Fatalf("%s=%s: no report in\n%s", EnvKernel, env, out)
		return ""
	}
	avail := KernelPaths()
	for _, name := range avail {
		want := fmt.Sprintf("child kernel=%q err=<nil> new=<nil> want=%s", name, name)
		if got := run(name); got != want {
			t.Errorf("got %s\nwant %s", got, want)
		}
	}
	for _, name := range append(pathNames[:], "bogus") {
		if strings.Contains(strings.Join(avail, ","), name) {
			continue
		}
		got := run(name)
		if !strings.Contains(got, `kernel=""`) || !strings.Contains(got, "new=aggregation: kernel path unavailable: FEDGUARD_KERNEL=") {
			t.Errorf("%s=%s: %s, want a refusal from Kernel and New", EnvKernel, name, got)
		}
	}
}

// TestPathsSameBits runs every rule on every kernel path the CPU offers
// and wants the portable path's bits, over sizes that exercise the partial
// SIMD groups, the partial 2048-coordinate blocks and short tiles.
func TestPathsSameBits(t *testing.T) {
	avail := availablePaths()
	if len(avail) < 2 {
		t.Skip("only the portable path on this CPU or build")
	}
	saved := kernel
	defer func() { kernel = saved }()
	rules := []string{NameFedAvg, NameMedian, NameTrimmedMean, NameKrum, NameMultiKrum, NameBulyan, NameCenteredClipping}
	ns := []int{1, 2, 3, 4, 5, 7, 9, 16, 17, 33}
	ds := []int{1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 2047, 2049, 4096 + 24 + 3, 8192 + 5, 20011}
	rng := rand.New(rand.NewPCG(16, 2))
	for _, kind := range kernelKinds {
		for _, n := range ns {
			for _, d := range ds {
				if n*d > 200000 || (raceEnabled || testing.Short()) && n*d > 40000 {
					continue
				}
				xs := kernelInputs(rng, kind, n, d)
				updates := make([]Update, n)
				for i, x := range xs {
					updates[i] = Update{ID: fmt.Sprintf("u%02d", i), Delta: x, Samples: uint64(1 + i%5)}
				}
				for _, rule := range rules {
					cfg := Defaults(rule, n, -1)
					if cfg.CheckCohort(n) != nil {
						continue
					}
					r, err := New(cfg)
					if err != nil {
						t.Fatal(err)
					}
					run := func(p kernelPath) ([]float32, error) {
						kernel = p
						dst := make([]float32, d)
						_, err := r.Aggregate(dst, updates)
						return dst, err
					}
					want, wantErr := run(pathPurego)
					for _, p := range avail[1:] {
						got, err := run(p)
						if (err == nil) != (wantErr == nil) {
							t.Fatalf("%s %s/n=%d/d=%d: err %v, purego %v", p, kind, n, d, err, wantErr)
						}
						if !sameBits(got, want) {
							t.Fatalf("%s %s %s/n=%d/d=%d: result differs from purego", p, rule, kind, n, d)
						}
					}
				}
			}
		}
	}
}

// TestSort16SameBits compares the sorted rows themselves, where the rules'
// outputs cannot tell −0 from +0 (a float64 sum from +0 erases the sign):
// every path must make the min/max choices of networkRowsGeneric.
func TestSort16SameBits(t *testing.T) {
	saved := kernel
	defer func() { kernel = saved }()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{2, 3, 5, 16, 33} {
		xs := kernelInputs(rng, "ties", n, 64)
		for _, rank := range [][2]int{{0, n}, {n / 2, n/2 + 1}} {
			net := sortNetwork(n, rank[0], rank[1])
			for off := 0; off+lanes <= 64; off += lanes {
				want := alignedFloats(n * lanes)
				kernel = pathPurego
				sort16(want, xs, off, net)
				for _, p := range availablePaths()[1:] {
					kernel = p
					got := alignedFloats(n * lanes)
					sort16(got, xs, off, net)
					if !sameBits(got, want) {
						t.Fatalf("%s: n=%d ranks %v off=%d: sorted rows differ from purego", p, n, rank, off)
					}
				}
			}
		}
	}
}
