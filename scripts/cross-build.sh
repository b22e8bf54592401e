#!/usr/bin/env bash
# Cross-builds the whole workspace (vdimediad, vdimediactl, vdimedia-bridge, libgstvdimedia.so)
# for an ARM thin client against Debian's multiarch libraries, in one command:
#
#   scripts/cross-build.sh                      # aarch64, release, installs what is missing
#   scripts/cross-build.sh --tests              # also builds the test binaries (for qemu)
#   scripts/cross-build.sh --check              # only checks prerequisites; exit 1 names packages
#   scripts/cross-build.sh --no-install         # never installs; fails naming the packages
#   scripts/cross-build.sh --target armv7-unknown-linux-gnueabihf
#   scripts/cross-build.sh -p vdimediad --bins  # only the daemon's binaries (the CI smoke)
#   eval "$(scripts/cross-build.sh --env)"      # the pkg-config/linker env, for your own cargo
#   scripts/cross-build.sh --setup              # install/unpack what is missing, build nothing
#
# It first checks (and, unless --no-install/--check, installs): the foreign dpkg architecture,
# the :ARCH run-time libraries and GStreamer plugins (Multi-Arch: same, co-installed beside the
# host's), the cross gcc (linker), qemu-user, and the rustup target. apt runs with --no-remove:
# it fails rather than remove any host package.
#
# The :ARCH -dev packages are never installed: several (libgstreamer-plugins-{base,bad}1.0-dev)
# cannot be co-installed with the host's, and apt would remove the host's -dev packages and break
# every native build. They are fetched with `apt-get download` and unpacked (`dpkg -x`) into a
# private sysroot, $CARGO_TARGET_DIR/sysroot, whose .pc files point at a link dir of `.so`
# development symlinks to the installed :ARCH run-time libraries. Rust -sys crates need only
# pkg-config's link flags, no headers.
#
# It then runs `cargo build` with a separate CARGO_TARGET_DIR (target/cross by default) so the
# cross build never holds the build-dir lock of the native target/ others use.
#
# Artifacts: $CARGO_TARGET_DIR/<rust-target>/<profile>/{vdimediad,vdimediactl,vdimedia-bridge,
# libgstvdimedia.so}. Env: CARGO_TARGET_DIR, CROSS_PROFILE (release|dev, default release).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
mode=build        # build | check
install=1
tests=0
bins_only=0
env_only=0
setup_only=0
packages=()
profile=${CROSS_PROFILE:-release}
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs a Rust target triple}; shift 2 ;;
    --target=*) target=${1#--target=}; shift ;;
    --check) mode=check; install=0; shift ;;
    --no-install) install=0; shift ;;
    --tests) tests=1; shift ;;
    --bins) bins_only=1; shift ;;
    -p|--package) packages+=(-p "${2:?-p needs a package}"); shift 2 ;;
    --env) env_only=1; mode=check; install=0; shift ;;
    --setup) setup_only=1; shift ;;
    --debug) profile=dev; shift ;;
    --release) profile=release; shift ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cross-build: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# Rust target → Debian architecture, GNU triplet (multiarch dir, gcc prefix), qemu binary.
case "$target" in
  aarch64-unknown-linux-gnu) deb_arch=arm64; triplet=aarch64-linux-gnu; qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) deb_arch=armhf; triplet=arm-linux-gnueabihf; qemu=qemu-arm ;;
  x86_64-unknown-linux-gnu) deb_arch=amd64; triplet=x86_64-linux-gnu; qemu= ;;
  *) echo "cross-build: target '$target' is not supported; use aarch64-unknown-linux-gnu," \
       "armv7-unknown-linux-gnueabihf or x86_64-unknown-linux-gnu" >&2; exit 2 ;;
esac
native_arch=$(dpkg --print-architecture)

# pkg-config names the crates link against (gstreamer-check: gst-plugins' tests) → the Debian
# -dev package that ships the .pc file. These go into the private sysroot, never through apt.
PC_PKGS=(
  "gstreamer-1.0:libgstreamer1.0-dev"
  "gstreamer-base-1.0:libgstreamer1.0-dev"
  "gstreamer-check-1.0:libgstreamer1.0-dev"
  "gstreamer-audio-1.0:libgstreamer-plugins-base1.0-dev"
  "gstreamer-sdp-1.0:libgstreamer-plugins-base1.0-dev"
  "gstreamer-webrtc-1.0:libgstreamer-plugins-bad1.0-dev"
  "glib-2.0:libglib2.0-dev"
  "gobject-2.0:libglib2.0-dev"
  "alsa:libasound2-dev"
)
mapfile -t DEV_PKGS < <(printf '%s\n' "${PC_PKGS[@]}" | sed 's/^[^:]*://' | awk '!seen[$0]++')
# Run-time packages of the target architecture (all Multi-Arch: same): the libraries the
# binaries link (their .so.0 files are what the link dir points at) and the plugins an emulated
# call loads: webrtcbin/dtls/srtp/sctp (plugins-bad), opus/audioconvert/audioresample/app
# (plugins-base), rtp/rtpmanager (plugins-good), nicesrc/nicesink, pipewiresrc/sink, alsasrc/sink.
RUNTIME_PKGS=(
  libglib2.0-0 libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 libgstreamer-plugins-bad1.0-0
  libasound2
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-nice gstreamer1.0-alsa gstreamer1.0-pipewire
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

foreign_missing=()     # packages of the target architecture
host_missing=()        # packages of the build machine
if [ "$deb_arch" != "$native_arch" ]; then
  suffix=":$deb_arch"
  dpkg --print-foreign-architectures | grep -qx "$deb_arch" || arch_missing=1
  for p in gcc-$triplet libc6-dev-$deb_arch-cross; do installed "$p" || host_missing+=("$p"); done
  installed qemu-user || host_missing+=(qemu-user)
  for p in "${RUNTIME_PKGS[@]}"; do installed "$p$suffix" || foreign_missing+=("$p$suffix"); done
else
  suffix=
  # A native build uses the host's own -dev packages.
  for p in "${DEV_PKGS[@]}"; do installed "$p" || host_missing+=("$p"); done
fi
installed pkg-config || host_missing+=(pkg-config)
rust_missing=0
rustup target list --installed 2>/dev/null | grep -qx "$target" || rust_missing=1

report_missing() {
  echo "cross-build: prerequisites for $target are missing:" >&2
  [ "${arch_missing:-0}" = 1 ] && echo "  dpkg --add-architecture $deb_arch && apt-get update" >&2
  local all=("${host_missing[@]}" "${foreign_missing[@]}")
  [ ${#all[@]} -gt 0 ] && echo "  apt-get install --no-remove ${all[*]}" >&2
  [ "$rust_missing" = 1 ] && echo "  rustup target add $target" >&2
  echo "  (or run scripts/cross-build.sh without --no-install/--check to do this)" >&2
}

if [ "${arch_missing:-0}" = 1 ] || [ ${#host_missing[@]} -gt 0 ] || [ ${#foreign_missing[@]} -gt 0 ] \
   || [ "$rust_missing" = 1 ]; then
  if [ "$install" = 0 ]; then report_missing; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  if [ "${arch_missing:-0}" = 1 ]; then
    echo "cross-build: dpkg --add-architecture $deb_arch"
    dpkg --add-architecture "$deb_arch"
  fi
  if [ ${#host_missing[@]} -gt 0 ] || [ ${#foreign_missing[@]} -gt 0 ] || [ "${arch_missing:-0}" = 1 ]; then
    echo "cross-build: apt-get install --no-remove ${host_missing[*]} ${foreign_missing[*]}"
    apt-get update -qq
    # --no-remove: a package that cannot be co-installed makes apt fail, never remove a host one.
    apt-get install -y -qq --no-remove --no-install-recommends "${host_missing[@]}" "${foreign_missing[@]}" >/dev/null \
      || { echo "cross-build: apt-get install failed (nothing was removed)" >&2; report_missing; exit 1; }
  fi
  if [ "$rust_missing" = 1 ]; then
    echo "cross-build: rustup target add $target"
    rustup target add "$target"
  fi
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cross}
if [ "$deb_arch" != "$native_arch" ]; then
  # The private sysroot: the :ARCH -dev packages unpacked, re-made when a version changes.
  sysroot=$(mkdir -p "$CARGO_TARGET_DIR" && cd "$CARGO_TARGET_DIR" && pwd)/sysroot
  libdir=/usr/lib/$triplet
  want=$(for p in "${DEV_PKGS[@]}"; do
    v=$(apt-cache policy "$p$suffix" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    echo "$p$suffix=${v:-none}"; done)
  if [ "$(cat "$sysroot/.stamp" 2>/dev/null)" != "$want" ]; then
    if grep -q '=none$\|=(none)$' <<<"$want"; then
      echo "cross-build: apt knows no version of: $(grep '=none$\|=(none)$' <<<"$want" | cut -d= -f1 | tr '\n' ' ')" >&2
      echo "  dpkg --add-architecture $deb_arch && apt-get update" >&2
      exit 1
    fi
    [ "$mode" = check ] && { echo "cross-build: the sysroot $sysroot is missing or stale; run without --check/--no-install/--env" >&2; exit 1; }
    echo "cross-build: unpacking ${DEV_PKGS[*]/%/$suffix} into $sysroot"
    rm -rf "$sysroot"; mkdir -p "$sysroot/debs" "$sysroot/link"
    (cd "$sysroot/debs" && apt-get download -qq -o APT::Sandbox::User=root "${DEV_PKGS[@]/%/$suffix}") \
      || { echo "cross-build: apt-get download ${DEV_PKGS[*]/%/$suffix} failed (network? apt-get update?)" >&2; exit 1; }
    for d in "$sysroot"/debs/*.deb; do dpkg -x "$d" "$sysroot"; done
    # .pc files: headers from the sysroot, libraries from the link dir.
    for pc in "$sysroot$libdir"/pkgconfig/*.pc "$sysroot"/usr/share/pkgconfig/*.pc; do
      [ -e "$pc" ] || continue
      sed -i -e "s|^prefix=/usr\$|prefix=$sysroot/usr|" -e "s|^libdir=.*|libdir=$sysroot/link|" "$pc"
    done
    # The link dir: each -dev `libX.so` symlink, re-pointed at the installed run-time library.
    for so in "$sysroot$libdir"/*.so; do
      [ -L "$so" ] || continue
      ln -sf "$libdir/$(basename "$(readlink "$so")")" "$sysroot/link/$(basename "$so")"
    done
    echo "$want" > "$sysroot/.stamp"
  fi
  # The sysroot's .pc first, then the real multiarch dir (other -dev packages a user installed).
  pc_libdir=$sysroot$libdir/pkgconfig:$sysroot/usr/share/pkgconfig:$libdir/pkgconfig:/usr/share/pkgconfig
else
  pc_libdir=
fi

if [ -n "$pc_libdir" ]; then
  export PKG_CONFIG_ALLOW_CROSS=1
  export PKG_CONFIG_LIBDIR=$pc_libdir
fi
pc_missing=()
for pair in "${PC_PKGS[@]}"; do
  pkg-config --exists "${pair%%:*}" || pc_missing+=("${pair#*:}$suffix (${pair%%:*}.pc)")
done
if [ ${#pc_missing[@]} -gt 0 ]; then
  echo "cross-build: pkg-config cannot find: ${pc_missing[*]} (PKG_CONFIG_LIBDIR=${PKG_CONFIG_LIBDIR:-default})" >&2
  [ -n "$suffix" ] && echo "  rm -rf $sysroot and run scripts/cross-build.sh again" >&2 \
    || echo "  apt-get install ${pc_missing[*]%% (*}" >&2
  exit 1
fi
# Every library the link flags name must resolve to an installed run-time library.
if [ -n "$suffix" ]; then
  lib_missing=()
  for l in $(pkg-config --libs-only-l "${PC_PKGS[@]%%:*}" | tr ' ' '\n' | sed -n 's/^-l//p' | sort -u); do
    [ -e "$sysroot/link/lib$l.so" ] || [ -e "$libdir/lib$l.so" ] || lib_missing+=("lib$l.so")
  done
  if [ ${#lib_missing[@]} -gt 0 ]; then
    echo "cross-build: no installed $deb_arch run-time library behind: ${lib_missing[*]}" >&2
    echo "  apt-get install --no-remove ${RUNTIME_PKGS[*]/%/$suffix}" >&2
    exit 1
  fi
fi

upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
if [ "$deb_arch" != "$native_arch" ]; then
  export "CARGO_TARGET_${upper}_LINKER=$triplet-gcc"
  export "CC_${target//-/_}=$triplet-gcc"
  # `cargo test --target` (or tests/arm64/run.sh) then runs test binaries under qemu.
  export "CARGO_TARGET_${upper}_RUNNER=$qemu -L /"
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
if [ "$env_only" = 1 ]; then
  for v in PKG_CONFIG_ALLOW_CROSS PKG_CONFIG_LIBDIR CARGO_TARGET_DIR "CARGO_TARGET_${upper}_LINKER" \
           "CC_${target//-/_}" "CARGO_TARGET_${upper}_RUNNER"; do
    [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  exit 0
fi
[ "$mode" = check ] && { echo "cross-build: prerequisites for $target present"; exit 0; }
[ "$setup_only" = 1 ] && { echo "cross-build: prerequisites and sysroot for $target ready (build nothing)"; exit 0; }

start=$(date +%s)
echo "== cross-build: cargo build --profile $profile --target $target (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
sel=(--workspace); [ ${#packages[@]} -gt 0 ] && sel=("${packages[@]}")
kinds=(); [ "$bins_only" = 1 ] && kinds=(--bins)
cargo build --locked "${sel[@]}" "${kinds[@]}" --profile "$profile" --target "$target"
if [ "$tests" = 1 ]; then
  echo "== cross-build: cargo test --no-run --profile $profile --target $target"
  cargo test --locked "${sel[@]}" --profile "$profile" --target "$target" --no-run
fi
dir_profile=$profile; [ "$profile" = dev ] && dir_profile=debug
out=$CARGO_TARGET_DIR/$target/$dir_profile
echo "cross-build: done in $(( $(date +%s) - start )) s; artifacts in $out:"
expect=(vdimediad vdimediactl vdimedia-bridge libgstvdimedia.so)
[ ${#packages[@]} -gt 0 ] && expect=()
[[ " ${packages[*]} " == *" vdimediad "* ]] && expect+=(vdimediad vdimediactl)
for f in "${expect[@]}"; do
  [ -f "$out/$f" ] || { echo "cross-build: $out/$f was not built" >&2; exit 1; }
  machine=$(readelf -h "$out/$f" | sed -n 's/^ *Machine: *//p')
  printf '  %-20s %9d bytes  %s\n' "$f" "$(stat -c %s "$out/$f")" "$machine"
done
