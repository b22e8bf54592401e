#!/usr/bin/env bash
# Footprint of vdimediad: stripped binary sizes (x86-64 and aarch64), daemon RSS / threads /
# mapped shared objects before any channel, with a channel, with a page session, in a call and
# after it (x86-64), the idle daemon's Rss per mapping (bench/footprint/idle-smaps.mjs),
# and instructions per call-second counted by callgrind (x86-64; repeatable, unlike wall time).
#
#   bench/footprint/footprint.sh [--no-callgrind] [--seconds N]   # prints a Markdown report
#
# The call is tests/arm64/lib/loopback-call.mjs: one VC session, two RTCPeerConnections inside
# the daemon (so BOTH legs of a call: 2 Opus encoders, 2 decoders, 2 DTLS-SRTP transports),
# PipeWire rig devices. callgrind counts only the connected span (callgrind_control -z at
# "connected", -d after N seconds), so setup and start-up are excluded.
# Needs: target/release (cargo build --release) and, for aarch64 sizes, scripts/cross-build.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

callgrind=1
seconds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --no-callgrind) callgrind=0; shift ;;
    --seconds) seconds=$2; shift 2 ;;
    *) echo "usage: $0 [--no-callgrind] [--seconds N]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/vdimedia-footprint-XXXXXX)
X86=${FOOTPRINT_X86_DIR:-target/release}  # another build side by side: FOOTPRINT_X86_DIR=DIR
ARM=${CARGO_TARGET_DIR:-target/cross}/aarch64-unknown-linux-gnu/release

echo "### Stripped binary sizes"
echo
echo "| file | x86-64 (bytes) | aarch64 (bytes) |"
echo "| --- | ---: | ---: |"
for f in vdimediad vdimediactl vdimedia-bridge libgstvdimedia.so; do
  size() {
    [ -f "$1/$f" ] || { echo "-"; return; }
    # The release profile strips already (strip = "symbols"); strip a copy anyway so the number
    # is the stripped size whatever the profile says.
    local s=$work/strip-$(basename "$1")-$f
    cp "$1/$f" "$s"
    local tool=strip; [ "$1" = "$ARM" ] && tool=aarch64-linux-gnu-strip
    command -v "$tool" >/dev/null && "$tool" --strip-unneeded "$s" 2>/dev/null || true
    stat -c %s "$s"
  }
  echo "| $f | $(size "$X86") | $(size "$ARM") |"
done
echo

echo "### vdimediad at idle and in a call (x86-64, PipeWire backend)"
echo
node tests/arm64/lib/loopback-call.mjs --seconds "$seconds" --timeout 60 --footprint --dir "$work/call" \
  -- "$X86/vdimediad" >"$work/call.json" 2>"$work/call.err" || { cat "$work/call.err" >&2; exit 1; }
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log("| state | RSS (MiB) | of it anonymous (heap, stacks) | of it file-backed (code of mapped libraries) | threads | shared objects mapped |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  const states = [["beforeChannel", "started, no VC channel"], ["idleChannel", "idle, one VC channel handshaken, no page session"], ["idleSession", "idle, one page session open, no call"], ["inCall", "in a call (both legs, Opus)"], ["afterCall", "3 s after pc.close of both"], ["afterSession", "2 s after the session closed too"]];
  for (const [k, name] of states) {
    const s = r[k];
    const mib = (k) => (k / 1024).toFixed(1);
    console.log(`| ${name} | ${mib(s.rssKiB)} | ${mib(s.rssAnonKiB)} | ${mib(s.rssFileKiB)} | ${s.threads} | ${s.libs} |`);
  }
  const names = (s) => Object.entries(s.threadNames.reduce((m, n) => (m[n] = (m[n] ?? 0) + 1, m), {})).map(([n, c]) => c > 1 ? `${n}×${c}` : n).join(", ");
  console.log(`\nWELCOME ${r.welcomeMs} ms after connect; call up ${r.setupMs} ms after createOffer.`);
  console.log("");
  for (const [k, name] of states) console.log(`- threads, ${name}: ${names(r[k])}`);
  const added = (a, b) => b.libList.filter((l) => !a.libList.includes(l)).map((l) => l.split("/").pop());
  console.log(`\nShared objects the channel adds: ${added(r.beforeChannel, r.idleChannel).join(", ") || "none"}.`);
  console.log(`\nShared objects the page session adds: ${added(r.idleChannel, r.idleSession).join(", ") || "none"}.`);
  console.log(`\nShared objects the call adds: ${added(r.idleSession, r.inCall).join(", ")}.`);
' "$work/call.json"
echo

echo "### Where an idle daemon's RSS is (one page session, no call)"
echo
node bench/footprint/idle-smaps.mjs --top 15 -- "$X86/vdimediad" 2>"$work/smaps.err" || { cat "$work/smaps.err" >&2; exit 1; }
echo

if [ "$callgrind" = 1 ]; then
  command -v valgrind >/dev/null || { echo "footprint: valgrind missing: apt-get install valgrind" >&2; exit 1; }
  echo "### Instructions per call-second (callgrind, x86-64)"
  echo
  mark=$work/mark.sh
  cat >"$mark" <<EOF
#!/bin/sh
# start: zero the counters when the call is up; end: dump the connected span.
case "\$1" in start) callgrind_control -z "\$2" >/dev/null ;; end) callgrind_control -d "\$2" >/dev/null ;; esac
EOF
  chmod +x "$mark"
  node tests/arm64/lib/loopback-call.mjs --seconds "$seconds" --timeout 300 --mark "$mark" --dir "$work/cg" \
    -- valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" "$X86/vdimediad" \
    >"$work/cg.json" 2>"$work/cg.err" || { cat "$work/cg.err" "$work/cg.json" >&2; exit 1; }
  dump=$(ls "$work"/callgrind.out.*.1 2>/dev/null | head -1)
  [ -n "$dump" ] || { echo "footprint: callgrind wrote no dump of the call span" >&2; exit 1; }
  ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p;s/^totals: *\([0-9]*\).*/\1/p' "$dump" | head -1)
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const ir = Number(process.argv[2]);
    const s = r.markedSeconds;
    // valgrind runs the daemon far below real time, so normalise by media actually processed:
    // Opus packets are 20 ms, so 50 received packets = one second of call audio per leg.
    const pk = (r.inbound.a.packetsReceived + r.inbound.b.packetsReceived) / 2;
    const media = pk / 50;
    console.log(`callgrind counted ${(ir / 1e6).toFixed(0)} M instructions over ${s.toFixed(1)} s of wall time in a connected call (both legs in the one daemon); valgrind slowed it to ${pk.toFixed(0)} packets received per leg, ${media.toFixed(2)} s of audio.`);
    console.log("");
    console.log(`- **${(ir / media / 1e6).toFixed(0)} M instructions per call-second** (both legs: 2 captures, 2 Opus encoders and decoders, 2 DTLS-SRTP transports), about ${(ir / media / 2e6).toFixed(0)} M per leg. An upper bound: fixed per-wall-second work (timers, RTCP, main loops) is counted against less audio.`);
    console.log(`- Lower bound, per wall second under valgrind: ${(ir / s / 1e6).toFixed(0)} M.`);
' "$work/cg.json" "$ir"
fi
rm -rf "$work"
