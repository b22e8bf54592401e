#!/usr/bin/env python3
"""Offline, deterministic AEC comparison at 32 / 48 kHz capture (docs/benchmarks.md,
"AEC3 at 48 kHz"): vdiaec's own chain (tuned AEC3 stage from gst-plugins/src/vdiaec/aec3.rs,
then NS moderate) against sonora's APM with its own AEC3 (what vdiaec ran at 32/48 kHz before),
and the APM in WebRTC's three-band 48 kHz mode.

usage: offline_rates.py [WORKDIR] [RATES]   (default /tmp/aec-rates, "32000,48000")
The 16 kHz scenario (make_scenario.py) is upsampled by two resamplers, GStreamer's
audioresample and sox, to tell effects of the processing from the chaotic sensitivity of an
adaptive filter to its exact input; outputs are resampled to 16 kHz by audioresample and scored
by score.py. Needs bench/aec/candidates built (see run.py), sox, gst-launch-1.0.
"""
import json, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CAND = os.path.join(ROOT, "target", "bench-aec", "release", "aec-candidates")
WORK = sys.argv[1] if len(sys.argv) > 1 else "/tmp/aec-rates"
RATES = [int(r) for r in (sys.argv[2] if len(sys.argv) > 2 else "32000,48000").split(",")]

ENGINES = {
    # name: (engine, environment)
    "vdiaec (tuned stage, echo-decay 0.6) + NS": ("vdiaec", {"AEC_NS": "moderate"}),
    "vdiaec stage echo-decay=0.83 + NS": ("vdiaec", {"AEC_NS": "moderate", "AEC_DECAY": "0.83"}),
    "APM AEC3 default + HPF + NS (vdiaec before)": ("apm", {"AEC_NS": "moderate"}),
    "APM AEC3 default, three bands at 48 kHz + HPF + NS": ("apm", {"AEC_NS": "moderate", "AEC_MAXRATE": "48000"}),
}


def gst_resample(src, dst, rate):
    subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={src}", "!", "wavparse", "!", "audioconvert",
                    "!", "audioresample", "!", f"audio/x-raw,format=S16LE,rate={rate},channels=1", "!", "wavenc",
                    "!", "filesink", f"location={dst}"], check=True)


def main():
    os.makedirs(WORK, exist_ok=True)
    subprocess.run([sys.executable, f"{HERE}/make_scenario.py", WORK], check=True, stdout=subprocess.DEVNULL)
    print("| rate | input resampler | system | ERLE st (dB) | AECMOS echo st / dt | AECMOS deg nst / dt | CPU ms/s |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for rate in RATES:
        for rs in ["audioresample", "sox"]:
            for sig in ["far", "near"]:
                dst = f"{WORK}/{sig}-{rs}-{rate}.wav"
                if rs == "sox":
                    subprocess.run(["sox", f"{WORK}/{sig}.wav", "-r", str(rate), dst], check=True)
                else:
                    gst_resample(f"{WORK}/{sig}.wav", dst, rate)
            for name, (eng, env) in ENGINES.items():
                if env.get("AEC_MAXRATE") == "48000" and rate != 48000:
                    continue
                tag = f"{rs}-{rate}-{len(rows)}"
                out, out16 = f"{WORK}/out-{tag}.wav", f"{WORK}/out16-{tag}.wav"
                r = subprocess.run([CAND, eng, f"{WORK}/far-{rs}-{rate}.wav", f"{WORK}/near-{rs}-{rate}.wav", out],
                                   check=True, capture_output=True, text=True, env=dict(os.environ, **env))
                cpu = json.loads(r.stdout)["cpu_ms_per_s"]
                gst_resample(out, out16, 16000)
                s = json.loads(subprocess.run([sys.executable, f"{HERE}/score.py", WORK, out16], check=True,
                                              capture_output=True, text=True).stdout)
                rows.append(dict(rate=rate, resampler=rs, system=name, cpu_ms_per_s=cpu, **s))
                print(f"| {rate} | {rs} | {name} | {s['erle_fst_db']:.1f} | {s['aecmos_echo_st']:.2f} / "
                      f"{s['aecmos_echo_dt']:.2f} | {s['aecmos_deg_nst']:.2f} / {s['aecmos_deg_dt']:.2f} | {cpu} |",
                      flush=True)
    json.dump(rows, open(f"{WORK}/offline-rates.json", "w"), indent=1)


if __name__ == "__main__":
    main()
