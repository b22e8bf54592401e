#!/usr/bin/env python3
"""AEC benchmark runner: scenario -> vdiaec / webrtcdsp (gst-launch, real time) and the pure-Rust
candidates (bench/aec/candidates) -> scores (score.py) -> markdown table on stdout.

usage: run.py [WORKDIR] [NS]   (default /tmp/aec-bench, moderate)
  NS: noise suppression of BOTH webrtcdsp and vdiaec: off | low | moderate | high | very-high
      (webrtcdsp noise-suppression-level and vdiaec noise-suppression-level mean the same WebRTC
      levels; HPF on and AGC off for both in every case)
Needs: pip install -r bench/aec/requirements.txt; cargo build --release -p gst-plugin-vdimedia;
       bench/aec/candidates built with CARGO_TARGET_DIR=target/bench-aec cargo build --release.
AEC_RATE=48000 (environment) runs both elements at 48 kHz (scenario upsampled, output resampled
back to 16 kHz for AECMOS), the rate the engine captures at; the crate rows stay at 16 kHz.
VDIAEC_BASELINE_DIR=DIR (environment) adds the row "baseline vdiaec", run with the plugin built
in DIR (e.g. the last commit's, to compare a change side by side; before the 32/48 kHz tuned
stage, that is the APM's own AEC3 at 32/48 kHz).
CPU per second of audio for the GStreamer elements = (user+sys CPU of the whole gst-launch run
minus that of the same pipeline with `identity` in place of probe and canceller) / audio seconds.
AEC_CPU_REPS=N (environment) runs every system N times, interleaved, and reports the median CPU
[min–max]: real-time CPU on a shared machine moves by tens of percent from run to run.
"""
import json, os, resource, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
WORK = sys.argv[1] if len(sys.argv) > 1 else "/tmp/aec-bench"
NS = sys.argv[2] if len(sys.argv) > 2 else "moderate"
if NS not in ("off", "low", "moderate", "high", "very-high"):
    sys.exit(f"NS must be off, low, moderate, high or very-high, not {NS!r}")
NS_PROPS = "noise-suppression=false" if NS == "off" else f"noise-suppression=true noise-suppression-level={NS}"
PLUGIN_DIR = os.environ.get("VDIAEC_PLUGIN_DIR", os.path.join(ROOT, "target", "release"))
CAND = os.path.join(ROOT, "target", "bench-aec", "release", "aec-candidates")
RATE = int(os.environ.get("AEC_RATE", "16000"))
CAPS = f"audio/x-raw,format=S16LE,rate={RATE},channels=1"

SYSTEMS = {
    # name: (probe element, canceller element); both: AEC + NS (same level) + HPF, AGC off
    "identity": ("identity", "identity"),
    "webrtcdsp": ("webrtcechoprobe name=p", f"webrtcdsp probe=p gain-control=false {NS_PROPS}"),
    "webrtcdsp delay-agnostic": ("webrtcechoprobe name=p",
                                 f"webrtcdsp probe=p gain-control=false delay-agnostic=true {NS_PROPS}"),
    "vdiaec": ("vdiaecprobe name=p", f"vdiaec probe=p gain-control=false {NS_PROPS}"),
    # the same with WebRTC's default AEC3 tuning (what vdiaec ran before echo-decay existed)
    "vdiaec echo-decay=0.83": ("vdiaecprobe name=p", f"vdiaec probe=p gain-control=false echo-decay=0.83 {NS_PROPS}"),
}


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


BASELINE_DIR = os.environ.get("VDIAEC_BASELINE_DIR")
if BASELINE_DIR:
    SYSTEMS["baseline vdiaec"] = SYSTEMS["vdiaec"]


def run_gst(name, probe, dsp, out):
    d = WORK
    pipe = (f"filesrc location={d}/far.wav ! wavparse ! audioconvert ! audioresample ! {CAPS} ! "
            f"audiobuffersplit output-buffer-duration=1/100 ! {probe} ! fakesink sync=true "
            f"filesrc location={d}/near.wav ! wavparse ! audioconvert ! audioresample ! {CAPS} ! "
            f"audiobuffersplit output-buffer-duration=1/100 ! {dsp} ! identity sync=true ! "
            f"audioresample ! audio/x-raw,rate=16000 ! wavenc ! filesink location={out}")
    env = dict(os.environ, GST_PLUGIN_PATH=PLUGIN_DIR)
    if name.startswith("baseline "):
        # own registry file (the same plugin name from another directory), built before the
        # measured run: a registry rebuild costs more CPU than the element
        env.update(GST_PLUGIN_PATH=BASELINE_DIR, GST_REGISTRY=os.path.join(WORK, "baseline-registry.bin"))
        subprocess.run(["gst-inspect-1.0", "vdiaec"], check=True, env=env, stdout=subprocess.DEVNULL)
    c0 = child_cpu()
    subprocess.run(["gst-launch-1.0", "-q"] + pipe.split(), check=True, env=env)
    return child_cpu() - c0


def main():
    os.makedirs(WORK, exist_ok=True)
    subprocess.run([sys.executable, f"{HERE}/make_scenario.py", WORK], check=True, stdout=subprocess.DEVNULL)
    seg = json.load(open(f"{WORK}/segments.json"))
    secs = seg["dt"][1]
    rows = {}
    cpu = {name: [] for name in SYSTEMS}
    # AEC_CPU_REPS=N: every system N times, interleaved, on the same 2 cores; the first
    # repetition's output is the one scored, the CPU figure is the median of the N.
    reps = int(os.environ.get("AEC_CPU_REPS", "1"))
    outs = {name: f"{WORK}/out-{name.replace(' ', '_')}.wav" for name in SYSTEMS}
    for rep in range(reps):
        for name, (probe, dsp) in SYSTEMS.items():
            cpu[name].append(run_gst(name, probe, dsp, outs[name] if rep == 0 else f"{WORK}/rep.wav"))
    for name, runs in cpu.items():
        if name == "identity":
            continue
        per_s = sorted((c - b) / secs * 1000 for c, b in zip(runs, cpu["identity"]))
        cell = f"{statistics.median(per_s):.1f}"
        if reps > 1:
            cell += f" [{per_s[0]:.1f}–{per_s[-1]:.1f}]"
        rows[name] = {"cpu_ms_per_s": cell, "out": outs[name]}
    if os.path.exists(CAND):
        for eng in ["sonora", "aec3"]:
            out = f"{WORK}/out-cand-{eng}.wav"
            r = subprocess.run([CAND, eng, f"{WORK}/far.wav", f"{WORK}/near.wav", out],
                               check=True, capture_output=True, text=True)
            rows[f"{eng} (crate, AEC only)"] = {"cpu_ms_per_s": json.loads(r.stdout)["cpu_ms_per_s"], "out": out}
    print("| system | ERLE far-end single talk (dB) | AECMOS echo st / dt | AECMOS deg nst / dt | CPU ms per s of audio |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        s = json.loads(subprocess.run([sys.executable, f"{HERE}/score.py", WORK, r["out"]], check=True,
                                      capture_output=True, text=True).stdout)
        r.update(s)
        print(f"| {name} | {s['erle_fst_db']:.1f} | {s['aecmos_echo_st']:.2f} / {s['aecmos_echo_dt']:.2f} | "
              f"{s['aecmos_deg_nst']:.2f} / {s['aecmos_deg_dt']:.2f} | {r['cpu_ms_per_s']} |", flush=True)
    json.dump(rows, open(f"{WORK}/results.json", "w"), indent=1)


if __name__ == "__main__":
    main()
