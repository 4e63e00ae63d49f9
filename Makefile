# ca-proxy — the two set-up commands are `make run` and `make test` (README.md).
SHELL := /bin/bash
NODE_MODULES_STAMP := node_modules/.install-stamp

.PHONY: run test build demo bench fuzz clean deps

$(NODE_MODULES_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NODE_MODULES_STAMP)

build: deps
	npx tsc -p tsconfig.json

# Starts the standalone proxy with the embedded default configuration and a development PKI under .local/.
run: build
	node dist/scripts/dev-pki.js .local
	node dist/cmd/ca-proxy/main.js run --dev .local

test: build
	node dist/scripts/test.js

demo: build
	node dist/scripts/dev-pki.js .local
	node dist/scripts/demo.js .local

bench: build
	node dist/bench/run.js

# Longer property runs of inspect's parsing (test/unit/engine/fuzz.test.ts; `make test` runs 300 cases
# with a fixed seed). Override the count with CA_PROXY_FUZZ_RUNS=N; the random seed is printed.
fuzz: build
	CA_PROXY_FUZZ_RUNS=$${CA_PROXY_FUZZ_RUNS:-200000} npx jest --config jest.config.js --testTimeout=0 dist/test/unit/engine/fuzz.test.js

clean:
	rm -rf dist
