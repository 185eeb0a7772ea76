# qrauth — top-level build.  `make` builds; `make test` runs every test; `make demo` runs the product.
PREFIX ?= /usr/local
NPM ?= npm

.PHONY: all build module ts deps deps-demo test test-c test-js demo bench fuzz clean

all: build

# Debian packages (apt-get, only what is missing) and node_modules (npm ci): see .ci/deps.sh.
deps:
	bash .ci/deps.sh

deps-demo:
	bash .ci/deps.sh demo

build: module ts

module:
	$(MAKE) -C pam_qrauth all

ts:
	@test -f node_modules/.package-lock.json || $(NPM) ci --no-audit --no-fund
	npx tsc -p tsconfig.json

# The whole suite: C unit/module tests (also under valgrind), a short fixed-seed fuzz run,
# then every ava test (unit and end-to-end with real sshd, ssh, Redis, Chromium).
# Ends with one line "N passed, M failed" and exits non-zero on any failure.
test: deps
	$(MAKE) build
	bash test/run-all.sh

test-c: module
	$(MAKE) -C pam_qrauth check fuzz-smoke

test-js: build
	npx ava

demo: deps-demo
	$(MAKE) build
	node --import tsx test/support/demo.ts

fuzz:
	$(MAKE) -C pam_qrauth fuzz

bench: build
	npx tsx bench/run.ts

clean:
	$(MAKE) -C pam_qrauth clean
	rm -rf dist test-artifacts
