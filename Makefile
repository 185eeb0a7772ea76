# qrauth — top-level build.  `make` builds; `make test` runs every test; `make demo` runs the product.
PREFIX ?= /usr/local
NPM ?= npm

.PHONY: all build module ts test test-c test-js demo bench fuzz clean install uninstall

all: build

build: module ts

module:
	$(MAKE) -C pam_qrauth all

node_modules/.package-lock.json: package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

ts: node_modules/.package-lock.json
	npx tsc -p tsconfig.json

# The whole suite: C unit/module tests (also under valgrind), a short fixed-seed fuzz run,
# then every ava test (unit and end-to-end with real sshd, ssh, Redis, Chromium).
# Ends with one line "N passed, M failed" and exits non-zero on any failure.
test: build
	bash test/run-all.sh

test-c: module
	$(MAKE) -C pam_qrauth check fuzz-smoke

test-js: build
	npx ava

demo: build
	npx tsx test/support/demo.ts

fuzz:
	$(MAKE) -C pam_qrauth fuzz

bench: build
	npx tsx bench/run.ts

clean:
	$(MAKE) -C pam_qrauth clean
	rm -rf dist test-artifacts
