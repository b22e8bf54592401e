#!/usr/bin/env python3
"""Turns the WAVs and summary.json of the `g722_report` test into the markdown section of
docs/benchmarks.md: WB-PESQ (ITU-T P.862.2, python `pesq`) and SNR per codec path, and the CPU
time (user+sys, ms) gst-launch-1.0 spends to encode+decode one second of 16 kHz audio with
g722enc/g722dec versus avenc_g722/avdec_g722 (median of 5 runs, 60 s of pink noise each, minus
a source-only baseline). Usage: report.py DIR (GST_PLUGIN_PATH must find libgstvdimedia.so)."""
import json, os, resource, statistics, subprocess, sys
import numpy as np
from scipy.io import wavfile
from pesq import pesq

out = sys.argv[1]
rows = json.load(open(os.path.join(out, "summary.json")))
paths = [("ours_avdec", "g722enc → avdec_g722"), ("lav_ours", "avenc_g722 → g722dec"),
         ("lav_lav", "avenc_g722 → avdec_g722"), ("ours_ours", "g722enc → g722dec")]

def wb_pesq(ref, deg):
    _, r = wavfile.read(ref)
    _, d = wavfile.read(deg)
    n = min(len(r), len(d))
    return pesq(16000, r[:n].astype(np.float32), d[:n].astype(np.float32), "wb")

print("| file | decoder max abs diff (same stream) | " + " | ".join(f"{t}: SNR dB / WB-PESQ" for _, t in paths) + " |")
print("|---|---|" + "---|" * len(paths))
agg = {p: ([], []) for p, _ in paths}
for r in rows:
    cells = []
    for p, _ in paths:
        q = wb_pesq(os.path.join(out, f"{r['file']}.ref.wav"), os.path.join(out, f"{r['file']}.{p}.wav"))
        agg[p][0].append(r[f"snr_{p}"]); agg[p][1].append(q)
        cells.append(f"{r[f'snr_{p}']:.2f} / {q:.2f}")
    print(f"| {r['file']} | {r['dec_max_abs_diff']} | " + " | ".join(cells) + " |")
print("| **mean** | | " + " | ".join(f"**{statistics.mean(agg[p][0]):.2f} / {statistics.mean(agg[p][1]):.2f}**" for p, _ in paths) + " |")

SECS = 60
BUFS = SECS * 50  # 320-sample buffers
def cpu(chain):
    cmd = ["gst-launch-1.0", "-q", "audiotestsrc", "wave=pink-noise", f"num-buffers={BUFS}", "samplesperbuffer=320", "!",
           "audio/x-raw,format=S16LE,rate=16000,channels=1", "!"] + chain.split() + ["!", "fakesink", "sync=false"]
    t = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        t.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(t)
base = cpu("identity")
ours = cpu("g722enc ! g722dec")
lav = cpu("avenc_g722 ! avdec_g722")
print()
print(f"CPU per second of audio, encode+decode (median of 5 × {SECS} s, source-only baseline {base*1000/SECS:.2f} ms/s subtracted):")
print()
print("| elements | CPU ms per s of audio |")
print("|---|---|")
print(f"| g722enc ! g722dec | {(ours-base)*1000/SECS:.2f} |")
print(f"| avenc_g722 ! avdec_g722 | {(lav-base)*1000/SECS:.2f} |")
