#!/usr/bin/env bash
# G.722 report for docs/benchmarks.md: correctness of g722enc/g722dec against gst-libav
# (avenc_g722/avdec_g722) on speech, and encode+decode CPU per second of audio.
#
# Usage: bench/g722/report.sh [OUT_DIR]   (needs gstreamer1.0-libav, python3 pesq + numpy + scipy)
# Builds the plugin in release mode; prints a markdown section on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-$(mktemp -d /tmp/g722-report.XXXXXX)}
mkdir -p "$OUT"
cargo build --release -q -p gst-plugin-vdimedia --lib
G722_REPORT_DIR="$OUT" cargo test --release -q -p gst-plugin-vdimedia --test g722_codec \
  -- --ignored --exact g722_report --nocapture >"$OUT/test.log" 2>&1 || { cat "$OUT/test.log"; exit 1; }
GST_PLUGIN_PATH="$PWD/target/release" python3 bench/g722/report.py "$OUT"
