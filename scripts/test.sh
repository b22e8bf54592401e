#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (protocol, daemon with real GStreamer and
# headless PipeWire and journald, bridge, our GStreamer elements), the Yocto layer's lint, the
# fuzz targets (bounded time on the kept corpus), the SDK's tests, the end-to-end calls
# (headless Chromium ↔ vdimediad through the bridge, scored with PESQ; DTMF, TURN, bad pages,
# the native-vs-SDK conformance suite), the Debian packages installed into a fresh Debian 12
# root, and an arm64 build of the daemon running a call under qemu. Installs what is missing
# first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export CARGO_TERM_COLOR=never

echo "== build (release binaries for the end-to-end tests)"
cargo build --release --locked --workspace --bins

echo "== cargo test"
cargo test --locked --workspace

echo "== fuzzing: every cargo-fuzz target 45 s on the corpus in fuzz/corpus (docs/robustness.md)"
scripts/fuzz.sh 45

echo "== Yocto layer (oelint-adv --release wrynose, crates .inc vs Cargo.lock, RDEPENDS vs elements)"
tests/yocto/lint.sh

echo "== SDK"
(cd sdk/js && npm run --silent build && npm test)

echo "== end-to-end calls"
node --test --test-concurrency=1 tests/e2e/

echo "== Debian packages: build (in-tree), lintian, install into a fresh Debian 12 root, units"
tests/packaging/install-test.sh

echo "== arm64: cross-build vdimediad, then a call through it under qemu-aarch64 (decoded audio)"
# The aarch64 standard library comes from rustup (Debian's Rust is too old for the workspace).
# Where rustup cannot fetch it, say so loudly rather than fail every other result with it.
if rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
   || rustup target add aarch64-unknown-linux-gnu; then
  tests/arm64/run.sh ci
else
  echo "== arm64: SKIPPED: rustup could not install the aarch64-unknown-linux-gnu target;" \
       "run tests/arm64/run.sh ci on a machine that can"
fi
