#!/usr/bin/env bash
# Checks yocto/meta-vdimedia without bitbake (none on this machine or in CI):
#   1. `oelint-adv --release wrynose` on every recipe, bbappend and layer.conf (the .inc files are
#      linted through the recipes that require them): no finding of any severity;
#   2. the thin-client snippet conf/include/vdimedia-thinclient.inc, linted as the distro
#      configuration it is (oelint only lints .conf files under conf/distro, in --mode all);
#   3. the linter can fail here: a copy of the layer with a known defect must be rejected;
#   4. tests/yocto/check_layer.py: crates .inc vs Cargo.lock, installed files and licence
#      checksums vs the tree, RDEPENDS/PACKAGECONFIG vs the elements the daemon loads, crates'
#      rust-version vs wrynose's Rust 1.94.
# Needs python3 >= 3.11 and oelint-adv (tests/yocto/requirements.txt). About 20 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
LAYER=yocto/meta-vdimedia

if ! command -v oelint-adv >/dev/null; then
  echo "lint: pip install -r tests/yocto/requirements.txt"
  python3 -m pip install -q -r tests/yocto/requirements.txt
fi

# Suppressed rules, each for a reason that holds for this layer:
#   oelint.vars.homepageping: pings HOMEPAGE over the network; CI has no route to GitHub.
#   oelint.var.bbclassextend: the daemon, bridge and plugin are target-only; -native variants
#     would be meaningless (info level).
#   oelint.var.suggestedvar.CVE_PRODUCT: asked of the image recipe, which has no product of its
#     own (info level); the three real recipes set CVE_PRODUCT in vdimedia.inc.
SUPPRESS=(--suppress oelint.vars.homepageping --suppress oelint.var.bbclassextend
          --suppress oelint.var.suggestedvar.CVE_PRODUCT)

oelint() {  # oelint FILE...: prints findings, fails on any
  local out
  out=$(oelint-adv --release wrynose --quiet --relpaths "${SUPPRESS[@]}" "$@" 2>&1) || true
  if [ -n "$out" ]; then echo "$out" >&2; return 1; fi
}

mapfile -t files < <(find "$LAYER" -name '*.bb' -o -name '*.bbappend' -o -name layer.conf | sort)
echo "== oelint-adv --release wrynose: ${#files[@]} files"
oelint "${files[@]}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== oelint-adv --release wrynose --mode all: thin-client snippet as a distro configuration"
mkdir -p "$tmp/snippet/conf/distro"
cp "$LAYER/conf/layer.conf" "$tmp/snippet/conf/"
cp "$LAYER/conf/include/vdimedia-thinclient.inc" "$tmp/snippet/conf/distro/vdimedia-thinclient.conf"
(cd "$tmp/snippet" && oelint --mode all conf/layer.conf conf/distro/vdimedia-thinclient.conf)

echo "== the linter rejects a defect (DEPENDS overwritten after the include, trailing space)"
cp -r "$LAYER" "$tmp/broken"
printf 'DEPENDS = "zlib" \n' >> "$tmp/broken/recipes-multimedia/vdimedia/vdimedia-bridge_git.bb"
if oelint "$tmp/broken/recipes-multimedia/vdimedia/vdimedia-bridge_git.bb" 2>/dev/null; then
  echo "lint: oelint-adv accepted a recipe with known defects; the lint step proves nothing" >&2
  exit 1
fi

echo "== layer vs source tree"
python3 tests/yocto/check_layer.py
echo "yocto lint: OK"
