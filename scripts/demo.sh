#!/usr/bin/env bash
# The main job: one real redirected call on this machine, then its report. Page A (the agent's
# softphone, using the SDK) calls page B (Chromium's native WebRTC) through vdimedia-bridge and
# vdimediad, with headless PipeWire as the endpoint's devices. Installs what is missing first.
#
#   scripts/demo.sh [--codec opus|G722|PCMU] [--offerer A|B] [--duration SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
echo "== building"
cargo build --release --locked --workspace --bins 2>&1 | tail -n 1
(cd sdk/js && npm run --silent build)
mkdir -p tests/out
echo "== placing the call"
exec node tests/e2e/run.mjs --mode sdk --codec opus --offerer A --duration 20 \
  --out tests/out/demo.json "$@"
