// A loopback call through the real daemon, driven over its virtual channel: one logical session,
// two RTCPeerConnections (a, b) inside vdimediad, each sending a different virtual microphone
// of a private PipeWire rig and playing the other's track into its own null sink. Audio flows
// both ways; each recording must carry the OTHER side's tone (energy and frequency), so a call
// that only sends one way, or loops a mic back locally, fails.
//
//   node tests/arm64/lib/loopback-call.mjs [--seconds 5] [--codec opus] [--timeout 120]
//        [--dir DIR] [--footprint] [--playout] [--mark CMD] -- DAEMON_CMD...
// --mark CMD runs `CMD start PID` once both connections are up and `CMD end PID` after the
// recorded span (e.g. callgrind_control -z / -d to count only the call).
//
// DAEMON_CMD is the daemon command prefix (e.g. target/release/vdimediad, or
// `scripts/qemu-env.sh run target/cross/.../vdimediad`, or `valgrind --tool=callgrind …`);
// --listen/--backend/--loopback-ice are appended. Prints one JSON result line; exit 1 on failure.
// --footprint samples the daemon's /proc (RSS, threads, mapped shared libraries) before any
// channel (beforeChannel), with a handshaken channel and no session (idleChannel), with a page
// session open and no call (idleSession), in the call (inCall), 3 s after pc.close of both
// (afterCall: the daemon's idle release runs 2 s after the last connection went away) and 2 s
// after the session closed too (afterSession). Each idle sample waits
// `--settle` seconds (default 2: tokio's blocking pool lets its threads go after 1 s).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VcClient } from './vc.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const RIG = path.join(ROOT, 'tests/rig/pipewire.sh');
const TONE_A = 440; // Hz, sent by pc a (mic virt_mic)
const TONE_B = 1000; // Hz, sent by pc b (mic virt_mic_b)

function parseArgs(argv) {
  const o = { seconds: 5, codec: 'opus', timeout: 120, dir: null, footprint: false, settle: 2, playout: false, mark: null, daemon: [] };
  const i = argv.indexOf('--');
  if (i < 0 || i === argv.length - 1) throw new Error('usage: loopback-call.mjs [options] -- DAEMON_CMD...');
  o.daemon = argv.slice(i + 1);
  const a = argv.slice(0, i);
  for (let k = 0; k < a.length; k++) {
    const v = () => a[++k];
    switch (a[k]) {
      case '--seconds': o.seconds = Number(v()); break;
      case '--codec': o.codec = v(); break;
      case '--timeout': o.timeout = Number(v()); break;
      case '--dir': o.dir = v(); break;
      case '--footprint': o.footprint = true; break;
      case '--settle': o.settle = Number(v()); break;
      case '--playout': o.playout = true; break;
      case '--mark': o.mark = v(); break;
      default: throw new Error(`unknown option ${a[k]}`);
    }
  }
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...m) => console.error(`[loopback-call ${new Date().toISOString().slice(11, 23)}]`, ...m);

/** RSS (KiB; also its anonymous and file-backed parts), thread count and the shared objects mapped by `pid`, from /proc. */
export function sampleProc(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) ?? [])[1] ?? NaN);
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
  const libs = [...new Set(maps.split('\n').map((l) => l.split(/\s+/)[5]).filter((p) => p && /\.so(\.|$)/.test(p)))].sort();
  const threads = fs.readdirSync(`/proc/${pid}/task`).map((t) => {
    try { return fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim(); } catch { return '?'; }
  });
  return { rssKiB: kb('VmRSS'), rssAnonKiB: kb('RssAnon'), rssFileKiB: kb('RssFile'), hwmKiB: kb('VmHWM'), threads: threads.length, threadNames: threads, libs: libs.length, libList: libs };
}

/** WAV → {rms (0..1), hz (zero-crossing estimate), seconds} of the first channel, after `skipS`. */
export function analyseWav(file, skipS = 0.5, freqs = []) {
  const b = fs.readFileSync(file);
  let off = 12, fmt = null, data = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    let size = b.readUInt32LE(off + 4);
    if (id === 'data' && (size === 0 || size === 0xffffffff || off + 8 + size > b.length)) size = b.length - off - 8;
    if (id === 'fmt ') fmt = { format: b.readUInt16LE(off + 8), ch: b.readUInt16LE(off + 10), rate: b.readUInt32LE(off + 12), bits: b.readUInt16LE(off + 22) };
    if (id === 'data') { data = b.subarray(off + 8, off + 8 + size); break; }
    off += 8 + size + (size & 1);
  }
  if (!fmt || !data) throw new Error(`${file}: not a WAV with fmt and data`);
  const bps = fmt.bits / 8, frame = bps * fmt.ch;
  const n = Math.floor(data.length / frame);
  const get = (i) => {
    const p = i * frame;
    if (fmt.bits === 32 && (fmt.format === 3 || fmt.format === 0xfffe)) return data.readFloatLE(p);
    if (fmt.bits === 16) return data.readInt16LE(p) / 32768;
    if (fmt.bits === 32) return data.readInt32LE(p) / 2147483648;
    throw new Error(`${file}: ${fmt.bits}-bit samples not handled`);
  };
  let sum = 0, cross = 0, prev = 0, count = 0;
  for (let i = Math.floor(skipS * fmt.rate); i < n; i++) {
    const s = get(i);
    sum += s * s;
    if ((s >= 0) !== (prev >= 0) && Math.abs(s - prev) > 0.01) cross++;
    prev = s;
    count++;
  }
  const seconds = count / fmt.rate;
  // Goertzel over 100 ms blocks: the mean amplitude (0..1) of each sine in `freqs`.
  const amp = {};
  const block = Math.floor(fmt.rate / 10);
  for (const f of freqs) {
    const w = 2 * Math.cos((2 * Math.PI * f) / fmt.rate);
    let total = 0, blocks = 0;
    for (let b0 = Math.floor(skipS * fmt.rate); b0 + block <= n; b0 += block) {
      let s1 = 0, s2 = 0;
      for (let i = b0; i < b0 + block; i++) { const s0 = get(i) + w * s1 - s2; s2 = s1; s1 = s0; }
      total += (2 * Math.sqrt(Math.max(0, s1 * s1 + s2 * s2 - w * s1 * s2))) / block;
      blocks++;
    }
    amp[f] = blocks ? total / blocks : 0;
  }
  return { rms: count ? Math.sqrt(sum / count) : 0, hz: seconds ? cross / 2 / seconds : 0, seconds, amp };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const dir = o.dir ?? fs.mkdtempSync('/tmp/vdimedia-loopback-');
  fs.mkdirSync(dir, { recursive: true });
  const procs = [];
  const cleanup = [];
  const result = { ok: false, codec: o.codec, seconds: o.seconds, daemon: o.daemon.join(' ') };
  let client;
  try {
    // ---- devices: the rig plus a second mic and a second sink ----
    execFileSync('bash', [RIG, 'start', `${dir}/rig`], { stdio: ['ignore', 'ignore', 'inherit'] });
    cleanup.push(() => execFileSync('bash', [RIG, 'stop', `${dir}/rig`], { stdio: 'ignore' }));
    const env = { ...process.env };
    delete env.PIPEWIRE_REMOTE; delete env.PULSE_SERVER;
    for (const l of fs.readFileSync(`${dir}/rig/env`, 'utf8').split('\n')) {
      const m = l.match(/^export (\w+)=(.*)$/);
      if (m) env[m[1]] = m[2];
    }
    const run = (cmd, args) => execFileSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    const bg = (name, cmd, args, extra = {}) => {
      const p = spawn(cmd, args, { env: { ...env, ...extra.env }, stdio: ['ignore', extra.stdout ?? 'ignore', fs.openSync(`${dir}/${name}.log`, 'w')] });
      procs.push(p);
      return p;
    };
    bg('pw-loopback-b', 'pw-loopback', ['-m', '[ FL FR ]', '--capture-props=media.class=Audio/Sink node.name=mic_feed_b node.description=mic_feed_b', '--playback-props=media.class=Audio/Source node.name=virt_mic_b node.description=virt_mic_b']);
    for (let t = 0; !/"node.name": "virt_mic_b"/.test(run('pw-dump', [])); t++) {
      if (t > 100) throw new Error('virt_mic_b never appeared');
      await sleep(100);
    }
    const toneLen = o.timeout + o.seconds + 30;
    for (const [name, hz] of [['a', TONE_A], ['b', TONE_B]]) {
      execFileSync('sox', ['-n', '-r', '48000', '-c', '2', '-b', '16', `${dir}/tone-${name}.wav`, 'synth', String(toneLen), 'sine', String(hz), 'vol', '0.5']);
    }

    // ---- the daemon ----
    const sock = `${dir}/vc.sock`;
    const [cmd, ...pre] = o.daemon;
    const t0 = Date.now();
    const daemon = bg('vdimediad', cmd, [...pre, '--listen', `unix:${sock}`, '--backend', 'pipewire', '--loopback-ice'], { env: { VDIMEDIA_LOG: process.env.VDIMEDIA_LOG ?? 'info' } });
    while (!fs.existsSync(sock)) {
      if (daemon.exitCode !== null) throw new Error(`daemon exited (${daemon.exitCode}); see ${dir}/vdimediad.log`);
      if (Date.now() - t0 > o.timeout * 1000) throw new Error('daemon never listened');
      await sleep(50);
    }
    result.startMs = Date.now() - t0;
    // The process that owns the socket is the daemon (a wrapper such as qemu-env.sh execs it).
    const pid = daemon.pid;
    if (o.footprint) { await sleep(o.settle * 1000); result.beforeChannel = sampleProc(pid); }

    const tConnect = Date.now();
    client = await VcClient.connect(sock, { timeoutMs: o.timeout * 1000 });
    result.welcomeMs = Date.now() - tConnect;
    result.welcome = client.welcome;
    if (!client.welcome.capabilities.codecs.includes(o.codec)) throw new Error(`daemon does not offer ${o.codec}: ${JSON.stringify(client.welcome.capabilities)}`);
    if (o.footprint) { await sleep(o.settle * 1000); result.idleChannel = sampleProc(pid); }
    const s = await client.open();
    if (o.footprint) { await sleep(o.settle * 1000); result.idleSession = sampleProc(pid); }

    const { devices } = await client.request(s, 'devices.enumerate', {});
    const dev = (kind, label) => devices.find((d) => d.kind === kind && d.label === label) ?? (() => { throw new Error(`no ${kind} "${label}" in ${JSON.stringify(devices)}`); })();
    const side = {
      a: { mic: dev('audioinput', 'virt_mic'), feed: 'mic_feed' },
      b: { mic: dev('audioinput', 'virt_mic_b'), feed: 'mic_feed_b' },
    };
    for (const [name, x] of Object.entries(side)) {
      bg(`pw-cat-${name}`, 'pw-cat', ['--playback', '--target', x.feed, `${dir}/tone-${name}.wav`]);
      const gum = await client.request(s, 'media.getUserMedia', { constraints: { audio: { deviceId: { exact: x.mic.deviceId } } } });
      x.stream = gum.stream.id; x.track = gum.tracks[0].id;
      await client.request(s, 'pc.create', { pc: name, configuration: {} });
      await client.request(s, 'pc.addTrack', { pc: name, track: x.track, streams: [x.stream] });
    }
    const tCall = Date.now();
    const offer = await client.request(s, 'pc.createOffer', { pc: 'a', options: {} });
    if (!offer.sdp.toLowerCase().includes(o.codec.toLowerCase())) throw new Error(`offer lacks ${o.codec}`);
    // Keep only the chosen codec in what b receives, so the answer uses it.
    const pts = [...offer.sdp.matchAll(/a=rtpmap:(\d+) ([^/\r\n]+)/g)].filter((m) => m[2].toLowerCase() === o.codec.toLowerCase()).map((m) => m[1]);
    const only = offer.sdp.replace(/^(m=audio \S+ \S+) [\d ]+$/m, `$1 ${pts.join(' ')}`)
      .split('\r\n').filter((l) => !/^a=(rtpmap|fmtp|rtcp-fb):(\d+)/.test(l) || pts.includes(l.match(/:(\d+)/)[1])).join('\r\n');
    await client.request(s, 'pc.setLocalDescription', { pc: 'a', description: offer });
    await client.request(s, 'pc.setRemoteDescription', { pc: 'b', description: { type: 'offer', sdp: only } });
    const answer = await client.request(s, 'pc.createAnswer', { pc: 'b', options: {} });
    await client.request(s, 'pc.setLocalDescription', { pc: 'b', description: answer });
    await client.request(s, 'pc.setRemoteDescription', { pc: 'a', description: answer });

    // --playout: both remote tracks play through ONE element into the default sink (the rig's
    // null sink) and the recording must hold both tones. Off by default: `playout.attach` was
    // seen to hang the session in the daemon's PipeWire device probe
    // (gst_device_provider_get_devices waiting on pipewire-main-loop; reported to the daemon's
    // owners). Without it, both directions are checked on RTP: each side's inbound-rtp must
    // count packets and bytes of the other's encoder.
    if (o.playout) {
      const remote = {};
      while (Object.keys(remote).length < 2) {
        const ev = await client.waitEvent(s, 'pc.track', (e) => e.event === 'pc.track');
        remote[ev.params.pc] = ev.params.track.id;
      }
      await client.request(s, 'playout.attach', { element: 'audio-ab', stream: 'stream-ab', tracks: [remote.a, remote.b] });
    }
    // Trickle ICE between a and b; wait for both connections.
    const other = { a: 'b', b: 'a' };
    const connected = new Set();
    const deadline = Date.now() + o.timeout * 1000;
    while (connected.size < 2) {
      if (Date.now() > deadline) throw new Error(`call not up after ${o.timeout} s (connected: ${[...connected]})`);
      for (const ev of client.takeEvents(s)) {
        const pc = ev.params.pc;
        if (ev.event === 'pc.icecandidate' && ev.params.candidate) {
          await client.request(s, 'pc.addIceCandidate', { pc: other[pc], candidate: ev.params.candidate });
        } else if (ev.event === 'pc.connectionstatechange') {
          if (ev.params.state === 'connected') connected.add(pc);
          if (ev.params.state === 'failed') throw new Error(`pc ${pc} failed`);
        }
      }
      await sleep(20);
    }
    result.setupMs = Date.now() - tCall;
    log(`call up in ${result.setupMs} ms; recording ${o.seconds} s`);
    const mark = (what) => o.mark && execFileSync(o.mark, [what, String(pid)], { stdio: ['ignore', 'ignore', 'inherit'] });
    mark('start');
    const tMark = Date.now();

    const rec = o.playout && bg('pw-record', 'pw-record', ['-P', '{ stream.capture.sink = true }', '--target', 'vdimedia_null_sink', `${dir}/heard.wav`]);
    await sleep(o.seconds * 1000 / 2);
    if (o.footprint) result.inCall = sampleProc(pid);
    await sleep(o.seconds * 1000 / 2);
    mark('end');
    result.markedSeconds = (Date.now() - tMark) / 1000;
    result.inbound = {};
    for (const pc of ['a', 'b']) {
      const { stats } = await client.request(s, 'pc.getStats', { pc });
      const inb = stats.find((x) => x.type === 'inbound-rtp') ?? {};
      const codec = stats.find((x) => x.id === inb.codecId) ?? {};
      result.inbound[pc] = { packetsReceived: inb.packetsReceived ?? 0, bytesReceived: inb.bytesReceived ?? 0, packetsLost: inb.packetsLost, jitter: inb.jitter, mimeType: codec.mimeType };
    }
    if (rec) {
      rec.kill('SIGINT');
      await new Promise((res) => (rec.exitCode !== null ? res() : rec.once('exit', res)));
    }
    for (const pc of ['a', 'b']) await client.request(s, 'pc.close', { pc });

    const problems = [];
    // 20 ms packets: over the recorded span each side should receive ~50/s; demand 40 % of that
    // (emulation and a shared machine stall).
    for (const pc of ['a', 'b']) {
      const r = result.inbound[pc];
      // Under --mark the daemon may run under valgrind, far below real time: any media counts.
      const want = o.mark ? 1 : o.seconds * 50 * 0.4;
      if (r.packetsReceived < want) problems.push(`pc ${pc} received only ${r.packetsReceived} RTP packets in ${o.seconds} s`);
      if (r.mimeType && !r.mimeType.toLowerCase().endsWith(o.codec.toLowerCase())) problems.push(`pc ${pc} receives ${r.mimeType}, not ${o.codec}`);
    }
    if (o.playout) {
      // a plays b's tone (1000 Hz from virt_mic_b) and b plays a's (440 Hz from virt_mic): both
      // must be in the sink, and a frequency nobody sent must not.
      const h = analyseWav(`${dir}/heard.wav`, 0.5, [TONE_A, TONE_B, 700]);
      result.heard = h;
      if (h.seconds < o.seconds * 0.5) problems.push(`recorded only ${h.seconds.toFixed(2)} s`);
      if (h.amp[TONE_B] < 0.05) problems.push(`b -> a -> playout: ${TONE_B} Hz tone missing (amplitude ${h.amp[TONE_B].toFixed(4)})`);
      if (h.amp[TONE_A] < 0.05) problems.push(`a -> b -> playout: ${TONE_A} Hz tone missing (amplitude ${h.amp[TONE_A].toFixed(4)})`);
      if (h.amp[700] > 0.2 * Math.min(h.amp[TONE_A], h.amp[TONE_B])) problems.push(`noise: 700 Hz at amplitude ${h.amp[700].toFixed(4)}`);
    }
    result.problems = problems;
    result.ok = problems.length === 0;
    if (o.footprint) {
      // The same sample a while after the call closed: pipelines and their threads must go
      // (engine::IDLE_RELEASE_DELAY_MS, 2 s, then the release itself).
      await sleep(3000);
      result.afterCall = sampleProc(pid);
      client.closeSession(s);
      await sleep(2000);
      result.afterSession = sampleProc(pid);
    }
    client.close();
    daemon.kill('SIGTERM');
    const t = Date.now();
    while (daemon.exitCode === null && daemon.signalCode === null && Date.now() - t < 30000) await sleep(50);
    result.daemonExit = daemon.exitCode ?? daemon.signalCode;
  } catch (e) {
    result.error = e.message;
    log(`FAILED: ${e.message} (logs in ${dir})`);
  } finally {
    client?.close();
    for (const p of procs.reverse()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await sleep(200);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const c of cleanup.reverse()) { try { c(); } catch { /* best effort */ } }
  }
  result.dir = dir;
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
