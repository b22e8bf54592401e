// Footprint of a process from /proc (proc(5)): resident memory, threads, CPU time. Used for the
// daemon's (and the bridge's) idle and in-call footprint in SDK-mode call reports.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second of utime/stime in /proc/PID/stat (sysconf(_SC_CLK_TCK), normally 100). */
const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; }
})();

/**
 * One sample of process `pid`.
 * @param {number} pid
 * @param {{smaps?: boolean}} [o] with `smaps`, also PSS and USS from /proc/PID/smaps_rollup
 * @returns {{rssKb: number, threads: number, cpuMs: number, pssKb?: number, ussKb?: number} | null}
 *   `rssKb`: VmRSS (KiB) from /proc/PID/status (counts shared library pages in full);
 *   `threads`: Threads; `cpuMs`: utime + stime (user + system CPU, ms) from /proc/PID/stat;
 *   `pssKb`: proportional set size; `ussKb`: Private_Clean + Private_Dirty (memory only this
 *   process holds). null when the process is gone.
 */
export function sampleProc(pid, o = {}) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    // Fields after the ")" closing comm (which may contain spaces): state is field 3, so
    // utime (field 14) and stime (field 15) are at indexes 11 and 12 of the rest.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(rest[11]) + Number(rest[12]);
    const out = { rssKb: field('VmRSS'), threads: field('Threads'), cpuMs: Math.round((ticks * 1000) / CLK_TCK) };
    if (o.smaps) {
      const roll = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(roll)?.[1] ?? NaN);
      out.pssKb = kb('Pss');
      out.ussKb = kb('Private_Clean') + kb('Private_Dirty');
    }
    return out;
  } catch {
    return null;
  }
}

/**
 * Samples `pid` every `intervalMs` until stopped; keeps the maxima of RSS and threads.
 * @param {number} pid
 * @param {number} [intervalMs=200]
 * @returns {{stop: () => {samples: number, rssMaxKb: number|null, threadsMax: number|null,
 *   first: object|null, last: object|null}}} `first`/`last`: samples at start and at stop
 *   (their `cpuMs` difference is the CPU time spent in between)
 */
export function watchProc(pid, intervalMs = 200) {
  const first = sampleProc(pid);
  const acc = { samples: first ? 1 : 0, rssMaxKb: first?.rssKb ?? null, threadsMax: first?.threads ?? null };
  const take = () => {
    const s = sampleProc(pid);
    if (!s) return null;
    acc.samples += 1;
    acc.rssMaxKb = Math.max(acc.rssMaxKb ?? 0, s.rssKb);
    acc.threadsMax = Math.max(acc.threadsMax ?? 0, s.threads);
    return s;
  };
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      const last = take();
      return { ...acc, first, last };
    },
  };
}
