#!/usr/bin/env bash
# Install what building, running and testing qrauth needs on Debian 12, as root.
# Idempotent and quick when everything is there: apt runs only for missing packages.
#   .ci/deps.sh          everything (tests included)
#   .ci/deps.sh demo     only what `make demo` needs
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(build-essential pkg-config libpam0g-dev openssh-server openssh-client)
test_pkgs=(pamtester valgrind clang libclang-rt-14-dev redis-server chromium sudo debootstrap util-linux passwd ca-certificates fonts-dejavu-core podman runc systemd uidmap python3 debhelper lintian systemd-container iproute2 putty-tools dropbear-bin)
pkgs=("${build_pkgs[@]}")
[ "${1:-all}" = demo ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "qrauth: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v node >/dev/null || { echo "qrauth: Node.js 20 or newer is needed (apt-get install nodejs, or nodesource)" >&2; exit 1; }
# npm ci when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
