#!/usr/bin/env bash
# Builds the Debian packages (scripts/build-deb.sh: source package, vendored crates, lintian
# clean), installs them with `apt install ./*.deb` into a fresh Debian 12 root made by
# debootstrap from deb.debian.org (apt pulls in their dependencies from the mirror), and checks
# inside the root: the package files, the sysusers users, the systemd unit enablement (user
# socket on for every user, kiosk units off, bridge on), `vdimediad --version`, the config
# lookup (/usr/lib default, /etc override, a broken /etc file refused), `vdimediactl check`
# (every GStreamer element a call needs is installed by the Depends), and the installed units
# with tests/packaging/check-units.sh. Needs root (chroot), no systemd as PID 1.
#
# Usage: tests/packaging/install-test.sh [--debs DIR] [--keep]
#   --debs DIR  test already built packages instead of building them.
#   --keep      keep the root (target/deb-test/root) for inspection.
# Env: DEBIAN_MIRROR [http://deb.debian.org/debian].
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debs=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --debs) debs=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "install-test: unknown argument $1" >&2; exit 64 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install-test: needs root (debootstrap, chroot)" >&2; exit 1; }
t0=$(date +%s)
step() { echo "== install-test [$(( $(date +%s) - t0 ))s] $*"; }

if [ -z "$debs" ]; then
  step "build packages (scripts/build-deb.sh --in-tree)"
  "$repo/scripts/build-deb.sh" --in-tree --out "$repo/target/deb"
  debs="$repo/target/deb"
fi
arch=$(dpkg --print-architecture)
version=$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)
pkgs=(vdimedia gstreamer1.0-vdimedia vdimedia-bridge)
for p in "${pkgs[@]}"; do
  [ -f "$debs/${p}_${version}_${arch}.deb" ] || { echo "install-test: $debs/${p}_${version}_${arch}.deb missing" >&2; exit 1; }
done

work="$repo/target/deb-test"
root="$work/root"
cleanup() {
  for m in proc dev/pts; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true; done
  [ "$keep" = 1 ] || rm -rf "$root"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"

step "debootstrap --variant=minbase bookworm from $mirror"
# The base system is cached as a tarball between runs on the same machine.
tarball="$work/bookworm-minbase-$arch.tgz"
if [ ! -f "$tarball" ]; then
  debootstrap --variant=minbase --make-tarball="$tarball.part" bookworm "$work/tarball-tmp" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  mv "$tarball.part" "$tarball"; rm -rf "$work/tarball-tmp"
fi
debootstrap --variant=minbase --unpack-tarball="$tarball" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; exit 1; }
mount -t proc proc "$root/proc"
# Services never start in the root (no systemd as PID 1 there either; this makes it explicit).
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$root/tmp/debs"
for p in "${pkgs[@]}"; do cp "$debs/${p}_${version}_${arch}.deb" "$root/tmp/debs/"; done

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"; }

step "apt install ./vdimedia_*.deb ./gstreamer1.0-vdimedia_*.deb ./vdimedia-bridge_*.deb (dependencies from $mirror)"
in_root apt-get update -qq
# apt resolves the local packages' Depends from the mirror: nothing is installed beforehand.
if ! in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "./tmp/debs/vdimedia_${version}_${arch}.deb" "./tmp/debs/gstreamer1.0-vdimedia_${version}_${arch}.deb" \
      "./tmp/debs/vdimedia-bridge_${version}_${arch}.deb" >"$work/apt.log" 2>&1; then
  tail -30 "$work/apt.log"; echo "install-test: apt install failed"; exit 1
fi
grep -E '^(Setting up|Unpacking) (vdimedia|gstreamer1.0-vdimedia)' "$work/apt.log" || true
echo "apt installed $(grep -c '^Setting up' "$work/apt.log") packages"

fail=0
check() { # check DESCRIPTION COMMAND...: runs the command, records a failure
  local what=$1; shift
  if out=$("$@" 2>&1); then echo "ok   $what"; else echo "FAIL $what"; printf '%s\n' "$out" | sed 's/^/    /'; fail=1; fi
}

step "files"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for f in /usr/bin/vdimediad /usr/bin/vdimediactl /usr/bin/vdimedia-bridge \
         "/usr/lib/$multiarch/gstreamer-1.0/libgstvdimedia.so" \
         /usr/lib/vdimedia/vdimediad.toml /usr/lib/vdimedia/vdimedia-bridge.toml \
         /lib/systemd/system/vdimediad.service /lib/systemd/system/vdimediad.socket \
         /lib/systemd/system/vdimedia-bridge.service \
         /usr/lib/systemd/user/vdimediad.service /usr/lib/systemd/user/vdimediad.socket \
         /usr/lib/sysusers.d/vdimedia.conf /usr/lib/sysusers.d/vdimedia-bridge.conf \
         /usr/share/man/man1/vdimediad.1.gz /usr/share/man/man1/vdimediactl.1.gz \
         /usr/share/man/man1/vdimedia-bridge.1.gz \
         /usr/share/doc/vdimedia/copyright; do
  check "file $f" test -e "$root$f"
done
check "no /etc/vdimedia config shipped (defaults live in /usr/lib)" test ! -e "$root/etc/vdimedia/vdimediad.toml"

step "binaries"
check "vdimediad --version" sh -c "chroot '$root' vdimediad --version | grep -Fx 'vdimediad $version'"
check "vdimediactl --version" sh -c "chroot '$root' vdimediactl --version | grep -F '$version'"
check "vdimedia-bridge --version" sh -c "chroot '$root' vdimedia-bridge --version | grep -F '$version'"
# Only the element lines: the audio server, devices and sockets cannot exist in a chroot.
in_root vdimediactl check >"$work/check.log" 2>&1 || true
check "vdimediactl check: webrtcbin, nicesrc, … installed by Depends" grep -q 'PASS element webrtcbin' "$work/check.log"
check "vdimediactl check: no GStreamer element missing" sh -c "! grep 'FAIL element' '$work/check.log'"
check "man vdimediad has its FILES section" sh -c "zcat '$root/usr/share/man/man1/vdimediad.1.gz' | grep -q '/etc/vdimedia/vdimediad.toml'"

step "configuration lookup"
check "default config is /usr/lib/vdimedia/vdimediad.toml" sh -c \
  "chroot '$root' vdimediad --check-config 2>&1 | grep -F 'configuration OK (/usr/lib/vdimedia/vdimediad.toml)'"
mkdir -p "$root/etc/vdimedia"
printf '[audio]\nbackend = "alsa"\n' > "$root/etc/vdimedia/vdimediad.toml"
check "/etc/vdimedia/vdimediad.toml overrides it" sh -c \
  "chroot '$root' vdimediad --check-config 2>&1 | grep -F 'configuration OK (/etc/vdimedia/vdimediad.toml)'"
printf '[audio]\nbakend = "alsa"\n' > "$root/etc/vdimedia/vdimediad.toml"
check "a broken /etc file is refused, naming the file" sh -c \
  "! chroot '$root' vdimediad --check-config >'$work/bad.log' 2>&1 && grep -F '/etc/vdimedia/vdimediad.toml' '$work/bad.log'"
rm -f "$root/etc/vdimedia/vdimediad.toml"

step "users (sysusers)"
check "user vdimedia exists, in group audio" sh -c "chroot '$root' id vdimedia | grep -q '(audio)'"
check "user vdimedia-bridge exists" in_root getent passwd vdimedia-bridge
check "user vdimedia-bridge has no login shell" sh -c "chroot '$root' getent passwd vdimedia-bridge | grep -q ':/usr/sbin/nologin$'"

step "bridge TLS certificate (postinst: vdimedia-bridge --make-cert)"
check "certificate made at install, owned by vdimedia-bridge" sh -c \
  "chroot '$root' stat -c %U /var/lib/vdimedia-bridge/bridge-cert.pem | grep -Fx vdimedia-bridge"
check "private key readable by its owner only" sh -c \
  "chroot '$root' stat -c %a /var/lib/vdimedia-bridge/bridge-key.pem | grep -Fx 600"

step "systemd enablement"
check "user socket enabled for every user" test -L "$root/etc/systemd/user/sockets.target.wants/vdimediad.socket"
check "bridge service enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/vdimedia-bridge.service"
check "kiosk (ALSA) system socket not enabled" test ! -e "$root/etc/systemd/system/sockets.target.wants/vdimediad.socket"

step "units (systemd-analyze verify + security on the installed files)"
check "tests/packaging/check-units.sh $root" "$repo/tests/packaging/check-units.sh" "$root"
printf '%s\n' "$out"

step "remove and purge"
check "apt purge leaves no unit symlinks" sh -c "chroot '$root' env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q vdimedia vdimedia-bridge gstreamer1.0-vdimedia >'$work/purge.log' 2>&1 \
  && test ! -e '$root/etc/systemd/user/sockets.target.wants/vdimediad.socket' \
  && test ! -e '$root/etc/systemd/system/multi-user.target.wants/vdimedia-bridge.service' \
  && test ! -e '$root/usr/bin/vdimediad' \
  && test ! -e '$root/var/lib/vdimedia-bridge'"

step "done"
[ "$fail" = 0 ] && echo "install-test: PASS" || { echo "install-test: FAILED"; exit 1; }
