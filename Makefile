# fedguard: the two commands a new machine needs are `make demo` and `make test`.
GO      ?= go
TOOL    := $(GO) tool -modfile=tools/go.mod
BUF     := $(TOOL) buf
BIN     := bin/fedguard
PKGS    := ./...

.PHONY: all build build-static image image-test release release-verify test test-short test-arm64 demo proto proto-check asm asm-check bench lint fuzz deploy-check soak clean

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/fedguard

# Static binaries, for the container image and releases: no cgo, no build
# paths, no build ID, so that the same source builds the same bytes.
ARCH    ?= $(shell $(GO) env GOARCH)
STATIC  := CGO_ENABLED=0 GOOS=linux $(GO) build -buildvcs=auto -trimpath -ldflags=-buildid=

# bin/fedguard-linux-$(ARCH) (ARCH=arm64 for another architecture).
build-static:
	$(STATIC) -o bin/fedguard-linux-$(ARCH) ./cmd/fedguard

# The container image (Containerfile): the static binary in an empty image,
# built with podman. See docs/deploy.md.
PODMAN  ?= podman
IMAGE   ?= localhost/fedguard:dev
image: build-static
	$(PODMAN) build --platform linux/$(ARCH) -f Containerfile -t $(IMAGE) .

# A federation through the image: the coordinator in the container (read-only
# root, unprivileged user, data volume), two hospitals on the host, three
# rounds, then the audit log verified. Needs rootful podman; the test's
# containers.conf is integration/testdata/containers.conf.
image-test: image
	FEDGUARD_IMAGE=$(IMAGE) $(GO) test -count=1 -run '^TestContainer' -v ./integration

# A release in dist/: static binaries for linux/amd64 and linux/arm64, a
# CycloneDX SBOM of each (cyclonedx-gomod, pinned in tools/go.mod),
# SHA256SUMS, and cosign signatures of SHA256SUMS and of the SBOMs with
# RELEASE_KEY (a cosign key, unlocked by COSIGN_PASSWORD; cosign is pinned in
# tools/cosign/go.mod). See docs/release.md.
RELEASE_KEY ?= cosign.key
RELEASE_PUB ?= cosign.pub
release:
	GO="$(GO)" RELEASE_KEY="$(RELEASE_KEY)" deploy/release/build.sh dist

# Checks dist/ offline as a hospital would: the signatures with RELEASE_PUB
# (cosign and openssl), the checksums, each SBOM against its binary.
release-verify:
	GO="$(GO)" RELEASE_PUB="$(RELEASE_PUB)" deploy/release/verify.sh dist

# The test command CI runs: vet, then every test (integration tests too) under the race detector,
# then, without it, the packages whose tests run full-size only without it (NORACE_PKGS).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -timeout 20m $(NORACE_PKGS)

# The packages with number-crunching tests that the race detector slows
# five to seven times and that find no more races at full size than at a
# smaller one: under -race they run smaller or not at all (each package's
# raceEnabled constant says where), and here whole and in full: every
# dropout pattern of secagg, the big kernel sizes of aggregation, the MNIST
# runs of simulation; about 45 s of CPU. internal/doccheck's
# TestRaceGatedPackagesRunWithoutRace keeps this list complete.
NORACE_PKGS := ./aggregation ./aggregation/secagg ./simulation

# The unit tests in short mode, for the edit-test loop: no race detector,
# and every long run (exhaustive dropout patterns, big kernel sweeps,
# process-heavy integration tests) skips itself with -short and says that
# `make test` runs it. -parallel 4: the parallel tests (coordinator's,
# mostly) wait on timers, sockets and fsync more than they compute, so
# twice GOMAXPROCS of them at once shortens the run without starving them.
test-short:
	TMPDIR=$(SHORT_TMPDIR) $(GO) test -short -count=1 -parallel 4 $(PKGS)

# The short tests make many small bbolt files and fsync each commit. On a
# tmpfs an fsync costs nothing (the coordinator's short tests ran 25-30 %
# faster in alternating runs), and what these tests check does not depend
# on it: a killed process leaves the same files on either. `make test`
# keeps the real disk. /dev/shm is used only when it allows executing
# files, which the trainer tests need.
SHORT_TMPDIR := $(or $(shell findmnt -no OPTIONS /dev/shm 2>/dev/null | grep -qv noexec && echo /dev/shm),$(TMPDIR),/tmp)

# The aggregation kernels on arm64, cross-compiled and run under
# qemu-user-static (Debian package qemu-user-static): the NEON path against
# the portable one bit for bit, and FEDGUARD_KERNEL=neon|purego read at
# start-up (TestKernelEnv runs the binary again through the emulator).
# Correctness only: qemu says nothing about speed.
QEMU_ARM64 ?= qemu-aarch64-static
test-arm64:
	GOARCH=arm64 $(GO) test -c -o bin/aggregation-arm64.test ./aggregation
	cd aggregation && FEDGUARD_TEST_EMULATOR=$(QEMU_ARM64) $(QEMU_ARM64) ../bin/aggregation-arm64.test -test.short -test.count=1

# A whole federation on loopback: CA, coordinator, four hospitals, 20 rounds.
demo: build
	./$(BIN) demo

# Regenerate the Go code of the wire contract (tools pinned in go.mod and tools/go.mod).
proto:
	$(BUF) lint
	$(BUF) generate

# Fails when the committed generated code differs from what `make proto` makes.
proto-check: proto
	@git diff --exit-code -- proto/ || { echo "generated protobuf code is stale: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto/)" || { git status --porcelain -- proto/; echo "untracked generated files: run 'make proto' and commit"; exit 1; }

# Regenerate the AVX2 kernels (aggregation/kernel_avx2_amd64.s and their Go
# declarations) and the generated AVX-512 ones (kernel_avx512gen_amd64.s)
# from their avo description in aggregation/internal/asm, a module of its
# own so that avo stays out of the main module.
asm:
	cd aggregation && $(GO) generate -run 'internal/asm' .

ASM_GEN := $(addprefix aggregation/,kernel_avx2_amd64.s kernel_avx2_stubs_amd64.go kernel_avx512gen_amd64.s kernel_avx512gen_stubs_amd64.go)

# Fails when the committed generated assembly differs from what `make asm`
# makes, or (with llvm-mc) when a WORD of the hand-written NEON kernels is
# not the instruction its comment names.
asm-check: asm
	@git diff --exit-code -- $(ASM_GEN) || { echo "generated assembly is stale: run 'make asm' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(ASM_GEN))" || { echo "untracked generated assembly: run 'make asm' and commit"; exit 1; }
	@if command -v llvm-mc >/dev/null; then cd aggregation/internal/asm && $(GO) run ./neonwords ../../kernel_arm64.s; \
	elif [ "$$CI" = true ]; then echo "asm-check: llvm-mc not installed (Debian package llvm): CI must check the NEON words of kernel_arm64.s"; exit 1; \
	else echo "asm-check: llvm-mc not installed (Debian package llvm): the NEON words of kernel_arm64.s are not checked"; fi

# Go benchmarks, then the end-to-end round benchmark.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	./$(BIN) bench round --participants 10 --params 10000000

# Lint: vet, staticcheck (pinned in tools/go.mod), gofmt, buf lint.
lint:
	$(GO) vet $(PKGS)
	$(TOOL) staticcheck $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); test -z "$$out" || { echo "gofmt needed: $$out"; exit 1; }
	$(BUF) lint

# The Prometheus alert rules in deploy/: syntax, then their unit tests
# (promtool from Debian's prometheus package; .ci/run installs it). The Go
# test TestDeployReferencesExist checks the metric names they use.
# Then the systemd units: `systemd-analyze verify` must print nothing, and
# `systemd-analyze security` must score them 2.0 or better.
deploy-check: build
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml
	deploy/systemd/verify.sh $(BIN)

# Short fuzzing of every parser (FUZZTIME=1m for longer). Go before 1.27 can
# fail a target at the end of -fuzztime with "context deadline exceeded" and
# no failing input (go.dev/issue/75804); such a target runs once more, and
# only a second failure, or any that wrote a failing input, stops the run.
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    for try in 1 2; do \
	      out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2000x $$pkg 2>&1); rc=$$?; \
	      printf '%s\n' "$$out"; \
	      [ $$rc -eq 0 ] && break; \
	      if [ $$try -eq 1 ] && ! printf '%s\n' "$$out" | grep -q 'Failing input written to' && \
	         printf '%s\n' "$$out" | grep -qx '    context deadline exceeded'; then \
	        echo "(no failing input: the -fuzztime race of go.dev/issue/75804; running $$f again)"; continue; \
	      fi; \
	      exit 1; \
	    done; \
	  done; \
	done

# The soak test (issue 12; not in CI, not in `make test`): real coordinator and
# hospital processes, random kills, a full disk, a slow and a flooding client,
# in plain and secure mode, then the data checked. Mounts a tmpfs (root);
# SOAK_DURATION=5m shortens it, SOAK_SEED repeats a run's choices.
SOAK_DURATION ?= 30m
soak:
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -tags soak -run '^TestSoak$$' -count=1 -v -timeout 3h ./integration

clean:
	rm -rf bin dist
