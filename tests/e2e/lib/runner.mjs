// Helpers for the node:test files and the benchmark: place one call as a child `run.mjs` (its
// own network namespace) and check that the SDK-mode builds exist.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { OUT_DIR, DAEMON_BIN, BRIDGE_BIN, SDK_BUNDLE, E2E_DIR } from './config.mjs';

export const RUN = path.join(E2E_DIR, 'run.mjs');

/** What SDK mode needs and the command that builds each. */
const BUILDS = [
  ['vdimediad', DAEMON_BIN, 'cargo build --release --workspace --bins'],
  ['vdimedia-bridge', BRIDGE_BIN, 'cargo build --release --workspace --bins'],
  ['SDK bundle', SDK_BUNDLE, '(cd sdk/js && npm ci && npm run build)'],
];

/**
 * The SDK-mode builds that are missing, as one message naming the build commands, or null when
 * all exist.
 * @returns {string|null}
 */
export function missingSdkBuilds() {
  const missing = BUILDS.filter(([, p]) => !fs.existsSync(p));
  if (!missing.length) return null;
  const cmds = [...new Set(missing.map(([, , c]) => c))];
  return `SDK mode needs ${missing.map(([n, p]) => `${n} (${p})`).join(', ')}; build with: ${cmds.join(' && ')}`;
}

const LOCK = path.join(OUT_DIR, '.call-lock');

/**
 * Runs `fn` while holding a lock directory in tests/out, so calls of different test files never
 * overlap (node --test may run files in parallel on machines with more cores, and two calls at
 * once on a small machine ruin each other's PESQ). A lock left by a dead process is taken over.
 */
export async function withCallLock(fn) {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      fs.writeFileSync(path.join(LOCK, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      let holder = NaN;
      try { holder = Number(fs.readFileSync(path.join(LOCK, 'pid'), 'utf8')); } catch { /* being written */ }
      let alive = false;
      if (holder > 0) { try { process.kill(holder, 0); alive = true; } catch { alive = false; } }
      if (holder > 0 && !alive) fs.rmSync(LOCK, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true });
  }
}

/**
 * Places one call with `run.mjs` and reads its report.
 * @param {{mode: 'native'|'sdk', codec: string, offerer: 'A'|'B', durationS: number,
 *   out: string, tls?: boolean, scenario?: string, keep?: boolean, timeoutMs: number}} c
 * @returns {Promise<{code: number|null, stderr: string, report: object|null}>} `code`: run.mjs
 *   exit status (0 pass, 1 a check failed, 2 harness error)
 */
export function placeCall(c) {
  return withCallLock(() => new Promise((resolve) => {
    fs.rmSync(c.out, { force: true });
    const argv = [RUN, '--mode', c.mode, '--codec', c.codec, '--offerer', c.offerer, '--duration', String(c.durationS), '--out', c.out];
    if (c.tls) argv.push('--tls');
    if (c.keep) argv.push('--keep');
    if (c.scenario) argv.push('--scenario', c.scenario);
    // Own process group: on timeout the whole call (unshare, browsers, daemon) is stopped.
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      stderr += `\nrunner: call timed out after ${c.timeoutMs} ms; stopping its process group\n`;
      try { process.kill(-child.pid, 'SIGTERM'); } catch { child.kill('SIGTERM'); }
    }, c.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      let report = null;
      try { report = JSON.parse(fs.readFileSync(c.out, 'utf8')); } catch { /* no report */ }
      resolve({ code, stderr, report });
    });
  }));
}

/** The stderr of run.mjs without its timestamped progress lines (for test diagnostics). */
export function summaryOf(stderr) {
  return stderr.trim().split('\n').filter((l) => !l.startsWith('[')).join('\n');
}
