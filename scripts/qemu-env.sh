#!/usr/bin/env bash
# Environment for running arm64 (aarch64) builds on an x86-64 machine under qemu-user, with
# Debian's :arm64 libraries and GStreamer plugins (installed by scripts/cross-build.sh).
#
#   eval "$(scripts/qemu-env.sh)"               # exports the variables into this shell
#   scripts/qemu-env.sh run BINARY [ARGS...]    # runs an arm64 binary under qemu-aarch64
#   scripts/qemu-env.sh check [ELEMENT...]      # checks the arm64 GStreamer registry has the
#                                               # elements calls need (exit 1 names what is missing)
#
# GStreamer under qemu: the plugin path and scanner must be the arm64 ones, and the registry a
# private file (an x86-64 registry.bin lists x86-64 plugins, and the other way round).
# QEMU_LD_PREFIX=/ lets qemu find the arm64 loader and libraries in Debian's multiarch dirs.
set -euo pipefail

triplet=aarch64-linux-gnu
QEMU=${QEMU:-qemu-aarch64}
REGISTRY=${VDIMEDIA_QEMU_REGISTRY:-${XDG_CACHE_HOME:-$HOME/.cache}/vdimedia/gstreamer-registry-$triplet.bin}
# Elements a call needs (webrtcbin, ICE, DTLS/SRTP, Opus, RTP, PipeWire/ALSA devices).
DEFAULT_ELEMENTS=(webrtcbin nicesrc nicesink dtlssrtpenc dtlssrtpdec opusenc opusdec rtpopuspay
  rtpopusdepay audioconvert audioresample pipewiresrc pipewiresink alsasrc alsasink)

envvars() {
  cat <<EOF
export QEMU_LD_PREFIX=/
export GST_PLUGIN_SYSTEM_PATH=/usr/lib/$triplet/gstreamer-1.0
export GST_PLUGIN_PATH=
export GST_PLUGIN_SCANNER=/usr/lib/$triplet/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner
export GST_REGISTRY=$REGISTRY
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$QEMU -L /"
EOF
}

load() {
  command -v "$QEMU" >/dev/null || { echo "qemu-env: $QEMU not found: apt-get install qemu-user (or run scripts/cross-build.sh)" >&2; exit 1; }
  [ -e /lib/ld-linux-aarch64.so.1 ] || { echo "qemu-env: the arm64 loader /lib/ld-linux-aarch64.so.1 is missing: apt-get install libc6:arm64 (or run scripts/cross-build.sh)" >&2; exit 1; }
  [ -x "/usr/lib/$triplet/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner" ] || { echo "qemu-env: the arm64 GStreamer is missing: apt-get install libgstreamer1.0-0:arm64 (or run scripts/cross-build.sh)" >&2; exit 1; }
  mkdir -p "$(dirname "$REGISTRY")"
  eval "$(envvars)"
}

case "${1:-env}" in
  env) envvars ;;
  run)
    shift
    [ $# -ge 1 ] || { echo "usage: $0 run BINARY [ARGS...]" >&2; exit 2; }
    load
    exec "$QEMU" -L / "$@"
    ;;
  check)
    shift
    load
    [ $# -gt 0 ] || set -- "${DEFAULT_ELEMENTS[@]}"
    # Debian's gst-inspect-1.0 is not multiarch (no :arm64 beside the amd64 one), so read the
    # arm64 registry that any arm64 GStreamer process (the daemon at its first channel) wrote:
    # it stores every feature name as a NUL-terminated string.
    [ -s "$REGISTRY" ] || { echo "qemu-env: no arm64 registry at $REGISTRY yet: start the arm64 daemon and connect once (tests/arm64/smoke.sh does)" >&2; exit 1; }
    names=$(strings -n 3 "$REGISTRY" | sort -u)
    missing=()
    for e in "$@"; do grep -qx -- "$e" <<<"$names" || missing+=("$e"); done
    if [ ${#missing[@]} -gt 0 ]; then
      echo "qemu-env: the arm64 GStreamer registry ($REGISTRY) lacks: ${missing[*]}" >&2
      exit 1
    fi
    echo "qemu-env: arm64 GStreamer registry has: $*"
    ;;
  *) echo "usage: $0 [env | run BINARY [ARGS...] | check [ELEMENT...]]" >&2; exit 2 ;;
esac
