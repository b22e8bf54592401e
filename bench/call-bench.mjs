#!/usr/bin/env node
// Call benchmark: the same scored call (tests/e2e/run.mjs) N times with Chromium's native WebRTC
// on page A (the baseline) and N times through vdimedia (SDK mode), interleaved, then a markdown
// report of medians and the individual runs (default docs/benchmarks.md).
//
//   node bench/call-bench.mjs [--codecs opus[,G722,PCMU]] [--offerer A|B] [--runs 3]
//        [--duration 20] [--out docs/benchmarks.md] [--json-dir tests/out/bench] [--from-json]
//
// --from-json rewrites the report from the JSON reports a previous run left in --json-dir
// (no calls). Needs what SDK mode needs (tests/README.md): release binaries and the SDK bundle.
// Reports, never asserts: the exit status is 0 unless the harness could not run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ROOT, CHROMIUM } from '../tests/e2e/lib/config.mjs';
import { missingSdkBuilds, placeCall } from '../tests/e2e/lib/runner.mjs';

const { values: a } = parseArgs({
  options: {
    codecs: { type: 'string', default: 'opus' },
    offerer: { type: 'string', default: 'A' },
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '20' },
    out: { type: 'string', default: path.join(ROOT, 'docs/benchmarks.md') },
    'json-dir': { type: 'string', default: path.join(ROOT, 'tests/out/bench') },
    'from-json': { type: 'boolean', default: false },
  },
});
const codecs = a.codecs.split(',').map((c) => c.trim()).filter(Boolean);
const runs = Number(a.runs);
const durationS = Number(a.duration);
const jsonDir = path.resolve(a['json-dir']);
const MODES = ['native', 'sdk'];
for (const c of codecs) if (!['opus', 'G722', 'PCMU'].includes(c)) die(`unknown codec ${c}`);
if (!['A', 'B'].includes(a.offerer)) die('--offerer must be A or B');
if (!(runs >= 1 && runs <= 20)) die('--runs must be 1..20');

function die(msg) { console.error(`call-bench: ${msg}`); process.exit(2); }
const sh = (cmd, args) => { try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return null; } };
/** Heavy neighbours (compilers, other browsers) running right now: a load note per call. */
const neighbours = () => {
  const ps = sh('ps', ['-eo', 'comm=']) ?? '';
  const counts = {};
  for (const c of ps.split('\n')) if (['rustc', 'cargo', 'cc1', 'cc1plus', 'ld'].includes(c.trim())) counts[c.trim()] = (counts[c.trim()] ?? 0) + 1;
  return counts;
};
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

const command = `node bench/call-bench.mjs --codecs ${codecs.join(',')} --offerer ${a.offerer} --runs ${runs} --duration ${durationS}`;
const meta = {
  command,
  date: new Date().toISOString(),
  nproc: os.availableParallelism(),
  cpu: os.cpus()[0]?.model ?? '?',
  mem_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  kernel: os.release(),
  chromium: sh(CHROMIUM, ['--version']),
  gstreamer: sh('gst-inspect-1.0', ['--version'])?.split('\n')[1] ?? null,
  load_before: loadavg(),
  load_after: null,
};

fs.mkdirSync(jsonDir, { recursive: true });
const metaFile = path.join(jsonDir, 'meta.json');
/** results[codec][mode] = [report, …] */
const results = {};
if (a['from-json']) {
  Object.assign(meta, JSON.parse(fs.readFileSync(metaFile, 'utf8')));
  for (const codec of codecs) {
    results[codec] = {};
    for (const mode of MODES) {
      results[codec][mode] = [];
      for (let i = 1; i <= runs; i++) {
        const f = path.join(jsonDir, `${mode}-${codec}-${a.offerer}-${i}.json`);
        if (fs.existsSync(f)) results[codec][mode].push(JSON.parse(fs.readFileSync(f, 'utf8')));
      }
    }
  }
} else {
  const missing = missingSdkBuilds();
  if (missing) die(missing);
  for (const codec of codecs) {
    results[codec] = { native: [], sdk: [] };
    for (let i = 1; i <= runs; i++) {
      // Interleaved so slow phases of the shared machine hit both modes alike.
      for (const mode of MODES) {
        const out = path.join(jsonDir, `${mode}-${codec}-${a.offerer}-${i}.json`);
        const load = loadavg();
        const busy = neighbours();
        process.stderr.write(`call-bench: ${mode} ${codec} offerer ${a.offerer} run ${i}/${runs} (load ${load}) … `);
        const { code, report } = await placeCall({ mode, codec, offerer: a.offerer, durationS, out, timeoutMs: (durationS + 90) * 1000 });
        if (!report) { process.stderr.write(`no report (exit ${code})\n`); continue; }
        report.bench = { run: i, load_at_start: load, neighbours: busy };
        fs.writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
        results[codec][mode].push(report);
        process.stderr.write(`${report.pass ? 'pass' : 'FAIL'} PESQ ${report.pesq.a_to_b}/${report.pesq.b_to_a} setup ${report.setup_ms.a_to_b}/${report.setup_ms.b_to_a} ms\n`);
      }
    }
  }
  meta.load_after = loadavg();
  fs.writeFileSync(metaFile, JSON.stringify(meta, null, 2) + '\n');
}

// ---- report ----
const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((p, q) => p - q);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const mib = (kb) => (kb == null ? null : kb / 1024);
/** Metric rows: [label, (report) → number|null, decimals, unit, goal text]. */
const METRICS = [
  ['setup A→B (answer applied → first audio at B)', (r) => r.setup_ms?.a_to_b, 0, 'ms', '≤ 150 and faster than native'],
  ['setup B→A (answer applied → first audio at A)¹', (r) => r.setup_ms?.b_to_a, 0, 'ms', '≤ 150 and faster than native'],
  ['connect (Call clicked → both connected)', (r) => r.connect_ms, 0, 'ms', ''],
  ['PESQ A→B', (r) => r.pesq?.a_to_b, 2, 'MOS-LQO', '≥ 3.5'],
  ['PESQ B→A', (r) => r.pesq?.b_to_a, 2, 'MOS-LQO', '≥ 3.5'],
  ['daemon RSS before any channel (listening only)', (r) => mib(r.footprint?.daemon?.no_channel?.rss_kb), 1, 'MiB', ''],
  ['daemon RSS idle (channel up, no page)', (r) => mib(r.footprint?.daemon?.idle?.rss_kb), 1, 'MiB', '< 20'],
  ['daemon PSS / USS idle', (r) => mib(r.footprint?.daemon?.idle?.pss_kb), 1, 'MiB', '', (r) => mib(r.footprint?.daemon?.idle?.uss_kb)],
  ['daemon RSS in call (max)', (r) => mib(r.footprint?.daemon?.in_call?.rss_max_kb), 1, 'MiB', ''],
  ['daemon RSS after hang-up', (r) => mib(r.footprint?.daemon?.after_hangup?.rss_kb), 1, 'MiB', ''],
  ['daemon threads idle / in call (max)', (r) => r.footprint?.daemon?.idle?.threads, 0, '', '', (r) => r.footprint?.daemon?.in_call?.threads_max],
  ['daemon CPU per call-second', (r) => r.footprint?.daemon?.cpu?.ms_per_call_s, 1, 'ms/s', ''],
  ['bridge RSS idle / in call (max)', (r) => mib(r.footprint?.bridge?.idle?.rss_kb), 1, 'MiB', '', (r) => mib(r.footprint?.bridge?.in_call?.rss_max_kb)],
  ['bridge CPU per call-second', (r) => r.footprint?.bridge?.cpu?.ms_per_call_s, 1, 'ms/s', ''],
  ['VC bytes (both ways, whole call)', (r) => r.vc_bytes?.total, 0, 'B', '< 65536 (signalling only)'],
];
const fmt = (x, d) => (x == null ? '–' : Number(x).toFixed(d));
const cell = (rs, m) => {
  const [, f, d, , , g] = m;
  const v = fmt(median(rs.map(f)), d);
  return g ? `${v} / ${fmt(median(rs.map(g)), d)}` : v;
};

const L = [];
L.push('# Benchmarks', '');
L.push('Generated by `bench/call-bench.mjs` (rerun it; only the interpretation block is kept across runs). The same scored call as the end-to-end test',
  '(`tests/e2e/run.mjs`, see tests/README.md), page A with Chromium\'s native WebRTC (**native**, the baseline) and',
  'through vdimedia (**sdk**: page A\'s call runs in `vdimediad` on the rig\'s headless PipeWire), interleaved run by run.', '');
L.push('```sh', meta.command, '```', '');
L.push(`- date: ${meta.date}`);
L.push(`- machine: ${meta.nproc} CPUs (${meta.cpu}), ${meta.mem_gib} GiB RAM, Linux ${meta.kernel}; ${meta.chromium ?? 'chromium ?'}; ${meta.gstreamer ?? ''}`);
L.push(`- load average (1/5/15 min) before: ${meta.load_before}, after: ${meta.load_after ?? '?'}; the machine is shared with other`,
  '  engineers\' builds (per-run load and compilers running are in the runs table). Both peers, both browsers, the',
  '  PipeWire graph, the daemon and the bridge share these cores, so absolute times are pessimistic.');
L.push(`- call: ${durationS} s from the click on Call, offerer ${a.offerer}, ${runs} run(s) per mode; medians below.`, '');

for (const codec of codecs) {
  const rs = results[codec];
  const band = (rs.sdk[0] ?? rs.native[0])?.band ?? (codec === 'PCMU' ? 'nb' : 'wb');
  L.push(`## ${codec}, offerer ${a.offerer} (${band === 'nb' ? 'narrowband PESQ, P.862' : 'wideband PESQ, P.862.2'})`, '');
  L.push(`| metric (median of ${runs}) | native | sdk | goal |`, '| --- | ---: | ---: | --- |');
  for (const m of METRICS) {
    const isEndpoint = /daemon|bridge|VC/.test(m[0]);
    L.push(`| ${m[0]}${m[3] ? ` (${m[3]})` : ''} | ${isEndpoint ? 'n/a' : cell(rs.native, m)} | ${cell(rs.sdk, m)} | ${m[4]} |`);
  }
  L.push('', `Runs (${codec}):`, '');
  L.push('| mode | run | pass | setup A→B / B→A (ms) | connect (ms) | PESQ A→B / B→A | daemon RSS idle / call / after (MiB) | threads idle / call / after | daemon CPU (ms/s) | VC bytes | load at start | compilers running |');
  L.push('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const mode of MODES) {
    for (const r of rs[mode]) {
      const d = r.footprint?.daemon;
      L.push(`| ${mode} | ${r.bench?.run ?? '?'} | ${r.pass ? 'yes' : 'no'} | ${fmt(r.setup_ms?.a_to_b, 0)} / ${fmt(r.setup_ms?.b_to_a, 0)} | ${fmt(r.connect_ms, 0)} | ` +
        `${fmt(r.pesq?.a_to_b, 2)} / ${fmt(r.pesq?.b_to_a, 2)} | ` +
        (d ? `${fmt(mib(d.idle?.rss_kb), 1)} / ${fmt(mib(d.in_call?.rss_max_kb), 1)} / ${fmt(mib(d.after_hangup?.rss_kb), 1)} | ${d.idle?.threads ?? '–'} / ${d.in_call?.threads_max ?? '–'} / ${d.after_hangup?.threads ?? '–'} | ${fmt(d.cpu?.ms_per_call_s, 1)}` : 'n/a | n/a | n/a') +
        ` | ${r.vc_bytes?.total ?? 'n/a'} | ${r.bench?.load_at_start ?? '?'} | ${Object.entries(r.bench?.neighbours ?? {}).map(([k, v]) => `${k}×${v}`).join(' ') || 'none'} |`);
    }
  }
  L.push('');
  L.push(...reading(codec, rs), '');
}

L.push('## How the numbers are taken', '');
L.push('- **setup**: from the offerer\'s `setRemoteDescription(answer)` resolving to the first received 10 ms frame above',
  '  −70 dBFS at the far end. Page B records in the page with `MediaStreamTrackProcessor` (frame arrival times).',
  '  ¹ In SDK mode, what A hears is recorded by `pw-record` from the endpoint\'s null sink, which has no per-buffer',
  '  timestamps: B→A is recorder start + offset of the first loud frame in its file (approximate, and it includes',
  '  PipeWire\'s buffering). In native mode both directions are measured in the pages.',
  '- **connect**: click on Call → both pages report `connectionState == "connected"` (polled every 50 ms).',
  '- **PESQ**: ITU-T P.862.2 wideband (P.862 narrowband for PCMU) of the last full period of the looping reference speech,',
  '  after cross-correlation alignment (`tests/e2e/score.py --periodic`).',
  '- **daemon RSS/threads**: `VmRSS` and `Threads` from `/proc/PID/status`. *before any channel* = the daemon listening on its',
  '  socket, nothing connected (GStreamer not initialised yet); *idle* = daemon started, the bridge\'s',
  '  virtual channel connected and handshaken, GStreamer/DTLS warm-up done, no page loaded; *PSS/USS* from',
  '  `/proc/PID/smaps_rollup` (PSS shares library pages among their users, USS = private pages only: RSS counts every',
  '  mapped GStreamer/GLib library page in full); *in call* = maximum of samples',
  '  every 200 ms from the click on Call to the end of the call; *after hang-up* = 1 s after both pages closed their',
  '  peer connections (the page stays open, so its session does too).',
  '- **CPU per call-second**: (utime + stime from `/proc/PID/stat`, ms) over the call ÷ call seconds; 1000 ms/s = one core.',
  '- **VC bytes**: counted by a relay on the virtual channel\'s Unix socket, both ways, whole session (handshake,',
  '  getUserMedia, SDP, candidates, stats, close).',
  '- Native mode runs no daemon: its footprint cells are n/a. Chromium\'s own media CPU is not measured here.');
// A hand-written interpretation between these markers survives regeneration.
const NOTES = /<!-- interpretation -->[\s\S]*?<!-- \/interpretation -->/;
// Other benchmarks (codecs, AEC, footprint) live after this marker; call-bench keeps them as they are.
const MORE = '<!-- other benchmarks: kept by call-bench.mjs -->';
const before = fs.existsSync(a.out) ? fs.readFileSync(a.out, 'utf8') : '';
const previous = before.match(NOTES)?.[0] ?? null;
const more = before.includes(MORE) ? before.slice(before.indexOf(MORE)).trimEnd() : MORE;
const at = L.findIndex((l) => l.startsWith('## '));
L.splice(at, 0, previous ?? '<!-- interpretation -->\n<!-- /interpretation -->', '');
L.push('', more);
fs.mkdirSync(path.dirname(path.resolve(a.out)), { recursive: true });
fs.writeFileSync(a.out, L.join('\n') + '\n');
console.error(`call-bench: wrote ${a.out}`);

/** Plain-language reading of the medians against the issue's goals. */
function reading(codec, rs) {
  const m = (mode, f) => median(rs[mode].map(f));
  const out = [`Reading (${codec}):`, ''];
  const sN = m('native', (r) => r.setup_ms?.a_to_b), sS = m('sdk', (r) => r.setup_ms?.a_to_b);
  if (sS != null) {
    out.push(`- Setup A→B: sdk ${fmt(sS, 0)} ms vs native ${fmt(sN, 0)} ms — goal "≤ 150 ms and faster than native" ` +
      `${sS <= 150 && (sN == null || sS < sN) ? 'met' : 'not met'}` + (sS > 150 ? ` (${fmt(sS - 150, 0)} ms over)` : '') +
      (sN != null && sS >= sN ? ` (${fmt(sS - sN, 0)} ms slower than native)` : '') + '.');
  }
  const bN = m('native', (r) => r.setup_ms?.b_to_a), bS = m('sdk', (r) => r.setup_ms?.b_to_a);
  if (bS != null) out.push(`- Setup B→A: sdk ${fmt(bS, 0)} ms (approximate, see ¹) vs native ${fmt(bN, 0)} ms.`);
  const pass = (mode) => `${rs[mode].filter((r) => r.pass).length}/${rs[mode].length}`;
  out.push(`- PESQ medians A→B / B→A: native ${fmt(m('native', (r) => r.pesq?.a_to_b), 2)} / ${fmt(m('native', (r) => r.pesq?.b_to_a), 2)}, ` +
    `sdk ${fmt(m('sdk', (r) => r.pesq?.a_to_b), 2)} / ${fmt(m('sdk', (r) => r.pesq?.b_to_a), 2)}; runs passing all e2e checks: native ${pass('native')}, sdk ${pass('sdk')}.`);
  const idle = mib(m('sdk', (r) => r.footprint?.daemon?.idle?.rss_kb));
  if (idle != null) {
    out.push(`- Daemon RSS idle ${fmt(idle, 1)} MiB — goal "< 20 MB" ${idle < 20 ? 'met' : 'not met'}; in call ${fmt(mib(m('sdk', (r) => r.footprint?.daemon?.in_call?.rss_max_kb)), 1)} MiB, ` +
      `${fmt(m('sdk', (r) => r.footprint?.daemon?.cpu?.ms_per_call_s), 1)} ms CPU per call-second (${fmt(m('sdk', (r) => r.footprint?.daemon?.cpu?.ms_per_call_s) / 10, 1)} % of one core).`);
  }
  const vc = m('sdk', (r) => r.vc_bytes?.total);
  if (vc != null) out.push(`- VC: ${fmt(vc, 0)} bytes for the whole ${durationS} s call — signalling only (one second of the call's audio RTP alone is several KB each way).`);
  return out;
}
