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
cargo build --release --locked --workspace --bins
(cd sdk/js && npm run --silent build)
mkdir -p tests/out
echo "== placing the call (about 30 s)"
# The summary and checks go to stderr; the full JSON report (timeline, getStats, footprint)
# is written to tests/out/demo.json.
status=0
node tests/e2e/run.mjs --mode sdk --codec opus --offerer A --duration 20 \
  --out tests/out/demo.json "$@" > /dev/null || status=$?
echo "full report: tests/out/demo.json"
exit "$status"
