# fedguard: the two commands a new machine needs are `make demo` and `make test`.
GO      ?= go
TOOL    := $(GO) tool -modfile=tools/go.mod
BUF     := $(TOOL) buf
BIN     := bin/fedguard
PKGS    := ./...

.PHONY: all build test test-arm64 demo proto proto-check asm asm-check bench lint fuzz deploy-check clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/fedguard

# The test command CI runs: vet, then every test (integration tests too) under the race detector.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# The aggregation kernels on arm64 (the portable path; there is no NEON
# path yet), cross-compiled and run under qemu-user-static (Debian package
# qemu-user-static): correctness only, qemu says nothing about speed.
test-arm64:
	GOARCH=arm64 $(GO) test -c -o bin/aggregation-arm64.test ./aggregation
	cd aggregation && qemu-aarch64-static ../bin/aggregation-arm64.test -test.short -test.count=1

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
# declarations) from their avo description in aggregation/internal/asm, a
# module of its own so that avo stays out of the main module.
asm:
	cd aggregation && $(GO) generate -run 'internal/asm' .

# Fails when the committed generated assembly differs from what `make asm` makes.
asm-check: asm
	@git diff --exit-code -- aggregation/kernel_avx2_amd64.s aggregation/kernel_avx2_stubs_amd64.go || { echo "generated assembly is stale: run 'make asm' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- aggregation/kernel_avx2_amd64.s aggregation/kernel_avx2_stubs_amd64.go)" || { echo "untracked generated assembly: run 'make asm' and commit"; exit 1; }

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
deploy-check:
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml

# Short fuzzing of every parser (FUZZTIME=1m for longer).
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2000x $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
