#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (protocol, daemon with real GStreamer and
# headless PipeWire and journald, bridge, our GStreamer elements), the Yocto layer's lint, the
# fuzz targets (bounded time on the kept corpus), the SDK's tests, the end-to-end call matrix (headless Chromium ↔ vdimediad through the bridge,
# scored with PESQ), and the Debian packages installed into a fresh Debian 12 root. Installs
# what is missing first. The arm64 emulated call (tests/arm64/run.sh ci) is not run here yet:
# in one of two clean runs its pc.close hung under qemu after the call stalled (an open bug).
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
