#!/usr/bin/env python3
"""Builds the offline echo scenario of the AEC benchmark (docs/benchmarks.md, "AEC3").

Writes into OUTDIR (16 kHz mono S16 WAV; AECMOS models run at 16 kHz):
  far.wav   far-end reference (what the loudspeaker is asked to play)
  near.wav  microphone capture = room echo of far + near-end talker + noise
  echo.wav  the echo component alone, nearspeech.wav the near-end component alone
  segments.json  the scored parts: far-end single talk, near-end single talk (from where the
                 echo of the far-end talk before it has decayed), double talk

Far-end: the real recorded speech of /usr/share/sounds/alsa (alsa-utils). Near-end: espeak-ng
(a different voice). Room: pyroomacoustics shoebox 5 x 4 x 2.8 m, RT60 0.3 s (image method,
seeded, deterministic); loudspeaker 0.7 m from the mic, 30 ms playout delay, a mild memoryless
loudspeaker nonlinearity (tanh soft clip). Echo-to-near-speech ratio 0 dB in double talk,
noise at -65 dBFS RMS (pink-ish, seeded).
AEC_RT60=SECONDS (environment) builds the same scenario in a more reverberant room, to check
that a tuning does not only fit RT60 0.3 s.
"""
import json, os, subprocess, sys, tempfile
import numpy as np
import soundfile as sf
import pyroomacoustics as pra
from scipy.signal import fftconvolve, resample_poly, lfilter

FS = 16000
ALSA = "/usr/share/sounds/alsa"
FAR_FILES = ["Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left",
             "Rear_Right", "Side_Left", "Side_Right"]
NEAR_TEXT = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call me back when you have reviewed the quarterly numbers.",
    "We should meet on Thursday afternoon to finish the design review.",
    "Thank you, I can hear you clearly now, the connection is good.",
]


def load(path):
    x, fs = sf.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if fs != FS:
        g = np.gcd(fs, FS)
        x = resample_poly(x, FS // g, fs // g)
    return x


def rms_db(x):
    return 10 * np.log10(np.mean(x ** 2) + 1e-20)


def set_level(x, db):
    act = x[np.abs(x) > 0.02 * np.max(np.abs(x))]
    return x * 10 ** ((db - rms_db(act)) / 20)


def far_speech(seconds, rng_offset=0):
    parts, n = [], 0
    i = rng_offset
    while n < seconds * FS:
        s = load(f"{ALSA}/{FAR_FILES[i % len(FAR_FILES)]}.wav")
        s = set_level(s, -26)
        parts += [s, np.zeros(int(0.25 * FS))]
        n += len(s) + int(0.25 * FS)
        i += 1
    return np.concatenate(parts)[: int(seconds * FS)]


def near_speech(seconds, start=0):
    parts, n, i = [], 0, start
    with tempfile.TemporaryDirectory() as d:
        while n < seconds * FS:
            p = os.path.join(d, f"{i}.wav")
            subprocess.run(["espeak-ng", "-v", "en-us+f3", "-s", "150", "-w", p,
                            NEAR_TEXT[i % len(NEAR_TEXT)]], check=True)
            s = set_level(load(p), -26)
            parts += [s, np.zeros(int(0.3 * FS))]
            n += len(s) + int(0.3 * FS)
            i += 1
    return np.concatenate(parts)[: int(seconds * FS)]


RT60 = float(os.environ.get("AEC_RT60", "0.3"))


def rirs():
    rt60, dims = RT60, [5.0, 4.0, 2.8]
    e_abs, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=FS, materials=pra.Material(e_abs), max_order=max_order)
    room.add_source([2.3, 2.0, 1.1])  # loudspeaker (thin-client speaker on the desk)
    room.add_source([2.0, 1.4, 1.3])  # near-end talker
    room.add_microphone([2.5, 2.65, 1.0])
    room.compute_rir()
    return np.array(room.rir[0][0]), np.array(room.rir[0][1])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240722)
    fst, nst, dt = 12.0, 8.0, 10.0
    total = int((fst + nst + dt) * FS)
    far = np.zeros(total)
    far[: int(fst * FS)] = far_speech(fst)
    far[int((fst + nst) * FS):] = far_speech(dt, rng_offset=3)
    near = np.zeros(total)
    near[int(fst * FS): int((fst + nst) * FS)] = near_speech(nst)
    near[int((fst + nst) * FS):] = near_speech(dt, start=2)

    h_spk, h_talk = rirs()
    delay = int(0.030 * FS)
    spk = np.tanh(1.8 * far) / 1.8  # mild loudspeaker compression
    echo = fftconvolve(np.concatenate([np.zeros(delay), spk]), h_spk)[:total]
    talk = fftconvolve(near, h_talk)[:total]
    # echo-to-near-speech ratio 0 dB (measured on active parts)
    echo *= 10 ** ((rms_db(talk[np.abs(talk) > 1e-3]) - rms_db(echo[np.abs(echo) > 1e-3])) / 20)
    noise = lfilter([1.0], [1.0, -0.9], rng.standard_normal(total))
    noise *= 10 ** ((-65 - rms_db(noise)) / 20)
    mic = echo + talk + noise
    peak = np.max(np.abs(mic))
    if peak > 0.99:
        raise SystemExit(f"scenario clips (peak {peak:.2f})")
    for name, x in [("far", far), ("near", mic), ("echo", echo), ("nearspeech", talk)]:
        sf.write(os.path.join(out, f"{name}.wav"), x, FS, subtype="PCM_16")
    # The far end stops and the near talker starts at `fst`, but the loudspeaker's echo goes on
    # for the playout delay plus the room's decay: over the first 80 ms after `fst` it is 6 to
    # 24 dB above the near-end speech. That is double talk, so near-end single talk is scored from
    # the point where the echo has decayed by 60 dB (delay + RT60) to the end of the part.
    nst_from = round(fst + delay / FS + RT60, 2)
    tail = echo[int(nst_from * FS): int((fst + nst) * FS)]
    tail_peak = max(rms_db(tail[i:i + FS // 100]) for i in range(0, len(tail) - FS // 100, FS // 100))
    if tail_peak > rms_db(talk[np.abs(talk) > 1e-3]) - 40:
        raise SystemExit(f"echo in scored near-end single talk at {tail_peak:.1f} dB: not single talk")
    seg = {"rate": FS, "fst": [0.0, fst], "nst": [nst_from, fst + nst], "dt": [fst + nst, fst + nst + dt],
           "near_talker_s": fst, "echo_delay_ms": 30, "rt60_s": RT60, "noise_dbfs": -65}
    with open(os.path.join(out, "segments.json"), "w") as f:
        json.dump(seg, f, indent=1)
    print(json.dumps(seg))


if __name__ == "__main__":
    main()
