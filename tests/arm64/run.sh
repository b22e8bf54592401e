#!/usr/bin/env bash
# Tests of the aarch64 build under qemu-user emulation (x86-64 host, Debian :arm64 libraries).
#
#   tests/arm64/run.sh ci      # CI: cross-build vdimediad's binaries only, then one 3 s call
#                              # through the emulated daemon, checked on the DECODED audio
#                              # (--playout: both remote tracks into the rig's null sink, each
#                              # side's tone must be heard), and the arm64 GStreamer registry
#   tests/arm64/run.sh smoke   # cross-build with test binaries, unit tests (--lib --bins) under
#                              # qemu, the call (3 s)
#   tests/arm64/run.sh full    # also the daemon's VC integration tests (vc_session) under qemu,
#                              # and a 10 s call
#
# The call: tests/arm64/lib/loopback-call.mjs drives the arm64 vdimediad over its virtual
# channel (as the bridge does): one session, two RTCPeerConnections inside the daemon, each
# sending its own virtual PipeWire mic (the x86-64 PipeWire rig; the arm64 client library speaks
# the same native protocol over the socket), Opus both ways, checked on inbound-rtp.
# Env: CROSS_PROFILE (release by default: emulation is ~10x slower), CALL_SECONDS, NO_PLAYOUT=1
# (check the call on inbound-rtp packet counts only, without the decoded-audio check).
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:-smoke}
case "$mode" in ci|smoke|full) ;; *) echo "usage: $0 ci|smoke|full" >&2; exit 2 ;; esac
target=aarch64-unknown-linux-gnu
profile=${CROSS_PROFILE:-release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cross}
dir_profile=$profile; [ "$profile" = dev ] && dir_profile=debug
out=$CARGO_TARGET_DIR/$target/$dir_profile
t_all=$(date +%s)

if [ "$mode" = ci ]; then
  scripts/cross-build.sh --target "$target" -p vdimediad --bins
else
  scripts/cross-build.sh --target "$target" --tests
fi
echo "arm64: cross-build took $(( $(date +%s) - t_all )) s"
# The same pkg-config sysroot and linker the build used (cargo test below re-checks the build).
eval "$(scripts/cross-build.sh --target "$target" --env)"
eval "$(scripts/qemu-env.sh env)"
mkdir -p "$(dirname "$GST_REGISTRY")"

if [ "$mode" != ci ]; then
echo "== arm64: cargo test under qemu ($mode)"
t=$(date +%s)
# Tests that exec another arm64 binary (the daemon from tests/binary.rs, or the test binary
# re-running itself with another HOME) cannot run here: qemu-user follows exec() of a foreign
# binary only with binfmt_misc, which containers and gVisor lack. They are skipped by name; the
# loopback call below covers the arm64 daemon binary instead.
skip=(--skip media_alsa_mode_with_asoundrc)
cargo test --locked --workspace --profile "$profile" --target "$target" --lib --bins -- "${skip[@]}"
if [ "$mode" = full ]; then
  # The daemon's VC integration tests: real webrtcbin pipelines behind the VC endpoint.
  cargo test --locked --profile "$profile" --target "$target" -p vdimediad --test vc_session -- "${skip[@]}"
fi
echo "arm64: tests under qemu took $(( $(date +%s) - t )) s"
fi

echo "== arm64: loopback call through the emulated daemon"
t=$(date +%s)
seconds=${CALL_SECONDS:-$([ "$mode" = full ] && echo 10 || echo 3)}
playout=(--playout); [ -n "${NO_PLAYOUT:-}" ] && playout=()  # NO_PLAYOUT=1: packet counts only
call() {
node tests/arm64/lib/loopback-call.mjs --seconds "$seconds" --timeout 180 --footprint "${playout[@]}" \
  -- scripts/qemu-env.sh run "$out/vdimediad" | tee "${TMPDIR:-/tmp}/vdimedia-arm64-call.json" \
  | node -e '
    const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const f = (s) => s ? `${s.threads} threads, ${s.libs} shared objects` : "-";
    console.log(`arm64 call: ok=${r.ok} arch=${r.welcome?.arch} codecs=${r.welcome?.capabilities?.codecs} setup=${r.setupMs} ms`);
    console.log(`  inbound a=${JSON.stringify(r.inbound?.a)} b=${JSON.stringify(r.inbound?.b)}`);
    console.log(`  idle: ${f(r.beforeChannel)}; channel: ${f(r.idleChannel)}; session: ${f(r.idleSession)}; call: ${f(r.inCall)}`);
    if (r.error || r.problems?.length) console.log(`  FAILED: ${r.error ?? r.problems.join("; ")} (logs in ${r.dir})`);
    if (r.welcome && r.welcome.arch !== "aarch64") { console.log("  FAILED: the daemon did not run as aarch64"); process.exit(1); }
    process.exit(r.ok ? 0 : 1);'
}
# qemu-user runs the daemon ~10x slower than the hardware would; a call that misses its packet
# count on a briefly loaded machine is placed once more, and the first attempt stays printed.
if ! call; then
  echo "arm64: the emulated call failed once; placing it again"
  call
fi
echo "arm64: call took $(( $(date +%s) - t )) s"

# The daemon (or its element-check child) built the arm64 registry at start-up; every element a call needs must be in it.
scripts/qemu-env.sh check
echo "arm64: $mode passed in $(( $(date +%s) - t_all )) s"
