// Where the idle daemon's resident memory is: starts vdimediad on a private PipeWire rig,
// handshakes one VC channel, opens one page session, waits, and prints per-mapping Rss from
// /proc/PID/smaps (grouped by backing file; anonymous mappings as [anon]/[heap]/[stack]),
// largest first, then the first call's `pc.create` → `createOffer` time (ms).
//
//   node bench/footprint/idle-smaps.mjs [--settle S] [--top N] [--no-offer] [--max-rss MIB] -- DAEMON_CMD...
//
// --max-rss MIB makes it a check: exit 1 when the idle page session's VmRSS is above MIB
// (issue 8's goal is 15).
// Prints Markdown. Rss is in KiB as the kernel reports it (smaps `Rss:`), so shared library
// pages count fully even when another process maps them too.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VcClient } from '../../tests/arm64/lib/vc.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RIG = path.join(ROOT, 'tests/rig/pipewire.sh');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const o = { settle: 3, top: 25, offer: true, maxRss: null, daemon: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--') { o.daemon = argv.slice(i + 1); break; }
  if (a === '--settle') o.settle = Number(argv[++i]);
  else if (a === '--top') o.top = Number(argv[++i]);
  else if (a === '--no-offer') o.offer = false;
  else if (a === '--max-rss') o.maxRss = Number(argv[++i]);
  else { console.error(`unknown argument ${a}`); process.exit(2); }
}
if (!o.daemon.length) o.daemon = [path.join(ROOT, 'target/release/vdimediad')];

/** Rss (KiB) per backing object of `pid`, from smaps; totals of anonymous and file-backed. */
export function smapsByObject(pid) {
  const text = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
  const by = new Map();
  let cur = null;
  let anon = 0, file = 0;
  for (const line of text.split('\n')) {
    const head = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/);
    if (head) {
      const name = head[2] || '[anon]';
      cur = name;
      continue;
    }
    const m = line.match(/^Rss:\s+(\d+) kB/);
    if (m && cur) {
      const kb = Number(m[1]);
      by.set(cur, (by.get(cur) ?? 0) + kb);
      if (cur.startsWith('/') && !cur.includes('(deleted)') && !cur.startsWith('/memfd')) file += kb; else anon += kb;
    }
  }
  return { by: [...by.entries()].sort((a, b) => b[1] - a[1]), anon, file };
}

const dir = fs.mkdtempSync('/tmp/vdimedia-idle-smaps-');
const procs = [];
let rigUp = false;
let failed = false;
let client;
try {
  execFileSync('bash', [RIG, 'start', `${dir}/rig`], { stdio: ['ignore', 'ignore', 'inherit'] });
  rigUp = true;
  const env = { ...process.env };
  delete env.PIPEWIRE_REMOTE; delete env.PULSE_SERVER;
  for (const l of fs.readFileSync(`${dir}/rig/env`, 'utf8').split('\n')) {
    const m = l.match(/^export (\w+)=(.*)$/);
    if (m) env[m[1]] = m[2];
  }
  const sock = `${dir}/vc.sock`;
  const [cmd, ...pre] = o.daemon;
  const daemon = spawn(cmd, [...pre, '--listen', `unix:${sock}`, '--backend', 'pipewire', '--loopback-ice'], {
    env: { ...env, VDIMEDIA_LOG: process.env.VDIMEDIA_LOG ?? 'info' },
    stdio: ['ignore', 'ignore', fs.openSync(`${dir}/vdimediad.log`, 'w')],
  });
  procs.push(daemon);
  for (let t = 0; !fs.existsSync(sock); t++) {
    if (daemon.exitCode !== null || t > 600) throw new Error(`daemon never listened; see ${dir}/vdimediad.log`);
    await sleep(50);
  }
  await sleep(o.settle * 1000);
  const before = new Map(smapsByObject(daemon.pid).by);
  client = await VcClient.connect(sock, { timeoutMs: 60000 });
  const s = await client.open();
  await sleep(o.settle * 1000);
  const { by, anon, file } = smapsByObject(daemon.pid);
  const status = fs.readFileSync(`/proc/${daemon.pid}/status`, 'utf8');
  const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) ?? [])[1] ?? NaN);
  const threads = fs.readdirSync(`/proc/${daemon.pid}/task`).map((t) => fs.readFileSync(`/proc/${daemon.pid}/task/${t}/comm`, 'utf8').trim());
  console.log(`Idle with one page session, ${o.settle} s after OPEN: VmRSS ${kb('VmRSS')} KiB (anonymous ${kb('RssAnon')}, file ${kb('RssFile')}; smaps: anon ${anon}, file ${file}), threads ${threads.length} (${threads.join(', ')}), mapped objects ${by.filter(([n]) => /\.so(\.|$)/.test(n)).length}.`);
  console.log('');
  console.log('| mapping | Rss before any channel (KiB) | Rss idle with a page session (KiB) |');
  console.log('| --- | ---: | ---: |');
  if (o.maxRss !== null && kb('VmRSS') > o.maxRss * 1024) {
    console.error(`idle-smaps: idle page session VmRSS ${(kb('VmRSS') / 1024).toFixed(1)} MiB > --max-rss ${o.maxRss} MiB`);
    failed = true;
  }
  for (const [name, v] of by.slice(0, o.top)) console.log(`| ${name.replace(/^.*\//, '')} | ${before.get(name) ?? 0} | ${v} |`);
  if (o.offer) {
    const t0 = performance.now();
    await client.request(s, 'pc.create', { pc: 'a', configuration: {} });
    await client.request(s, 'pc.addTransceiver', { pc: 'a', kind: 'audio', init: { direction: 'sendrecv' } });
    const t1 = performance.now();
    const offer = await client.request(s, 'pc.createOffer', { pc: 'a', options: {} });
    const t2 = performance.now();
    if (!/a=fingerprint:/.test(offer.sdp)) throw new Error('offer without a=fingerprint');
    console.log('');
    console.log(`First call: pc.create + addTransceiver ${(t1 - t0).toFixed(0)} ms, createOffer ${(t2 - t1).toFixed(0)} ms, pc.create → offer ${(t2 - t0).toFixed(0)} ms; ${offer.sdp.match(/a=fingerprint:\S+/)[0]}.`);
  }
} catch (e) {
  console.error(`idle-smaps: ${e.message}`);
  failed = true;
} finally {
  try { client?.close?.(); } catch {}
  for (const p of procs) { try { p.kill('SIGTERM'); } catch {} }
  await sleep(300);
  if (rigUp) { try { execFileSync('bash', [RIG, 'stop', `${dir}/rig`], { stdio: 'ignore' }); } catch {} }
}
process.exit(failed ? 1 : 0);
