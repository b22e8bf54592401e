#!/usr/bin/env python3
"""Scores one direction of a call: PESQ of a recording against the speech that was sent.

Usage:
    score.py --ref REF.wav --deg DEG.wav [--band wb|nb] [--periodic] [--tail-margin-s 0.3]

Steps (ITU-T P.862 / P.862.2 via the `pesq` package):
  1. Read both WAVs (any rate, int16/int32/float; multi-channel is averaged to mono).
  2. Resample both to 16 kHz (`--band wb`, wideband P.862.2) or 8 kHz (`--band nb`, P.862).
  3. Align by cross-correlation and trim to the overlap.
     - default: the recording holds (part of) one copy of REF; `lag_ms` is where REF starts in it
       (negative: the recording started after REF started).
     - `--periodic`: REF is one period of a looping source (Chromium's fake capture loops its
       file; the SDK rig plays a tiled file). The last period of the recording (minus
       `--tail-margin-s`, to skip teardown) is scored against the matching rotation of REF;
       `lag_ms` is the offset in the recording where a period starts (0 <= lag_ms < period).
  4. Compute PESQ (MOS-LQO) and print one JSON object on stdout:
     {"pesq": float, "band": "wb"|"nb", "fs_hz": int, "lag_ms": float, "xcorr": float,
      "local_lag_ms": [float, float] | null, "scored_s": float, "ref_s": float, "deg_s": float, "deg_rms_dbfs": float,
      "periodic": bool}
     `xcorr` is the normalised cross-correlation peak (1.0 = identical waveform), a sanity
     check of the match; it is low (0.3) even for good calls when the receiver time-stretches
     within the window, which `local_lag_ms` ([min, max] delay of 1 s speech blocks against the
     aligned reference, ms) then shows. On failure: {"error": "..."} and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction

import numpy as np
from scipy.io import wavfile
from scipy.signal import correlate, resample_poly

BAND_RATE_HZ = {"wb": 16000, "nb": 8000}


class ScoreError(Exception):
    """A recording or reference that cannot be scored (too short, silent, unreadable)."""


def read_mono(path: str) -> tuple[int, np.ndarray]:
    """Returns (rate_hz, samples) with samples as float64 in int16 scale (±32768)."""
    try:
        rate, data = wavfile.read(path)
    except (OSError, ValueError) as e:
        raise ScoreError(f"cannot read {path}: {e}") from e
    if data.dtype == np.int16:
        x = data.astype(np.float64)
    elif data.dtype == np.int32:
        x = data.astype(np.float64) / 65536.0
    elif data.dtype == np.uint8:
        x = (data.astype(np.float64) - 128.0) * 256.0
    elif np.issubdtype(data.dtype, np.floating):
        x = data.astype(np.float64) * 32768.0
    else:
        raise ScoreError(f"{path}: unsupported sample type {data.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        raise ScoreError(f"{path}: no samples")
    return int(rate), x


def resample(x: np.ndarray, src_hz: int, dst_hz: int) -> np.ndarray:
    if src_hz == dst_hz:
        return x
    f = Fraction(dst_hz, src_hz)
    return resample_poly(x, f.numerator, f.denominator)


def rms_dbfs(x: np.ndarray) -> float:
    r = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    return 20 * math.log10(r / 32768.0) if r > 0 else -math.inf


def norm_xcorr(a: np.ndarray, b: np.ndarray) -> float:
    d = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / d) if d > 0 else 0.0


def align_once(ref: np.ndarray, deg: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Lag k (samples) with deg[n + k] ~ ref[n]; returns (k, ref_part, deg_part) over the overlap."""
    c = correlate(deg, ref, mode="full", method="fft")
    k = int(np.argmax(np.abs(c))) - (len(ref) - 1)
    r0, d0 = (0, k) if k >= 0 else (-k, 0)
    n = min(len(ref) - r0, len(deg) - d0)
    if n <= 0:
        raise ScoreError("reference and recording do not overlap")
    return k, ref[r0 : r0 + n], deg[d0 : d0 + n]


def align_periodic(ref: np.ndarray, deg: np.ndarray, tail: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Scores the recording's last full period against the matching rotation of the looped REF."""
    period = len(ref)
    end = len(deg) - tail
    start = end - period
    if start < 0:
        raise ScoreError(
            f"recording ({len(deg)} samples) shorter than one period ({period}) plus the tail margin"
        )
    win = deg[start:end]
    tiled = np.tile(ref, 3)
    c = correlate(tiled, win, mode="valid", method="fft")  # c[p] ~ <tiled[p:p+period], win>
    c = c[: 2 * period + 1]
    p = int(np.argmax(np.abs(c)))
    lag = (start - p) % period
    return lag, tiled[p : p + period], win


def local_lags_ms(ref: np.ndarray, deg: np.ndarray, fs: int, search_ms: int = 100) -> list[float]:
    """Delay of deg against ref per 1 s block of speech (ms), found within ±search_ms.

    A spread between blocks shows the receiver time-stretching (jitter buffer) or dropping audio.
    """
    w, m = fs, int(search_ms * fs / 1000)
    lags = []
    for s in range(m, len(ref) - w - m, w):
        a = ref[s : s + w]
        if rms_dbfs(a) < -45:
            continue
        b = deg[s - m : s + w + m]
        c = correlate(b, a, mode="valid", method="fft")
        k = int(np.argmax(np.abs(c)))
        if norm_xcorr(a, b[k : k + w]) > 0.5:
            lags.append(round((k - m) * 1000.0 / fs, 1))
    return lags


def score(ref_path: str, deg_path: str, band: str, periodic: bool, tail_margin_s: float) -> dict:
    from pesq import pesq  # imported late so --help works without it

    fs = BAND_RATE_HZ[band]
    ref_hz, ref = read_mono(ref_path)
    deg_hz, deg = read_mono(deg_path)
    ref = resample(ref, ref_hz, fs)
    deg = resample(deg, deg_hz, fs)
    if periodic:
        lag, r, d = align_periodic(ref, deg, int(tail_margin_s * fs))
    else:
        lag, r, d = align_once(ref, deg)
    if len(r) < fs * 2:
        raise ScoreError(f"only {len(r) / fs:.2f} s overlap; PESQ needs speech of several seconds")
    if rms_dbfs(d) < -70:
        raise ScoreError(f"recording is silent over the scored part ({rms_dbfs(d):.1f} dBFS)")
    local = local_lags_ms(r, d, fs)
    mos = float(pesq(fs, r.astype(np.float32), d.astype(np.float32), band))
    return {
        "pesq": round(mos, 3),
        "band": band,
        "fs_hz": fs,
        "lag_ms": round(lag * 1000.0 / fs, 2),
        "xcorr": round(norm_xcorr(r, d), 4),
        "local_lag_ms": [min(local), max(local)] if local else None,
        "scored_s": round(len(r) / fs, 3),
        "ref_s": round(len(ref) / fs, 3),
        "deg_s": round(len(deg) / fs, 3),
        "deg_rms_dbfs": round(rms_dbfs(d), 2),
        "periodic": periodic,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="reference WAV (what was sent)")
    ap.add_argument("--deg", required=True, help="degraded WAV (what was received)")
    ap.add_argument("--band", choices=sorted(BAND_RATE_HZ), default="wb",
                    help="wb: P.862.2 at 16 kHz (Opus, G.722); nb: P.862 at 8 kHz (PCMU/PCMA)")
    ap.add_argument("--periodic", action="store_true", help="REF is one period of a looping source")
    ap.add_argument("--tail-margin-s", type=float, default=0.3,
                    help="seconds skipped at the end of the recording in --periodic mode")
    a = ap.parse_args(argv)
    try:
        out = score(a.ref, a.deg, a.band, a.periodic, a.tail_margin_s)
    except Exception as e:  # noqa: BLE001 - any failure must become a JSON error for the harness
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
