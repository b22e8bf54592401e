#!/usr/bin/env python3
"""Writes the seed corpora of the message, bridge_page, daemon_sdp and daemon_params targets.

SDP seeds come from real calls (tests/out/work/*/offer-A.sdp, answer-B.sdp: Chromium and
vdimediad descriptions captured by the end-to-end rig); run this after an e2e run to refresh
them. JSON seeds are the shapes the SDK sends (sdk/js/src/*.js, tests/e2e/pages/phone.js).
Usage: fuzz/seeds/make-seeds.py   (from anywhere; writes fuzz/corpus/<target>/seed-*)
"""
import glob, hashlib, json, os

FUZZ = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def j(v):
    return json.dumps(v, separators=(",", ":"))


# --- SDP from real calls (deduplicated by content) -------------------------------------------
sdps = {}
for path in sorted(glob.glob(os.path.join(ROOT, "tests/out/work/*/*.sdp"))):
    text = open(path, "rb").read()
    h = hashlib.sha1(text).hexdigest()[:8]
    kind = os.path.basename(path).split(".")[0]  # offer-A / answer-B
    run = os.path.basename(os.path.dirname(path)).split("-")[1]  # opus / G722 / PCMU
    sdps.setdefault(text, f"{kind}-{run}-{h}.sdp")
if not sdps:
    raise SystemExit("no tests/out/work/*/*.sdp: run the end-to-end tests first")
for text, name in sdps.items():
    put("daemon_sdp", name, text)
offer = next(t for t, n in sdps.items() if n.startswith("offer")).decode()
answer = next(t for t, n in sdps.items() if n.startswith("answer")).decode()
cands = sorted({l[2:] for t in sdps for l in t.decode().splitlines() if l.startswith("a=candidate:")})

# --- request params the SDK sends --------------------------------------------------------------
configuration = {"iceServers": [{"urls": "stun:127.0.0.1:3478"},
                                {"urls": ["turn:127.0.0.1:3478?transport=udp", "turns:[::1]:5349"],
                                 "username": "u@x", "credential": "p:w"}],
                 "iceTransportPolicy": "all", "bundlePolicy": "balanced"}
params = {
    "gum-processing-off": {"constraints": {"audio": {"echoCancellation": False, "noiseSuppression": False,
                                                     "autoGainControl": False}, "video": False}},
    "gum-true": {"constraints": {"audio": True}},
    "gum-exact": {"constraints": {"audio": {"deviceId": {"exact": ["default"]}, "sampleRate": {"min": 16000,
              "max": 48000, "ideal": 48000}, "channelCount": 1, "advanced": [{"groupId": "g1"},
              {"echoCancellation": {"exact": True}}]}}},
    "gum-video": {"constraints": {"audio": True, "video": {"width": 640}}},
    "pc-create": {"pc": "pc-1", "configuration": configuration},
    "pc-create-relay": {"pc": "pc-2", "configuration": {"iceServers": [], "iceTransportPolicy": "relay",
                                                         "bundlePolicy": "max-compat"}},
    "candidate": {"pc": "pc-1", "candidate": {"candidate": cands[0] if cands else
                  "candidate:1 1 UDP 2015363327 127.0.0.1 43889 typ host", "sdpMid": "0", "sdpMLineIndex": 0}},
    "candidate-end": {"pc": "pc-1", "candidate": None},
    "dtmf": {"pc": "pc-1", "sender": "s-1", "tones": "123,#*ABCD", "duration": 100, "interToneGap": 70},
}
for name, p in params.items():
    put("daemon_params", name + ".json", j(p))

# --- whole messages (page → bridge → daemon, and back) -----------------------------------------
messages = {
    "gum": {"type": "request", "id": 1, "method": "media.getUserMedia", "params": params["gum-processing-off"]},
    "create": {"type": "request", "id": 2, "method": "pc.create", "params": params["pc-create"]},
    "srd": {"type": "request", "id": 3, "method": "pc.setRemoteDescription",
            "params": {"pc": "pc-1", "description": {"type": "offer", "sdp": offer}}},
    "sld": {"type": "request", "id": 4, "method": "pc.setLocalDescription",
            "params": {"pc": "pc-1", "description": {"type": "answer", "sdp": answer}}},
    "cand": {"type": "request", "id": 5, "method": "pc.addIceCandidate", "params": params["candidate"]},
    "ok": {"type": "response", "id": 2, "result": {"signalingState": "stable"}},
    "err": {"type": "response", "id": 3, "error": {"code": "overconstrained", "message": "x",
                                                   "constraint": "deviceId"}},
    "event": {"type": "event", "event": "pc.icecandidate", "params": {"pc": "pc-1", "candidate": None}},
    "bad-params": {"type": "request", "id": 9, "method": "pc.close", "params": [1]},
}
for name, m in messages.items():
    put("message", name + ".json", j(m))
for name, v in {"config": configuration, "desc": {"type": "answer", "sdp": answer},
                "hello": {"magic": "vdimedia", "min_version": 1, "max_version": 1, "agent": "b", "max_frame": 4096},
                "open": {"origin": "https://phone.example", "agent": "Chromium", "sdk": "vdimedia-js/0.1.0"}}.items():
    put("message", name + ".json", j(v))

# --- bridge_page: selector byte, then page texts separated by 0xFF ------------------------------
hello = j({"type": "hello", "sdk": "vdimedia-js/0.1.0", "min_version": 1, "max_version": 1})
calls = [hello] + [j(messages[k]) for k in ("gum", "create", "srd", "sld", "cand", "event")]
put("bridge_page", "call", b"\x00" + b"\xff".join(c.encode() for c in calls))
put("bridge_page", "fragmented", b"\x01" + j(messages["srd"]).encode())
put("bridge_page", "garbage", b"\x07" + b"\xff".join([b"{", b"[]", j({"type": "request", "id": 7}).encode(),
                                                      b"\xc3\x28", j(messages["bad-params"]).encode()]))
print(f"{len(sdps)} SDPs, {len(params)} params, {len(messages)} messages")
