# ca-proxy — the two set-up commands are `make run` and `make test` (README.md).
SHELL := /bin/bash
NODE_MODULES_STAMP := node_modules/.install-stamp

.PHONY: run test build demo bench fuzz clean deps image

$(NODE_MODULES_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NODE_MODULES_STAMP)

# tsc runs only when a TypeScript source, the tsconfig or the dependencies changed since the last
# build (the stamp), so `make run` and `make demo` start at once the second time.
TS_SOURCES := $(shell find cmd internal test bench scripts -name '*.ts' -not -path '*/node_modules/*' 2>/dev/null)
BUILD_STAMP := dist/.build-stamp

$(BUILD_STAMP): $(TS_SOURCES) tsconfig.json $(NODE_MODULES_STAMP)
	npx tsc -p tsconfig.json
	@touch $@

build: $(BUILD_STAMP)

# Starts the standalone proxy with the embedded default configuration and a development PKI under .local/.
run: build
	node dist/scripts/dev-pki.js .local
	node dist/cmd/ca-proxy/main.js run --dev .local

test: build
	node dist/scripts/test.js

demo: build
	node dist/scripts/dev-pki.js .local
	node dist/scripts/demo.js .local

# Side by side with HAProxy, nginx and stunnel (docs/benchmarks.md; sized for under 15 minutes on 2 quiet cores).
# QUICK=1: a short smoke run; TRANSFER_MIB=N: the long transfer's size; ONLY=id,id: some scenarios;
# BENCH_ARGS: more flags of bench/run.ts (--no-install, --final, --provisional, --rounds N).
bench: build
	node dist/bench/run.js $(if $(QUICK),--quick) $(if $(TRANSFER_MIB),--transfer-mib $(TRANSFER_MIB)) $(if $(ONLY),--only $(ONLY)) $(BENCH_ARGS)

# Longer property runs of inspect's parsing (test/unit/engine/fuzz.test.ts; `make test` runs 300 cases
# with a fixed seed). Override the count with CA_PROXY_FUZZ_RUNS=N; the random seed is printed.
fuzz: build
	CA_PROXY_FUZZ_RUNS=$${CA_PROXY_FUZZ_RUNS:-200000} npx jest --config jest.config.js --testTimeout=0 dist/test/unit/engine/fuzz.test.js

# The one container image every component runs (deploy/image/Dockerfile), for a machine with a
# container engine: `make image IMAGE=registry.example/ca-proxy:0.1.0 DOCKER=podman`.
DOCKER ?= docker
IMAGE ?= ca-proxy:$(shell node -p "require('./package.json').version")
image:
	$(DOCKER) build -f deploy/image/Dockerfile -t $(IMAGE) .

clean:
	rm -rf dist
