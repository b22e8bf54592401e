#!/usr/bin/env python3
"""Checks of yocto/meta-vdimedia that need the source tree, not a bitbake build.

1. vdimedia-crates.inc matches Cargo.lock (scripts/yocto-crates.py --check), and that check can
   fail: a Cargo.lock with one checksum changed must make it report "stale".
2. Every file the recipes install from ${S} exists in this tree, and LIC_FILES_CHKSUM's md5s are
   those of LICENSE-MIT and LICENSE-APACHE.
3. Every GStreamer element the daemon creates (daemon/src/control.rs ELEMENTS plus every
   make("…") call in daemon/src) maps to an OpenEmbedded package that vdimediad RDEPENDS on
   (directly or through a PACKAGECONFIG), and every PACKAGECONFIG that package needs in a core or
   meta-oe recipe is turned on by one of the layer's bbappends.
4. Each crate in Cargo.lock declares a rust-version no newer than wrynose's Rust (1.94), so the
   recipes' --ignore-rust-version only skips our own workspace's 1.95 declaration.

Exit 0 when all pass; 1 with one line per failure.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "yocto/meta-vdimedia"
RECIPES = LAYER / "recipes-multimedia/vdimedia"
WRYNOSE_RUST = (1, 94)

# GStreamer element → the OpenEmbedded (wrynose) package that ships it.
ELEMENT_PACKAGES = {
    "webrtcbin": "gstreamer1.0-plugins-bad-webrtc",
    "dtlssrtpenc": "gstreamer1.0-plugins-bad-dtls",
    "dtlssrtpdec": "gstreamer1.0-plugins-bad-dtls",
    "dtlsdec": "gstreamer1.0-plugins-bad-dtls",
    "srtpenc": "gstreamer1.0-plugins-bad-srtp",
    "srtpdec": "gstreamer1.0-plugins-bad-srtp",
    "nicesrc": "libnice",
    "nicesink": "libnice",
    "rtpbin": "gstreamer1.0-plugins-good-rtpmanager",
    "rtpopuspay": "gstreamer1.0-plugins-good-rtp",
    "rtpopusdepay": "gstreamer1.0-plugins-good-rtp",
    "rtpg722pay": "gstreamer1.0-plugins-good-rtp",
    "rtpg722depay": "gstreamer1.0-plugins-good-rtp",
    "rtppcmupay": "gstreamer1.0-plugins-good-rtp",
    "rtppcmudepay": "gstreamer1.0-plugins-good-rtp",
    "rtppcmapay": "gstreamer1.0-plugins-good-rtp",
    "rtppcmadepay": "gstreamer1.0-plugins-good-rtp",
    "mulawenc": "gstreamer1.0-plugins-good-mulaw",
    "mulawdec": "gstreamer1.0-plugins-good-mulaw",
    "alawenc": "gstreamer1.0-plugins-good-alaw",
    "alawdec": "gstreamer1.0-plugins-good-alaw",
    "opusenc": "gstreamer1.0-plugins-base-opus",
    "opusdec": "gstreamer1.0-plugins-base-opus",
    "audioconvert": "gstreamer1.0-plugins-base-audioconvert",
    "audioresample": "gstreamer1.0-plugins-base-audioresample",
    "audiotestsrc": "gstreamer1.0-plugins-base-audiotestsrc",
    "volume": "gstreamer1.0-plugins-base-volume",
    "alsasrc": "gstreamer1.0-plugins-base-alsa",
    "alsasink": "gstreamer1.0-plugins-base-alsa",
    "pipewiresrc": "gstreamer1.0-pipewire",
    "pipewiresink": "gstreamer1.0-pipewire",
    "playbin": "gstreamer1.0-plugins-base-playback",
    "queue": "gstreamer1.0",
    "capsfilter": "gstreamer1.0",
    "fakesink": "gstreamer1.0",
    "g722enc": "gstreamer1.0-plugin-vdimedia",
    "g722dec": "gstreamer1.0-plugin-vdimedia",
    "vdiaec": "gstreamer1.0-plugin-vdimedia",
    "vdiaecprobe": "gstreamer1.0-plugin-vdimedia",
    "avenc_g722": "gstreamer1.0-libav",
    "avdec_g722": "gstreamer1.0-libav",
    "webrtcdsp": "gstreamer1.0-plugins-bad-webrtcdsp",
    "webrtcechoprobe": "gstreamer1.0-plugins-bad-webrtcdsp",
}

# OE package → (bbappend in this layer, PACKAGECONFIG option it must turn on).
PACKAGECONFIG_NEEDED = {
    "gstreamer1.0-plugins-bad-webrtc": ("gstreamer1.0-plugins-bad_%.bbappend", "webrtc"),
    "gstreamer1.0-plugins-bad-dtls": ("gstreamer1.0-plugins-bad_%.bbappend", "dtls"),
    "gstreamer1.0-plugins-bad-srtp": ("gstreamer1.0-plugins-bad_%.bbappend", "srtp"),
    "gstreamer1.0-plugins-bad-sctp": ("gstreamer1.0-plugins-bad_%.bbappend", "sctp"),
    "gstreamer1.0-plugins-bad-webrtcdsp": ("gstreamer1.0-plugins-bad_%.bbappend", "webrtcdsp"),
    "gstreamer1.0-plugins-base-opus": ("gstreamer1.0-plugins-base_%.bbappend", "opus"),
    "libnice": ("libnice_%.bbappend", "gstreamer"),
}


def bb_value(text: str, var: str) -> str:
    """The quoted value of the first `VAR = "…"` / `VAR += "…"` assignment (continuations joined)."""
    m = re.search(r'^' + re.escape(var) + r'\s*\+?=\s*"((?:[^"\\]|\\.)*)"', text, re.M | re.S)
    return re.sub(r'\\\n', ' ', m.group(1)) if m else ""


def check_crates(failures: list[str]) -> None:
    gen = ROOT / "scripts/yocto-crates.py"
    r = subprocess.run([sys.executable, gen, "--check"], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append("crates: " + (r.stderr.strip() or r.stdout.strip()))
    else:
        print(r.stdout.strip())
    # The freshness check must be able to fail: flip one checksum in a copy of Cargo.lock.
    lock = (ROOT / "Cargo.lock").read_text()
    m = re.search(r'checksum = "([0-9a-f])', lock)
    if not m:
        failures.append("crates: Cargo.lock has no checksums")
        return
    flipped = "0" if m.group(1) != "0" else "1"
    stale = lock[: m.start(1)] + flipped + lock[m.end(1):]
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp, "Cargo.lock")
        p.write_text(stale)
        r = subprocess.run([sys.executable, gen, "--check", "--lock", p], capture_output=True,
                           text=True)
        if r.returncode != 1 or "stale" not in r.stderr:
            failures.append(f"crates: --check did not report a changed checksum (exit {r.returncode})")


def check_sources(failures: list[str]) -> None:
    for recipe in sorted(RECIPES.glob("*.bb")):
        for rel in sorted(set(re.findall(r'\$\{S\}/(\S+)', recipe.read_text()))):
            if not (ROOT / rel).is_file():
                failures.append(f"{recipe.name}: installs ${{S}}/{rel}, which is not in the tree")
    inc = (RECIPES / "vdimedia.inc").read_text()
    for name, md5 in re.findall(r'file://([^;\s]+);md5=([0-9a-f]{32})', inc):
        actual = hashlib.md5((ROOT / name).read_bytes()).hexdigest()
        if actual != md5:
            failures.append(f"vdimedia.inc: LIC_FILES_CHKSUM md5 of {name} is {actual}, not {md5}")


def daemon_elements() -> dict[str, str | None]:
    """Element name → its fallback element (or None), from control.rs and make("…") calls."""
    src = ROOT / "daemon/src"
    elements: dict[str, str | None] = {}
    control = (src / "control.rs").read_text()
    for m in re.finditer(r'el\("([a-z0-9_]+)",[^\n]*?(?:Some\("([a-z0-9_]+)"\)|None)\)', control):
        elements[m.group(1)] = m.group(2)
    for f in src.rglob("*.rs"):
        if f.name == "tests.rs":
            continue
        for name in re.findall(r'(?:ElementFactory::make|make_element|codecs::make|\bmake)\("([a-z0-9_]+)"',
                               f.read_text()):
            elements.setdefault(name, None)
    return elements


def check_rdepends(failures: list[str]) -> None:
    recipe = (RECIPES / "vdimediad_git.bb").read_text()
    provided = set(bb_value(recipe, "RDEPENDS:${PN}").split())
    provided |= set(bb_value(recipe, "RRECOMMENDS:${PN}").split())
    for flag, value in re.findall(r'^PACKAGECONFIG\[(\w+)\] = "([^"]*)"', recipe, re.M):
        fields = value.split(",")
        if len(fields) > 3:
            provided |= set(fields[3].split())
    elements = daemon_elements()
    if "webrtcbin" not in elements:
        failures.append("rdepends: found no elements in daemon/src (control.rs ELEMENTS moved?)")
    for name, fallback in sorted(elements.items()):
        pkg = ELEMENT_PACKAGES.get(name)
        if pkg is None:
            failures.append(f"rdepends: element {name!r} has no OE package in "
                            "tests/yocto/check_layer.py ELEMENT_PACKAGES")
            continue
        fb_pkg = ELEMENT_PACKAGES.get(fallback) if fallback else None
        if pkg not in provided and fb_pkg not in provided:
            failures.append(f"rdepends: vdimediad loads {name} ({pkg}) but its recipe does not "
                            "RDEPEND on it")
    for pkg in sorted(provided):
        if pkg in PACKAGECONFIG_NEEDED:
            append, option = PACKAGECONFIG_NEEDED[pkg]
            path = next(LAYER.rglob(append), None)
            enabled = bb_value(path.read_text(), "PACKAGECONFIG:append:vdimedia").split() if path else []
            if option not in enabled:
                failures.append(f"bbappend: {pkg} needs PACKAGECONFIG {option!r} from {append}")


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def check_rust_versions(failures: list[str]) -> None:
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    registries = sorted((cargo_home / "registry/src").glob("*"))
    missing, too_new = [], []
    for p in lock["package"]:
        if p.get("source", "").startswith("registry+") is False:
            continue
        d = next((r / f"{p['name']}-{p['version']}" for r in registries
                  if (r / f"{p['name']}-{p['version']}").is_dir()), None)
        if d is None:
            missing.append(f"{p['name']}-{p['version']}")
            continue
        rv = tomllib.loads((d / "Cargo.toml").read_text()).get("package", {}).get("rust-version")
        if isinstance(rv, str) and version_tuple(rv) > WRYNOSE_RUST:
            too_new.append(f"{p['name']} {p['version']} (rust-version {rv})")
    if missing:
        failures.append(f"rust-version: {len(missing)} crate sources are not unpacked "
                        f"(run `cargo fetch --locked`), e.g. {missing[0]}")
    for c in too_new:
        failures.append(f"rust-version: {c} needs a newer Rust than wrynose's "
                        f"{'.'.join(map(str, WRYNOSE_RUST))}")
    if not missing and not too_new:
        print(f"rust-version: every crate in Cargo.lock builds with Rust "
              f"{'.'.join(map(str, WRYNOSE_RUST))} by its own declaration")


def main() -> int:
    failures: list[str] = []
    check_crates(failures)
    check_sources(failures)
    check_rdepends(failures)
    check_rust_versions(failures)
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    if not failures:
        print("check_layer: sources, licenses, RDEPENDS and PACKAGECONFIGs agree with the tree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
