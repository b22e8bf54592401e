// A minimal VDA-side peer of the vdimedia virtual-channel protocol (docs/protocol.md, "Frame
// layer", "Handshake", "Sessions", "Message layer"), over a Unix socket to vdimediad: HELLO,
// OPEN, requests with responses, events. It plays the bridge's role for tests and benchmarks
// that drive the real daemon without a browser (emulated arm64 runs, callgrind). Fragmented
// DATA (MORE flag) is reassembled; outgoing messages are split at the negotiated max_frame.

import net from 'node:net';

const KIND = { HELLO: 0x01, WELCOME: 0x02, REJECT: 0x03, OPEN: 0x10, OPENED: 0x11, CLOSE: 0x12, DATA: 0x20, PING: 0x30, PONG: 0x31, ERROR: 0x40 };
const MORE = 0x01;

/** Encodes one frame: u32 length (bytes after it), u8 kind, u8 flags, u32 session, payload. */
export function encodeFrame(kind, session, payload = Buffer.alloc(0), flags = 0) {
  const h = Buffer.alloc(10);
  h.writeUInt32BE(6 + payload.length, 0);
  h.writeUInt8(kind, 4);
  h.writeUInt8(flags, 5);
  h.writeUInt32BE(session, 6);
  return Buffer.concat([h, payload]);
}

export class VcClient {
  /** @param {string} socketPath the daemon's `--listen unix:PATH` socket */
  static async connect(socketPath, { timeoutMs = 60000, agent = 'vdimedia-arm64-test/0.1.0' } = {}) {
    const c = new VcClient(timeoutMs);
    // The socket file exists from bind() on; listen() may come a little later (slow under
    // valgrind or qemu), so a refused connection is retried until the timeout.
    for (const deadline = Date.now() + timeoutMs; ;) {
      c.sock = net.connect({ path: socketPath });
      try {
        await new Promise((res, rej) => { c.sock.once('connect', res); c.sock.once('error', rej); });
        break;
      } catch (e) {
        c.sock.destroy();
        if (e.code !== 'ECONNREFUSED' || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    c.sock.on('data', (b) => c.#input(b));
    c.sock.on('close', () => { c.closed = true; c.#wake(); });
    c.sock.on('error', (e) => { c.error = e; c.#wake(); });
    c.sock.write(encodeFrame(KIND.HELLO, 0, Buffer.from(JSON.stringify({ magic: 'vdimedia', min_version: 1, max_version: 1, agent, max_frame: 65536 }))));
    const f = await c.#waitFrame((f) => f.session === 0 && (f.kind === KIND.WELCOME || f.kind === KIND.REJECT || f.kind === KIND.CLOSE), 'WELCOME');
    if (f.kind !== KIND.WELCOME) throw new Error(`handshake refused: ${f.payload.toString()}`);
    c.welcome = JSON.parse(f.payload.toString());
    c.maxFrame = c.welcome.max_frame;
    return c;
  }

  constructor(timeoutMs) {
    this.timeoutMs = timeoutMs;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.partial = new Map();
    this.messages = []; // {session, msg}
    this.waiters = new Set();
    this.nextId = 1;
    this.nextSession = 1;
    this.closed = false;
  }

  #wake() { for (const w of this.waiters) w(); }

  #input(b) {
    this.buf = Buffer.concat([this.buf, b]);
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + len) break;
      const f = { kind: this.buf[4], flags: this.buf[5], session: this.buf.readUInt32BE(6), payload: this.buf.subarray(10, 4 + len) };
      this.buf = this.buf.subarray(4 + len);
      if (f.kind === KIND.PING) { this.sock.write(encodeFrame(KIND.PONG, 0, f.payload)); continue; }
      if (f.kind === KIND.DATA) {
        const parts = this.partial.get(f.session) ?? [];
        parts.push(Buffer.from(f.payload));
        if (f.flags & MORE) { this.partial.set(f.session, parts); continue; }
        this.partial.delete(f.session);
        this.messages.push({ session: f.session, msg: JSON.parse(Buffer.concat(parts).toString()) });
      } else {
        this.frames.push(f);
      }
    }
    this.#wake();
  }

  async #until(what, check) {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const r = check();
      if (r !== undefined) return r;
      if (this.error) throw new Error(`VC error while waiting for ${what}: ${this.error.message}`);
      if (this.closed) throw new Error(`daemon closed the VC while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${this.timeoutMs} ms waiting for ${what}`);
      await new Promise((res) => {
        const t = setTimeout(done, left);
        function done() { clearTimeout(t); res(); }
        this.waiters.add(done);
      }).finally(() => this.waiters.clear());
    }
  }

  #waitFrame(pred, what) {
    return this.#until(what, () => {
      const i = this.frames.findIndex(pred);
      return i < 0 ? undefined : this.frames.splice(i, 1)[0];
    });
  }

  /** Opens a logical session (one "page"); resolves with its id once OPENED arrives. */
  async open(origin = 'https://arm64-test.invalid') {
    const s = this.nextSession++;
    this.sock.write(encodeFrame(KIND.OPEN, s, Buffer.from(JSON.stringify({ origin, agent: 'node', sdk: '0.1.0' }))));
    await this.#waitFrame((f) => f.session === s && f.kind === KIND.OPENED, `OPENED ${s}`);
    return s;
  }

  /** Closes logical session `session` (the page went away); the daemon sends no reply. */
  closeSession(session, reason = 'page closed') {
    this.sock.write(encodeFrame(KIND.CLOSE, session, Buffer.from(JSON.stringify({ code: 'normal', reason }))));
  }

  #send(session, obj) {
    const body = Buffer.from(JSON.stringify(obj));
    const room = this.maxFrame - 10;
    for (let off = 0; off < body.length || off === 0; off += room) {
      const last = off + room >= body.length;
      this.sock.write(encodeFrame(KIND.DATA, session, body.subarray(off, off + room), last ? 0 : MORE));
      if (last) break;
    }
  }

  /** Sends a request; resolves with `result`, rejects with an Error carrying `code`/`name`. */
  async request(session, method, params = {}) {
    const id = this.nextId++;
    this.#send(session, { type: 'request', id, method, params });
    const m = await this.#until(method, () => {
      const i = this.messages.findIndex((m) => m.session === session && m.msg.type === 'response' && m.msg.id === id);
      return i < 0 ? undefined : this.messages.splice(i, 1)[0].msg;
    });
    if (m.error) throw Object.assign(new Error(`${method}: ${m.error.name} ${m.error.code}: ${m.error.message}`), m.error);
    return m.result;
  }

  /** Removes and returns the events of `session` seen so far that match `pred`. */
  takeEvents(session, pred = () => true) {
    const out = [];
    this.messages = this.messages.filter((m) => {
      const hit = m.session === session && m.msg.type === 'event' && pred(m.msg);
      if (hit) out.push(m.msg);
      return !hit;
    });
    return out;
  }

  /** Waits for (and removes) one event of `session` matching `pred`. */
  waitEvent(session, what, pred) {
    return this.#until(what, () => {
      const i = this.messages.findIndex((m) => m.session === session && m.msg.type === 'event' && pred(m.msg));
      return i < 0 ? undefined : this.messages.splice(i, 1)[0].msg;
    });
  }

  close() { this.sock?.destroy(); }
}
