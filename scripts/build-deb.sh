#!/usr/bin/env bash
# Builds the Debian packages of vdimedia in one command: exports the work tree (tracked and
# untracked-but-not-ignored files) into a source tree, vendors the crates into it (offline
# from cargo's cache when possible), builds the source package and the binary packages with
# dpkg-buildpackage (debian/rules, the machine's Rust toolchain, --offline --locked), then runs
# lintian on the result and fails on any error or warning.
#
# Usage: scripts/build-deb.sh [--arch arm64] [--out DIR] [--in-tree] [--no-lintian]
#   --arch ARCH      cross-build for ARCH (dpkg-buildpackage -a ARCH) in the environment that
#                    scripts/cross-build.sh --setup makes (sysroot of :ARCH -dev packages, rustup
#                    target, cross gcc, qemu-user for help2man). Default: the machine's architecture.
#   --out DIR        where the source tree and the .deb/.dsc/.changes go [target/deb].
#   --in-tree        binary packages only, built in this work tree with its target/ and cargo's
#                    crate cache (still --offline --locked): reuses an earlier
#                    `cargo build --release` (tests, CI). Sharing target/ with the vendored
#                    source build is impossible: cargo fingerprints a crate by its source path,
#                    so vendor/ would rebuild everything, and the next normal build again.
#   --no-lintian     skip lintian.
#   --no-check-builddeps  pass -d to dpkg-buildpackage (a machine whose -dev packages come from
#                    elsewhere, e.g. multiarch conflicts; the build still needs their .pc files).
# Prints the paths of the built packages last.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
arch=$(dpkg --print-architecture)
out="$repo/target/deb"
in_tree=0
lintian=1
check_builddeps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --in-tree) in_tree=1; shift ;;
    --no-lintian) lintian=0; shift ;;
    --no-check-builddeps) check_builddeps=0; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build-deb: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

for tool in dpkg-buildpackage dh help2man cargo git; do
  command -v "$tool" >/dev/null || {
    echo "build-deb: $tool missing: run scripts/install-deps.sh (Rust comes from rustup)" >&2; exit 1; }
done
[ "$lintian" = 0 ] || command -v lintian >/dev/null || { echo "build-deb: lintian missing" >&2; exit 1; }

version=$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)
src="$out/vdimedia-$version"
mkdir -p "$out"
out=$(cd "$out" && pwd)
src="$out/vdimedia-$version"
if [ "$in_tree" = 1 ]; then
  [ "$arch" = "$(dpkg --print-architecture)" ] || { echo "build-deb: --in-tree builds native packages only" >&2; exit 64; }
  echo "== build-deb: in-tree binary build (target/ reused) into $out"
  cd "$repo"
  [ "$check_builddeps" = 0 ] || dpkg-checkbuilddeps
  rm -f "$out"/*_"${version}"_"$arch".deb
  # debian/rules directly (what dpkg-buildpackage -b -nc runs, Rules-Requires-Root: no), so the
  # environment matches the earlier cargo build and nothing in target/ is fingerprinted dirty.
  export VDIMEDIA_DEB_IN_TREE=1 VDIMEDIA_DEB_DESTDIR="$out"
  # `cargo test --workspace` covers the tests; a release-profile test build here would only add minutes.
  export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} nocheck"
  status=0
  { debian/rules build && debian/rules binary; } >"$out/build-in-tree.log" 2>&1 || status=$?
  # Leave the work tree as git had it: only debhelper's staging goes, never dh_clean's tree walk.
  rm -rf debian/.debhelper debian/tmp debian/vdimedia debian/gstreamer1.0-vdimedia \
    debian/vdimedia-bridge debian/files debian/*.substvars debian/debhelper-build-stamp debian/man \
    debian/*.debhelper.log debian/*.*.debhelper
  [ "$status" = 0 ] || { tail -30 "$out/build-in-tree.log"; echo "build-deb: build failed; log: $out/build-in-tree.log" >&2; exit 1; }
  grep -E '^ *(Finished|Compiling)' "$out/build-in-tree.log" | tail -3 || true
  debs=("$out"/vdimedia_"$version"_"$arch".deb "$out"/gstreamer1.0-vdimedia_"$version"_"$arch".deb
        "$out"/vdimedia-bridge_"$version"_"$arch".deb)
  if [ "$lintian" = 1 ]; then
    echo "== build-deb: lintian (binary packages)"
    lintian --fail-on error,warning --display-info --profile debian "${debs[@]}"
    echo "lintian: no errors or warnings"
  fi
  echo "== build-deb: packages"
  ls -1 "${debs[@]}"
  exit 0
fi

echo "== build-deb: source tree $src"
rm -rf "$src"
mkdir -p "$src"
(cd "$repo" && git ls-files -co --exclude-standard -z) \
  | (cd "$repo" && tar --null --no-recursion --ignore-failed-read -cf - -T -) | tar -C "$src" -xf -
# debian/ build leftovers of an in-tree build never go into the source package.
rm -rf "$src/debian/.debhelper" "$src/debian/files" "$src/debian/tmp" "$src/.cargo"

echo "== build-deb: cargo vendor"
cd "$src"
if ! CARGO_NET_OFFLINE=true cargo vendor --locked --quiet vendor >/dev/null 2>"$out/vendor.log"; then
  echo "build-deb: crates missing from cargo's cache; fetching them from crates.io"
  cargo vendor --locked --quiet vendor >/dev/null
fi
# Source replacement: every crates.io dependency comes from vendor/ (debian/rules builds
# --offline --locked with a private CARGO_HOME, so nothing else is consulted).
mkdir -p .cargo
cat > .cargo/config.toml <<'EOF_CONFIG'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"
EOF_CONFIG
# Cargo.toml.orig (the crate author's manifest, kept by cargo package) looks like a patch
# leftover to dh_clean and lintian and is not needed to build: drop it from each crate.
# Crates for Windows only are never compiled here, but they carry prebuilt import libraries and
# ~100 MB of bindings: keep their manifests (cargo still resolves them) and stub the rest. Their
# .cargo-checksum.json then lists no files, so cargo checks only the package checksum.
python3 - <<'EOF'
import json, os, re, shutil
for name in sorted(os.listdir("vendor")):
    d = os.path.join("vendor", name)
    ck = os.path.join(d, ".cargo-checksum.json")
    orig = os.path.join(d, "Cargo.toml.orig")
    if os.path.exists(orig):
        os.remove(orig)
        with open(ck) as f:
            data = json.load(f)
        data["files"].pop("Cargo.toml.orig", None)
        with open(ck, "w") as f:
            json.dump(data, f)
    if not re.match(r"^(windows|winapi)", name):
        continue
    d = os.path.join("vendor", name)
    for entry in os.listdir(d):
        if entry in ("Cargo.toml", ".cargo-checksum.json") or entry.startswith("LICENSE"):
            continue
        p = os.path.join(d, entry)
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
    os.makedirs(os.path.join(d, "src"))
    with open(os.path.join(d, "src", "lib.rs"), "w") as f:
        f.write("// Stubbed by scripts/build-deb.sh: Windows-only crate, never built for Linux.\n")
    ck = os.path.join(d, ".cargo-checksum.json")
    with open(ck) as f:
        data = json.load(f)
    data["files"] = {}
    with open(ck, "w") as f:
        json.dump(data, f)
EOF
echo "vendored $(ls vendor | wc -l) crates, $(du -sh vendor | cut -f1)"

echo "== build-deb: dpkg-buildpackage (arch $arch)"
build_args=(-us -uc)
[ "$check_builddeps" = 1 ] || build_args+=(-d)
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
  # The :ARCH -dev packages do not co-install with the host's: scripts/cross-build.sh keeps
  # them in its private sysroot, so dpkg cannot see the Build-Depends (-d), and debian/rules
  # takes pkg-config's and the linker's settings from the environment it prints.
  case "$arch" in
    arm64) rust_target=aarch64-unknown-linux-gnu ;;
    armhf) rust_target=armv7-unknown-linux-gnueabihf ;;
    *) echo "build-deb: no cross environment for --arch $arch (arm64, armhf)" >&2; exit 64 ;;
  esac
  "$repo/scripts/cross-build.sh" --target "$rust_target" --setup
  eval "$("$repo/scripts/cross-build.sh" --target "$rust_target" --env)"
  # debian/rules keeps its own target dir for the vendored build.
  unset CARGO_TARGET_DIR
  build_args+=(-a "$arch" -d)
  # Cross: binaries only, and no tests (host binaries do not run natively).
  export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} nocheck"
  build_args+=(-B)
fi
dpkg-buildpackage "${build_args[@]}" 2>&1 | tee "$out/build-$arch.log" | grep -E '^(dpkg-|dh |   dh_|  +(Compiling|Finished))|warning|error' || true
[ "${PIPESTATUS[0]}" = 0 ] || { echo "build-deb: dpkg-buildpackage failed; log: $out/build-$arch.log" >&2; exit 1; }

changes=$(ls -t "$out"/vdimedia_"${version}"_"$arch".changes | head -n1)
if [ "$lintian" = 1 ]; then
  echo "== build-deb: lintian $changes"
  # Exit status non-zero on any error or warning; info/pedantic tags are printed but allowed.
  lintian --fail-on error,warning --display-info --profile debian "$changes"
  echo "lintian: no errors or warnings"
fi
echo "== build-deb: packages"
ls -1 "$out"/*_"$version"_"$arch".deb
