#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (protocol, daemon with real GStreamer and
# headless PipeWire, bridge), the SDK's tests, and the end-to-end call matrix (headless
# Chromium ↔ vdimediad through the bridge, scored with PESQ). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export CARGO_TERM_COLOR=never

echo "== build (release binaries for the end-to-end tests)"
cargo build --release --locked --workspace --bins

echo "== cargo test"
cargo test --locked --workspace

echo "== SDK"
(cd sdk/js && npm run --silent build && npm test)

echo "== end-to-end calls"
node --test --test-concurrency=1 tests/e2e/
