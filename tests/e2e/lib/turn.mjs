#!/usr/bin/env node
// Calls through a real TURN server (coturn on loopback, tests/turn/coturn.sh) with
// `iceTransportPolicy: 'relay'` on page A, and the checks that prove the relayed path.
//
//   node tests/e2e/lib/turn.mjs --mode sdk|native --turn udp|tcp|tls [--relay-b] [--bad-password]
//        [--duration 15] [--out FILE] [--keep] [--no-netns]
//   node tests/e2e/lib/turn.mjs --bench N [--out FILE]     # call setup through TURN/TCP,
//                                                          # native vs SDK, N calls each
//
//   --turn udp   turn:127.0.0.1:3478?transport=udp
//   --turn tcp   turn:127.0.0.1:3478?transport=tcp
//   --turn tls   turns:127.0.0.1:5349?transport=tcp (coturn's self-signed certificate)
//   --relay-b    page B gets the same TURN server and relay policy (else: host candidates only)
//   --bad-password  page A's TURN credential is wrong: the call must fail (negative test)
//
// Like run.mjs, the call runs in a fresh loopback-only network namespace (coturn too). The report
// is run.mjs's (lib/call.mjs) plus `turn`: the selected candidate pair of each side (getStats),
// coturn's allocations, and the TURN checks appended to `checks`. Exit: 0 pass, 1 a check
// failed, 2 bad usage or harness error.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { OUT_DIR, ROOT } from './config.mjs';
import { run } from './procs.mjs';
import { withCallLock } from './runner.mjs';

export const TURN_SCRIPT = path.join(ROOT, 'tests/turn/coturn.sh');
const SELF = fileURLToPath(import.meta.url);
const IN_NETNS = 'VDIMEDIA_E2E_IN_NETNS';
/** Deadline for a call with a wrong TURN password to reach `failed` (ICE and connection), ms. */
export const FAIL_DEADLINE_MS = 15000;

/** `RTCIceServer.urls` per transport (RFC 7065 URIs). */
export const TURN_URLS = {
  udp: (e) => `turn:127.0.0.1:${e.TURN_PORT}?transport=udp`,
  tcp: (e) => `turn:127.0.0.1:${e.TURN_PORT}?transport=tcp`,
  tls: (e) => `turns:127.0.0.1:${e.TURN_TLS_PORT}?transport=tcp`,
};
/** What the relayed local candidate of page A must say (webrtc-stats `relayProtocol`). */
const RELAY_PROTOCOL = { udp: 'udp', tcp: 'tcp', tls: 'tls' };

/**
 * Starts coturn below `dir` (inside the current network namespace).
 * @returns {Promise<{env: Record<string,string>, stop: () => Promise<void>}>} env: TURN_USER,
 *   TURN_PASSWORD, TURN_REALM, TURN_PORT, TURN_TLS_PORT, TURN_CA (PEM), TURN_LOG
 */
export async function startTurn(dir) {
  const r = await run(['bash', TURN_SCRIPT, 'start', dir]);
  if (r.code !== 0) throw new Error(`coturn start failed: ${r.stderr.trim()}`);
  const env = {};
  for (const m of r.stdout.matchAll(/^export ([A-Z_]+)="(.*)"$/gm)) env[m[1]] = m[2];
  return { env, stop: async () => { await run(['bash', TURN_SCRIPT, 'stop', dir]); } };
}

/** An `RTCConfiguration` with one TURN server and relay-only policy. */
export function relayConfig(turn, env, { password } = {}) {
  return {
    iceServers: [{ urls: TURN_URLS[turn](env), username: env.TURN_USER, credential: password ?? env.TURN_PASSWORD }],
    iceTransportPolicy: 'relay',
  };
}

/**
 * The selected candidate pair of a getStats() list (webrtc-stats): transport's
 * selectedCandidatePairId, else a nominated/selected succeeded pair; with its local and remote
 * candidate stats.
 */
export function selectedPair(list) {
  const byId = new Map(list.map((s) => [s.id, s]));
  const transport = list.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
  const pairs = list.filter((s) => s.type === 'candidate-pair');
  const pair = byId.get(transport?.selectedCandidatePairId)
    ?? pairs.find((p) => (p.nominated || p.selected) && p.state === 'succeeded')
    ?? pairs.find((p) => p.selected || p.nominated)
    ?? (pairs.length === 1 ? pairs[0] : undefined);
  if (!pair) return null;
  const cand = (id) => {
    const c = byId.get(id);
    return c && {
      candidateType: c.candidateType ?? null, protocol: c.protocol ?? null, relayProtocol: c.relayProtocol ?? null,
      address: c.address ?? c.ip ?? null, port: c.port ?? null, url: c.url ?? null,
    };
  };
  return {
    id: pair.id, state: pair.state ?? null, nominated: pair.nominated ?? null,
    bytesSent: pair.bytesSent ?? null, bytesReceived: pair.bytesReceived ?? null,
    local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId),
    candidates: list.filter((s) => s.type === 'local-candidate').map((c) => `${c.candidateType}/${c.protocol}/${c.relayProtocol ?? '-'}`),
  };
}

/**
 * What coturn's log (-V) says about the call: allocations made and refused, and over which
 * client transport. Per session: TLS when its "new" line names a cipher (coturn logs
 * `cipher=…, method=TLSv1.2` for TLS clients only), TCP when a line of it names a TCP socket or
 * connection, else UDP. `usage` lines carry coturn's relayed packet/byte counters (rp/rb/sp/sb).
 */
export function coturnSummary(logText, tlsPort = null) {
  const lines = logText.split('\n');
  const sessionOf = (l) => /session (\d+):/.exec(l)?.[1] ?? null;
  const bySession = new Map();
  for (const l of lines) {
    const id = sessionOf(l);
    if (!id) continue;
    if (!bySession.has(id)) bySession.set(id, []);
    bySession.get(id).push(l);
  }
  const protoOf = (id) => {
    const ls = bySession.get(id) ?? [];
    if (ls.some((l) => /: new, realm=.*cipher=/.test(l))) return 'tls';
    // The TLS port only takes TCP here (--no-dtls): a session on it without a cipher is plain TCP.
    if (ls.some((l) => /\bTCP (socket|connection)\b/.test(l) || (tlsPort && new RegExp(`local [^ ]+:${tlsPort},`).test(l)))) return 'tcp';
    return 'udp';
  };
  const counter = (id, re) => {
    const l = (bySession.get(id) ?? []).find((x) => re.test(x));
    if (!l) return null;
    return Object.fromEntries([...l.matchAll(/\b(rp|rb|sp|sb)=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
  };
  const allocated = [...bySession.keys()].filter((id) => bySession.get(id).some((l) => /ALLOCATE processed, success/.test(l)));
  const sessions = allocated.map((id) => ({ id, protocol: protoOf(id), client: counter(id, /: usage: /), peer: counter(id, /: peer usage: /) }));
  // Sessions that relayed the call (libnice may open and drop a spare allocation): coturn counts
  // packets to/from the peer (rp/sp); a still-open session has no counters yet and counts too.
  const media = sessions.filter((x) => !x.peer || (x.peer.rp >= 10 && x.peer.sp >= 10));
  const allocErrors = lines.filter((l) => /ALLOCATE processed, error/.test(l) || (/error 401/.test(l) && /user <[^>]+>/.test(l)));
  return {
    allocations: allocated.length,
    media_sessions: media.length,
    media_protocols: [...new Set(media.map((x) => x.protocol))],
    sessions,
    allocation_errors: allocErrors.length,
    error_sample: allocErrors.slice(0, 2).map((l) => l.replace(/^.*?session/, 'session')),
  };
}

/** Marks of a page timeline ([{t, what}], t ms since the click) → first t of `what`. */
const markAt = (timeline, what) => (timeline ?? []).find((e) => e.what === what)?.t ?? null;

/**
 * Places one call through TURN (inside the current network namespace) and adds the TURN
 * checks. Options: mode, turn ('udp'|'tcp'|'tls'), relayB, badPassword, durationS, out, keep, log.
 */
export async function turnCall(o) {
  const { runCall } = await import('./call.mjs');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const turnDir = path.join(OUT_DIR, 'work', `turn-${o.mode}-${o.turn}-${stamp}`);
  fs.mkdirSync(turnDir, { recursive: true });
  const turn = await startTurn(turnDir);
  // The daemon verifies turns: certificates against $SSL_CERT_FILE (daemon/src/webrtc/ice.rs):
  // the self-signed one coturn.sh made is the only CA it trusts in this call. Processes the
  // harness starts inherit this environment (Chromium's TLS ignores the variable).
  process.env.SSL_CERT_FILE = turn.env.TURN_CA;
  let report;
  try {
    const configA = relayConfig(o.turn, turn.env, { password: o.badPassword ? 'not-the-password' : undefined });
    const rtcConfig = { A: configA, ...(o.relayB ? { B: relayConfig(o.turn, turn.env) } : {}) };
    report = await runCall({
      mode: o.mode, codec: 'opus', offerer: 'A', durationS: o.durationS, keep: true, rtcConfig,
      scenarioName: `turn-${o.turn}${o.badPassword ? "-badpass" : ""}`, ...(o.log ? { log: o.log } : {}),
    });
  } finally {
    await turn.stop();
  }
  const coturn = coturnSummary(fs.readFileSync(turn.env.TURN_LOG, 'utf8'), turn.env.TURN_TLS_PORT);
  const stats = {};
  for (const s of ['A', 'B']) {
    try { stats[s] = JSON.parse(fs.readFileSync(path.join(report.work_dir, `stats-${s}.json`), 'utf8')); } catch { stats[s] = []; }
  }
  const pairs = { A: selectedPair(stats.A), B: selectedPair(stats.B) };
  const tl = report.timeline;
  const times = {
    A: { ice_connected: markAt(tl.A, 'ice:connected'), connected: markAt(tl.A, 'connection:connected'), ice_failed: markAt(tl.A, 'ice:failed'), failed: markAt(tl.A, 'connection:failed') },
    B: { ice_connected: markAt(tl.B, 'ice:connected'), connected: markAt(tl.B, 'connection:connected') },
  };
  // Click → both pages `connected`, from the pages' own event times (the harness polls).
  const setupMs = times.A.connected !== null && times.B.connected !== null ? Math.max(times.A.connected, times.B.connected) : null;
  report.turn = { transport: o.turn, url: TURN_URLS[o.turn](turn.env), relay_b: !!o.relayB, bad_password: !!o.badPassword, pairs, coturn, times, setup_ms: setupMs, turn_dir: turnDir };

  const checks = [];
  const add = (name, ok, value, limit) => checks.push({ name, ok: !!ok, value, limit });
  if (!o.badPassword) {
    const la = pairs.A?.local;
    add('A selected pair: local candidate relay', la?.candidateType === 'relay', la && `${la.candidateType}/${la.protocol}`, 'relay');
    // webrtcbin 1.22 reports relay-protocol "none" for every candidate (the daemon passes it
    // through): for the SDK that one value is tolerated and documented (docs/compatibility.md
    // "## TURN"), coturn's sessions below prove the transport; any other wrong value fails.
    const rp = la?.relayProtocol ?? null;
    const rpGap = o.mode === 'sdk' && (rp === 'none' || rp === null);
    add(`A selected pair: relayProtocol ${RELAY_PROTOCOL[o.turn]}`, rp === RELAY_PROTOCOL[o.turn] || rpGap, rp,
      RELAY_PROTOCOL[o.turn] + (o.mode === 'sdk' ? ' (sdk: "none" tolerated, webrtcbin 1.22)' : ''));
    add('A local candidates: relay only', (pairs.A?.candidates.length ?? 0) > 0 && pairs.A.candidates.every((c) => c.startsWith('relay/')), pairs.A?.candidates ?? null, 'every local-candidate relay');
    if (o.relayB) add('B selected pair: local candidate relay', pairs.B?.local?.candidateType === 'relay', pairs.B?.local?.candidateType ?? null, 'relay');
    const want = o.relayB ? 2 : 1;
    add('coturn sessions relaying the call', coturn.media_sessions === want, coturn.media_sessions, `${want} (A${o.relayB ? ' and B' : ''})`);
    add(`coturn: the call relayed over ${o.turn} only`, coturn.media_protocols.length === 1 && coturn.media_protocols[0] === o.turn,
      coturn.media_protocols, `[${o.turn}]` + (o.turn === 'tls' ? ' (a session without a TLS cipher on the TLS port is plain TCP)' : ''));
    report.checks.push(...checks);
  } else {
    // A wrong TURN password: coturn answers 401, no allocation, so under the relay policy no
    // local candidate at all. WebRTC 1.0 (RTCIceConnectionState "failed", with RFC 8863) wants
    // `failed` once gathering is complete with zero local candidates and the far end signalled
    // end-of-candidates; Chromium 156 stays `new` (measured with --mode native), and so does
    // the daemon (webrtcbin 1.22): both are accepted, anything past `new` other than `failed`
    // is not. The daemon must log the empty gathering and stay up (answer getStats after it).
    const daemonLog = o.mode === 'sdk' ? safeRead(path.join(report.work_dir, 'vdimediad.log')).replace(/\x1b\[[0-9;]*m/g, '') : '';
    const gathered = daemonLog.split('\n').filter((l) => /local ICE candidate gathered/.test(l)).length;
    const completeLine = daemonLog.split('\n').find((l) => /icegatheringstatechange: complete/.test(l)) ?? null;
    const states = (s) => (tl[s] ?? []).filter((e) => /^(ice|connection):/.test(e.what)).map((e) => `${e.what}@${Math.round(e.t)}`);
    const beyondNew = (s) => (tl[s] ?? []).some((e) => /^(ice|connection):/.test(e.what) && !/:(new|failed|closed)$/.test(e.what));
    const failedInTime = times.A.ice_failed === null || times.A.ice_failed <= FAIL_DEADLINE_MS;
    // connectionState when the harness gave up waiting for `connected` (lib/call.mjs error text).
    const finalA = report.errors.map((e) => /\(A: (\w+), B: (\w+)\)/.exec(e)?.[1]).find(Boolean) ?? null;
    report.turn.states = { A: states('A'), B: states('B'), A_after_connect_timeout: finalA };
    report.checks = [
      { name: 'not connected', ok: report.connect_ms === null && times.A.connected === null, value: report.connect_ms, limit: 'never connected' },
      { name: 'A ICE/connection state only new or failed (spec: failed; Chromium: new)', ok: !beyondNew('A') && failedInTime && ['new', 'failed'].includes(finalA), value: { events: report.turn.states.A, after_connect_timeout: finalA }, limit: `no checking/connected; failed, if at all, <= ${FAIL_DEADLINE_MS} ms` },
      { name: 'coturn refused the credential (401), no allocation', ok: coturn.allocations === 0 && coturn.allocation_errors > 0, value: { allocations: coturn.allocations, errors: coturn.allocation_errors }, limit: '0 allocations, >= 1 error' },
      ...(o.mode === 'sdk' ? [
        { name: 'daemon log: gathering complete without a local candidate', ok: completeLine !== null && gathered === 0, value: { gathered, complete: completeLine && completeLine.slice(0, 200) }, limit: '0 gathered, a complete line' },
        { name: 'daemon stays up (answers getStats after the failure)', ok: !report.errors.some((e) => e.startsWith('getStats A') || e.startsWith('collect A')) && report.footprint?.daemon?.after_hangup != null, value: report.footprint?.daemon?.after_hangup?.rss_kb ?? null, limit: 'alive' },
        { name: 'daemon did not panic', ok: !/panicked/.test(daemonLog), value: null, limit: 'no panic' },
      ] : []),
    ];
  }
  report.pass = report.checks.every((c) => c.ok) && !report.errors.some((e) => e.startsWith('harness:'));
  if (report.pass && !o.keep) {
    for (const d of [report.work_dir, turnDir]) fs.rmSync(d, { recursive: true, force: true });
    report.work_dir = null;
    report.recordings = null;
  }
  if (o.out) {
    fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    fs.writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
  }
  return report;
}

function safeRead(p) { try { return fs.readFileSync(p, 'utf8'); } catch { return ''; } }


/**
 * Runs this file as a child (own network namespace, own process group) under the call lock.
 * @param {string[]} args CLI arguments (see the header)
 * @returns {Promise<{code: number|null, stderr: string, report: object|null}>}
 */
export function placeTurnCall(args, out, timeoutMs) {
  return withCallLock(() => new Promise((resolve) => {
    fs.rmSync(out, { force: true });
    const child = spawn(process.execPath, [SELF, ...args, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      stderr += `\nturn.mjs: call timed out after ${timeoutMs} ms; stopping its process group\n`;
      try { process.kill(-child.pid, 'SIGTERM'); } catch { child.kill('SIGTERM'); }
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      let report = null;
      try { report = JSON.parse(fs.readFileSync(out, 'utf8')); } catch { /* no report */ }
      resolve({ code, stderr, report });
    });
  }));
}

/** One-line summary of a TURN call report. */
export function turnSummaryLine(r) {
  const t = r.turn ?? {};
  const la = t.pairs?.A?.local;
  return `${r.mode} TURN ${t.transport}${t.bad_password ? ' (wrong password)' : ''}${t.relay_b ? ', B relays too' : ''}: ` +
    `setup ${t.setup_ms ?? '–'} ms; A local ${la ? `${la.candidateType}/${la.protocol}/${la.relayProtocol ?? '-'}` : '–'}; ` +
    `coturn sessions relaying ${t.coturn?.media_sessions ?? '–'} over ${(t.coturn?.media_protocols ?? []).join(',') || '–'}; ` +
    (t.bad_password ? `A states ${JSON.stringify(t.states?.A ?? [])}; coturn refusals ${t.coturn?.allocation_errors ?? '–'}; `
      : `PESQ A→B ${r.pesq?.a_to_b ?? '–'} B→A ${r.pesq?.b_to_a ?? '–'}; `) + (r.pass ? 'PASS' : 'FAIL');
}

async function main() {
  let args;
  const usage = (msg) => {
    if (msg) console.error(`turn.mjs: ${msg}`);
    console.error('usage: node tests/e2e/lib/turn.mjs --mode sdk|native --turn udp|tcp|tls [--relay-b] [--bad-password] [--duration 15] [--out FILE] [--keep] [--no-netns]\n       node tests/e2e/lib/turn.mjs --bench N [--out FILE]');
    process.exit(2);
  };
  try {
    ({ values: args } = parseArgs({
      options: {
        mode: { type: 'string', default: 'sdk' }, turn: { type: 'string', default: 'udp' },
        'relay-b': { type: 'boolean', default: false }, 'bad-password': { type: 'boolean', default: false },
        duration: { type: 'string', default: '15' }, out: { type: 'string' }, keep: { type: 'boolean', default: false },
        'no-netns': { type: 'boolean', default: false }, bench: { type: 'string' }, help: { type: 'boolean', default: false },
      },
    }));
  } catch (e) { usage(e.message); }
  if (args.help) usage();
  if (args.bench !== undefined) return bench(Number(args.bench), args.out);
  if (!['sdk', 'native'].includes(args.mode)) usage('--mode must be sdk or native');
  if (!TURN_URLS[args.turn]) usage('--turn must be udp, tcp or tls');
  const durationS = Number(args.duration);
  if (!(durationS >= 15 && durationS <= 120)) usage('--duration must be 15..120 s');
  if (!args['no-netns'] && !process.env[IN_NETNS]) {
    const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, SELF, ...process.argv.slice(2)], {
      stdio: 'inherit', env: { ...process.env, [IN_NETNS]: '1' },
    });
    if (r.error) { console.error(`turn.mjs: cannot enter a network namespace (${r.error.message}); use --no-netns`); process.exit(2); }
    process.exit(r.status ?? 2);
  }
  let report;
  try {
    report = await turnCall({ mode: args.mode, turn: args.turn, relayB: args['relay-b'], badPassword: args['bad-password'], durationS, out: args.out, keep: args.keep });
  } catch (e) {
    console.error(`turn.mjs: ${e.stack ?? e}`);
    process.exit(2);
  }
  console.log(JSON.stringify(report, null, 2));
  console.error(turnSummaryLine(report));
  for (const c of report.checks) console.error(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${JSON.stringify(c.value)} (want ${c.limit})`);
  for (const e of report.errors) console.error(`  error: ${e}`);
  if (report.work_dir) console.error(`  work dir: ${report.work_dir}`);
  process.exit(report.pass ? 0 : 1);
}

/**
 * Call setup through TURN/TCP, both pages relay-only: N native calls (Chromium ↔ Chromium) and N
 * SDK calls, alternating, each in its own namespace. Prints a markdown table (medians).
 */
async function bench(n, out) {
  if (!(n >= 1 && n <= 20)) { console.error('turn.mjs: --bench N, 1..20'); process.exit(2); }
  const rows = { native: [], sdk: [] };
  for (let i = 0; i < n; i++) {
    for (const mode of ['native', 'sdk']) {
      const file = path.join(OUT_DIR, `turn-bench-${mode}-${i + 1}.json`);
      const r = await placeTurnCall(['--mode', mode, '--turn', 'tcp', '--relay-b'], file, 120000);
      console.error(r.report ? turnSummaryLine(r.report) : `${mode}: no report (exit ${r.code})\n${r.stderr.slice(-2000)}`);
      rows[mode].push(r.report);
    }
  }
  const table = benchTable(rows);
  console.log(table);
  if (out) fs.writeFileSync(out, JSON.stringify({ rows, table }, null, 2) + '\n');
  // PESQ on this shared machine is noisy (see the table's note); the benchmark fails only when
  // a call did not take the relayed path or did not connect.
  process.exit(rows.native.concat(rows.sdk).every((r) => r && pathOk(r)) ? 0 : 1);
}

/** Every check but speech quality passed: connected, relayed over TURN/TCP, packets flowed. */
const pathOk = (r) => r.checks.every((c) => c.ok || /^pesq /.test(c.name));

/**
 * Markdown table of `bench` rows ({native: report[], sdk: report[]}): medians of click → both
 * pages `connected` (the pages' own event times), of click → A's ICE `connected`, PESQ each way.
 */
export function benchTable(rows) {
  const med = (xs) => { const v = xs.filter((x) => x != null).sort((a, b) => a - b); return v.length ? v[Math.floor((v.length - 1) / 2)] : null; };
  const f = (x) => (x == null ? '–' : String(Math.round(x)));
  const line = (mode, label) => {
    const rs = rows[mode];
    const setup = rs.map((r) => r?.turn?.setup_ms ?? null);
    const ice = rs.map((r) => r?.turn?.times?.A?.ice_connected ?? null);
    const pesq = (d) => med(rs.map((r) => r?.pesq?.[d] ?? null));
    return `| ${label} | **${f(med(setup))}** | ${setup.map((x) => (x == null ? '✗' : f(x))).join(', ')} | ${f(med(ice))} | ` +
      `${rs.filter((r) => r && pathOk(r)).length}/${rs.length} | ${pesq('a_to_b') ?? '–'} / ${pesq('b_to_a') ?? '–'} |`;
  };
  return [
    '| page A | click → both pages `connected`, median (ms) | each call (ms) | click → A `iceConnectionState` `connected`, median (ms) | calls relayed over TURN/TCP (relay pair, 2 coturn TCP sessions, packets) | WB-PESQ A→B / B→A, median |',
    '|---|---|---|---|---|---|',
    line('native', 'native Chromium 156 `RTCPeerConnection`'),
    line('sdk', 'vdimedia SDK (vdimediad: webrtcbin 1.22 / libnice 0.1.21)'),
  ].join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === SELF) await main();
