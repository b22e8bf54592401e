// One scored call between page A (agent softphone) and page B (far end, native WebRTC).
//
//   native mode: both pages use Chromium's WebRTC; each speaks through Chromium's fake mic (a
//                looping WAV) and records what it receives in the page (probe.js).
//   sdk mode:    page A loads the vdimedia SDK; the call runs in vdimediad on the rig's PipeWire.
//                A's speech is played into the rig's virtual mic (pw-cat → mic_feed), what A hears
//                is recorded from the rig's null sink (pw-record), and the virtual channel between
//                bridge and daemon goes through a byte-counting relay.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import puppeteer from 'puppeteer-core';
import {
  BRIDGE_CMD, BRIDGE_LISTEN, CHROMIUM, CODECS, DAEMON_CMD, E2E_DIR, FIRST_AUDIO_DBFS, OUT_DIR,
  PAGES_DIR, PESQ_MIN, RIG_SCRIPT, SDK_BUNDLE, SERVICE_ENV, VC_BYTES_MAX, chromiumArgs,
  DAEMON_BIN, BRIDGE_BIN,
} from './config.mjs';
import { buildRefs, tiledRef } from './refs.mjs';
import { startStaticServer } from './server.mjs';
import { keepOnlyCodec, audioCodecs } from './sdp.mjs';
import { startProcess, stopProcess, waitFor, canConnect, run } from './procs.mjs';
import { startVcRelay } from './vcrelay.mjs';
import { writeWav16, readWav16, firstAboveMs } from './wav.mjs';
import { sampleProc, watchProc } from './procstat.mjs';

const PROBE_SRC = fs.readFileSync(path.join(E2E_DIR, 'lib/probe.js'), 'utf8')
  .replace('__FIRST_AUDIO_DBFS__', String(FIRST_AUDIO_DBFS));
const CONNECT_TIMEOUT_MS = 15000;
/** The daemon's log line once its one-time GStreamer/DTLS warm-up is done (daemon/src/engine.rs). */
const DAEMON_READY_LOG = 'GStreamer and DTLS certificate ready';

/**
 * @typedef {object} CallOptions
 * @property {'native'|'sdk'} mode
 * @property {'opus'|'G722'|'PCMU'} codec forced by stripping the others from relayed SDP
 * @property {'A'|'B'} offerer
 * @property {number} durationS call length from the offer (s); must exceed one reference
 *   period (~11.6 s) plus setup
 * @property {string} [out] report path (JSON)
 * @property {boolean} [tls] SDK mode: bridge serves wss:// with a self-signed certificate
 * @property {'on'|'off'} [processingA] page A's getUserMedia echoCancellation/noiseSuppression/
 *   autoGainControl (default off: the fake sources talk at the same time, and AEC would
 *   suppress A during double talk — FIELD-NOTES)
 * @property {boolean} [keep] keep the work dir (recordings, logs) even when the call passes
 * @property {(ctx: ScenarioContext) => Promise<{checks: {name: string, ok: boolean, value: any,
 *   limit: string}[]} & Record<string, any>>} [scenario] runs once both peers are connected
 *   instead of the scored call (no fixed duration, no recordings, no PESQ); its `checks` become
 *   the report's checks (after `connected`), the whole result is `report.scenario`
 * @property {string} [scenarioName] name of `scenario` for the report and work dir
 * @property {string} [pageAInit] script evaluated in page A before its own scripts (scenarios)
 * @property {{A?: RTCConfiguration, B?: RTCConfiguration}} [rtcConfig] per page, merged over the
 *   configuration the page passes to `new RTCPeerConnection` (the pages pass `{iceServers: []}`):
 *   e.g. TURN servers and `iceTransportPolicy: 'relay'` (tests/e2e/lib/turn.mjs). Applied once
 *   the page (and in SDK mode the SDK) has loaded, to whatever `RTCPeerConnection` the page has.
 * @property {(line: string) => void} [log]
 */

/**
 * @typedef {object} ScenarioContext
 * @property {{A: {page: import('puppeteer-core').Page, browser: import('puppeteer-core').Browser},
 *   B: {page: import('puppeteer-core').Page, browser: import('puppeteer-core').Browser}}} side
 * @property {Record<string, import('node:child_process').ChildProcess>} procs daemon, bridge, …
 * @property {Record<string, string>} rigEnv env of the rig's PipeWire (XDG_RUNTIME_DIR, …)
 * @property {string} dir the call's work dir (vdimediad.log, vdimedia-bridge.log, …)
 * @property {string} pageAUrl URL that loads page A as this call did (SDK mode: with bridgeUrl)
 * @property {number} callAt epoch ms of the click on Call
 * @property {(line: string) => void} log
 */

/**
 * Places one call, scores it and returns the call report (also written to `opts.out`).
 * Throws only on harness failures before a call could be attempted; call failures end up in
 * `report.errors` and failing `report.checks`.
 * @param {CallOptions} opts
 */
export async function runCall(opts) {
  const o = { processingA: 'off', tls: false, keep: false, log: (l) => console.error(l), ...opts };
  if (!CODECS[o.codec]) throw new Error(`unknown codec ${o.codec} (opus|G722|PCMU)`);
  if (!['A', 'B'].includes(o.offerer)) throw new Error(`offerer must be A or B, not ${o.offerer}`);
  if (!['native', 'sdk'].includes(o.mode)) throw new Error(`mode must be native or sdk, not ${o.mode}`);
  const sdk = o.mode === 'sdk';
  const band = CODECS[o.codec].band;
  const name = `${o.mode}-${o.codec}-${o.offerer}${o.scenarioName ? `-${o.scenarioName}` : ''}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  const dir = path.join(OUT_DIR, 'work', name);
  fs.mkdirSync(dir, { recursive: true });
  const log = (l) => { o.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${l}`); fs.appendFileSync(path.join(dir, 'harness.log'), l + '\n'); };
  const t0 = Date.now();

  const refs = buildRefs(path.join(OUT_DIR, 'refs'));
  const report = {
    mode: o.mode, codec: o.codec, offerer: o.offerer, duration_s: o.durationS, band, scenario_name: o.scenarioName ?? null,
    started_at: new Date(t0).toISOString(), work_dir: dir, processing_a: o.processingA,
    setup_ms: {}, connect_ms: null, negotiated: {}, packets: {}, pesq: {}, score: {},
    vc_bytes: null, signalling: { messages: 0, bytes: 0 }, stats: {}, timeline: {}, errors: [], checks: [],
  };
  const cleanups = [];
  const procs = {};
  try {
    // ---- endpoint side (SDK mode): rig, daemon, VC relay, bridge ----
    let bridgeUrl = null;
    let rigEnv = {};
    const d = { dir, vcSock: path.join(dir, 'vc.sock'), relaySock: path.join(dir, 'vc-relay.sock'), tls: o.tls };
    if (sdk) {
      for (const [what, p] of [['daemon', DAEMON_BIN], ['bridge', BRIDGE_BIN], ['SDK bundle', SDK_BUNDLE]]) {
        if (!fs.existsSync(p)) throw new Error(`SDK mode needs the ${what} at ${p} (not built yet?)`);
      }
      fs.mkdirSync(path.join(dir, 'bridge-state'), { recursive: true });
      const rigDir = path.join(dir, 'rig');
      const r = await run(['bash', RIG_SCRIPT, 'start', rigDir]);
      cleanups.push(() => run(['bash', RIG_SCRIPT, 'stop', rigDir]));
      if (r.code !== 0) throw new Error(`rig start failed: ${r.stderr.trim()}`);
      rigEnv = parseEnvFile(path.join(rigDir, 'env'));
      log(`rig up: XDG_RUNTIME_DIR=${rigEnv.XDG_RUNTIME_DIR}`);

      procs.daemon = startProcess('vdimediad', DAEMON_CMD(d), { env: { ...rigEnv, ...SERVICE_ENV }, logFile: path.join(dir, 'vdimediad.log') });
      cleanups.push(() => stopProcess(procs.daemon));
      await waitFor('the daemon VC socket', () => fs.existsSync(d.vcSock) || procs.daemon.exitCode !== null, 10000);
      if (procs.daemon.exitCode !== null) throw new Error(`vdimediad exited (${procs.daemon.exitCode}); see ${dir}/vdimediad.log`);

      // Before any channel: GStreamer is initialised only when the first channel connects.
      const daemonStarted = sampleProc(procs.daemon.pid, { smaps: true });
      const relay = await startVcRelay(d.relaySock, d.vcSock);
      cleanups.push(() => relay.close());
      report.vc_bytes = relay.counts;

      if (o.tls) {
        d.tlsCert = path.join(dir, 'bridge-cert.pem');
        d.tlsKey = path.join(dir, 'bridge-key.pem');
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
          '-keyout', d.tlsKey, '-out', d.tlsCert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
      }
      procs.bridge = startProcess('vdimedia-bridge', BRIDGE_CMD(d), { env: SERVICE_ENV, logFile: path.join(dir, 'vdimedia-bridge.log') });
      cleanups.push(() => stopProcess(procs.bridge));
      await waitFor('the bridge to listen', async () => (await canConnect(BRIDGE_LISTEN)) || procs.bridge.exitCode !== null, 10000);
      if (procs.bridge.exitCode !== null) throw new Error(`vdimedia-bridge exited (${procs.bridge.exitCode}); see ${dir}/vdimedia-bridge.log`);
      bridgeUrl = `${o.tls ? 'wss' : 'ws'}://${BRIDGE_LISTEN}/`;
      log(`daemon and bridge up, bridge ${bridgeUrl}`);

      // "Idle" footprint: channel connected and handshaken (WELCOME went back), the daemon's
      // one-time warm-up done, no page yet.
      await waitFor('the VC handshake', () => relay.counts.toVda > 0, 10000);
      const daemonLog = path.join(dir, 'vdimediad.log');
      const warm = await waitFor('the daemon warm-up', () => fs.readFileSync(daemonLog, 'utf8').includes(DAEMON_READY_LOG), 10000)
        .then(() => true, () => false);
      await sleep(500);
      report.footprint = {
        note: 'no_channel: daemon listening, no channel yet; idle: channel connected, no page; in_call: max over the call; after_hangup: 1 s after both pages hung up; cpu: utime+stime over the call',
        daemon: { pid: procs.daemon.pid, warm_up_logged: warm, no_channel: footprint(daemonStarted), idle: footprint(sampleProc(procs.daemon.pid, { smaps: true })) },
        bridge: { pid: procs.bridge.pid, idle: footprint(sampleProc(procs.bridge.pid)) },
      };
    }

    // ---- pages ----
    const server = await startStaticServer({ '/': PAGES_DIR + '/', '/sdk/vdimedia.js': SDK_BUNDLE });
    cleanups.push(() => server.close());
    const pageAQuery = new URLSearchParams({ mode: o.mode, processing: o.processingA, ...(bridgeUrl ? { bridgeUrl } : {}) });
    const side = {
      A: { fake: sdk ? refs.silence : refs.A, records: !sdk, query: pageAQuery, html: 'a.html' },
      B: { fake: refs.B, records: true, query: new URLSearchParams({ processing: 'off' }), html: 'b.html' },
    };
    const chains = { A: Promise.resolve(), B: Promise.resolve() };
    for (const s of ['A', 'B']) {
      const userDataDir = path.join(dir, `chromium-${s}`);
      const browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        ignoreDefaultArgs: true,
        args: chromiumArgs({ userDataDir, fakeCaptureWav: side[s].fake, ignoreCertErrors: sdk && o.tls && s === 'A' }),
        // Never reach the rig's pipewire-pulse or a host sound server: Chromium uses its fake
        // audio output, so playout cannot disturb the endpoint's devices.
        env: { ...process.env, PULSE_SERVER: 'unix:/nonexistent', XDG_RUNTIME_DIR: userDataDir },
        protocolTimeout: 60000,
      });
      cleanups.push(() => browser.close().catch(() => {}));
      const page = (await browser.pages())[0] ?? (await browser.newPage());
      const consoleLog = path.join(dir, `page-${s}.console.log`);
      page.on('console', (m) => fs.appendFileSync(consoleLog, `${m.type()}: ${m.text()}\n`));
      page.on('pageerror', (e) => { fs.appendFileSync(consoleLog, `pageerror: ${e}\n`); report.errors.push(`page ${s}: ${e.message ?? e}`); });
      await page.exposeFunction('e2eSignal', (msg) => relaySignal(s, msg));
      if (side[s].records) await page.evaluateOnNewDocument(PROBE_SRC);
      if (s === 'A' && o.pageAInit) await page.evaluateOnNewDocument(o.pageAInit);
      side[s].browser = browser;
      side[s].page = page;
    }
    const other = { A: 'B', B: 'A' };
    // Relays one message to the other page, in order; descriptions keep only the forced codec.
    function relaySignal(from, msg) {
      const to = other[from];
      if (msg?.type === 'description') {
        const before = audioCodecs(msg.description.sdp);
        msg = { ...msg, description: { ...msg.description, sdp: keepOnlyCodec(msg.description.sdp, CODECS[o.codec].rtpmap) } };
        report.timeline[`${msg.description.type}_codecs`] = { from, offered: before, relayed: audioCodecs(msg.description.sdp) };
        fs.writeFileSync(path.join(dir, `${msg.description.type}-${from}.sdp`), msg.description.sdp);
      }
      report.signalling.messages += 1;
      report.signalling.bytes += JSON.stringify(msg).length;
      chains[to] = chains[to].then(() => side[to].page.evaluate((m) => window.softphone.receive(m), msg))
        .catch((e) => report.errors.push(`relay ${from}→${to}: ${e.message}`));
    }

    for (const s of ['A', 'B']) {
      await side[s].page.goto(`${server.url}/${side[s].html}?${side[s].query}`);
      await side[s].page.waitForFunction(() => window.e2eBoot?.done, { timeout: 20000 });
      const boot = await side[s].page.evaluate(() => window.e2eBoot);
      if (boot.error) throw new Error(`page ${s} failed to start: ${boot.error}`);
      if (s === 'A' && sdk) {
        report.sdk_install = boot.install ?? null;
        // A fallback to native WebRTC would still place a call (with page A's fake mic, which
        // is silent in SDK mode), so redirection is asserted here.
        if (boot.install?.redirected !== true) {
          throw new Error(`SDK did not redirect: ${JSON.stringify(boot.install)}`);
        }
      }
    }
    log(`pages loaded (${server.url})`);
    for (const s of ['A', 'B']) {
      if (!o.rtcConfig?.[s]) continue;
      // Wraps the page's constructor (native or the SDK's) so the page's own config gets these
      // members on top; the page code stays the unconfigured softphone it is.
      await side[s].page.evaluate((cfg) => {
        const Base = window.RTCPeerConnection;
        window.RTCPeerConnection = new Proxy(Base, {
          construct: (target, [config, ...rest]) => new target({ ...(config ?? {}), ...cfg }, ...rest),
        });
      }, o.rtcConfig[s]);
      log(`page ${s} RTCConfiguration: ${JSON.stringify({ ...o.rtcConfig[s], iceServers: o.rtcConfig[s].iceServers?.map((x) => ({ ...x, credential: x.credential && '***' })) })}`);
    }

    // ---- SDK mode: A's mouth and ear are the rig's devices ----
    let recStartedAt = null;
    const recA = path.join(dir, 'received_by_A.wav');
    if (sdk) {
      const pwEnv = rigEnv;
      procs.pwRecord = startProcess('pw-record', ['pw-record', '-P', '{ stream.capture.sink = true }', '--target', 'vdimedia_null_sink',
        '--rate', '48000', '--channels', '1', '--format', 's16', recA], { env: pwEnv, logFile: path.join(dir, 'pw-record.log') });
      recStartedAt = Date.now();
      cleanups.push(() => stopProcess(procs.pwRecord, 'SIGINT'));
      const tiled = tiledRef(refs.A, o.durationS + 10, path.join(dir, 'ref_A_tiled.wav'));
      procs.pwCat = startProcess('pw-cat', ['pw-cat', '--playback', '--target', 'mic_feed', tiled], { env: pwEnv, logFile: path.join(dir, 'pw-cat.log') });
      cleanups.push(() => stopProcess(procs.pwCat, 'SIGINT'));
    }

    // ---- the call ----
    const callAt = Date.now();
    report.timeline.call_at = callAt;
    const watchers = sdk ? { daemon: watchProc(procs.daemon.pid), bridge: watchProc(procs.bridge.pid) } : {};
    // In-call footprint: maxima since the click, CPU over the call (ms per call second).
    const stopWatchers = () => {
      for (const [who, w] of Object.entries(watchers)) {
        const r = w.stop();
        const callS = (Date.now() - callAt) / 1000;
        const cpuMs = r.first && r.last ? r.last.cpuMs - r.first.cpuMs : null;
        Object.assign(report.footprint[who], {
          in_call: { rss_max_kb: r.rssMaxKb, threads_max: r.threadsMax, samples: r.samples },
          cpu: { ms: cpuMs, call_s: Math.round(callS * 10) / 10, ms_per_call_s: cpuMs === null ? null : Math.round((cpuMs / callS) * 10) / 10 },
        });
        delete watchers[who];
      }
    };
    cleanups.push(async () => stopWatchers());
    await side[o.offerer].page.click('#call');
    const state = (s) => side[s].page.evaluate(() => window.softphone?.pc?.connectionState ?? 'new');
    try {
      await waitFor('both peers connected', async () => (await state('A')) === 'connected' && (await state('B')) === 'connected', CONNECT_TIMEOUT_MS);
      report.connect_ms = Date.now() - callAt;
      log(`connected after ${report.connect_ms} ms`);
    } catch (e) {
      report.errors.push(`${e.message} (A: ${await state('A')}, B: ${await state('B')})`);
    }
    if (o.scenario) {
      if (report.connect_ms === null) throw new Error('the scenario needs a connected call');
      report.scenario = await o.scenario({ side, procs, rigEnv, dir, log, callAt, pageAUrl: `${server.url}/a.html?${pageAQuery}` });
      stopWatchers();
    } else {
      const endAt = callAt + o.durationS * 1000;
      while (Date.now() < endAt) await sleep(Math.min(500, endAt - Date.now()));
      stopWatchers();

      // ---- collect ----
      const collected = {};
      for (const s of ['A', 'B']) {
        const page = side[s].page;
        collected[s] = await page.evaluate(async (records) => {
          const phone = window.softphone;
          let stats = [];
          let statsError = null;
          try {
            const r = await phone.pc.getStats();
            if (typeof r?.forEach === 'function') r.forEach((v) => stats.push(v));
            else stats = Object.values(r ?? {});
            stats = JSON.parse(JSON.stringify(stats));
          } catch (e) { statsError = String(e); }
          const rec = records ? await window.__e2eProbe.stop() : null;
          phone.hangup();
          return { log: phone.log, errors: phone.errors, stats, statsError, rec };
        }, side[s].records).catch((e) => ({ error: e.message, log: [], errors: [], stats: [] }));
        if (collected[s].error) report.errors.push(`collect ${s}: ${collected[s].error}`);
        for (const e of collected[s].errors ?? []) report.errors.push(`page ${s}: ${e}`);
        if (collected[s].statsError) report.errors.push(`getStats ${s}: ${collected[s].statsError}`);
        report.stats[s] = summarizeStats(collected[s].stats ?? []);
        report.stats_members = report.stats_members ?? {};
        report.stats_members[s] = statsMembers(collected[s].stats ?? []);
        fs.writeFileSync(path.join(dir, `stats-${s}.json`), JSON.stringify(collected[s].stats ?? [], null, 1));
        report.timeline[s] = (collected[s].log ?? []).map((e) => ({ ...e, t: Math.round(e.t - callAt) }));
      }
      if (sdk) {
        await stopProcess(procs.pwCat, 'SIGINT');
        await stopProcess(procs.pwRecord, 'SIGINT');
        // Both pages hung up (pc.close): the call's pipeline and its threads should be gone.
        await sleep(1000);
        report.footprint.daemon.after_hangup = footprint(sampleProc(procs.daemon.pid, { smaps: true }));
      }

      // ---- recordings ----
      const recordings = { a_to_b: path.join(dir, 'received_by_B.wav'), b_to_a: recA };
      const refOf = { a_to_b: refs.A, b_to_a: refs.B };
      const answerAt = (collected[o.offerer].log ?? []).find((e) => e.what === 'answer-applied')?.t ?? null;
      report.timeline.answer_applied_ms = answerAt && Math.round(answerAt - callAt);
      for (const [dirn, receiver] of [['a_to_b', 'B'], ['b_to_a', 'A']]) {
        const rec = collected[receiver].rec;
        if (rec) {
          writeWav16(recordings[dirn], Buffer.from(rec.pcmB64, 'base64'), rec.rate || 48000);
          delete rec.pcmB64;
          report[`probe_${receiver}`] = rec;
          report.setup_ms[dirn] = answerAt && rec.firstAudioAt ? Math.round(rec.firstAudioAt - answerAt) : null;
        } else if (dirn === 'b_to_a' && sdk && fs.existsSync(recA)) {
          // pw-record has no per-buffer timestamps: first audio ≈ recorder start + offset in file.
          const off = firstAboveMs(readWav16(recA), FIRST_AUDIO_DBFS);
          report.setup_ms[dirn] = answerAt && off !== null ? Math.round(recStartedAt + off - answerAt) : null;
          report.setup_ms.b_to_a_approx = true;
        }
      }
      report.recordings = recordings;

      // ---- scoring ----
      for (const dirn of ['a_to_b', 'b_to_a']) {
        if (!fs.existsSync(recordings[dirn])) { report.errors.push(`${dirn}: no recording`); continue; }
        const r = await run(['python3', path.join(E2E_DIR, 'score.py'), '--ref', refOf[dirn], '--deg', recordings[dirn], '--band', band, '--periodic']);
        try {
          report.score[dirn] = JSON.parse(r.stdout.trim().split('\n').at(-1));
        } catch {
          report.score[dirn] = { error: `score.py exit ${r.code}: ${r.stderr.trim().slice(-500)}` };
        }
        report.pesq[dirn] = report.score[dirn].pesq ?? null;
        if (report.score[dirn].error) report.errors.push(`score ${dirn}: ${report.score[dirn].error}`);
      }

      // ---- packets each way ----
      const [sa, sb] = [report.stats.A, report.stats.B];
      report.packets = {
        a_to_b: { sent: sa.outbound?.packetsSent ?? null, received: sb.inbound?.packetsReceived ?? null, lost: sb.inbound?.packetsLost ?? null },
        b_to_a: { sent: sb.outbound?.packetsSent ?? null, received: sa.inbound?.packetsReceived ?? null, lost: sa.inbound?.packetsLost ?? null },
      };
      report.negotiated = { a_send: sa.outbound?.codec ?? null, b_send: sb.outbound?.codec ?? null, a_recv: sa.inbound?.codec ?? null, b_recv: sb.inbound?.codec ?? null };
    }
  } catch (e) {
    report.errors.push(`harness: ${e.message}`);
    log(`ERROR ${e.stack ?? e}`);
  } finally {
    for (const c of cleanups.reverse()) { try { await c(); } catch (e) { report.errors.push(`cleanup: ${e.message}`); } }
    if (report.vc_bytes) report.vc_bytes = { ...report.vc_bytes, total: report.vc_bytes.toEndpoint + report.vc_bytes.toVda };
  }

  report.checks = checks(report, o);
  report.pass = report.checks.every((c) => c.ok) && !report.errors.some((e) => e.startsWith('harness:'));
  report.elapsed_s = Math.round((Date.now() - t0) / 100) / 10;
  // Browser profiles are large and useless for debugging a call.
  for (const s of ['A', 'B']) fs.rmSync(path.join(dir, `chromium-${s}`), { recursive: true, force: true });
  if (report.pass && !o.keep) {
    // Keep the report, drop the bulky work dir (browser profiles, recordings).
    fs.rmSync(dir, { recursive: true, force: true });
    report.work_dir = null;
    report.recordings = null;
  }
  if (o.out) {
    fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    fs.writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  }
  return report;
}

/** The assertions of the issue, evaluated on a report: [{name, ok, value, limit}]. */
export function checks(r, o) {
  const out = [];
  const add = (name, ok, value, limit) => out.push({ name, ok: !!ok, value, limit });
  add('connected', r.connect_ms !== null, r.connect_ms, `< ${CONNECT_TIMEOUT_MS} ms`);
  if (o.scenario) {
    if (!r.scenario) add('scenario ran', false, null, 'a connected call');
    for (const c of r.scenario?.checks ?? []) add(c.name, c.ok, c.value, c.limit);
    return out;
  }
  const want = `audio/${CODECS[o.codec].rtpmap}`.toLowerCase();
  for (const k of ['a_send', 'b_send']) add(`codec ${k}`, (r.negotiated[k] ?? '').toLowerCase() === want, r.negotiated[k] ?? null, want);
  for (const dirn of ['a_to_b', 'b_to_a']) {
    add(`pesq ${dirn}`, (r.pesq[dirn] ?? 0) >= PESQ_MIN, r.pesq[dirn] ?? null, `>= ${PESQ_MIN} (${r.band.toUpperCase()})`);
    // At least 10 packets/s over the call: any ptime up to 100 ms, and far more than a stall.
    const p = r.packets[dirn] ?? {};
    add(`packets ${dirn}`, (p.received ?? 0) >= 10 * o.durationS * 0.5, p.received ?? null, `>= ${5 * o.durationS}`);
  }
  if (o.mode === 'sdk') {
    const total = r.vc_bytes?.total ?? null;
    add('vc bytes (signalling only)', total !== null && total > 0 && total < VC_BYTES_MAX, total, `0 < bytes < ${VC_BYTES_MAX}`);
    // Page A is the SDK's: its getStats() must carry what softphones read (docs/compatibility.md).
    const have = r.stats_members?.A ?? {};
    const missing = Object.entries(SOFTPHONE_STATS).flatMap(([t, ks]) => ks.filter((k) => !(have[t] ?? []).includes(k)).map((k) => `${t}.${k}`));
    add('getStats members (SDK)', missing.length === 0, missing, 'every member softphones read');
  }
  return out;
}

/** W3C webrtc-stats members softphone SDKs read, by stats type (checked on the SDK's page). */
const SOFTPHONE_STATS = {
  codec: ['payloadType', 'mimeType', 'clockRate'],
  'inbound-rtp': ['mid', 'trackIdentifier', 'packetsLost', 'jitter', 'audioLevel', 'totalAudioEnergy', 'jitterBufferDelay', 'jitterBufferEmittedCount'],
  'outbound-rtp': ['mid', 'mediaSourceId', 'headerBytesSent'],
  'remote-inbound-rtp': ['roundTripTime', 'totalRoundTripTime'],
  'remote-outbound-rtp': ['remoteTimestamp', 'reportsSent'],
  'media-source': ['audioLevel', 'totalAudioEnergy', 'totalSamplesDuration'],
  transport: ['selectedCandidatePairId', 'dtlsState', 'iceRole'],
  'candidate-pair': ['state', 'nominated', 'currentRoundTripTime', 'bytesSent'],
  'local-candidate': ['address', 'port'],
  'remote-candidate': ['address', 'port'],
};

/** The member names present in a getStats() list, by stats type. */
function statsMembers(list) {
  const m = {};
  for (const st of list) for (const k of Object.keys(st)) (m[st.type] ??= new Set()).add(k);
  return Object.fromEntries(Object.entries(m).map(([t, v]) => [t, [...v]]));
}

/**
 * Reduces a getStats() report (W3C webrtc-stats) to the audio RTP streams, their codecs and the
 * selected candidate pair. Tolerates missing fields (the SDK's remoted stats may be sparser).
 */
export function summarizeStats(list) {
  const byId = new Map(list.map((s) => [s.id, s]));
  const codec = (s) => (s?.codecId ? byId.get(s.codecId)?.mimeType ?? null : null);
  const outbound = list.find((s) => s.type === 'outbound-rtp' && (s.kind ?? s.mediaType) === 'audio');
  const inbound = list.find((s) => s.type === 'inbound-rtp' && (s.kind ?? s.mediaType) === 'audio');
  const transport = list.find((s) => s.type === 'transport');
  const pair = byId.get(transport?.selectedCandidatePairId) ?? list.find((s) => s.type === 'candidate-pair' && (s.nominated || s.selected) && s.state === 'succeeded');
  const cand = (id) => { const c = byId.get(id); return c ? `${c.candidateType ?? '?'} ${c.protocol ?? ''} ${c.address ?? c.ip ?? ''}:${c.port ?? ''}` : null; };
  return {
    outbound: outbound && { packetsSent: outbound.packetsSent ?? null, bytesSent: outbound.bytesSent ?? null, codec: codec(outbound) },
    inbound: inbound && {
      packetsReceived: inbound.packetsReceived ?? null, packetsLost: inbound.packetsLost ?? null,
      bytesReceived: inbound.bytesReceived ?? null, jitterMs: inbound.jitter != null ? Math.round(inbound.jitter * 1000 * 10) / 10 : null,
      concealedPct: inbound.totalSamplesReceived ? Math.round((inbound.concealedSamples / inbound.totalSamplesReceived) * 1000) / 10 : null,
      jitterBufferMs: inbound.jitterBufferEmittedCount ? Math.round((inbound.jitterBufferDelay / inbound.jitterBufferEmittedCount) * 1000) : null,
      codec: codec(inbound),
    },
    pair: pair && { local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId), rttMs: pair.currentRoundTripTime != null ? Math.round(pair.currentRoundTripTime * 1000) : null },
  };
}

/** procstat sample → report shape (KiB, count, ms). */
function footprint(s) {
  return s && { rss_kb: s.rssKb, ...(s.pssKb !== undefined ? { pss_kb: s.pssKb, uss_kb: s.ussKb } : {}), threads: s.threads, cpu_ms: s.cpuMs };
}

function parseEnvFile(file) {
  const env = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^export ([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  }
  return env;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One-line human summary of a report. */
export function summaryLine(r) {
  const f = (x) => (x == null ? '–' : x);
  if (r.scenario_name) {
    return `${r.mode} ${r.codec} offerer=${r.offerer} scenario ${r.scenario_name}: connect ${f(r.connect_ms)} ms; ` +
      `VC ${r.vc_bytes ? r.vc_bytes.total + ' B' : 'n/a'}; ${r.pass ? 'PASS' : 'FAIL'}` +
      (r.footprint ? `\n  ${footprintLine(r.footprint.daemon, 'vdimediad')}` : '');
  }
  return `${r.mode} ${r.codec} offerer=${r.offerer}: PESQ A→B ${f(r.pesq.a_to_b)} B→A ${f(r.pesq.b_to_a)} (${r.band}); ` +
    `setup A→B ${f(r.setup_ms.a_to_b)} ms B→A ${f(r.setup_ms.b_to_a)} ms; connect ${f(r.connect_ms)} ms; ` +
    `pkts A→B ${f(r.packets.a_to_b?.sent)}/${f(r.packets.a_to_b?.received)} B→A ${f(r.packets.b_to_a?.sent)}/${f(r.packets.b_to_a?.received)}; ` +
    `VC ${r.vc_bytes ? r.vc_bytes.total + ' B' : 'n/a'}; ${r.pass ? 'PASS' : 'FAIL'}` +
    (r.footprint ? `\n  ${footprintLine(r.footprint.daemon, 'vdimediad')}\n  ${footprintLine(r.footprint.bridge, 'bridge')}` : '');
}

/** "vdimediad: RSS idle 12.3 MiB, in call ≤ 30.1 MiB; threads 3 → 17; CPU 45.2 ms per call-second" */
export function footprintLine(f, name) {
  if (!f) return `${name}: n/a`;
  const mib = (kb) => (kb == null ? '–' : (kb / 1024).toFixed(1));
  return `${name}: RSS ${f.no_channel ? `before any channel ${mib(f.no_channel.rss_kb)} MiB, ` : ''}idle ${mib(f.idle?.rss_kb)} MiB, in call max ${mib(f.in_call?.rss_max_kb)} MiB` +
    (f.after_hangup ? `, after hang-up ${mib(f.after_hangup.rss_kb)} MiB` : '') +
    `; threads idle ${f.idle?.threads ?? '–'}, in call max ${f.in_call?.threads_max ?? '–'}` +
    (f.after_hangup ? `, after hang-up ${f.after_hangup.threads}` : '') +
    `; CPU ${f.cpu?.ms_per_call_s ?? '–'} ms per call-second (${f.cpu?.ms ?? '–'} ms over ${f.cpu?.call_s ?? '–'} s)`;
}
