#!/usr/bin/env python3
"""Scores the live echo test (daemon/tests/echo.rs) with AECMOS and ERLE.

usage: ECHO_DUMP=/tmp/echo-live cargo test -p vdimediad --test echo -- --nocapture
       bench/aec/live_score.py /tmp/echo-live
The test writes (48 kHz mono WAV, time 0 = the far end's first word):
  far.wav           what the far end sent (the loudspeaker reference)
  received-raw.wav  what the far end received with echoCancellation: false (= the microphone)
  received-aec.wav  the same script with echoCancellation: true (vdiaec)
  segments.json     far_s, near_at_s, dt_at_s, convergence_s, loop_s
The two received signals come from two calls; the raw one is aligned to the AEC one by
cross-correlation on near-end single talk before scoring. Prints one JSON object:
  erle_fst_db       10*log10(raw/aec energy) in far-end single talk after convergence_s
  aecmos_echo_*/deg_*  AECMOS (speechmos, 16 kHz) for st (far-end single talk), nst, dt
"""
import json, sys
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from speechmos import aecmos


def main():
    d = sys.argv[1]
    seg = json.load(open(f"{d}/segments.json"))
    fs = seg["rate"]
    far, _ = sf.read(f"{d}/far.wav", dtype="float32")
    raw, _ = sf.read(f"{d}/received-raw.wav", dtype="float32")
    aec, _ = sf.read(f"{d}/received-aec.wav", dtype="float32")
    a, b = int((seg["near_at_s"] + 0.5) * fs), int((seg["near_at_s"] + 2.5) * fs)
    ref = aec[a:b]
    best, lag = -2.0, 0
    for l in range(-int(0.1 * fs), int(0.1 * fs), 8):
        x = raw[a + l:b + l]
        if len(x) < len(ref):
            continue
        c = float(np.dot(ref, x) / (np.linalg.norm(ref) * np.linalg.norm(x) + 1e-12))
        if c > best:
            best, lag = c, l
    raw = raw[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), raw])
    n = min(len(far), len(raw), len(aec))
    far, raw, aec = far[:n], raw[:n], aec[:n]
    loop = seg["loop_s"]
    s, e = int((seg["convergence_s"] + loop) * fs), int((seg["far_s"] + loop - 0.25) * fs)
    erle = 10 * np.log10(np.sum(raw[s:e] ** 2) / (np.sum(aec[s:e] ** 2) + 1e-20))
    out = {"raw_lag_ms": round(lag * 1000 / fs, 1), "erle_fst_db": round(float(erle), 1)}
    to16 = lambda x: resample_poly(x, 1, 3).astype(np.float32)
    parts = {"st": (seg["convergence_s"], seg["far_s"]), "nst": (seg["near_at_s"] + 0.3, seg["near_at_s"] + 3.0),
             "dt": (seg["dt_at_s"] + 0.3, seg["dt_at_s"] + 3.0)}
    for tt, (t0, t1) in parts.items():
        s, e = int(t0 * fs), int(t1 * fs)
        r = aecmos.run({"lpb": to16(far[s:e]), "mic": to16(raw[s:e]), "enh": to16(np.clip(aec[s:e], -1, 1))},
                       sr=16000, talk_type=tt)
        out[f"aecmos_echo_{tt}"] = round(r["echo_mos"], 2)
        out[f"aecmos_deg_{tt}"] = round(r["deg_mos"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
