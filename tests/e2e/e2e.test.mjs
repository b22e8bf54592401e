// End-to-end call matrix for `node --test tests/e2e/e2e.test.mjs`.
//
//   native baseline: opus, A offers (Chromium ↔ Chromium) — always runs.
//   SDK matrix:      opus, G722, PCMU × offerer A, B (page A through vdimedia) — runs when
//                    VDIMEDIA_E2E_SDK=1 (then missing daemon/bridge/SDK builds are failures,
//                    not skips).
//
// Env: VDIMEDIA_E2E_DURATION (s, default 20), VDIMEDIA_E2E_NATIVE_MATRIX=1 (the native baseline
// for all six combinations), VDIMEDIA_E2E_TLS=1 (bridge over wss://).
// Each call is a child `run.mjs` (its own network namespace); reports land in
// tests/out/e2e-<mode>-<codec>-<offerer>.json and a summary in tests/out/e2e-summary.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { OUT_DIR, DAEMON_BIN, BRIDGE_BIN, SDK_BUNDLE } from './lib/config.mjs';

const RUN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run.mjs');
const DURATION_S = Number(process.env.VDIMEDIA_E2E_DURATION ?? 20);
const CALL_TIMEOUT_MS = (DURATION_S + 60) * 1000;
const SDK_ON = process.env.VDIMEDIA_E2E_SDK === '1';
const CODECS = ['opus', 'G722', 'PCMU'];
const OFFERERS = ['A', 'B'];
const reports = [];

function placeCall(mode, codec, offerer) {
  const out = path.join(OUT_DIR, `e2e-${mode}-${codec}-${offerer}.json`);
  fs.rmSync(out, { force: true });
  const argv = [RUN, '--mode', mode, '--codec', codec, '--offerer', offerer, '--duration', String(DURATION_S), '--out', out];
  if (process.env.VDIMEDIA_E2E_TLS === '1') argv.push('--tls');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGTERM'), CALL_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      const report = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : null;
      resolve({ code, stderr, report });
    });
  });
}

async function callTest(t, mode, codec, offerer) {
  const { code, stderr, report } = await placeCall(mode, codec, offerer);
  t.diagnostic(stderr.trim().split('\n').filter((l) => !l.startsWith('[')).join('\n'));
  assert.ok(report, `no report (run.mjs exit ${code}):\n${stderr}`);
  reports.push(report);
  const harness = report.errors.filter((e) => e.startsWith('harness:'));
  assert.deepEqual(harness, [], 'the harness could not place the call');
  for (const c of report.checks) {
    assert.ok(c.ok, `${mode} ${codec} offerer=${offerer}: ${c.name} = ${JSON.stringify(c.value)}, want ${c.limit}` +
      (report.errors.length ? `\nerrors: ${report.errors.join('; ')}` : '') + (report.work_dir ? `\nwork dir: ${report.work_dir}` : ''));
  }
  assert.equal(code, 0, `run.mjs exit ${code}`);
}

const nativeCombos = process.env.VDIMEDIA_E2E_NATIVE_MATRIX === '1'
  ? CODECS.flatMap((c) => OFFERERS.map((o) => [c, o]))
  : [['opus', 'A']];
for (const [codec, offerer] of nativeCombos) {
  test(`native baseline: ${codec}, offerer ${offerer}`, { timeout: CALL_TIMEOUT_MS + 10000 }, (t) => callTest(t, 'native', codec, offerer));
}

const missing = [['vdimediad', DAEMON_BIN], ['vdimedia-bridge', BRIDGE_BIN], ['SDK bundle', SDK_BUNDLE]]
  .filter(([, p]) => !fs.existsSync(p)).map(([n, p]) => `${n} (${p})`);
for (const codec of CODECS) {
  for (const offerer of OFFERERS) {
    const name = `sdk: ${codec}, offerer ${offerer}`;
    if (!SDK_ON) {
      test(name, { skip: `set VDIMEDIA_E2E_SDK=1 to run${missing.length ? `; missing: ${missing.join(', ')}` : ''}` }, () => {});
      continue;
    }
    test(name, { timeout: CALL_TIMEOUT_MS + 10000 }, (t) => {
      assert.deepEqual(missing, [], 'SDK mode needs these builds');
      return callTest(t, 'sdk', codec, offerer);
    });
  }
}

test.after(() => {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const rows = reports.map((r) => ({
    mode: r.mode, codec: r.codec, offerer: r.offerer, pass: r.pass, pesq: r.pesq, setup_ms: r.setup_ms,
    connect_ms: r.connect_ms, packets: r.packets, vc_bytes: r.vc_bytes?.total ?? null,
  }));
  fs.writeFileSync(path.join(OUT_DIR, 'e2e-summary.json'), JSON.stringify(rows, null, 2) + '\n');
});
