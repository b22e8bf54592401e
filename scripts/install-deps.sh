#!/usr/bin/env bash
# Installs what building, the demo and the tests need on Debian 12, from Debian's packages,
# npm and PyPI only (no browser or toolchain downloads). Idempotent: skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(
  pkg-config build-essential libasound2-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-nice gstreamer1.0-alsa gstreamer1.0-pipewire gstreamer1.0-tools gstreamer1.0-libav
  pipewire pipewire-bin pipewire-pulse pipewire-alsa wireplumber dbus dbus-bin
  alsa-utils sox chromium iproute2 procps openssl coturn systemd
  dpkg-dev debhelper lintian help2man debootstrap
)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python yardsticks for the tests (PESQ). numpy/scipy come as wheels; pesq builds with gcc.
if ! python3 -c 'import pesq, numpy, scipy' 2>/dev/null; then
  echo "install-deps: pip install -r tests/requirements.txt"
  python3 -m pip install -q -r tests/requirements.txt
fi

# Node driver for Debian's Chromium (never downloads a browser).
if [ ! -d tests/e2e/node_modules/puppeteer-core ]; then
  echo "install-deps: npm ci in tests/e2e"
  (cd tests/e2e && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi

# JS SDK build and unit tests (rollup, ws; no browser download).
if [ ! -d sdk/js/node_modules/rollup ] || [ ! -d sdk/js/node_modules/ws ]; then
  echo "install-deps: npm ci in sdk/js"
  # `npm install`, not `npm ci`: the lock names only the rollup native packages the registry
  # here serves (linux x64/arm64), and `npm ci` insists on an entry for every platform's.
  (cd sdk/js && npm install --no-audit --no-fund --silent)
fi

# Offline linter for the Yocto layer (tests/yocto/lint.sh).
if ! command -v oelint-adv >/dev/null; then
  echo "install-deps: pip install -r tests/yocto/requirements.txt"
  python3 -m pip install -q -r tests/yocto/requirements.txt
fi
