// Bad pages during an established SDK call (run by `node --test tests/e2e/`), each one call in
// its own network namespace (`run.mjs --mode sdk --scenario NAME`, lib/scenarios.mjs):
//
//   garbage    page A sends `not json` and an unknown method (`pc.fly`) on a second WebSocket
//              of its own and on the SDK's own WebSocket: typed errors come back
//              (bad_message/SyntaxError, unknown_method/NotSupportedError) and the call keeps
//              flowing both ways.
//   tab-close  page A's tab is closed mid-call: within 3 s the daemon logs
//              "session closed; devices released" and its PipeWire streams are gone; the daemon
//              stays up and redirects a fresh page.
//
// Env: VDIMEDIA_E2E_BADPAGE=0 skips both; VDIMEDIA_E2E_SDK=0 too (they need the SDK builds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { OUT_DIR } from './lib/config.mjs';
import { missingSdkBuilds, placeCall, summaryOf } from './lib/runner.mjs';

// The scenario ends the call itself; the duration only bounds it.
const DURATION_S = 30;
const TIMEOUT_MS = 120000;
const skip = process.env.VDIMEDIA_E2E_BADPAGE === '0' ? 'VDIMEDIA_E2E_BADPAGE=0'
  : process.env.VDIMEDIA_E2E_SDK === '0' ? 'VDIMEDIA_E2E_SDK=0' : false;
const missing = missingSdkBuilds();

for (const scenario of ['garbage', 'tab-close']) {
  test(`bad page: ${scenario} (sdk, opus, offerer A)`, { skip, timeout: TIMEOUT_MS + 30000 }, async (t) => {
    assert.equal(missing, null, missing ?? '');
    const out = path.join(OUT_DIR, `e2e-badpage-${scenario}.json`);
    const { code, stderr, report } = await placeCall({
      mode: 'sdk', codec: 'opus', offerer: 'A', durationS: DURATION_S, out, scenario, timeoutMs: TIMEOUT_MS,
    });
    for (const line of summaryOf(stderr).split('\n')) t.diagnostic(line);
    assert.ok(report, `no report (run.mjs exit ${code}):\n${stderr}`);
    const harness = report.errors.filter((e) => e.startsWith('harness:'));
    assert.deepEqual(harness, [], 'the harness could not place the call');
    assert.ok(report.checks.length > 1, `scenario ${scenario} reported no checks`);
    for (const c of report.checks) {
      assert.ok(c.ok, `${scenario}: ${c.name} = ${JSON.stringify(c.value)}, want ${c.limit}` +
        (report.work_dir ? `\nwork dir: ${report.work_dir}` : ''));
    }
    assert.equal(code, 0, `run.mjs exit ${code}`);
  });
}
