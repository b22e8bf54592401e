#!/usr/bin/env node
// Places one scored call and prints its report.
//
//   node tests/e2e/run.mjs --mode native|sdk --codec opus|G722|PCMU --offerer A|B \
//        [--duration 20] [--out tests/out/x.json] [--tls] [--processing-a on|off] [--keep] [--no-netns]
//        [--scenario garbage|tab-close]
//
// --scenario (SDK mode): instead of the scored call, once connected run a bad-page scenario
// (lib/scenarios.mjs) whose checks become the report's.
//
// The call runs in a fresh network namespace (`unshare -n`, loopback only): the script re-execs
// itself there unless --no-netns is given. Exit status: 0 all checks passed, 1 a check failed,
// 2 bad usage or the harness could not run.
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runCall, summaryLine } from './lib/call.mjs';
import { SCENARIOS } from './lib/scenarios.mjs';

const IN_NETNS = 'VDIMEDIA_E2E_IN_NETNS';

function usage(msg) {
  if (msg) console.error(`run.mjs: ${msg}`);
  console.error('usage: node tests/e2e/run.mjs --mode native|sdk --codec opus|G722|PCMU --offerer A|B [--duration S] [--out FILE] [--tls] [--processing-a on|off] [--keep] [--no-netns] [--scenario garbage|tab-close]');
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      mode: { type: 'string', default: 'native' },
      codec: { type: 'string', default: 'opus' },
      offerer: { type: 'string', default: 'A' },
      duration: { type: 'string', default: '20' },
      out: { type: 'string' },
      tls: { type: 'boolean', default: false },
      'processing-a': { type: 'string', default: 'off' },
      keep: { type: 'boolean', default: false },
      'no-netns': { type: 'boolean', default: false },
      scenario: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  }));
} catch (e) {
  usage(e.message);
}
if (args.help) usage();
const durationS = Number(args.duration);
if (!(durationS >= 15 && durationS <= 120)) usage('--duration must be 15..120 s (one reference period is ~11.6 s, plus setup)');
if (!['on', 'off'].includes(args['processing-a'])) usage('--processing-a must be on or off');
const scenario = args.scenario === undefined ? null : SCENARIOS[args.scenario];
if (args.scenario !== undefined && !scenario) usage(`unknown --scenario ${args.scenario} (${Object.keys(SCENARIOS).join('|')})`);
if (scenario && args.mode !== 'sdk') usage('--scenario needs --mode sdk');

if (!args['no-netns'] && !process.env[IN_NETNS]) {
  // Fresh network namespace with only loopback up; everything (pages, peers, bridge) lives in it.
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, self, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, [IN_NETNS]: '1' },
  });
  if (r.error) { console.error(`run.mjs: cannot enter a network namespace (${r.error.message}); use --no-netns`); process.exit(2); }
  process.exit(r.status ?? 2);
}

let report;
try {
  report = await runCall({
    mode: args.mode, codec: args.codec, offerer: args.offerer, durationS, out: args.out,
    tls: args.tls, processingA: args['processing-a'], keep: args.keep,
    scenario: scenario?.run, scenarioName: args.scenario, pageAInit: scenario?.pageAInit,
  });
} catch (e) {
  usage(e.message);
}
console.log(JSON.stringify(report, null, 2));
console.error(summaryLine(report));
for (const c of report.checks) console.error(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${JSON.stringify(c.value)} (want ${c.limit})`);
for (const e of report.errors) console.error(`  error: ${e}`);
process.exit(report.pass ? 0 : 1);
