#!/usr/bin/env python3
"""Scores one echo-cancelled output of the AEC scenario (make_scenario.py).

usage: score.py SCENARIO_DIR ENHANCED.wav
Prints one JSON object:
  lag_ms       output delay found by cross-correlation on near-end single talk (removed before scoring)
  erle_fst_db  ERLE in far-end single talk after 2 s of convergence:
               10*log10(sum(mic^2) / sum(out^2)) over [2 s, end of far-end single talk)
  aecmos_*     AECMOS (speechmos, 16 kHz model with scenario marker): echo and degradation
               MOS (1..5, higher is better) for st (far-end single talk), nst, dt
AEC_NST_FROM=SECONDS (environment) moves the start of the near-end single-talk window.
"""
import json, os, sys
import numpy as np
import soundfile as sf
from speechmos import aecmos


def main():
    d, enh_path = sys.argv[1], sys.argv[2]
    seg = json.load(open(f"{d}/segments.json"))
    fs = seg["rate"]
    mic, _ = sf.read(f"{d}/near.wav", dtype="float32")
    far, _ = sf.read(f"{d}/far.wav", dtype="float32")
    enh, efs = sf.read(enh_path, dtype="float32", always_2d=True)
    assert efs == fs, f"{enh_path}: {efs} Hz, expected {fs}"
    enh = enh[:, 0]
    # find the element's processing delay on near-end single talk (speech passes through there)
    a, b = int(seg["nst"][0] * fs), int(seg["nst"][1] * fs)
    maxlag = int(0.1 * fs)
    ref = mic[a:b]
    best, lag = -1.0, 0
    for l in range(0, maxlag):
        x = enh[a + l:b + l]
        if len(x) < len(ref):
            break
        c = float(np.dot(ref, x) / (np.linalg.norm(ref) * np.linalg.norm(x) + 1e-12))
        if c > best:
            best, lag = c, l
    enh = np.concatenate([enh[lag:], np.zeros(lag, dtype=np.float32)])
    n = min(len(enh), len(mic))
    enh, mic, far = enh[:n], mic[:n], far[:n]
    s, e = int((seg["fst"][0] + 2.0) * fs), int(seg["fst"][1] * fs)
    erle = 10 * np.log10(np.sum(mic[s:e] ** 2) / (np.sum(enh[s:e] ** 2) + 1e-20))
    out = {"lag_ms": round(lag * 1000 / fs, 2), "erle_fst_db": round(float(erle), 2)}
    # AEC_NST_FROM=SECONDS: score near-end single talk from there instead (12.0 = the window
    # before it excluded the echo tail of the far-end talk; docs/benchmarks.md, round 4)
    if "AEC_NST_FROM" in os.environ:
        seg["nst"] = [float(os.environ["AEC_NST_FROM"]), seg["nst"][1]]
    for key, tt in [("fst", "st"), ("nst", "nst"), ("dt", "dt")]:
        s, e = int(seg[key][0] * fs), int(seg[key][1] * fs)
        r = aecmos.run({"lpb": far[s:e], "mic": mic[s:e], "enh": np.clip(enh[s:e], -1, 1)}, sr=fs,
                       talk_type=tt)
        out[f"aecmos_echo_{tt}"] = round(r["echo_mos"], 3)
        out[f"aecmos_deg_{tt}"] = round(r["deg_mos"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
