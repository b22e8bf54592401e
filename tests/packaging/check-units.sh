#!/usr/bin/env bash
# Checks the systemd units of packaging/systemd offline (no systemd as PID 1 needed):
#   - `systemd-analyze verify` of every unit is clean (no warnings: unknown keys, bad values,
#     missing ExecStart binaries, broken socket/service pairs),
#   - `systemd-analyze security --offline=true` exposure <= 2.0 for each system unit
#     (--threshold fails the run otherwise); the user unit's score is printed too, and it must
#     stay <= 2.0 as well.
#
# Usage: tests/packaging/check-units.sh [ROOT]
#   ROOT  an installed tree (e.g. the Debian 12 root of install-test.sh): its units and binaries.
#         Without it: packaging/systemd and the repo's target/release binaries.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
root=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Units are checked from copies whose ExecStart= points at the binaries under test (ROOT's
# /usr/bin, or target/release): verify then checks the real binaries exist and are executable,
# without installing anything on this machine (verify --root= lacks --user support and needs a
# full systemd tree in ROOT).
if [ -n "$root" ]; then
  bindir="$root/usr/bin"; sysdir="$root/lib/systemd/system"; userdir="$root/usr/lib/systemd/user"
else
  bindir="$repo/target/release"; sysdir="$repo/packaging/systemd/system"; userdir="$repo/packaging/systemd/user"
fi
for b in vdimediad vdimedia-bridge; do
  [ -x "$bindir/$b" ] || { echo "check-units: $bindir/$b missing (cargo build --release --bins)" >&2; exit 1; }
done
mkdir -p "$tmp/system" "$tmp/user"
for u in vdimediad.service vdimediad.socket vdimedia-bridge.service; do
  sed -E "s#^(ExecStart(Pre|Post)?=[-@:+!]*)/usr/bin/#\1$bindir/#" "$sysdir/$u" > "$tmp/system/$u"
done
for u in vdimediad.service vdimediad.socket; do
  sed -E "s#^(ExecStart(Pre|Post)?=[-@:+!]*)/usr/bin/#\1$bindir/#" "$userdir/$u" > "$tmp/user/$u"
done
# A user manager needs a runtime dir even offline.
export XDG_RUNTIME_DIR="$tmp/xdg"
install -d -m 0700 "$XDG_RUNTIME_DIR"

fail=0
verify() { # verify SCOPE DIR: any output from systemd-analyze verify is a finding (it exits 0
  # on unknown keys and bad values, printing a warning). --man=no: Documentation= names our man
  # pages, which are checked as package files instead.
  local scope=$1 dir=$2 log="$tmp/verify.log"
  if ! systemd-analyze "$scope" verify --man=no "$dir"/* >"$log" 2>&1 || [ -s "$log" ]; then
    echo "FAIL verify $scope: $(cd "$dir" && echo *)"; sed 's/^/    /' "$log"; fail=1
  else
    echo "ok   verify $scope: $(cd "$dir" && echo *)"
  fi
}
verify --system "$tmp/system"
verify --user "$tmp/user"

score() { # score SCOPE UNIT_PATH -> prints the exposure level, fails above 2.0
  local scope=$1 unit=$2 out
  out=$(systemd-analyze security "$scope" --offline=true --threshold=20 "$unit" 2>&1) && rc=0 || rc=$?
  local level
  level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ "$rc" != 0 ] || [ -z "$level" ]; then
    echo "FAIL security $scope $(basename "$unit"): exposure ${level:-?} (> 2.0)"
    printf '%s\n' "$out" | grep '✗' | sed 's/^/    /'; fail=1
  else
    echo "ok   security $scope $(basename "$unit"): exposure $level"
  fi
}
score --system "$tmp/system/vdimediad.service"
score --system "$tmp/system/vdimedia-bridge.service"
score --user "$tmp/user/vdimediad.service"

[ "$fail" = 0 ] && echo "check-units: all units verified, exposure <= 2.0" || { echo "check-units: FAILED"; exit 1; }
