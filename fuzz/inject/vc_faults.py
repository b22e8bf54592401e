#!/usr/bin/env python3
"""Fault injection against a real vdimediad over its virtual-channel socket (docs/protocol.md,
"Frame layer"), speaking the wire format by hand so it can send what no Channel would.

Starts `vdimediad --listen unix:DIR/vc.sock --backend alsa` (no sound card needed), runs each
scenario on a fresh connection, checks the typed answer, that the daemon process survives and
serves the next connection, and prints one table row per scenario plus the daemon's RSS.
Exit status 1 when any expectation fails. Results: docs/robustness.md, "Fuzzing".

    fuzz/inject/vc_faults.py [PATH_TO_VDIMEDIAD]   (default: target/release/vdimediad)
    VC_FAULTS_CANDIDATES=N   remote candidates added to one connection (default 1000)
"""
import glob, json, os, socket, struct, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO, WELCOME, OPEN, OPENED, CLOSE, DATA, ERROR = 0x01, 0x02, 0x10, 0x11, 0x12, 0x20, 0x40
MORE = 0x01


def frame(kind, session, payload=b"", flags=0):
    return struct.pack(">IBBI", 6 + len(payload), kind, flags, session) + payload


def data_frames(session, msg, max_frame=4096):
    b = json.dumps(msg, separators=(",", ":")).encode()
    chunk = max_frame - 10
    parts = [b[i:i + chunk] for i in range(0, len(b), chunk)] or [b""]
    return b"".join(frame(DATA, session, p, MORE if i < len(parts) - 1 else 0) for i, p in enumerate(parts))


class Vc:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(10)
        self.buf = b""
        self.partial = {}

    def send(self, b):
        self.s.sendall(b)

    def hello(self):
        h = {"magic": "vdimedia", "min_version": 1, "max_version": 1, "agent": "vc_faults", "max_frame": 4096}
        self.send(frame(HELLO, 0, json.dumps(h).encode()))
        k, _, _, p = self.next()
        assert k == WELCOME, f"expected WELCOME, got kind {k:#x} {p[:200]!r}"

    def next(self, timeout=10):
        """One frame (kind, flags, session, payload); None when the daemon closed."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + length:
                    f, self.buf = self.buf[:4 + length], self.buf[4 + length:]
                    kind, flags, session = struct.unpack(">BBI", f[4:10])
                    return kind, flags, session, f[10:]
            d = self.s.recv(65536)
            if not d:
                return None
            self.buf += d

    def messages(self, n, timeout=30):
        """The next n DATA messages (reassembled) and every ERROR/CLOSE frame seen meanwhile."""
        out, other = [], []
        deadline = time.time() + timeout
        while len(out) < n and time.time() < deadline:
            f = self.next(max(0.1, deadline - time.time()))
            if f is None:
                other.append(("closed", None))
                break
            kind, flags, session, p = f
            if kind == DATA:
                self.partial[session] = self.partial.get(session, b"") + p
                if not flags & MORE:
                    out.append(json.loads(self.partial.pop(session)))
            elif kind in (ERROR, CLOSE):
                other.append((kind, json.loads(p or b"{}")))
        return out, other

    def open(self, session):
        self.send(frame(OPEN, session, b"{}"))
        k, _, s, p = self.next()
        assert (k, s) == (OPENED, session), f"OPEN {session}: kind {k:#x} {p!r}"

    def request(self, session, rid, method, params):
        """Sends one request; returns its response (events arriving meanwhile are skipped)."""
        self.send(data_frames(session, {"type": "request", "id": rid, "method": method, "params": params}))
        while True:
            msgs, other = self.messages(1)
            assert msgs, f"no response to {method} (id {rid}): {other}"
            if msgs[0].get("type") == "response":
                assert msgs[0].get("id") == rid, msgs[0]
                return msgs[0]

    def closed_with(self):
        """Reads until the channel closes; returns the CLOSE/ERROR codes seen."""
        codes = []
        while True:
            try:
                f = self.next(5)
            except socket.timeout:
                return codes + ["(still open)"]
            if f is None:
                return codes
            if f[0] in (CLOSE, ERROR):
                codes.append(json.loads(f[3] or b"{}").get("code"))


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    daemon = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/vdimediad")
    tmp = tempfile.mkdtemp(prefix="vc-faults-")
    sock = os.path.join(tmp, "vc.sock")
    env = dict(os.environ, XDG_RUNTIME_DIR=tmp, VDIMEDIA_LOG="warn")
    log = open(os.path.join(tmp, "vdimediad.log"), "w")
    p = subprocess.Popen([daemon, "--listen", f"unix:{sock}", "--backend", "alsa"], env=env,
                         stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):
        if os.path.exists(sock):
            break
        time.sleep(0.1)
    offer = open(sorted(glob.glob(os.path.join(ROOT, "fuzz/corpus/daemon_sdp/seed-offer-A-opus-*.sdp")))[0]).read()
    rows, failed = [], False

    def row(name, expect, got, ok):
        nonlocal failed
        failed |= not ok
        alive = p.poll() is None
        failed |= not alive
        rows.append((name, got, "ok" if ok and alive else "FAIL", rss_kb(p.pid) if alive else 0))

    rss0 = rss_kb(p.pid)

    # 1. Garbage instead of HELLO.
    v = Vc(sock)
    v.send(os.urandom(64))
    got = v.closed_with()
    row("64 random bytes before HELLO", "closed, bad_frame", f"channel closed {got}", "bad_frame" in got)

    # 2. A frame length of 4 GB.
    v = Vc(sock)
    v.hello()
    v.send(struct.pack(">IBBI", 0xFFFFFFF0, DATA, 0, 1))
    got = v.closed_with()
    row("DATA frame announcing 4 GiB", "closed, bad_frame", f"channel closed {got}", "bad_frame" in got)

    # 3. Sessions over the limit.
    v = Vc(sock)
    v.hello()
    v.send(b"".join(frame(OPEN, s, b"{}") for s in range(1, 71)))
    opened = refused = 0
    for _ in range(70):
        k, _, s, pl = v.next()
        if k == OPENED:
            opened += 1
        elif k == ERROR and json.loads(pl)["code"] == "limit_exceeded":
            refused += 1
    row("70 OPENs on one channel", "64 opened, 6 limit_exceeded", f"{opened} OPENED, {refused} ERROR limit_exceeded",
        (opened, refused) == (64, 6))
    v.s.close()

    # 4. Pipelined requests over the pending limit.
    v = Vc(sock)
    v.hello()
    v.open(1)
    v.send(b"".join(data_frames(1, {"type": "request", "id": i, "method": "devices.enumerate", "params": {}})
                    for i in range(1, 301)))
    msgs, _ = v.messages(300, timeout=60)
    msgs = [m for m in msgs if m.get("type") == "response"]
    ok_n = sum(1 for m in msgs if "result" in m)
    lim = sum(1 for m in msgs if m.get("error", {}).get("code") == "limit_exceeded")
    row("300 pipelined devices.enumerate", "≤128 served, rest limit_exceeded",
        f"{ok_n} answered, {lim} limit_exceeded", ok_n + lim == 300 and lim > 0 and ok_n >= 128)

    # 5. Peer connections over the limit, bad SDP, oversize SDP, candidates.
    cfg = {"iceServers": [], "iceTransportPolicy": "all", "bundlePolicy": "balanced"}
    codes = []
    for i in range(9):
        m = v.request(1, 1000 + i, "pc.create", {"pc": f"pc-{i}", "configuration": cfg})
        codes.append(m.get("error", {}).get("code", "ok"))
    row("9 × pc.create in one session", "8 ok, then limit_exceeded", ", ".join(codes[-2:]) + f" ({codes.count('ok')} ok)",
        codes.count("ok") == 8 and codes[-1] == "limit_exceeded")
    m = v.request(1, 2000, "pc.setRemoteDescription",
                  {"pc": "pc-0", "description": {"type": "offer", "sdp": "v=0\r\nthis is not sdp\r\n"}})
    got = m.get("error", {}).get("code")
    row("setRemoteDescription with garbage SDP", "invalid_sdp", got, got == "invalid_sdp")
    big = offer + "a=x-pad:" + "x" * 70000 + "\r\n"
    m = v.request(1, 2001, "pc.setRemoteDescription", {"pc": "pc-0", "description": {"type": "offer", "sdp": big}})
    got = m.get("error", {}).get("code")
    row(f"setRemoteDescription with a {len(big) // 1024} KiB SDP", "limit_exceeded", got, got == "limit_exceeded")
    m = v.request(1, 2002, "pc.setRemoteDescription", {"pc": "pc-0", "description": {"type": "offer", "sdp": offer}})
    row("setRemoteDescription with a real Chromium offer", "ok", m.get("error", {}).get("code", "ok"), "result" in m)
    before = rss_kb(p.pid)
    n_ok = 0
    n_cand = int(os.environ.get("VC_FAULTS_CANDIDATES", "1000"))
    for i in range(n_cand):
        c = {"candidate": f"candidate:{i} 1 UDP 2015363327 127.0.0.1 {20000 + i % 40000} typ host", "sdpMLineIndex": 0}
        m = v.request(1, 3000 + i, "pc.addIceCandidate", {"pc": "pc-0", "candidate": c})
        n_ok += "result" in m
    grew = rss_kb(p.pid) - before
    row(f"{n_cand} × addIceCandidate on one connection", "(no limit yet)",
        f"{n_ok} accepted, RSS +{grew // 1024} MiB", True)
    m = v.request(1, 5000, "pc.addIceCandidate",
                  {"pc": "pc-0", "candidate": {"candidate": "candidate:x 1 UDP", "sdpMLineIndex": 0}})
    got = m.get("error", {}).get("code")
    row("addIceCandidate with a truncated candidate", "operation_error", got, got == "operation_error")
    v.send(frame(CLOSE, 1, json.dumps({"code": "normal", "reason": "done"}).encode()))
    v.s.close()

    # 6. The daemon still serves a fresh channel.
    v = Vc(sock)
    v.hello()
    v.open(1)
    m = v.request(1, 1, "devices.enumerate", {})
    row("fresh channel after all of the above", "served", "served" if "result" in m else m, "result" in m)

    p.terminate()
    p.wait(10)
    print(f"vdimediad RSS at start: {rss0 // 1024} MiB; log: {tmp}/vdimediad.log")
    print("| input / fault | result | verdict | daemon RSS (MiB) |")
    print("| --- | --- | --- | --- |")
    for name, got, verdict, rss in rows:
        print(f"| {name} | {got} | {verdict} | {rss // 1024} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
