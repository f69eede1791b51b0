# fedguard: the two commands a new machine needs are `make demo` and `make test`.
GO      ?= go
TOOL    := $(GO) tool -modfile=tools/go.mod
BUF     := $(TOOL) buf
BIN     := bin/fedguard
PKGS    := ./...

.PHONY: all build test demo proto proto-check bench lint fuzz deploy-check soak clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/fedguard

# The test command CI runs: vet, then every test (integration tests too) under the race detector.
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

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

# The soak test (issue 12; not in CI, not in `make test`): real coordinator and
# hospital processes, random kills, a full disk, a slow and a flooding client,
# in plain and secure mode, then the data checked. Mounts a tmpfs (root);
# SOAK_DURATION=5m shortens it, SOAK_SEED repeats a run's choices.
SOAK_DURATION ?= 30m
soak:
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -tags soak -run '^TestSoak$$' -count=1 -v -timeout 3h ./integration

clean:
	rm -rf bin
