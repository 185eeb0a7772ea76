# qrauth — top-level build.  `make` builds; `make test` runs every test; `make demo` runs the product.
PREFIX ?= /usr/local
NPM ?= npm

.PHONY: all build module ts app deps deps-demo test test-c test-js demo bench bench-app bench-scale bench-qr bench-schema fuzz clean

all: build

# Debian packages (apt-get, only what is missing) and node_modules (npm ci): see .ci/deps.sh.
deps:
	bash .ci/deps.sh

deps-demo:
	bash .ci/deps.sh demo

build: module ts app

module:
	$(MAKE) -C pam_qrauth all

# node_modules when missing (make test and make demo run npm ci through .ci/deps.sh first).
node_modules/.package-lock.json:
	$(NPM) ci --no-audit --no-fund

ts: | node_modules/.package-lock.json
	npx tsc -p tsconfig.json

# The phone app (ionic-app/dist, a static folder for a web server of its own origin): rebuilt only when its or the
# protocol's sources change. Built here, once, so the app tests never build it in parallel.
APP_SOURCES := $(shell find ionic-app/src ionic-app/public ionic-app/sw protocol/src -type f 2>/dev/null) \
	ionic-app/index.html ionic-app/vite.config.ts ionic-app/tsconfig.json ionic-app/package.json

app: ionic-app/dist/index.html

ionic-app/dist/index.html: $(APP_SOURCES) | node_modules/.package-lock.json
	NODE_ENV=production $(NPM) run build -w ionic-app
	@touch $@

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

# The phone app's loading path, ionic-app at HEAD (a worktree in /tmp/qra-before) beside this tree, in Chromium
# with Lighthouse's mobile throttling (Fast 3G, CPU x4): bytes and time to a live scanner, cold, warm, offline;
# then Lighthouse 12 (mobile) on both. BEFORE=<commit> compares with another commit. About 10 minutes.
bench-app: app
	npx tsx bench/app-load.ts --before $(or $(BEFORE),HEAD) --runs 5 --lighthouse

# The terminal QR read by jsQR and ZXing over 2,000 fixed-seed payloads (about half an hour on 2 cores).
bench-qr: | node_modules/.package-lock.json
	npx tsx bench/qr-corpus.ts

# What checking one message against its schema costs (protocol/src/validate.ts); BEFORE=<commit> compares.
bench-schema: | node_modules/.package-lock.json
	npx tsx bench/schema-check.ts $(if $(BEFORE),--before $(BEFORE))

# Three relay nodes + redis-server + HAProxy, ~57,000 simulated hosts, cross-node approvals and a
# node killed under load (issue 16); about 5 minutes, loopback only. Needs haproxy and redis-server.
bench-scale: build
	npx tsx bench/scale.ts

clean:
	$(MAKE) -C pam_qrauth clean
	rm -rf dist test-artifacts ionic-app/dist

# ---------------------------------------------------------------------------------------------
# make install / make uninstall (DESTDIR for packaging). The PAM module goes where libpam looks;
# the agent, CLI and relay (compiled JS + production node_modules) under $(PREFIX)/lib/qrauth,
# with small wrappers on PATH; units, sysusers, a default /etc/qrauth/agent.json (never
# overwritten), man pages when docs/ has them. Then: docs/install.md.
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
QRAUTH_LIBDIR ?= $(PREFIX)/lib/qrauth
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
PAMDIR ?= $(shell d=$$(pkg-config --variable=libdir pam 2>/dev/null); [ -n "$$d" ] || d=/lib/$$(gcc -print-multiarch); echo $$d/security)
NODE ?= $(shell command -v node)
# Tests build in their own BUILDDIR so that parallel test files do not share one tree.
BUILDDIR ?= build
STAGE = $(BUILDDIR)/stage

.PHONY: dist-js stage relay-image

# Only what ships (not the tests), so an unrelated type error in a test cannot block an install.
dist-js:
	@test -f node_modules/.package-lock.json || $(NPM) ci --no-audit --no-fund
	npx tsc -p tsconfig.dist.json --outDir $(BUILDDIR)/dist

# $(BUILDDIR)/stage = the content of $(QRAUTH_LIBDIR): compiled JS and the production dependencies of
# agent, relay and protocol, copied from the local node_modules (no network needed).
stage: dist-js
	rm -rf $(STAGE)
	mkdir -p $(STAGE)
	cp -a $(BUILDDIR)/dist/protocol $(BUILDDIR)/dist/agent $(BUILDDIR)/dist/relay $(STAGE)/
	printf '{ "name": "qrauth", "version": "0.1.0", "private": true, "type": "module" }\n' > $(STAGE)/package.json
	$(NODE) scripts/prod-modules.mjs agent relay protocol > $(BUILDDIR)/prod-modules.txt
	@test -s $(BUILDDIR)/prod-modules.txt || { echo "no production modules found: run npm ci first" >&2; exit 1; }
	tar -cf - -T $(BUILDDIR)/prod-modules.txt | tar -xf - -C $(STAGE)
	# sodium-native ships prebuilt addons for a dozen platforms; keep this one.
	keep=$$($(NODE) -p 'process.platform + "-" + process.arch'); \
	  find $(STAGE)/node_modules/sodium-native/prebuilds -mindepth 1 -maxdepth 1 ! -name "$$keep" -exec rm -rf {} +

install: module stage
	install -d $(DESTDIR)$(PAMDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(SYSCONFDIR)/qrauth $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 pam_qrauth/pam_qrauth.so $(DESTDIR)$(PAMDIR)/pam_qrauth.so
	rm -rf $(DESTDIR)$(QRAUTH_LIBDIR)
	install -d $(DESTDIR)$(QRAUTH_LIBDIR)
	cp -R $(STAGE)/. $(DESTDIR)$(QRAUTH_LIBDIR)/
	chmod -R u=rwX,go=rX $(DESTDIR)$(QRAUTH_LIBDIR)
	# Wrappers find the code relative to themselves, so a DESTDIR tree runs as installed.
	for w in $(BINDIR)/qrauth:agent/src/cli.js $(SBINDIR)/qrauth-agent:agent/src/main.js $(BINDIR)/qrauth-relay:relay/src/main.js; do \
	  path=$${w%%:*}; js=$${w#*:}; rel=$$(realpath -m --relative-to=$$(dirname $$path) $(QRAUTH_LIBDIR)); \
	  printf '#!/bin/sh\n# Installed by qrauth make install.\nexec %s "$$(dirname "$$(readlink -f "$$0")")/%s/%s" "$$@"\n' "$(NODE)" "$$rel" "$$js" > $(DESTDIR)$$path; \
	  chmod 0755 $(DESTDIR)$$path; \
	done
	for u in qrauth-agent.socket qrauth-agent.service qrauth-relay.service; do \
	  sed -e 's#/usr/local/sbin/#$(SBINDIR)/#g' -e 's#/usr/local/bin/#$(BINDIR)/#g' -e 's#/etc/qrauth/#$(SYSCONFDIR)/qrauth/#g' \
	    systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u; \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; \
	done
	install -m 0644 systemd/qrauth.conf $(DESTDIR)$(SYSUSERSDIR)/qrauth.conf
	# The admin's config is never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/qrauth/agent.json ] || install -m 0644 agent/etc/agent.json $(DESTDIR)$(SYSCONFDIR)/qrauth/agent.json
	[ ! -f docs/qrauth.1 ] || install -m 0644 docs/qrauth.1 $(DESTDIR)$(MANDIR)/man1/qrauth.1
	[ ! -f docs/pam_qrauth.8 ] || install -m 0644 docs/pam_qrauth.8 $(DESTDIR)$(MANDIR)/man8/pam_qrauth.8
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null && [ -d /run/systemd/system ]; then \
	  systemd-sysusers $(SYSUSERSDIR)/qrauth.conf && systemctl daemon-reload; \
	  echo "next: systemctl enable --now qrauth-agent.socket qrauth-agent.service; then docs/install.md"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PAMDIR)/pam_qrauth.so
	rm -rf $(DESTDIR)$(QRAUTH_LIBDIR)
	rm -f $(DESTDIR)$(BINDIR)/qrauth $(DESTDIR)$(SBINDIR)/qrauth-agent $(DESTDIR)$(BINDIR)/qrauth-relay
	rm -f $(DESTDIR)$(UNITDIR)/qrauth-agent.socket $(DESTDIR)$(UNITDIR)/qrauth-agent.service $(DESTDIR)$(UNITDIR)/qrauth-relay.service
	rm -f $(DESTDIR)$(SYSUSERSDIR)/qrauth.conf $(DESTDIR)$(MANDIR)/man1/qrauth.1 $(DESTDIR)$(MANDIR)/man8/pam_qrauth.8
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/qrauth/agent.json (your config), /var/lib/qrauth (the host key) and the qrauth user"

# Debian packages qrauth and qrauth-relay in $(BUILDDIR)/deb/ (needs debhelper, lintian): the module
# and $(STAGE) as built above, plus debian/, copied to $(BUILDDIR)/deb/qrauth-<version>/ where
# dpkg-buildpackage runs, so the checkout gets no build files. One version: package.json's;
# debian/changelog is generated from it (and the last commit's date), never edited by hand.
DEB_VERSION = $(shell $(NODE) -p 'require("./package.json").version')
DEB_SRC = $(BUILDDIR)/deb/qrauth-$(DEB_VERSION)
.PHONY: deb
deb: module stage
	rm -rf $(BUILDDIR)/deb
	mkdir -p $(DEB_SRC)/build $(DEB_SRC)/pam_qrauth $(DEB_SRC)/docs $(DEB_SRC)/agent/etc
	cp -a debian systemd $(DEB_SRC)/
	cp -a $(STAGE) $(DEB_SRC)/build/stage
	# The node_modules each program needs, as `make stage` lists them for all three together.
	for w in agent relay; do \
	  $(NODE) scripts/prod-modules.mjs $$w protocol > $(DEB_SRC)/build/$$w-modules.txt || exit 1; \
	done
	cp pam_qrauth/pam_qrauth.so $(DEB_SRC)/pam_qrauth/
	cp docs/qrauth.1 docs/pam_qrauth.8 $(DEB_SRC)/docs/
	cp agent/etc/agent.json $(DEB_SRC)/agent/etc/
	{ printf 'qrauth (%s) unstable; urgency=medium\n\n  * Built by make deb from the qrauth tree (changes: git log).\n\n' '$(DEB_VERSION)'; \
	  printf ' -- %s  %s\n' "$$(sed -n 's/^Maintainer: //p' debian/control)" \
	    "$$(date -R -u -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))"; } > $(DEB_SRC)/debian/changelog
	cd $(DEB_SRC) && dpkg-buildpackage -b --no-sign
	lintian --fail-on error --suppress-tags-from-file /dev/null $(BUILDDIR)/deb/*.changes
	@ls $(BUILDDIR)/deb/*.deb

# The relay container (relay/Dockerfile). RELAY_BASE_IMAGE is any image with node >= 20 on PATH and /bin/sh;
# it is not pulled when it exists locally. The build context is $(STAGE) (no network needed).
RELAY_IMAGE ?= qrauth-relay:latest
RELAY_BASE_IMAGE ?= docker.io/library/node:20-bookworm-slim
CONTAINER ?= podman
# podman writes OCI images by default, which drop HEALTHCHECK; the docker format keeps it.
CONTAINER_BUILD_FLAGS ?= $(if $(filter podman,$(notdir $(CONTAINER))),--format docker)
relay-image: stage
	cp relay/.dockerignore $(STAGE)/.dockerignore
	$(CONTAINER) build $(CONTAINER_BUILD_FLAGS) --build-arg BASE=$(RELAY_BASE_IMAGE) -f relay/Dockerfile -t $(RELAY_IMAGE) $(STAGE)
