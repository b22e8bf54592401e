// End-to-end call matrix for `node --test tests/e2e/` (this file and badpage.test.mjs).
//
//   SDK matrix:      opus, G722, PCMU × offerer A, B (page A through vdimedia) — runs by default;
//                    missing daemon/bridge/SDK builds are failures naming the build command.
//   native baseline: opus, A offers (Chromium ↔ Chromium) — runs by default.
//
// Env knobs (for subsetting; the default is the full matrix):
//   VDIMEDIA_E2E_SDK=0             skip the SDK matrix
//   VDIMEDIA_E2E_NATIVE=0          skip the native baseline
//   VDIMEDIA_E2E_NATIVE_MATRIX=1   native baseline for all six combinations
//   VDIMEDIA_E2E_CODECS=opus,PCMU  codecs of the matrix (default opus,G722,PCMU)
//   VDIMEDIA_E2E_OFFERERS=A        offerers of the matrix (default A,B)
//   VDIMEDIA_E2E_DURATION=S        call length (default 20)
//   VDIMEDIA_E2E_TLS=1             bridge over wss://
//   VDIMEDIA_E2E_PESQ_MIN=3.5      PESQ threshold each way (the 3.5; raise it to see
//                                  the quality retries fail)
// Each call is a child `run.mjs` (its own network namespace); reports land in
// tests/out/e2e-<mode>-<codec>-<offerer>.json and a summary in tests/out/e2e-summary.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { OUT_DIR } from './lib/config.mjs';
import { missingSdkBuilds, placeCall, summaryOf } from './lib/runner.mjs';

const DURATION_S = Number(process.env.VDIMEDIA_E2E_DURATION ?? 20);
const CALL_TIMEOUT_MS = (DURATION_S + 60) * 1000;
const SDK_ON = process.env.VDIMEDIA_E2E_SDK !== '0';
const NATIVE_ON = process.env.VDIMEDIA_E2E_NATIVE !== '0';
const ALL_CODECS = ['opus', 'G722', 'PCMU'];
const ALL_OFFERERS = ['A', 'B'];
const list = (env, all) => {
  const v = process.env[env];
  if (!v) return all;
  const picked = v.split(',').map((x) => x.trim()).filter(Boolean);
  const bad = picked.filter((x) => !all.includes(x));
  if (bad.length) throw new Error(`${env}: unknown ${bad.join(', ')} (choose from ${all.join(',')})`);
  return picked;
};
const CODECS = list('VDIMEDIA_E2E_CODECS', ALL_CODECS);
const OFFERERS = list('VDIMEDIA_E2E_OFFERERS', ALL_OFFERERS);
const reports = [];

// Speech quality is the one check a stall of this shared 2-core machine can spoil (FIELD-NOTES:
// 200–450 ms stalls stretch jitter buffers; the rig's own pw-cat feeding the virtual mic stalls
// too): about one call in 25 scored below 3.5 in one direction, with a visible time warp in the
// alignment, while its other calls scored 4.3. A call whose only failures are PESQ is placed
// again, up to QUALITY_ATTEMPTS calls, and the last one decides; any other failure gets one more
// call (below).
const QUALITY_CHECK = /^pesq /;
const QUALITY_ATTEMPTS = 3;
// Room for every call a test may place (quality retries plus the one recheck).
const TEST_TIMEOUT_MS = (QUALITY_ATTEMPTS + 1) * CALL_TIMEOUT_MS + 30000;

async function callTest(t, mode, codec, offerer) {
  const out = path.join(OUT_DIR, `e2e-${mode}-${codec}-${offerer}.json`);
  const place = () => placeCall({
    mode, codec, offerer, durationS: DURATION_S, out, tls: process.env.VDIMEDIA_E2E_TLS === '1', timeoutMs: CALL_TIMEOUT_MS,
  });
  let { code, stderr, report } = await place();
  let calls = 1;
  let recheck = null;
  for (;;) {
    const failed = report?.checks.filter((c) => !c.ok) ?? [];
    if (!failed.length) break;
    const what = failed.map((c) => `${c.name} = ${JSON.stringify(c.value)}`).join(', ');
    if (failed.every((c) => QUALITY_CHECK.test(c.name)) && calls < QUALITY_ATTEMPTS) {
      t.diagnostic(`call ${calls}: ${what}; placing it again`);
    } else if (recheck === null && report.work_dir) {
      // Any other failure is placed again once, so a one-off (seen once in CI: the endpoint's
      // audio stopped 120 ms into a call, never reproduced here in 60 calls) is told apart
      // from a broken build; its logs are printed and the summary keeps it, so it is not lost.
      recheck = { failed: what, work_dir: report.work_dir };
      t.diagnostic(`call ${calls} FAILED: ${what}; its logs follow, then the call is placed once more`);
      for (const line of logTails(report.work_dir)) t.diagnostic(line);
    } else break;
    calls++;
    ({ code, stderr, report } = await place());
  }
  if (report && recheck) report.recheck = recheck;
  for (const line of summaryOf(stderr).split('\n')) t.diagnostic(line);
  assert.ok(report, `no report (run.mjs exit ${code}):\n${stderr}`);
  reports.push(report);
  const harness = report.errors.filter((e) => e.startsWith('harness:'));
  assert.deepEqual(harness, [], 'the harness could not place the call');
  const failed = report.checks.filter((c) => !c.ok);
  // CI keeps only this output, not the work dir: the logs' tails go with the failure.
  if (failed.length && report.work_dir) for (const line of logTails(report.work_dir)) t.diagnostic(line);
  for (const c of report.checks) {
    assert.ok(c.ok, `${mode} ${codec} offerer=${offerer}: ${c.name} = ${JSON.stringify(c.value)}, want ${c.limit}` +
      (report.errors.length ? `\nerrors: ${report.errors.join('; ')}` : '') + (report.work_dir ? `\nwork dir: ${report.work_dir}` : ''));
  }
  assert.equal(code, 0, `run.mjs exit ${code}`);
}

/** The last lines of a failed call's logs (ANSI colours stripped), for the test output. */
function logTails(dir, lines = 40) {
  const out = [];
  for (const name of ['harness.log', 'vdimediad.log', 'vdimedia-bridge.log', 'pw-cat.log', 'pw-record.log', 'rig/log/pipewire.log', 'rig/log/wireplumber.log', 'rig/log/pw-loopback.log']) {
    let text;
    try { text = fs.readFileSync(path.join(dir, name), 'utf8'); } catch { continue; }
    // eslint-disable-next-line no-control-regex
    const tail = text.replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter(Boolean).slice(-lines);
    out.push(`--- ${name} (last ${tail.length} lines) ---`, ...tail.map((l) => l.slice(0, 400)));
  }
  return out;
}

const missing = missingSdkBuilds();
for (const codec of CODECS) {
  for (const offerer of OFFERERS) {
    const name = `sdk: ${codec}, offerer ${offerer}`;
    if (!SDK_ON) {
      test(name, { skip: 'VDIMEDIA_E2E_SDK=0' }, () => {});
      continue;
    }
    test(name, { timeout: TEST_TIMEOUT_MS }, (t) => {
      assert.equal(missing, null, missing ?? '');
      return callTest(t, 'sdk', codec, offerer);
    });
  }
}

const nativeCombos = process.env.VDIMEDIA_E2E_NATIVE_MATRIX === '1'
  ? CODECS.flatMap((c) => OFFERERS.map((o) => [c, o]))
  : [['opus', 'A']];
for (const [codec, offerer] of nativeCombos) {
  const name = `native baseline: ${codec}, offerer ${offerer}`;
  if (!NATIVE_ON) test(name, { skip: 'VDIMEDIA_E2E_NATIVE=0' }, () => {});
  else test(name, { timeout: TEST_TIMEOUT_MS }, (t) => callTest(t, 'native', codec, offerer));
}

test.after(() => {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const rows = reports.map((r) => ({
    mode: r.mode, codec: r.codec, offerer: r.offerer, pass: r.pass, pesq: r.pesq, setup_ms: r.setup_ms,
    connect_ms: r.connect_ms, packets: r.packets, vc_bytes: r.vc_bytes?.total ?? null, recheck: r.recheck ?? null,
    daemon: r.footprint?.daemon ?? null,
  }));
  fs.writeFileSync(path.join(OUT_DIR, 'e2e-summary.json'), JSON.stringify(rows, null, 2) + '\n');
});
