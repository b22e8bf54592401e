// Child processes of a call: started with logs in the work dir, stopped by their own pid.
import fs from 'node:fs';
import net from 'node:net';
import { spawn } from 'node:child_process';

/**
 * Starts `argv` with stdout+stderr appended to `logFile`.
 * @returns {import('node:child_process').ChildProcess & {name: string, exited: Promise<number|null>}}
 */
export function startProcess(name, argv, { env, logFile, cwd } = {}) {
  const log = fs.openSync(logFile, 'a');
  const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, cwd, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  child.name = name;
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, sig) => resolve(code ?? sig));
    child.once('error', (e) => { fs.appendFileSync(logFile, `spawn error: ${e}\n`); resolve(-1); });
  });
  return child;
}

/** Sends `signal` to the child and waits up to `graceMs` before SIGKILL. */
export async function stopProcess(child, signal = 'SIGTERM', graceMs = 3000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(t);
}

/** Polls `cond()` every 50 ms until it is truthy or `timeoutMs` passes (then throws `what`). */
export async function waitFor(what, cond, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** True when a TCP connection to host:port succeeds. */
export function canConnect(hostPort) {
  const [host, port] = hostPort.split(':');
  return new Promise((resolve) => {
    const s = net.connect({ host, port: Number(port) });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Runs a command to completion; resolves {code, stdout, stderr}. */
export function run(argv, { env, input } = {}) {
  return new Promise((resolve) => {
    const c = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; });
    c.on('error', (e) => resolve({ code: -1, stdout, stderr: stderr + String(e) }));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
    c.stdin.end(input ?? '');
  });
}
