// DTMF end to end (run by `node --test tests/e2e/`): page A (the softphone with the vdimedia
// SDK, call in vdimediad on the PipeWire rig) calls page B (headless Chromium, native WebRTC) and
// sends `sender.dtmf.insertDTMF(...)`. Chromium must receive the RFC 4733 telephone-event
// packets: its NetEq plays received events out as the DTMF dual tones, so page B decodes the
// digits and their lengths from the remote track (Goertzel on MediaStreamTrackProcessor frames).
// Page A must see the W3C tonechange sequence. Then page B sends DTMF back and the daemon must
// receive and log those events.
//
//   opus, A offers   telephone-event/48000 from the daemon's offer, Chromium's answer
//   PCMU, B offers   Chromium's offer (110/48000 + 126/8000, only PCMU and 126 relayed), the
//                    daemon's answer takes 126
//
// Each call runs in its own loopback-only network namespace (this file re-runs itself inside
// `unshare -n`). Env: VDIMEDIA_E2E_DTMF=0 or VDIMEDIA_E2E_SDK=0 skip; VDIMEDIAD /
// VDIMEDIA_BRIDGE pick other binaries (lib/config.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  BRIDGE_CMD, BRIDGE_LISTEN, CHROMIUM, DAEMON_CMD, OUT_DIR, PAGES_DIR, RIG_SCRIPT, SDK_BUNDLE,
  SERVICE_ENV, chromiumArgs,
} from './lib/config.mjs';
import { missingSdkBuilds } from './lib/runner.mjs';

const SELF = fileURLToPath(import.meta.url);
const CHILD = 'VDIMEDIA_E2E_DTMF_CHILD';
/** What page A sends and how (ms); B must decode the same digits with these lengths. */
const TONES = '159#';
const DURATION_MS = 160;
const GAP_MS = 100;
/** Accepted decoded tone length, ms (10 ms analysis frames; NetEq may round to its packets). */
const MIN_TONE_MS = DURATION_MS - 50;
const MAX_TONE_MS = DURATION_MS + 100;
const CALL_TIMEOUT_MS = 90000;
/** What page B (native) sends back, and the RFC 4733 event codes of those tones. */
const B_TONES = '7*';
const B_CODES = [7, 10];

/** RTP clock rate of each codec (telephone-event must match it, RFC 4733 §2.1). */
const RATES = { opus: 48000, pcmu: 8000 };

/**
 * Keeps only `codec` and telephone-event at its clock rate in every m=audio section (the far
 * end cannot pick another codec; lib/sdp.mjs keepOnlyCodec would drop telephone-event too).
 */
export function keepCodecAndEvents(sdp, codec) {
  const rate = RATES[codec.toLowerCase()];
  const sections = sdp.split(/\r\n(?=m=)/);
  const out = sections.map((sec) => {
    if (!sec.startsWith('m=audio')) return sec;
    const lines = sec.split('\r\n');
    const keep = new Set();
    for (const l of lines) {
      const r = /^a=rtpmap:(\d+) ([^/]+)\/(\d+)/.exec(l);
      if (!r) continue;
      if (r[2].toLowerCase() === codec.toLowerCase()) keep.add(r[1]);
      if (r[2].toLowerCase() === 'telephone-event' && Number(r[3]) === rate) keep.add(r[1]);
    }
    const m = lines[0].split(' ');
    if (codec.toLowerCase() === 'pcmu' && m.slice(3).includes('0')) keep.add('0');
    lines[0] = [...m.slice(0, 3), ...m.slice(3).filter((pt) => keep.has(pt))].join(' ');
    return lines.filter((l) => {
      const a = /^a=(rtpmap|fmtp|rtcp-fb):(\d+)[ ]/.exec(l);
      return !a || keep.has(a[2]);
    }).join('\r\n');
  });
  return out.join('\r\n');
}

/** Runs in page B: decodes DTMF digits from the remote track, one decision per 10 ms. */
const DETECTOR = async () => {
  const track = window.softphone.remoteStream?.getAudioTracks()[0];
  if (!track) return { error: 'no remote track' };
  const ROWS = [697, 770, 852, 941];
  const COLS = [1209, 1336, 1477, 1633];
  const KEYS = ['123A', '456B', '789C', '*0#D'];
  const det = (window.__dtmf = { frames: [], stop: false, rate: 0 });
  const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
  let buf = new Float32Array(0);
  const goertzel = (x, f, rate) => {
    const k = 2 * Math.cos((2 * Math.PI * f) / rate);
    let s1 = 0, s2 = 0;
    for (let i = 0; i < x.length; i++) { const s = x[i] + k * s1 - s2; s2 = s1; s1 = s; }
    return (s1 * s1 + s2 * s2 - k * s1 * s2) / (x.length * x.length);
  };
  (async () => {
    while (!det.stop) {
      const { value: ad, done } = await reader.read();
      if (done) break;
      const n = ad.numberOfFrames;
      const rate = ad.sampleRate;
      det.rate = rate;
      const x = new Float32Array(n);
      ad.copyTo(x, { planeIndex: 0, format: 'f32-planar' });
      const t = ad.timestamp / 1000;
      ad.close();
      const joined = new Float32Array(buf.length + n);
      joined.set(buf);
      joined.set(x, buf.length);
      buf = joined;
      const hop = rate / 100;
      const win = rate / 50; // 20 ms: 50 Hz resolution, enough between DTMF frequencies
      while (buf.length >= win) {
        const w = buf.subarray(0, win);
        let energy = 0;
        for (const s of w) energy += s * s;
        energy /= win;
        const r = ROWS.map((f) => goertzel(w, f, rate));
        const c = COLS.map((f) => goertzel(w, f, rate));
        const ri = r.indexOf(Math.max(...r));
        const ci = c.indexOf(Math.max(...c));
        const dominant = (v, i) => v.every((e, j) => j === i || e * 8 < v[i]);
        // Both tones present, dominant in their group, and most of the frame's energy.
        const tonal = (r[ri] + c[ci]) * 2 > energy * 0.5;
        const level = 10 * Math.log10(energy + 1e-12);
        const key = level > -45 && tonal && dominant(r, ri) && dominant(c, ci) ? KEYS[ri][ci] : null;
        det.frames.push([Math.round(t), key]);
        buf = buf.slice(hop);
      }
    }
  })();
  return { ok: true };
};

/** Digits and their lengths (ms) from 10 ms decisions; a one-frame dropout inside a tone is bridged. */
export function segments(frames) {
  const MAX_DROPOUT = 3; // frames (30 ms) of no decision inside one tone
  const out = [];
  let cur = null;
  let miss = 0;
  for (const [, key] of frames) {
    if (cur && key === cur.key) { cur.frames += 1 + miss; miss = 0; continue; }
    if (cur && key === null && miss < MAX_DROPOUT) { miss += 1; continue; }
    if (cur) out.push(cur);
    cur = key ? { key, frames: 1 } : null;
    miss = 0;
  }
  if (cur) out.push(cur);
  // Blips (< 3 frames) are not tones; the 20 ms window sees a tone one frame longer than it lasts.
  return out.filter((s) => s.frames >= 3).map((s) => ({ key: s.key, ms: (s.frames - 1) * 10 }));
}

async function child() {
  const { default: puppeteer } = await import('puppeteer-core');
  const { startStaticServer } = await import('./lib/server.mjs');
  const { startProcess, stopProcess, waitFor, canConnect, run } = await import('./lib/procs.mjs');
  const { writeWav16 } = await import('./lib/wav.mjs');
  const codec = process.env.DTMF_CODEC;
  const offerer = process.env.DTMF_OFFERER;
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const dir = fs.mkdtempSync(path.join(OUT_DIR, `e2e-dtmf-${codec}-${offerer}-`));
  const cleanups = [];
  const result = { codec, offerer, dir, checks: [], errors: [] };
  const add = (name, ok, value, limit) => result.checks.push({ name, ok: !!ok, value, limit });
  const log = (l) => process.stderr.write(`[${new Date().toISOString()}] ${l}\n`);
  try {
    const rigDir = path.join(dir, 'rig');
    const r = await run(['bash', RIG_SCRIPT, 'start', rigDir]);
    cleanups.push(() => run(['bash', RIG_SCRIPT, 'stop', rigDir]));
    if (r.code !== 0) throw new Error(`rig start failed: ${r.stderr.trim()}`);
    const rigEnv = Object.fromEntries(fs.readFileSync(path.join(rigDir, 'env'), 'utf8').split('\n')
      .map((l) => /^export ([A-Z_][A-Z0-9_]*)=(.*)$/.exec(l.trim())).filter(Boolean)
      .map(([, k, v]) => [k, v.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1')]));
    const d = { dir, vcSock: path.join(dir, 'vc.sock'), relaySock: path.join(dir, 'vc.sock'), tls: false };
    fs.mkdirSync(path.join(dir, 'bridge-state'), { recursive: true });
    const daemon = startProcess('vdimediad', DAEMON_CMD(d), { env: { ...rigEnv, ...SERVICE_ENV }, logFile: path.join(dir, 'vdimediad.log') });
    cleanups.push(() => stopProcess(daemon));
    await waitFor('the daemon VC socket', () => fs.existsSync(d.vcSock) || daemon.exitCode !== null, 10000);
    // The bridge dials the daemon's socket directly (no byte-counting relay here).
    const bridge = startProcess('vdimedia-bridge', BRIDGE_CMD(d), { env: SERVICE_ENV, logFile: path.join(dir, 'vdimedia-bridge.log') });
    cleanups.push(() => stopProcess(bridge));
    await waitFor('the bridge to listen', async () => (await canConnect(BRIDGE_LISTEN)) || bridge.exitCode !== null, 10000);
    const silence = path.join(dir, 'silence.wav');
    writeWav16(silence, Buffer.alloc(96000), 48000);
    // A's mouth: keep the rig's virtual mic fed (an unfed one stalls the daemon's capture, and
    // the tones replace the packets the capture produces). Quiet noise, far below the tones.
    const noise = Buffer.alloc(48000 * 2 * 60);
    for (let i = 0; i < noise.length; i += 2) noise.writeInt16LE(Math.round((Math.random() - 0.5) * 60), i);
    const mouth = path.join(dir, 'mouth.wav');
    writeWav16(mouth, noise, 48000);
    const pwCat = startProcess('pw-cat', ['pw-cat', '--playback', '--target', 'mic_feed', mouth], { env: rigEnv, logFile: path.join(dir, 'pw-cat.log') });
    cleanups.push(() => stopProcess(pwCat, 'SIGINT'));

    const server = await startStaticServer({ '/': PAGES_DIR + '/', '/sdk/vdimedia.js': SDK_BUNDLE });
    cleanups.push(() => server.close());
    const side = {
      A: { html: 'a.html', query: new URLSearchParams({ mode: 'sdk', processing: 'off', bridgeUrl: `ws://${BRIDGE_LISTEN}/` }) },
      B: { html: 'b.html', query: new URLSearchParams({ processing: 'off' }) },
    };
    const chains = { A: Promise.resolve(), B: Promise.resolve() };
    const other = { A: 'B', B: 'A' };
    const relay = (from, msg) => {
      const to = other[from];
      if (msg?.type === 'description') {
        msg = { ...msg, description: { ...msg.description, sdp: keepCodecAndEvents(msg.description.sdp, codec) } };
        fs.writeFileSync(path.join(dir, `${msg.description.type}-${from}.sdp`), msg.description.sdp);
        result[`${msg.description.type}_from_${from}`] = msg.description.sdp.split('\r\n').filter((l) => /^(m=audio|a=rtpmap)/.test(l));
      }
      chains[to] = chains[to].then(() => side[to].page.evaluate((m) => window.softphone.receive(m), msg))
        .catch((e) => result.errors.push(`relay ${from}→${to}: ${e.message}`));
    };
    for (const s of ['A', 'B']) {
      const userDataDir = path.join(dir, `chromium-${s}`);
      const browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        ignoreDefaultArgs: true,
        args: chromiumArgs({ userDataDir, fakeCaptureWav: silence }),
        env: { ...process.env, PULSE_SERVER: 'unix:/nonexistent', XDG_RUNTIME_DIR: userDataDir },
        protocolTimeout: 60000,
      });
      cleanups.push(() => browser.close().catch(() => {}));
      const page = (await browser.pages())[0] ?? (await browser.newPage());
      const consoleLog = path.join(dir, `page-${s}.console.log`);
      page.on('console', (m) => fs.appendFileSync(consoleLog, `${m.type()}: ${m.text()}\n`));
      page.on('pageerror', (e) => result.errors.push(`page ${s}: ${e.message ?? e}`));
      await page.exposeFunction('e2eSignal', (msg) => relay(s, msg));
      side[s].page = page;
    }
    for (const s of ['A', 'B']) {
      await side[s].page.goto(`${server.url}/${side[s].html}?${side[s].query}`);
      await side[s].page.waitForFunction(() => window.e2eBoot?.done, { timeout: 20000 });
      const boot = await side[s].page.evaluate(() => window.e2eBoot);
      if (boot.error) throw new Error(`page ${s} failed to start: ${boot.error}`);
      if (s === 'A' && boot.install?.redirected !== true) throw new Error(`SDK did not redirect: ${JSON.stringify(boot.install)}`);
    }
    log('pages loaded; calling');
    await side[offerer].page.click('#call');
    const state = (s) => side[s].page.evaluate(() => window.softphone?.pc?.connectionState ?? 'new');
    await waitFor('both peers connected', async () => (await state('A')) === 'connected' && (await state('B')) === 'connected', 15000);
    log('connected');
    await waitFor('the remote track on B', () => side.B.page.evaluate(() => !!window.softphone.remoteStream), 5000);
    const started = await side.B.page.evaluate(DETECTOR);
    if (started.error) throw new Error(`page B detector: ${started.error}`);
    await new Promise((r) => setTimeout(r, 1500)); // audio (silence) flowing, jitter buffer settled

    const a = await side.A.page.evaluate(async ({ tones, duration, gap }) => {
      const sender = window.softphone.pc.getSenders()[0];
      const dtmf = sender.dtmf;
      const out = { canInsertDTMF: dtmf?.canInsertDTMF ?? null, events: [], bad: null };
      if (!dtmf) return out;
      try { dtmf.insertDTMF('12Z'); } catch (e) { out.bad = `${e.name}: ${e.message}`; }
      const t0 = performance.now();
      const ended = new Promise((resolve) => {
        dtmf.ontonechange = (e) => {
          out.events.push([e.tone, Math.round(performance.now() - t0), dtmf.toneBuffer]);
          if (e.tone === '') resolve();
        };
      });
      const sent = async () => {
        let n = null;
        (await window.softphone.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp') n = r.packetsSent; });
        return n;
      };
      out.packetsSentBefore = await sent();
      const tr = window.softphone.pc.getTransceivers().find((x) => x.sender === sender);
      out.transceiver = { mid: tr?.mid ?? null, currentDirection: tr?.currentDirection ?? null,
        remote: (window.softphone.pc.currentRemoteDescription?.sdp ?? '').split('\r\n').filter((l) => /^(m=|a=mid|a=rtpmap)/.test(l)) };
      try {
        dtmf.insertDTMF(tones, duration, gap);
      } catch (e) {
        out.error = `${e.name}: ${e.message}`;
        return out;
      }
      out.toneBufferAfterInsert = dtmf.toneBuffer;
      await Promise.race([ended, new Promise((r) => setTimeout(r, 10000))]);
      return out;
    }, { tones: TONES, duration: DURATION_MS, gap: GAP_MS });
    result.page_a = a;
    await new Promise((r) => setTimeout(r, 1000)); // jitter buffer + playout of the last tone
    const frames = await side.B.page.evaluate(() => { window.__dtmf.stop = true; return window.__dtmf.frames; });

    // The other way: native Chromium sends DTMF, the daemon receives and logs the events.
    result.page_b = await side.B.page.evaluate(async (tones) => {
      const dtmf = window.softphone.pc.getSenders()[0]?.dtmf;
      if (!dtmf?.canInsertDTMF) return { error: `B cannot insert DTMF (${dtmf ? 'canInsertDTMF false' : 'no dtmf'})` };
      const done = new Promise((resolve) => { dtmf.ontonechange = (e) => { if (e.tone === '') resolve(); }; });
      dtmf.insertDTMF(tones, 100, 70);
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      return { ok: true };
    }, B_TONES);
    await new Promise((r) => setTimeout(r, 500));
    const segs = segments(frames);
    result.decoded = segs;
    fs.writeFileSync(path.join(dir, 'b-frames.json'), JSON.stringify(frames));

    add('A: canInsertDTMF after negotiation', a.canInsertDTMF === true && !a.error, { canInsertDTMF: a.canInsertDTMF, error: a.error ?? null, transceiver: a.transceiver }, 'true');
    add('A: insertDTMF("12Z") throws InvalidCharacterError', /^InvalidCharacterError: .*invalid character/.test(a.bad ?? ''), a.bad, 'InvalidCharacterError with a message');
    add('A: tonechange sequence', a.events.map(([t]) => t).join('|') === [...TONES, ''].join('|'), a.events, `${[...TONES, ''].join('|')}`);
    add('B (native Chromium) decoded the digits', segs.map((s) => s.key).join('') === TONES, segs, TONES);
    add('B: each tone lasted as sent', segs.length === TONES.length && segs.every((s) => s.ms >= MIN_TONE_MS && s.ms <= MAX_TONE_MS),
      segs.map((s) => s.ms), `${MIN_TONE_MS}..${MAX_TONE_MS} ms each`);
    const daemonLog = fs.readFileSync(path.join(dir, 'vdimediad.log'), 'utf8');
    const sentLines = daemonLog.split('\n').filter((l) => l.includes('sending DTMF tone')).length;
    add('daemon logged each tone sent', sentLines === TONES.length, sentLines, String(TONES.length));
    add('A sent audio before the tones (outbound-rtp packetsSent)', a.packetsSentBefore > 50, a.packetsSentBefore, '> 50');
    // eslint-disable-next-line no-control-regex
    const received = daemonLog.replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => l.includes('remote DTMF event received'))
      .map((l) => Number(/\bcode=(\d+)/.exec(l)?.[1]));
    add('daemon received the DTMF Chromium sent (B → A)', !result.page_b.error && received.join(',') === B_CODES.join(','),
      { page_b: result.page_b, codes: received }, B_CODES.join(','));
  } catch (e) {
    result.errors.push(`harness: ${e.stack ?? e}`);
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
  result.pass = result.errors.length === 0 && result.checks.length > 0 && result.checks.every((c) => c.ok);
  if (result.pass) fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(result));
}

/** Runs one call in a fresh loopback-only network namespace; resolves its result. */
function placeDtmfCall(codec, offerer) {
  return new Promise((resolve) => {
    const env = { ...process.env, [CHILD]: '1', DTMF_CODEC: codec, DTMF_OFFERER: offerer };
    const c = spawn('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, SELF], {
      env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { try { process.kill(-c.pid, 'SIGTERM'); } catch { c.kill('SIGTERM'); } }, CALL_TIMEOUT_MS);
    c.on('close', (code) => {
      clearTimeout(timer);
      let result = null;
      try { result = JSON.parse(stdout); } catch { /* no result */ }
      resolve({ code, stderr, result });
    });
  });
}

if (process.env[CHILD]) {
  await child();
} else {
  const skip = process.env.VDIMEDIA_E2E_DTMF === '0' ? 'VDIMEDIA_E2E_DTMF=0'
    : process.env.VDIMEDIA_E2E_SDK === '0' ? 'VDIMEDIA_E2E_SDK=0' : false;
  const missing = missingSdkBuilds();
  for (const [codec, offerer] of [['opus', 'A'], ['PCMU', 'B']]) {
    test(`DTMF: SDK page → vdimediad → native Chromium (${codec}, offerer ${offerer})`, { skip, timeout: CALL_TIMEOUT_MS + 10000 }, async (t) => {
      assert.equal(missing, null, missing ?? '');
      let { code, stderr, result } = await placeDtmfCall(codec, offerer);
      assert.ok(result, `no result (exit ${code}):\n${stderr}`);
      for (const c of result.checks) t.diagnostic(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${JSON.stringify(c.value)} (want ${c.limit})`);
      // B measures tone lengths from its decoded audio in 10 ms frames: a glitch of the far
      // end's own audio path (a loaded 2-core machine) can shorten one tone there while the
      // digits and what the daemon sent are right. Only that failure places the call once
      // more; both calls are printed.
      const failed = result.checks.filter((c) => !c.ok).map((c) => c.name);
      if (result.errors.length === 0 && failed.length === 1 && failed[0] === 'B: each tone lasted as sent') {
        t.diagnostic('only the far end\'s tone-length measurement failed; placing the call once more');
        ({ code, stderr, result } = await placeDtmfCall(codec, offerer));
        assert.ok(result, `no result on the second call (exit ${code}):\n${stderr}`);
        for (const c of result.checks) t.diagnostic(`(2nd) ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${JSON.stringify(c.value)} (want ${c.limit})`);
      }
      assert.deepEqual(result.errors, [], `work dir ${result.dir}`);
      for (const c of result.checks) {
        assert.ok(c.ok, `${c.name} = ${JSON.stringify(c.value)}, want ${c.limit}\nwork dir: ${result.dir}`);
      }
      assert.ok(result.checks.length >= 8);
    });
  }
}
