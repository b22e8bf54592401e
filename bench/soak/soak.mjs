// Soak: concurrent calls through one real vdimediad for a long time, with the actions a
// contact-center agent's day brings, while the daemon's RSS, file descriptors and threads are
// sampled (issue 7, "Soak"). Each call is its own page session (one logical VC session, as the
// bridge makes for a page) holding two RTCPeerConnections, a and b, inside the daemon — both legs
// of a call, Opus both ways, on a private PipeWire rig with two microphones and two speakers.
//
//   node bench/soak/soak.mjs [--minutes 30] [--calls 3] [--every 60] [--sample 10]
//        [--dir DIR] [--daemon target/release/vdimediad]
//
// Every `--every` seconds each call (staggered) does, in turn:
//   - output switch: its playout element moves to the other speaker (`playout.setSinkId`);
//   - capture switch: a new getUserMedia on the other microphone replaces pc a's track
//     (`pc.replaceTrack`, when the daemon has it; else this action is recorded as skipped);
//   - hold / resume: pc a's transceiver direction goes `sendonly` (hold) or back to `sendrecv`
//     (`pc.setDirection` + a new offer/answer; skipped when the daemon lacks the method).
// Every `--sample` seconds: /proc RSS (KiB), open fds, threads, and each call's inbound packet
// counters. A call DROPS when a connection leaves `connected`, or when a direction that should
// flow received nothing over a whole sample interval. After each resume, the time until pc a
// decodes audio again is measured (more than 1 s is a problem).
//
// Prints a Markdown report (slopes by least squares over the samples after the first minute,
// per hour) and writes DIR/soak.json. Exit 1 when a call dropped or an action failed.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VcClient } from '../../tests/arm64/lib/vc.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RIG = path.join(ROOT, 'tests/rig/pipewire.sh');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...m) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...m);

function parseArgs(argv) {
  const o = { minutes: 30, calls: 3, every: 60, sample: 10, dir: null, daemon: path.join(ROOT, 'target/release/vdimediad') };
  for (let k = 0; k < argv.length; k++) {
    const v = () => argv[++k];
    switch (argv[k]) {
      case '--minutes': o.minutes = Number(v()); break;
      case '--calls': o.calls = Number(v()); break;
      case '--every': o.every = Number(v()); break;
      case '--sample': o.sample = Number(v()); break;
      case '--dir': o.dir = v(); break;
      case '--daemon': o.daemon = v(); break;
      default: throw new Error(`unknown option ${argv[k]}`);
    }
  }
  return o;
}

/** RSS and anonymous RSS (KiB), open file descriptors and threads of `pid`. */
function sampleProc(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) ?? [])[1] ?? NaN);
  return {
    rssKiB: kb('VmRSS'),
    rssAnonKiB: kb('RssAnon'),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    threads: fs.readdirSync(`/proc/${pid}/task`).length,
  };
}

/** Least-squares slope of y over x. */
function slope(xs, ys) {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n, my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i] - mx) * (ys[i] - my); den += (xs[i] - mx) ** 2; }
  return den ? num / den : 0;
}

/** Offer from `from`, answer from `to`, both applied. */
async function negotiate(client, s, from, to) {
  const offer = await client.request(s, 'pc.createOffer', { pc: from, options: {} });
  await client.request(s, 'pc.setLocalDescription', { pc: from, description: offer });
  await client.request(s, 'pc.setRemoteDescription', { pc: to, description: offer });
  const answer = await client.request(s, 'pc.createAnswer', { pc: to, options: {} });
  await client.request(s, 'pc.setLocalDescription', { pc: to, description: answer });
  await client.request(s, 'pc.setRemoteDescription', { pc: from, description: answer });
}

async function inbound(client, s, pc) {
  const { stats } = await client.request(s, 'pc.getStats', { pc });
  return stats.filter((x) => x.type === 'inbound-rtp').reduce((n, x) => n + (x.packetsReceived ?? 0), 0);
}

/** Decoded samples pc has played out so far (inbound-rtp totalSamplesReceived, all streams). */
async function samplesReceived(client, s, pc) {
  const { stats } = await client.request(s, 'pc.getStats', { pc });
  return stats.filter((x) => x.type === 'inbound-rtp').reduce((n, x) => n + (x.totalSamplesReceived ?? 0), 0);
}

/** ms from the end of a resume's offer/answer until pc decodes audio again (polled every 50 ms,
 * up to 20 s; null when it never did). This is what the agent hears as silence after "resume". */
async function resumeGapMs(client, s, pc) {
  const t0 = Date.now();
  const before = await samplesReceived(client, s, pc);
  while (Date.now() - t0 < 20000) {
    await sleep(50);
    if ((await samplesReceived(client, s, pc)) > before) return Date.now() - t0;
  }
  return null;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const dir = o.dir ?? fs.mkdtempSync('/tmp/vdimedia-soak-');
  fs.mkdirSync(dir, { recursive: true });
  const procs = [];
  const cleanup = [];
  const result = { options: o, samples: [], actions: [], drops: [], problems: [], resumeGapsMs: [] };
  let client;
  try {
    execFileSync('bash', [RIG, 'start', `${dir}/rig`], { stdio: ['ignore', 'ignore', 'inherit'] });
    cleanup.push(() => execFileSync('bash', [RIG, 'stop', `${dir}/rig`], { stdio: 'ignore' }));
    const env = { ...process.env };
    delete env.PIPEWIRE_REMOTE; delete env.PULSE_SERVER;
    for (const l of fs.readFileSync(`${dir}/rig/env`, 'utf8').split('\n')) {
      const m = l.match(/^export (\w+)=(.*)$/);
      if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, '$1');
    }
    const run = (cmd, args) => execFileSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    const bg = (name, cmd, args) => {
      const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', fs.openSync(`${dir}/${name}.log`, 'w')] });
      procs.push(p);
      return p;
    };
    // A second microphone (fed like the rig's) and a second speaker.
    bg('pw-loopback-b', 'pw-loopback', ['-m', '[ FL FR ]', '--capture-props=media.class=Audio/Sink node.name=mic_feed_b node.description=mic_feed_b', '--playback-props=media.class=Audio/Source node.name=virt_mic_b node.description=virt_mic_b']);
    run('pw-cli', ['create-node', 'adapter', '{ factory.name=support.null-audio-sink node.name=spk2 node.description=spk2 media.class=Audio/Sink object.linger=true audio.position=[FL FR] }']);
    for (let t = 0; !/"node.name": "virt_mic_b"/.test(run('pw-dump', [])); t++) {
      if (t > 100) throw new Error('virt_mic_b never appeared');
      await sleep(100);
    }
    const toneLen = o.minutes * 60 + 120;
    for (const [name, hz] of [['a', 440], ['b', 1000]]) {
      execFileSync('sox', ['-n', '-r', '48000', '-c', '2', '-b', '16', `${dir}/tone-${name}.wav`, 'synth', String(toneLen), 'sine', String(hz), 'vol', '0.5']);
    }
    bg('pw-cat-a', 'pw-cat', ['--playback', '--target', 'mic_feed', `${dir}/tone-a.wav`]);
    bg('pw-cat-b', 'pw-cat', ['--playback', '--target', 'mic_feed_b', `${dir}/tone-b.wav`]);

    const sock = `${dir}/vc.sock`;
    const daemon = spawn(o.daemon, ['--listen', `unix:${sock}`, '--backend', 'pipewire', '--loopback-ice'], {
      env: { ...env, VDIMEDIA_LOG: process.env.VDIMEDIA_LOG ?? 'info' },
      stdio: ['ignore', 'ignore', fs.openSync(`${dir}/vdimediad.log`, 'w')],
    });
    procs.push(daemon);
    for (const t0 = Date.now(); !fs.existsSync(sock); await sleep(50)) {
      if (daemon.exitCode !== null || Date.now() - t0 > 30000) throw new Error(`daemon did not start; see ${dir}/vdimediad.log`);
    }
    client = await VcClient.connect(sock, { timeoutMs: 60000, agent: 'vdimedia-soak/0.1.0' });
    const t0 = Date.now();
    const first = sampleProc(daemon.pid);
    result.samples.push({ t: 0, ...first, calls: [] });

    // ---- the calls ----
    const calls = [];
    for (let i = 0; i < o.calls; i++) {
      const s = await client.open(`https://soak-${i}.invalid`);
      const { devices } = await client.request(s, 'devices.enumerate', {});
      const dev = (kind, label) => devices.find((d) => d.kind === kind && d.label === label)
        ?? (() => { throw new Error(`no ${kind} ${label}: ${JSON.stringify(devices)}`); })();
      const call = {
        i, s, held: false, out: 0, mic: 0, connected: new Set(), last: { a: 0, b: 0 },
        mics: [dev('audioinput', 'virt_mic'), dev('audioinput', 'virt_mic_b')],
        speakers: [dev('audiooutput', 'spk'), dev('audiooutput', 'spk2')],
        remote: {}, tracks: {},
      };
      for (const [pc, mic] of [['a', call.mics[0]], ['b', call.mics[1]]]) {
        const gum = await client.request(s, 'media.getUserMedia', { constraints: { audio: { deviceId: { exact: mic.deviceId } } } });
        call.tracks[pc] = gum.tracks[0].id;
        await client.request(s, 'pc.create', { pc, configuration: {} });
        const tr = await client.request(s, 'pc.addTrack', { pc, track: gum.tracks[0].id, streams: [gum.stream.id] });
        call[`sender_${pc}`] = tr.transceiver.sender.id;
        call[`transceiver_${pc}`] = tr.transceiver.id;
      }
      await negotiate(client, s, 'a', 'b');
      calls.push(call);
    }
    // Trickle until every call is connected; attach the remote tracks to one playout element each.
    const pump = async () => {
      for (const c of calls) {
        for (const ev of client.takeEvents(c.s)) {
          const pc = ev.params?.pc;
          if (ev.event === 'pc.icecandidate' && ev.params.candidate) {
            await client.request(c.s, 'pc.addIceCandidate', { pc: pc === 'a' ? 'b' : 'a', candidate: ev.params.candidate });
          } else if (ev.event === 'pc.track') {
            c.remote[pc] = ev.params.track.id;
          } else if (ev.event === 'pc.connectionstatechange') {
            if (ev.params.state === 'connected') c.connected.add(pc);
            else if (c.connected.has(pc)) {
              c.connected.delete(pc);
              result.drops.push({ t: (Date.now() - t0) / 1000, call: c.i, pc, state: ev.params.state });
              log(`call ${c.i}: pc ${pc} went ${ev.params.state}`);
            }
          }
        }
      }
    };
    for (const deadline = Date.now() + 60000; calls.some((c) => c.connected.size < 2); await sleep(20)) {
      if (Date.now() > deadline) throw new Error('calls not up within 60 s');
      await pump();
    }
    for (const c of calls) {
      await client.request(c.s, 'playout.attach', { element: `audio-${c.i}`, stream: `stream-${c.i}`, tracks: [c.remote.a, c.remote.b].filter(Boolean), sinkId: c.speakers[0].deviceId });
    }
    log(`${calls.length} calls up; soaking for ${o.minutes} min`);

    // ---- actions ----
    const unsupported = new Set();
    const attempt = async (c, what, fn) => {
      if (unsupported.has(what)) return;
      const t = (Date.now() - t0) / 1000;
      try {
        await fn();
        result.actions.push({ t, call: c.i, what, ok: true });
      } catch (e) {
        if (e.code === 'unknown_method' || /unknown method/i.test(e.message)) {
          unsupported.add(what);
          result.actions.push({ t, call: c.i, what, ok: null, skipped: 'the daemon has no such method' });
          log(`${what}: not supported by this daemon; skipped from now on`);
        } else {
          result.actions.push({ t, call: c.i, what, ok: false, error: e.message });
          result.problems.push(`call ${c.i}: ${what} failed: ${e.message}`);
          log(`call ${c.i}: ${what} failed: ${e.message}`);
        }
      }
    };
    const actions = [
      ['output switch', async (c) => {
        c.out ^= 1;
        await client.request(c.s, 'playout.setSinkId', { element: `audio-${c.i}`, sinkId: c.speakers[c.out].deviceId });
      }],
      ['capture switch', async (c) => {
        const mic = c.mics[c.mic ^ 1];
        const gum = await client.request(c.s, 'media.getUserMedia', { constraints: { audio: { deviceId: { exact: mic.deviceId } } } });
        await client.request(c.s, 'pc.replaceTrack', { pc: 'a', sender: c.sender_a, track: gum.tracks[0].id });
        await client.request(c.s, 'track.stop', { track: c.tracks.a });
        c.tracks.a = gum.tracks[0].id;
        c.mic ^= 1;
      }],
      ['hold/resume', async (c) => {
        await client.request(c.s, 'pc.setDirection', { pc: 'a', transceiver: c.transceiver_a, direction: c.held ? 'sendrecv' : 'sendonly' });
        await negotiate(client, c.s, 'a', 'b');
        c.held = !c.held;
        if (!c.held) {
          // pc a held (sendonly), so b sent it nothing: how long until a plays b's audio again.
          const gap = await resumeGapMs(client, c.s, 'a');
          result.resumeGapsMs.push(gap);
          log(`call ${c.i}: audio back ${gap === null ? 'never (20 s)' : `${gap} ms`} after resume`);
          if (gap === null || gap > 1000) result.problems.push(`call ${c.i}: ${gap === null ? 'no' : `${gap} ms of`} silence after resume`);
        }
      }],
    ];
    const end = t0 + o.minutes * 60000;
    let nextSample = Date.now() + o.sample * 1000;
    const nextAction = calls.map((c) => Date.now() + (o.every * 1000 * (c.i + 1)) / calls.length);
    const step = calls.map(() => 0);
    while (Date.now() < end) {
      await pump();
      for (const c of calls) {
        if (Date.now() < nextAction[c.i]) continue;
        nextAction[c.i] += o.every * 1000;
        const [what, fn] = actions[step[c.i]++ % actions.length];
        await attempt(c, what, () => fn(c));
      }
      if (Date.now() >= nextSample) {
        nextSample += o.sample * 1000;
        const t = (Date.now() - t0) / 1000;
        const perCall = [];
        for (const c of calls) {
          const now = { a: await inbound(client, c.s, 'a'), b: await inbound(client, c.s, 'b') };
          // On hold (a sendonly) only a → b must flow; otherwise both.
          for (const pc of c.held ? ['b'] : ['a', 'b']) {
            if (now[pc] <= c.last[pc]) {
              result.drops.push({ t, call: c.i, pc, why: `no packets received for ${o.sample} s` });
              log(`call ${c.i}: pc ${pc} received nothing for ${o.sample} s`);
            }
          }
          c.last = now;
          perCall.push({ call: c.i, a: now.a, b: now.b, held: c.held });
        }
        const p = sampleProc(daemon.pid);
        result.samples.push({ t, ...p, calls: perCall });
        log(`t=${t.toFixed(0)} s rss=${(p.rssKiB / 1024).toFixed(1)} MiB anon=${(p.rssAnonKiB / 1024).toFixed(1)} MiB fds=${p.fds} threads=${p.threads}`);
      }
      await sleep(50);
    }
    for (const c of calls) {
      for (const pc of ['a', 'b']) await client.request(c.s, 'pc.close', { pc });
      client.closeSession(c.s);
    }
    await sleep(3000);
    result.afterHangUp = sampleProc(daemon.pid);
    daemon.kill('SIGTERM');
  } catch (e) {
    result.problems.push(`harness: ${e.message}`);
    log(`FAILED: ${e.message} (logs in ${dir})`);
  } finally {
    client?.close();
    for (const p of procs.reverse()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await sleep(300);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const c of cleanup.reverse()) { try { c(); } catch { /* best effort */ } }
  }

  // ---- report ----
  const steady = result.samples.filter((s) => s.t >= 60);
  const xs = steady.map((s) => s.t / 3600);
  result.slopes = {
    rssKiBPerHour: slope(xs, steady.map((s) => s.rssKiB)),
    rssAnonKiBPerHour: slope(xs, steady.map((s) => s.rssAnonKiB)),
    fdsPerHour: slope(xs, steady.map((s) => s.fds)),
    threadsPerHour: slope(xs, steady.map((s) => s.threads)),
  };
  const range = (k) => steady.length ? `${Math.min(...steady.map((s) => s[k]))}–${Math.max(...steady.map((s) => s[k]))}` : '-';
  const byWhat = {};
  for (const a of result.actions) {
    const w = (byWhat[a.what] ??= { ok: 0, failed: 0, skipped: 0 });
    if (a.ok === true) w.ok++; else if (a.ok === false) w.failed++; else w.skipped++;
  }
  fs.writeFileSync(path.join(dir, 'soak.json'), JSON.stringify(result, null, 2));
  const f = (x) => x.toFixed(1);
  console.log(`### Soak: ${o.calls} calls, ${o.minutes} min, an action per call every ${o.every} s\n`);
  console.log(`\`node bench/soak/soak.mjs --minutes ${o.minutes} --calls ${o.calls} --every ${o.every} --sample ${o.sample}\`\n`);
  console.log('| measure | range after the first minute | slope (least squares, per hour) |');
  console.log('| --- | ---: | ---: |');
  console.log(`| RSS (KiB) | ${range('rssKiB')} | ${f(result.slopes.rssKiBPerHour)} KiB/h |`);
  console.log(`| anonymous RSS (KiB) | ${range('rssAnonKiB')} | ${f(result.slopes.rssAnonKiBPerHour)} KiB/h |`);
  console.log(`| open fds | ${range('fds')} | ${f(result.slopes.fdsPerHour)} /h |`);
  console.log(`| threads | ${range('threads')} | ${f(result.slopes.threadsPerHour)} /h |`);
  console.log('');
  console.log(`Actions: ${Object.entries(byWhat).map(([w, n]) => `${w} ${n.ok} ok, ${n.failed} failed${n.skipped ? `, skipped (${result.actions.find((a) => a.what === w && a.skipped)?.skipped})` : ''}`).join('; ') || 'none'}.`);
  const gaps = result.resumeGapsMs.filter((g) => g !== null).sort((x, y) => x - y);
  if (result.resumeGapsMs.length) {
    console.log(`Audio back after resume (ms until pc a decodes again, ${result.resumeGapsMs.length} resumes): median ${gaps[Math.floor(gaps.length / 2)] ?? '-'}, max ${gaps.at(-1) ?? '-'}${gaps.length < result.resumeGapsMs.length ? `, ${result.resumeGapsMs.length - gaps.length} never` : ''}.`);
  }
  console.log(`Drops: ${result.drops.length}${result.drops.length ? ` (${JSON.stringify(result.drops.slice(0, 5))})` : ''}. Samples: ${result.samples.length}.`);
  if (result.afterHangUp) console.log(`After hang-up of all calls (3 s): RSS ${(result.afterHangUp.rssKiB / 1024).toFixed(1)} MiB, ${result.afterHangUp.fds} fds, ${result.afterHangUp.threads} threads.`);
  if (result.problems.length) console.log(`\nProblems:\n${result.problems.map((p) => `- ${p}`).join('\n')}`);
  console.error(`soak: details in ${dir}/soak.json`);
  process.exit(result.drops.length || result.problems.length ? 1 : 0);
}

main();
