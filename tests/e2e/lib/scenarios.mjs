// Bad-page scenarios for SDK-mode calls (`run.mjs --scenario NAME`): things a page does to an
// established redirected call. Each runs once both peers are connected (lib/call.mjs
// `scenario`) and returns `{checks: [{name, ok, value, limit}], …details}`.
//
//   garbage    page A sends garbage text and an unknown method, on a second WebSocket of its own
//              and through the SDK's own WebSocket: each gets its typed error (docs/protocol.md:
//              bad_message/SyntaxError, unknown_method/NotSupportedError), and the call keeps
//              flowing both ways.
//   tab-close  page A's tab is closed mid-call: the daemon logs the session close, its PipeWire
//              streams disappear, and it still redirects a fresh page.
import fs from 'node:fs';
import path from 'node:path';
import { run, waitFor } from './procs.mjs';
import { sampleProc } from './procstat.mjs';

/** The daemon's info line when a page's session ends (daemon/src/session.rs, close_all). */
export const SESSION_CLOSED_LOG = 'session closed; devices released';
/** Deadline for the daemon to react to a closed tab (log line, streams gone), ms. */
export const TAB_CLOSE_DEADLINE_MS = 3000;
/** Window after the garbage in which the far end must still hear A, ms. */
const FLOW_WINDOW_MS = 3000;
/** An id no SDK request will reach in a test (the SDK counts up from 1). */
const BIG_ID = 9007199254740000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Page A init script for `garbage`: records every WebSocket the page opens (the SDK's among them)
 * in `window.__e2eSockets`, so the test can write on the SDK's own connection. The subclass only
 * records; behaviour is the native WebSocket's.
 */
const RECORD_SOCKETS = `(() => {
  const Native = window.WebSocket;
  window.__e2eSockets = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__e2eSockets.push(this); }
  };
})();`;

/**
 * Runs in page A: sends `frames` on `ws` and collects the replies for up to `waitMs`.
 * `frames`: [{text, expect: {id?: number, type: 'response'|'error'}}].
 */
async function sendAndCollect(page, which, frames, waitMs) {
  return page.evaluate(async ({ which, frames, waitMs, bridgeUrl }) => {
    const got = [];
    let ws;
    if (which === 'sdk') {
      ws = window.__e2eSockets?.find((s) => s.readyState === 1);
      if (!ws) return { error: 'no open SDK WebSocket recorded' };
    } else {
      ws = new WebSocket(bridgeUrl);
      const status = await new Promise((resolve) => {
        ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', sdk: 'e2e-raw', min_version: 1, max_version: 1 }));
        ws.onmessage = (e) => resolve(JSON.parse(e.data));
        ws.onerror = () => resolve({ error: 'websocket error' });
        setTimeout(() => resolve({ error: 'no status within 3 s' }), 3000);
      });
      if (status.redirected !== true) return { error: `raw WebSocket not redirected: ${JSON.stringify(status)}` };
      ws.onmessage = null;
    }
    const onMessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      // On the SDK's socket, keep only the replies to our frames.
      if (m.type === 'error' || (m.type === 'response' && frames.some((f) => f.expect.id === m.id))) got.push(m);
    };
    ws.addEventListener('message', onMessage);
    for (const f of frames) ws.send(f.text);
    const deadline = performance.now() + waitMs;
    while (got.length < frames.length && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    ws.removeEventListener('message', onMessage);
    if (which !== 'sdk') ws.close(1000, 'done');
    return { replies: got, sdkSocketOpen: which === 'sdk' ? ws.readyState === 1 : null };
  }, { which, frames, waitMs, bridgeUrl: new URL(page.url()).searchParams.get('bridgeUrl') });
}

/** Page A's inbound RTP packets (from the daemon, through the SDK's getStats). */
async function inboundPackets(page) {
  return page.evaluate(async () => {
    const r = await window.softphone.pc.getStats();
    let n = null;
    r.forEach((s) => { if (s.type === 'inbound-rtp') n = s.packetsReceived ?? n; });
    return n;
  }).catch((e) => `getStats failed: ${e.message}`);
}

async function garbage(ctx) {
  const { side, log } = ctx;
  const A = side.A.page, B = side.B.page;
  const checks = [];
  const add = (name, ok, value, limit) => checks.push({ name, ok: !!ok, value, limit });
  await sleep(2000); // let audio flow first
  const before = { packetsA: await inboundPackets(A), at: Date.now() };
  // On the SDK's socket the id must not collide with the SDK's own pending requests.
  const framesFor = (id) => [
    { label: 'not json', text: 'not json', expect: { type: 'error', code: 'bad_message', name: 'SyntaxError' } },
    { label: 'unknown method pc.fly', text: JSON.stringify({ type: 'request', id, method: 'pc.fly', params: {} }), expect: { type: 'response', id, code: 'unknown_method', name: 'NotSupportedError' } },
  ];
  const out = {};
  for (const which of ['raw', 'sdk']) {
    const frames = framesFor(which === 'sdk' ? BIG_ID : 1);
    out[which] = await sendAndCollect(A, which, frames, 3000);
    log(`garbage on the ${which} WebSocket: ${JSON.stringify(out[which])}`);
    if (out[which].error) { add(`${which} socket usable`, false, out[which].error, 'an open, redirected WebSocket'); continue; }
    for (const f of frames) {
      const e = f.expect;
      const reply = out[which].replies.find((m) => (e.type === 'error' ? m.type === 'error' : m.type === 'response' && m.id === e.id));
      const err = reply?.error ?? null;
      add(`${which === 'sdk' ? "SDK's" : 'second'} WebSocket: ${f.label} → typed error`, err?.code === e.code && err?.name === e.name,
        err ? { code: err.code, name: err.name } : reply ?? null, `${e.type} with error ${e.code}/${e.name}`);
    }
    if (which === 'sdk') add('SDK WebSocket still open', out.sdk.sdkSocketOpen === true, out.sdk.sdkSocketOpen, 'true');
  }
  const garbageAt = Date.now();
  await sleep(FLOW_WINDOW_MS);
  // A → B: B's page still hears A's speech (words above −40 dBFS) after the garbage.
  const levels = await B.evaluate((t) => window.__e2eProbe.levelsSince(t), garbageAt);
  add('A→B audio after garbage (frames > −40 dBFS in 3 s)', levels.speech >= 50, levels, '>= 50 (0.5 s of speech)');
  // B → A: the daemon still receives B's RTP, and the SDK's own session still answers requests.
  const packetsA = await inboundPackets(A);
  const delta = typeof packetsA === 'number' && typeof before.packetsA === 'number' ? packetsA - before.packetsA : null;
  const expectMin = Math.floor(((Date.now() - before.at) / 1000) * 20);
  add('B→A packets after garbage (getStats via the SDK)', delta !== null && delta >= expectMin, { before: before.packetsA, after: packetsA }, `>= ${expectMin} more (20/s)`);
  add('daemon still running', ctx.procs.daemon.exitCode === null, ctx.procs.daemon.exitCode, 'null (running)');
  return { checks, replies: out, levels_after: levels, packets_a: { before: before.packetsA, after: packetsA } };
}

/**
 * The PipeWire objects in `pw-dump` output. pw-dump prints more than one JSON array when the
 * graph changes while it runs (a call's streams starting or stopping): later arrays carry the
 * changed objects, and an object whose `info` is null was removed. Merged by `id`.
 * @returns {object[]}
 */
export function pwDumpObjects(text) {
  const byId = new Map();
  let depth = 0, inString = false, escaped = false, start = -1, arrays = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) {
        arrays++;
        for (const o of [].concat(JSON.parse(text.slice(start, i + 1)))) {
          if (o?.info === null) byId.delete(o.id);
          else if (o && o.id !== undefined) byId.set(o.id, o);
        }
      }
    }
  }
  if (arrays === 0 || depth !== 0) throw new Error(`pw-dump printed no complete JSON: ${text.slice(0, 80)}`);
  return [...byId.values()];
}

/**
 * PipeWire stream nodes of the daemon: nodes whose owning client (`client.id`) is a client of
 * process `pid` (`application.process.id`), or whose `node.name` is "vdimediad" (the
 * `client-name` the daemon gives pipewiresrc/pipewiresink). Seen in a call (pw-dump 0.3.65):
 * two nodes `node.name=vdimediad`, `Stream/Input/Audio` and `Stream/Output/Audio`, owned by the
 * daemon's client; the nodes themselves carry no process id.
 * @returns {Promise<{id: number, name: string, mediaClass: string, client: number}[]>}
 */
export async function daemonNodes(rigEnv, pid) {
  const r = await run(['pw-dump'], { env: rigEnv });
  if (r.code !== 0) throw new Error(`pw-dump failed (${r.code}): ${r.stderr.trim()}`);
  const objs = pwDumpObjects(r.stdout);
  const props = (o) => o.info?.props ?? {};
  const clients = new Set(objs.filter((o) => o.type === 'PipeWire:Interface:Client' && String(props(o)['application.process.id']) === String(pid)).map((o) => o.id));
  return objs.filter((o) => o.type === 'PipeWire:Interface:Node')
    .filter((o) => clients.has(props(o)['client.id']) || props(o)['node.name'] === 'vdimediad')
    .map((o) => ({ id: o.id, name: props(o)['node.name'], mediaClass: props(o)['media.class'], client: props(o)['client.id'] }));
}

async function tabClose(ctx) {
  const { side, procs, rigEnv, dir, log } = ctx;
  const checks = [];
  const add = (name, ok, value, limit) => checks.push({ name, ok: !!ok, value, limit });
  const daemonLog = path.join(dir, 'vdimediad.log');
  const closedCount = () => fs.readFileSync(daemonLog, 'utf8').split(SESSION_CLOSED_LOG).length - 1;
  await sleep(2000);
  const nodesBefore = await daemonNodes(rigEnv, procs.daemon.pid);
  log(`daemon's PipeWire nodes in the call: ${JSON.stringify(nodesBefore)}`);
  // Without the daemon's streams in the graph the "gone" check below could not fail.
  add("daemon's PipeWire streams during the call", nodesBefore.length >= 2, nodesBefore.map((n) => `${n.mediaClass} ${n.name}`), '>= 2 (capture and playout)');
  const closedBefore = closedCount();
  const inCall = sampleProc(procs.daemon.pid);

  const closeAt = Date.now();
  await side.A.page.close();
  log('page A closed');
  const logMs = await waitFor('the session-closed log line', () => closedCount() > closedBefore, TAB_CLOSE_DEADLINE_MS)
    .then(() => Date.now() - closeAt, () => null);
  let nodesAfter = nodesBefore;
  const goneMs = await waitFor('the daemon streams to leave PipeWire', async () => {
    nodesAfter = await daemonNodes(rigEnv, procs.daemon.pid);
    return nodesAfter.length === 0;
  }, Math.max(0, TAB_CLOSE_DEADLINE_MS - (Date.now() - closeAt))).then(() => Date.now() - closeAt, () => null);
  add(`daemon logged "${SESSION_CLOSED_LOG}"`, logMs !== null, logMs, `within ${TAB_CLOSE_DEADLINE_MS} ms`);
  add("daemon's PipeWire streams gone", goneMs !== null, goneMs ?? nodesAfter.map((n) => `${n.mediaClass} ${n.name}`), `none within ${TAB_CLOSE_DEADLINE_MS} ms`);
  await sleep(500);
  const afterClose = sampleProc(procs.daemon.pid);
  add('daemon still running', procs.daemon.exitCode === null, procs.daemon.exitCode, 'null (running)');

  // A fresh page still gets redirected by the same daemon.
  const browser = side.A.browser.connected ? side.A.browser : side.B.browser;
  const fresh = await browser.newPage();
  let install = null;
  try {
    await fresh.goto(ctx.pageAUrl);
    await fresh.waitForFunction(() => window.e2eBoot?.done, { timeout: 15000 });
    install = await fresh.evaluate(() => window.e2eBoot.install ?? { error: window.e2eBoot.error ?? null });
  } catch (e) {
    install = { error: e.message };
  }
  add('a fresh page is redirected', install?.redirected === true, install, 'redirected: true');
  const line = fs.readFileSync(daemonLog, 'utf8').split('\n').find((l) => l.includes(SESSION_CLOSED_LOG)) ?? null;
  return {
    checks, session_closed_log_ms: logMs, streams_gone_ms: goneMs, nodes_in_call: nodesBefore, log_line: line,
    daemon: { in_call: inCall, after_close: afterClose },
  };
}

/** name → {run(ctx), pageAInit?: string (script evaluated in page A before any of its own)} */
export const SCENARIOS = {
  garbage: { run: garbage, pageAInit: RECORD_SOCKETS },
  'tab-close': { run: tabClose },
};
