// WebRTC API conformance scenarios (issue 6). Runs in a browser page (page.html): each scenario
// uses the page's globals (`RTCPeerConnection`, `navigator.mediaDevices`), which are Chromium's
// own in native mode and the vdimedia SDK's in SDK mode, and returns a JSON value of what a web
// page can observe: return values, attribute values, event names in order, thrown error names,
// SDP facts (m-line kinds, directions, codec names), never byte-identical SDP or timings.
// The far end is always a native RTCPeerConnection in the same page (`window.nativeApi`).
// The runner (../conformance.test.mjs) runs every scenario in both modes and compares the values.

/** Per-scenario limit, ms: a scenario that hangs is reported as `{timeout: true}`. */
const SCENARIO_TIMEOUT_MS = 20000;
const nativeApi = () => window.nativeApi;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Facts of an SDP: per m-section kind, direction, mid and codec names (lower case, in order). */
export function sdpFacts(sdp) {
  const out = [];
  for (const sec of String(sdp ?? '').split(/\r?\n(?=m=)/).slice(1)) {
    const lines = sec.split(/\r?\n/);
    const kind = lines[0].slice(2).split(' ')[0];
    const dir = lines.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) ?? 'sendrecv';
    const pts = lines[0].split(' ').slice(3);
    const names = {};
    for (const l of lines) {
      const m = /^a=rtpmap:(\d+) ([^/]+)\//.exec(l);
      if (m) names[m[1]] = m[2].toLowerCase();
    }
    const codecs = [...new Set(pts.map((pt) => names[pt] ?? (pt === '0' ? 'pcmu' : pt === '8' ? 'pcma' : pt === '9' ? 'g722' : `pt${pt}`)))];
    out.push({ kind, dir, port0: lines[0].split(' ')[1] === '0', codecs, msid: lines.some((l) => l.startsWith('a=msid:')) });
  }
  return out;
}

/** The page-visible outline of an SDP that both engines should agree on. */
function outline(sdp) {
  return sdpFacts(sdp).map((m) => ({ kind: m.kind, dir: m.dir, first: m.codecs[0] ?? null }));
}

/** A mid as compared: null or 'string' (JSEP lets each engine pick its mid values: '0', 'audio0'). */
const midShape = (mid) => (mid == null ? null : typeof mid);
const ufragOf = (sdp) => /^a=ice-ufrag:(\S+)/m.exec(sdp ?? '')?.[1] ?? null;
const plain = (d) => (d ? { type: d.type, sdp: d.sdp } : d);

/** How a call ends: 'ok', 'sync:<ErrorName>' (thrown synchronously) or '<ErrorName>' (rejected). */
async function outcome(fn) {
  let p;
  try {
    p = fn();
  } catch (e) {
    return `sync:${e?.name ?? typeof e}`;
  }
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e?.name ?? String(e);
  }
}

/** Per-scenario helpers; `cleanup()` closes every connection and stops every track it made. */
function makeEnv() {
  const pcs = [];
  const tracks = [];
  const links = [];
  const env = {
    /** A connection of the mode under test (native or SDK). */
    pc(cfg) {
      const pc = cfg === undefined ? new RTCPeerConnection() : new RTCPeerConnection(cfg);
      pcs.push(pc);
      return pc;
    },
    /** The native far end. */
    far(cfg) {
      const pc = new (nativeApi().RTCPeerConnection)(cfg);
      pcs.push(pc);
      return pc;
    },
    /** getUserMedia of the mode under test. */
    async mic(constraints = { audio: true }) {
      const s = await navigator.mediaDevices.getUserMedia(constraints);
      tracks.push(...s.getTracks());
      return s;
    },
    /** A native audio stream for the far end (Chromium's fake capture device). */
    async farMic() {
      const s = await nativeApi().getUserMedia({ audio: true });
      tracks.push(...s.getTracks());
      return s;
    },
    /** Trickles candidates both ways, each held until its target has a remote description. */
    link(a, b) {
      const l = { queues: [[a, b, []], [b, a, []]] };
      for (const q of l.queues) {
        q[0].addEventListener('icecandidate', (e) => {
          if (!e.candidate || !e.candidate.candidate) return;
          q[2].push(e.candidate.toJSON());
          env.pump();
        });
      }
      links.push(l);
    },
    pump() {
      for (const l of links) {
        for (const [, to, queue] of l.queues) {
          if (!to.remoteDescription || to.signalingState === 'closed') continue;
          for (const c of queue.splice(0)) to.addIceCandidate(c).catch(() => {});
        }
      }
    },
    /** Offer from `a`, answer from `b`, both applied (explicit descriptions). */
    async negotiate(a, b) {
      const offer = await a.createOffer();
      await a.setLocalDescription(offer);
      await b.setRemoteDescription(plain(offer));
      env.pump();
      const answer = await b.createAnswer();
      await b.setLocalDescription(answer);
      await a.setRemoteDescription(plain(answer));
      env.pump();
      return { offer: plain(offer), answer: plain(answer) };
    },
    /**
     * One renegotiation as a value: `{offer, answer}` outlines, or `{failed: ErrorName}`.
     * A failed one is rolled back nowhere (the engines differ there); later steps go on.
     */
    async step(a, b) {
      try {
        const sdp = await env.negotiate(a, b);
        return { offer: outline(sdp.offer.sdp), answer: outline(sdp.answer.sdp) };
      } catch (e) {
        return { failed: e?.name ?? 'Error', _message: String(e?.message ?? e).slice(0, 300) };
      }
    },
    /** A connected call: `pc` (mode under test) with a mic track, far end with its own. */
    async call({ withMic = true, farTrack = true } = {}) {
      const pc = env.pc();
      const far = env.far();
      env.link(pc, far);
      let stream = null;
      if (withMic) {
        stream = await env.mic();
        pc.addTrack(stream.getTracks()[0], stream);
      } else pc.addTransceiver('audio');
      let farStream = null;
      if (farTrack) {
        farStream = await env.farMic();
        far.addTrack(farStream.getTracks()[0], farStream);
      }
      const sdp = await env.negotiate(pc, far);
      await env.until(() => pc.connectionState === 'connected' && far.connectionState === 'connected', 10000);
      return { pc, far, stream, farStream, sdp };
    },
    /** Polls `cond` every 20 ms; resolves true when it holds, false after `ms`. */
    async until(cond, ms = 5000) {
      const end = performance.now() + ms;
      while (performance.now() < end) {
        if (cond()) return true;
        await sleep(20);
      }
      return !!cond();
    },
    sleep,
    outcome,
    /** Records events of `types` on `target` into `log` as `label:type` (or `type`). */
    record(target, types, log, { label = '', detail } = {}) {
      for (const type of types) {
        target.addEventListener(type, (e) => log.push(`${label ? label + ':' : ''}${type}${detail ? detail(e, type) : ''}`));
      }
      return log;
    },
    /** Counts `type` events on `target`: `{n}`. */
    count(target, type) {
      const c = { n: 0 };
      target.addEventListener(type, () => { c.n += 1; });
      return c;
    },
    cleanup() {
      for (const pc of pcs) try { pc.close(); } catch { /* already closed */ }
      for (const t of tracks) try { t.stop(); } catch { /* already ended */ }
    },
  };
  return env;
}

/** Collapses runs of the same log entry to one `entry*` (candidate counts differ by engine). */
const squash = (log) => log.reduce((out, x) => {
  const last = out[out.length - 1];
  if (last === x || last === `${x}*`) out[out.length - 1] = `${x}*`;
  else out.push(x);
  return out;
}, []);

/** @type {{group: string, name: string, run: (env: ReturnType<typeof makeEnv>) => Promise<any>}[]} */
export const scenarios = [
  // ---- constructor and configuration ----
  {
    group: 'configuration', name: 'getConfiguration defaults',
    async run(env) {
      const c = env.pc().getConfiguration();
      return {
        iceServers: c.iceServers, iceTransportPolicy: c.iceTransportPolicy, bundlePolicy: c.bundlePolicy,
        rtcpMuxPolicy: c.rtcpMuxPolicy, iceCandidatePoolSize: c.iceCandidatePoolSize,
        certificates: Array.isArray(c.certificates),
      };
    },
  },
  {
    group: 'configuration', name: 'getConfiguration round trip',
    async run(env) {
      const c = env.pc({
        iceServers: [{ urls: 'stun:127.0.0.1:3478' }, { urls: ['turn:127.0.0.1:3478?transport=udp'], username: 'u', credential: 'p' }],
        iceTransportPolicy: 'relay', bundlePolicy: 'max-bundle',
      }).getConfiguration();
      return { iceServers: c.iceServers, iceTransportPolicy: c.iceTransportPolicy, bundlePolicy: c.bundlePolicy };
    },
  },
  {
    group: 'configuration', name: 'bad configuration error names',
    async run(env) {
      const make = (cfg) => outcome(() => env.pc(cfg));
      return {
        httpUrl: await make({ iceServers: [{ urls: 'http://127.0.0.1/' }] }),
        noScheme: await make({ iceServers: [{ urls: '127.0.0.1:3478' }] }),
        turnNoCredential: await make({ iceServers: [{ urls: 'turn:127.0.0.1:3478' }] }),
        missingUrls: await make({ iceServers: [{}] }),
        badPolicy: await make({ iceTransportPolicy: 'bogus' }),
        badBundle: await make({ bundlePolicy: 'bogus' }),
        emptyUrls: await make({ iceServers: [{ urls: [] }] }),
      };
    },
  },
  {
    group: 'configuration', name: 'setConfiguration rules',
    async run(env) {
      const pc = env.pc({ bundlePolicy: 'balanced' });
      const r = {
        same: await outcome(() => pc.setConfiguration({ bundlePolicy: 'balanced' })),
        changeBundle: await outcome(() => pc.setConfiguration({ bundlePolicy: 'max-compat' })),
        bundleAfter: pc.getConfiguration().bundlePolicy,
        badUrl: await outcome(() => pc.setConfiguration({ iceServers: [{ urls: 'http://x/' }] })),
      };
      pc.close();
      r.closed = await outcome(() => pc.setConfiguration({}));
      return r;
    },
  },

  // ---- offer / answer ----
  {
    group: 'offer/answer', name: 'createOffer outline and no state change',
    async run(env) {
      const pc = env.pc();
      const log = env.record(pc, ['signalingstatechange'], []);
      pc.addTransceiver('audio');
      const offer = await pc.createOffer();
      await sleep(100);
      return {
        type: offer.type, outline: outline(offer.sdp), state: pc.signalingState, log,
        localDescription: pc.localDescription, hasTrickle: /a=ice-options:.*trickle/.test(offer.sdp),
      };
    },
  },
  {
    group: 'offer/answer', name: 'createOffer with no transceivers',
    async run(env) {
      const pc = env.pc();
      const r = await outcome(() => pc.createOffer());
      const offer = r === 'ok' ? await pc.createOffer() : null;
      return { r, mlines: offer ? sdpFacts(offer.sdp).length : null };
    },
  },
  {
    group: 'offer/answer', name: 'implicit setLocalDescription (offer)',
    async run(env) {
      const pc = env.pc();
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      pc.addTransceiver('audio');
      await pc.setLocalDescription();
      log.push('resolved');
      return {
        log, type: pc.localDescription?.type, pending: pc.pendingLocalDescription?.type ?? null,
        current: pc.currentLocalDescription, outline: outline(pc.localDescription?.sdp),
      };
    },
  },
  {
    group: 'offer/answer', name: 'implicit setLocalDescription (answer)',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      far.addTransceiver('audio');
      await far.setLocalDescription();
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      await pc.setRemoteDescription(plain(far.localDescription));
      log.push('sRD resolved');
      await pc.setLocalDescription();
      log.push('sLD resolved');
      await far.setRemoteDescription(plain(pc.localDescription));
      return {
        log, type: pc.localDescription?.type, current: pc.currentLocalDescription?.type ?? null,
        pending: pc.pendingLocalDescription, remoteCurrent: pc.currentRemoteDescription?.type ?? null,
        outline: outline(pc.localDescription?.sdp),
      };
    },
  },
  {
    group: 'offer/answer', name: 'signalingState sequence as offerer',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      pc.addTransceiver('audio');
      const offer = await pc.createOffer();
      log.push(`createOffer:${pc.signalingState}`);
      await pc.setLocalDescription(offer);
      log.push(`sLD:${pc.signalingState}`);
      await far.setRemoteDescription(plain(offer));
      const answer = await far.createAnswer();
      await far.setLocalDescription(answer);
      await pc.setRemoteDescription(plain(answer));
      log.push(`sRD:${pc.signalingState}`);
      return { log, answerOutline: outline(pc.remoteDescription.sdp), localType: pc.currentLocalDescription?.type };
    },
  },
  {
    group: 'offer/answer', name: 'signalingState sequence as answerer',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      far.addTransceiver('audio');
      const offer = await far.createOffer();
      await far.setLocalDescription(offer);
      await pc.setRemoteDescription(plain(offer));
      log.push(`sRD:${pc.signalingState}`);
      const answer = await pc.createAnswer();
      log.push(`createAnswer:${pc.signalingState}:${answer.type}`);
      await pc.setLocalDescription(answer);
      log.push(`sLD:${pc.signalingState}`);
      await far.setRemoteDescription(plain(answer));
      return { log, outline: outline(answer.sdp), pendingRemote: pc.pendingRemoteDescription };
    },
  },

  // ---- errors in wrong states ----
  {
    group: 'errors', name: 'wrong-state errors',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      far.addTransceiver('audio');
      const farOffer = await far.createOffer();
      const r = {};
      r.createAnswerInStable = await outcome(() => pc.createAnswer());
      r.answerInStable = await outcome(() => pc.setRemoteDescription({ type: 'answer', sdp: farOffer.sdp }));
      r.localAnswerInStable = await outcome(() => pc.setLocalDescription({ type: 'answer', sdp: farOffer.sdp }));
      pc.addTransceiver('audio');
      await pc.setLocalDescription();
      r.createAnswerInHaveLocalOffer = await outcome(() => pc.createAnswer());
      r.stateAfter = pc.signalingState;
      return r;
    },
  },
  {
    group: 'errors', name: 'malformed SDP errors',
    async run(env) {
      const pc = env.pc();
      pc.addTransceiver('audio');
      return {
        remoteGarbage: await outcome(() => pc.setRemoteDescription({ type: 'offer', sdp: 'garbage' })),
        localGarbage: await outcome(() => pc.setLocalDescription({ type: 'offer', sdp: 'v=0\r\ngarbage\r\n' })),
        badType: await outcome(() => pc.setRemoteDescription({ type: 'bogus', sdp: '' })),
        state: pc.signalingState,
      };
    },
  },
  {
    group: 'errors', name: 'modified local offer (InvalidModificationError)',
    async run(env) {
      const pc = env.pc();
      pc.addTransceiver('audio');
      const offer = await pc.createOffer();
      const munged = offer.sdp.replace(/^a=fingerprint:(\S+) ([0-9A-F]{2})/m, (_, h, b) => `a=fingerprint:${h} ${b === '00' ? '01' : '00'}`);
      return { changed: munged !== offer.sdp, r: await outcome(() => pc.setLocalDescription({ type: 'offer', sdp: munged })), state: pc.signalingState };
    },
  },
  {
    group: 'errors', name: 'addIceCandidate errors',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      const cand = 'candidate:1 1 udp 2122260223 127.0.0.1 9 typ host';
      const r = {};
      r.beforeRemote = await outcome(() => pc.addIceCandidate({ candidate: cand, sdpMid: '0' }));
      r.noMid = await outcome(() => pc.addIceCandidate({ candidate: cand, sdpMid: null, sdpMLineIndex: null }));
      far.addTransceiver('audio');
      await far.setLocalDescription();
      await pc.setRemoteDescription(plain(far.localDescription));
      r.unknownMid = await outcome(() => pc.addIceCandidate({ candidate: cand, sdpMid: 'nope' }));
      r.good = await outcome(() => pc.addIceCandidate({ candidate: cand, sdpMid: '0' }));
      r.endOfCandidates = await outcome(() => pc.addIceCandidate());
      return r;
    },
  },
  {
    group: 'errors', name: 'closed connection',
    async run(env) {
      const pc = env.pc();
      const s = await env.mic();
      const log = env.record(pc, ['signalingstatechange', 'connectionstatechange', 'iceconnectionstatechange', 'negotiationneeded'], []);
      pc.close();
      await sleep(200);
      return {
        states: [pc.signalingState, pc.connectionState, pc.iceConnectionState, pc.iceGatheringState],
        log,
        createOffer: await outcome(() => pc.createOffer()),
        createAnswer: await outcome(() => pc.createAnswer()),
        sLD: await outcome(() => pc.setLocalDescription()),
        sRD: await outcome(() => pc.setRemoteDescription({ type: 'offer', sdp: 'v=0' })),
        addIceCandidate: await outcome(() => pc.addIceCandidate({ candidate: '', sdpMid: '0' })),
        addTrack: await outcome(() => pc.addTrack(s.getTracks()[0], s)),
        addTransceiver: await outcome(() => pc.addTransceiver('audio')),
        getStats: await outcome(() => pc.getStats()),
        closeAgain: await outcome(() => pc.close()),
        restartIce: await outcome(() => pc.restartIce()),
      };
    },
  },
  {
    group: 'errors', name: 'rollback of a local offer',
    async run(env) {
      const pc = env.pc();
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      pc.addTransceiver('audio');
      await pc.setLocalDescription();
      const r = await outcome(() => pc.setLocalDescription({ type: 'rollback' }));
      await sleep(100);
      return { r, state: pc.signalingState, local: pc.localDescription?.type ?? null, log };
    },
  },
  {
    group: 'errors', name: 'rollback of a remote offer',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      far.addTransceiver('audio');
      await far.setLocalDescription();
      await pc.setRemoteDescription(plain(far.localDescription));
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      const r = await outcome(() => pc.setRemoteDescription({ type: 'rollback' }));
      await sleep(100);
      return { r, state: pc.signalingState, remote: pc.remoteDescription?.type ?? null, log, transceivers: pc.getTransceivers().length };
    },
  },

  // ---- tracks and transceivers ----
  {
    group: 'tracks', name: 'addTrack and the senders/receivers lists',
    async run(env) {
      const pc = env.pc();
      const s = await env.mic();
      const track = s.getTracks()[0];
      const sender = pc.addTrack(track, s);
      const t = pc.getTransceivers()[0];
      return {
        senderTrack: sender.track === track,
        senders: pc.getSenders().length, receivers: pc.getReceivers().length, transceivers: pc.getTransceivers().length,
        same: t?.sender === sender,
        direction: t?.direction, currentDirection: t?.currentDirection, mid: t?.mid,
        receiverTrack: [t?.receiver.track.kind, t?.receiver.track.readyState],
        again: await outcome(() => pc.addTrack(track, s)),
        notATrack: await outcome(() => pc.addTrack({}, s)),
        outline: outline((await pc.createOffer()).sdp),
      };
    },
  },
  {
    group: 'tracks', name: 'removeTrack',
    async run(env) {
      const pc = env.pc();
      const s = await env.mic();
      const sender = pc.addTrack(s.getTracks()[0], s);
      await sleep(100);
      const nn = env.count(pc, 'negotiationneeded');
      pc.removeTrack(sender);
      const t = pc.getTransceivers()[0];
      const r = { track: sender.track, senders: pc.getSenders().length, direction: t.direction };
      await sleep(300);
      r.negotiationneeded = nn.n;
      r.outline = outline((await pc.createOffer()).sdp);
      r.foreign = await outcome(() => pc.removeTrack(env.pc().addTransceiver('audio').sender));
      r.twice = await outcome(() => pc.removeTrack(sender));
      return r;
    },
  },
  {
    group: 'tracks', name: 'addTransceiver with direction and errors',
    async run(env) {
      const pc = env.pc();
      const t = pc.addTransceiver('audio', { direction: 'recvonly' });
      return {
        direction: t.direction, mid: t.mid, currentDirection: t.currentDirection, senderTrack: t.sender.track,
        receiverKind: t.receiver.track.kind,
        outline: outline((await pc.createOffer()).sdp),
        badDirection: await outcome(() => pc.addTransceiver('audio', { direction: 'bogus' })),
        badKind: await outcome(() => pc.addTransceiver('text')),
        setBadDirection: await outcome(() => { t.direction = 'stopped'; }),
      };
    },
  },
  {
    group: 'tracks', name: 'addTransceiver with sendEncodings and streams',
    async run(env) {
      const pc = env.pc();
      const s = await env.mic();
      const t = pc.addTransceiver(s.getTracks()[0], { direction: 'sendonly', streams: [s], sendEncodings: [{ maxBitrate: 32000 }] });
      const p = t.sender.getParameters();
      const offer = await pc.createOffer();
      return {
        direction: t.direction, encodings: p.encodings.length, maxBitrate: p.encodings[0]?.maxBitrate ?? null,
        outline: outline(offer.sdp), msid: sdpFacts(offer.sdp)[0]?.msid,
        msidStream: offer.sdp.includes(`a=msid:${s.id} `),
      };
    },
  },
  {
    group: 'tracks', name: 'setParameters maxBitrate caps the sender',
    // WebRTC 1.0 §5.2 setParameters; webrtc-stats outbound-rtp.targetBitrate follows the cap.
    async run(env) {
      const { pc } = await env.call();
      const sender = pc.getSenders()[0];
      const p = sender.getParameters();
      const r = { encodings: p.encodings.length, before: p.encodings[0]?.maxBitrate ?? null };
      p.encodings[0].maxBitrate = 24000;
      r.set = await outcome(() => sender.setParameters(p));
      r.after = sender.getParameters().encodings[0]?.maxBitrate ?? null;
      r.stale = await outcome(() => sender.setParameters(p));
      await sleep(1500);
      const out = [...(await pc.getStats()).values()].find((s) => s.type === 'outbound-rtp');
      r.targetCapped = typeof out?.targetBitrate === 'number' && out.targetBitrate <= 24000;
      r._targetBitrate = out?.targetBitrate;
      return r;
    },
  },
  {
    group: 'tracks', name: 'currentDirection after negotiation',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      const t = pc.addTransceiver('audio', { direction: 'recvonly' });
      const fs = await env.farMic();
      await pc.setLocalDescription();
      await far.setRemoteDescription(plain(pc.localDescription));
      far.addTrack(fs.getTracks()[0], fs);
      const ft = far.getTransceivers()[0];
      const before = [t.mid, t.currentDirection];
      await far.setLocalDescription();
      await pc.setRemoteDescription(plain(far.localDescription));
      return { before: [midShape(before[0]), before[1]], after: [midShape(t.mid), t.direction, t.currentDirection], _mids: [before[0], t.mid], far: [ft.direction, ft.currentDirection], answer: outline(pc.remoteDescription.sdp) };
    },
  },
  {
    group: 'tracks', name: 'renegotiation: local re-offer without changes',
    async run(env) {
      const { pc, far } = await env.call();
      const r = { step: await env.step(pc, far) };
      await sleep(300);
      r.after = [pc.signalingState, pc.connectionState, pc.getTransceivers()[0].currentDirection];
      return r;
    },
  },
  {
    group: 'tracks', name: 'renegotiation: far end re-offers without changes',
    async run(env) {
      const { pc, far } = await env.call();
      const r = { step: await env.step(far, pc) };
      await sleep(300);
      r.after = [pc.signalingState, pc.connectionState, pc.getTransceivers()[0].currentDirection];
      return r;
    },
  },
  {
    group: 'tracks', name: 'hold and resume (local offers hold, far offers resume)',
    async run(env) {
      const { pc, far } = await env.call();
      const t = pc.getTransceivers()[0];
      const ft = far.getTransceivers()[0];
      const nn = env.count(pc, 'negotiationneeded');
      const r = {};
      t.direction = 'sendonly';
      await sleep(300);
      r.nnAfterSendonly = nn.n;
      r.hold = { step: await env.step(pc, far), local: [t.direction, t.currentDirection], far: ft.currentDirection };
      t.direction = 'inactive';
      r.inactive = { step: await env.step(pc, far), local: [t.direction, t.currentDirection], far: ft.currentDirection };
      t.direction = 'sendrecv';
      r.resume = { step: await env.step(far, pc), local: [t.direction, t.currentDirection], far: ft.currentDirection };
      r.connected = pc.connectionState;
      return r;
    },
  },
  {
    group: 'tracks', name: 'hold and resume by the far end',
    async run(env) {
      const { pc, far } = await env.call();
      const t = pc.getTransceivers()[0];
      const ft = far.getTransceivers()[0];
      const r = {};
      ft.direction = 'sendonly';
      r.hold = { step: await env.step(far, pc), local: [t.direction, t.currentDirection], far: [ft.direction, ft.currentDirection] };
      ft.direction = 'inactive';
      r.inactive = { step: await env.step(far, pc), local: [t.direction, t.currentDirection] };
      ft.direction = 'sendrecv';
      r.resume = { step: await env.step(far, pc), local: [t.direction, t.currentDirection], far: ft.currentDirection };
      await sleep(300);
      r.connected = pc.connectionState;
      return r;
    },
  },
  {
    group: 'tracks', name: 'remote track mute and unmute (hold, resume, no RTP)',
    // WebRTC 1.0 §4.4.1.5-6 "process the removal/addition of a remote track" and the muted
    // attribute of a received track (Media Capture §4.3.1: muted while no media arrives).
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      env.link(pc, far);
      const log = [];
      let track = null;
      pc.addEventListener('track', (e) => {
        if (track) return;
        track = e.track;
        log.push(`track muted=${e.track.muted}`);
        env.record(track, ['mute', 'unmute'], log);
      });
      const s = await env.mic();
      pc.addTrack(s.getTracks()[0], s);
      const fs = await env.farMic();
      far.addTrack(fs.getTracks()[0], fs);
      await env.negotiate(pc, far);
      await env.until(() => pc.connectionState === 'connected', 10000);
      await env.until(() => track && !track.muted, 3000);
      const mark = (label) => log.push(`${label} muted=${track?.muted}`);
      mark('connected');
      const t = pc.getTransceivers()[0];
      const ft = far.getTransceivers()[0];
      t.direction = 'sendonly';
      await env.negotiate(pc, far);
      mark('our hold applied');
      await sleep(1500);
      mark('our hold +1.5s');
      t.direction = 'sendrecv';
      await env.negotiate(pc, far);
      mark('resume applied');
      await env.until(() => !track.muted, 3000);
      mark('resume +rtp');
      ft.direction = 'inactive';
      await env.negotiate(far, pc);
      mark('far inactive applied');
      ft.direction = 'sendrecv';
      await env.negotiate(far, pc);
      mark('far resume applied');
      await env.until(() => !track.muted, 3000);
      mark('far resume +rtp');
      // The far end stops sending RTP without renegotiating.
      await far.getSenders()[0].replaceTrack(null);
      await sleep(3000);
      mark('no rtp +3s');
      await far.getSenders()[0].replaceTrack(fs.getTracks()[0]);
      await env.until(() => !track.muted, 3000);
      mark('rtp again');
      return { log };
    },
  },
  {
    group: 'tracks', name: 'replaceTrack',
    async run(env) {
      const { pc } = await env.call();
      const sender = pc.getSenders()[0];
      const nn = env.count(pc, 'negotiationneeded');
      const s2 = await env.mic();
      const r = {};
      r.replace = await outcome(() => sender.replaceTrack(s2.getTracks()[0]));
      r.isNew = sender.track === s2.getTracks()[0];
      r.toNull = await outcome(() => sender.replaceTrack(null));
      r.track = sender.track;
      r.direction = pc.getTransceivers()[0].direction;
      await sleep(300);
      r.negotiationneeded = nn.n;
      return r;
    },
  },
  {
    group: 'tracks', name: 'codec capabilities',
    async run() {
      const caps = RTCRtpSender.getCapabilities('audio');
      const mimes = caps.codecs.map((c) => c.mimeType.toLowerCase());
      return {
        has: ['audio/opus', 'audio/g722', 'audio/pcmu', 'audio/pcma', 'audio/telephone-event'].filter((m) => mimes.includes(m)),
        first: mimes[0], opus: caps.codecs.find((c) => c.mimeType.toLowerCase() === 'audio/opus')?.clockRate,
        receiver: RTCRtpReceiver.getCapabilities('audio')?.codecs?.length > 0,
        video: RTCRtpSender.getCapabilities('video') === null ? null : 'object',
      };
    },
  },
  {
    group: 'tracks', name: 'setCodecPreferences',
    async run(env) {
      const pc = env.pc();
      const t = pc.addTransceiver('audio');
      const r = { has: typeof t.setCodecPreferences };
      if (r.has !== 'function') return r;
      const caps = RTCRtpReceiver.getCapabilities('audio').codecs;
      const pcmu = caps.filter((c) => c.mimeType.toLowerCase() === 'audio/pcmu');
      r.set = await outcome(() => t.setCodecPreferences(pcmu));
      r.offer = sdpFacts((await pc.createOffer()).sdp)[0]?.codecs;
      r.bogus = await outcome(() => t.setCodecPreferences([{ mimeType: 'audio/bogus', clockRate: 1234 }]));
      r.reset = await outcome(() => t.setCodecPreferences([]));
      r.resetFirst = sdpFacts((await pc.createOffer()).sdp)[0]?.codecs[0];
      return r;
    },
  },
  {
    group: 'tracks', name: 'transceiver.stop',
    async run(env) {
      const { pc, far } = await env.call();
      const t2 = pc.addTransceiver('audio');
      const r = { add: await env.step(pc, far) };
      const ft2 = far.getTransceivers()[1];
      const nn = env.count(pc, 'negotiationneeded');
      let ended = 0;
      t2.receiver.track.addEventListener('ended', () => { ended += 1; });
      const ret = t2.stop();
      r.atStop = { ret: ret === undefined, direction: t2.direction, current: t2.currentDirection, track: t2.receiver.track.readyState };
      await sleep(300);
      r.nn = nn.n;
      r.ended = ended;
      r.setDirection = await outcome(() => { t2.direction = 'sendrecv'; });
      r.replaceTrack = await outcome(() => t2.sender.replaceTrack(null));
      r.stopAgain = await outcome(() => t2.stop());
      const facts = (sdp) => sdpFacts(sdp).map((m) => [m.kind, m.port0 ? 0 : 'port', m.dir]);
      try {
        const sdp = await env.negotiate(pc, far);
        r.offer = facts(sdp.offer.sdp);
        r.answer = facts(sdp.answer.sdp);
      } catch (e) {
        r.failed = e?.name ?? 'Error';
        r._message = String(e?.message ?? e).slice(0, 300);
      }
      r.after = {
        local: [t2.direction, t2.currentDirection, midShape(t2.mid)],
        far: [ft2.direction, ft2.currentDirection],
        transceivers: pc.getTransceivers().length,
        senders: pc.getSenders().length,
        receivers: pc.getReceivers().length,
        farTransceivers: far.getTransceivers().length,
      };
      await sleep(300);
      r.nnAfter = nn.n;
      r.connected = [pc.connectionState, pc.getTransceivers()[0].currentDirection];
      r.farReoffer = await env.step(far, pc);
      return r;
    },
  },
  {
    group: 'tracks', name: 'transceiver.stop by the far end',
    async run(env) {
      const { pc, far } = await env.call();
      pc.addTransceiver('audio');
      const r = { add: await env.step(pc, far) };
      const t2 = pc.getTransceivers()[1];
      const ft2 = far.getTransceivers()[1];
      let ended = 0;
      t2.receiver.track.addEventListener('ended', () => { ended += 1; });
      ft2.stop();
      const facts = (sdp) => sdpFacts(sdp).map((m) => [m.kind, m.port0 ? 0 : 'port', m.dir]);
      try {
        const sdp = await env.negotiate(far, pc);
        r.offer = facts(sdp.offer.sdp);
        r.answer = facts(sdp.answer.sdp);
      } catch (e) {
        r.failed = e?.name ?? 'Error';
        r._message = String(e?.message ?? e).slice(0, 300);
      }
      await sleep(300);
      r.local = [t2.direction, t2.currentDirection, t2.receiver.track.readyState];
      r.ended = ended;
      r.transceivers = pc.getTransceivers().length;
      r.connected = [pc.connectionState, pc.getTransceivers()[0].currentDirection];
      return r;
    },
  },

  // ---- negotiation-needed, ICE restart, track event ----
  {
    group: 'negotiation', name: 'negotiationneeded firing rules',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      const log = [];
      pc.addEventListener('negotiationneeded', () => log.push(`nn:${pc.signalingState}`));
      pc.addTransceiver('audio');
      pc.addTransceiver('audio');
      const sync = log.length;
      await sleep(300);
      log.push('after two addTransceiver');
      await env.negotiate(pc, far);
      await sleep(300);
      log.push('negotiated');
      await pc.setLocalDescription();
      pc.addTransceiver('audio');
      await sleep(300);
      log.push('added in have-local-offer');
      await far.setRemoteDescription(plain(pc.localDescription));
      await far.setLocalDescription();
      await pc.setRemoteDescription(plain(far.localDescription));
      await sleep(300);
      log.push('answered');
      return { sync, log };
    },
  },
  {
    group: 'negotiation', name: 'restartIce',
    // WebRTC 1.0 §4.4.1.6 / §4.4.1.5 iceRestart, JSEP §5.2.1/§5.3.1, RFC 8445 §9: restartIce()
    // fires negotiationneeded and every later offer has new ICE credentials, which the far end
    // accepts (its answer has new ones too); then the far end restarts and our answer must carry
    // new credentials. The call stays up and audio keeps flowing both ways.
    async run(env) {
      const { pc, far } = await env.call();
      const ufrags = () => [ufragOf(pc.localDescription?.sdp), ufragOf(far.localDescription?.sdp)];
      const packets = async (p) => {
        let n = 0;
        (await p.getStats()).forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'audio') n += x.packetsReceived ?? 0; });
        return n;
      };
      const flows = async () => {
        const b = [await packets(pc), await packets(far)];
        await sleep(1000);
        return [(await packets(pc)) - b[0] > 20, (await packets(far)) - b[1] > 20];
      };
      const [u0, f0] = ufrags();
      const nn = env.count(pc, 'negotiationneeded');
      const states = []; // §5.6: a restart from connected stays connected
      pc.addEventListener('connectionstatechange', () => states.push(pc.connectionState));
      const r = { restartIce: await outcome(() => pc.restartIce()) };
      await sleep(300);
      r.negotiationneeded = nn.n;
      const offer = await pc.createOffer();
      r.newUfrag = ufragOf(offer.sdp) !== u0;
      const offer2 = await pc.createOffer({ iceRestart: true });
      r.newUfragOption = ufragOf(offer2.sdp) !== u0;
      await pc.setLocalDescription(); // implicit: a restart offer too, restartIce() is pending
      r.implicitNewUfrag = ufragOf(pc.localDescription.sdp) !== u0;
      await far.setRemoteDescription(plain(pc.localDescription));
      env.pump();
      await far.setLocalDescription();
      await pc.setRemoteDescription(plain(far.localDescription));
      env.pump();
      await env.until(() => pc.connectionState === 'connected' && far.connectionState === 'connected', 5000);
      const [u1, f1] = ufrags();
      r.afterOurRestart = { ourUfragNew: u1 !== u0, farUfragNew: f1 !== f0, state: [pc.connectionState, far.connectionState] };
      r.flowsAfterOurRestart = await flows();
      r.negotiationneededAfter = nn.n;
      r.plainOfferKeeps = ufragOf((await pc.createOffer()).sdp) === u1;
      // The far end restarts: our answer must change our credentials too (JSEP §5.3.1).
      far.restartIce();
      const farOffer = await far.createOffer();
      await far.setLocalDescription(farOffer);
      r.farOffer = await outcome(() => pc.setRemoteDescription(plain(farOffer)));
      env.pump();
      await pc.setLocalDescription();
      r.ourAnswer = await outcome(() => far.setRemoteDescription(plain(pc.localDescription)));
      env.pump();
      await env.until(() => pc.connectionState === 'connected' && far.connectionState === 'connected', 5000);
      const [u2, f2] = ufrags();
      r.afterFarRestart = { ourUfragNew: u2 !== u1, farUfragNew: f2 !== f1, state: [pc.connectionState, far.connectionState] };
      r.flowsAfterFarRestart = await flows();
      r.connectionStateChanges = states;
      return r;
    },
  },
  {
    group: 'negotiation', name: 'track event at the offerer',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      const log = [];
      let ev = null;
      pc.addEventListener('track', (e) => { log.push('track'); ev = e; });
      pc.addTransceiver('audio');
      await pc.setLocalDescription();
      await far.setRemoteDescription(plain(pc.localDescription));
      const fs = await env.farMic();
      far.addTrack(fs.getTracks()[0], fs);
      await far.setLocalDescription();
      await pc.setRemoteDescription(plain(far.localDescription));
      log.push('sRD resolved');
      await sleep(300);
      if (!ev) return { log };
      return {
        log, streams: ev.streams.length, streamId: ev.streams[0]?.id === fs.id,
        streamHasTrack: ev.streams[0]?.getTracks().includes(ev.track),
        transceiver: ev.transceiver === pc.getTransceivers()[0], receiver: ev.receiver === ev.transceiver?.receiver,
        track: ev.track === ev.receiver?.track, kind: ev.track.kind, readyState: ev.track.readyState,
        mid: midShape(ev.transceiver?.mid), _mid: ev.transceiver?.mid, currentDirection: ev.transceiver?.currentDirection,
      };
    },
  },
  {
    group: 'negotiation', name: 'track event at the answerer',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      const log = [];
      let ev = null;
      let atEvent = null;
      pc.addEventListener('track', (e) => {
        log.push('track');
        ev = e;
        atEvent = [pc.signalingState, e.transceiver?.direction, e.transceiver?.currentDirection];
      });
      const fs = await env.farMic();
      far.addTrack(fs.getTracks()[0], fs);
      await far.setLocalDescription();
      await pc.setRemoteDescription(plain(far.localDescription));
      log.push('sRD resolved');
      await sleep(300);
      if (!ev) return { log };
      return {
        log, atEvent, streams: ev.streams.length, streamId: ev.streams[0]?.id === fs.id,
        transceivers: pc.getTransceivers().length, mid: midShape(ev.transceiver?.mid), _mid: ev.transceiver?.mid, receiversTrack: pc.getReceivers()[0]?.track === ev.track,
      };
    },
  },

  {
    group: 'negotiation', name: 'far end track event streams (a=msid in our offer and answer)',
    // RFC 8830 / JSEP §5.2.1: each sending m-line names its sender's streams (`-` for none);
    // the far end's track event takes its streams from there.
    async run(env) {
      const s = await env.mic();
      const ids = (e) => e.streams.map((x) => (x.id === s.id ? 'ours' : 'other'));
      const msids = (sdp) => sdp.split(/\r?\n(?=m=)/).slice(1).map((sec) => sec.split(/\r?\n/)
        .filter((l) => l.startsWith('a=msid:')).map((l) => {
          const [stream, track] = l.slice(7).split(' ');
          return `${stream === s.id ? 'ours' : stream} ${track === undefined ? 'no-track' : 'track'}`;
        }));
      // We offer: addTrack with a stream, a trackless sendrecv transceiver, a recvonly one.
      const pc = env.pc();
      const far = env.far();
      const farTracks = [];
      far.addEventListener('track', (e) => farTracks.push({ mid: e.transceiver.mid === pc.getTransceivers()[farTracks.length]?.mid, streams: ids(e) }));
      pc.addTrack(s.getTracks()[0], s);
      pc.addTransceiver('audio');
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await far.setRemoteDescription(plain(offer));
      const r = { offer: msids(offer.sdp), farTracksAtOffer: farTracks.slice() };
      // We answer a far offer, addTrack with a stream reusing the offer's transceiver.
      const pc2 = env.pc();
      const far2 = env.far();
      const far2Tracks = [];
      far2.addEventListener('track', (e) => far2Tracks.push(ids(e)));
      far2.addTransceiver('audio', { direction: 'sendrecv' });
      await far2.setLocalDescription();
      await pc2.setRemoteDescription(plain(far2.localDescription));
      pc2.addTrack(s.getTracks()[0], s);
      const answer = await pc2.createAnswer();
      await pc2.setLocalDescription(answer);
      await far2.setRemoteDescription(plain(answer));
      r.answer = msids(answer.sdp);
      r.far2Tracks = far2Tracks;
      return r;
    },
  },
  {
    group: 'negotiation', name: 'early media (remote pranswer, then the answer)',
    // The softphone's SIP 183 Session Progress: the far end answers and sends (ringback) at
    // once; the page applies its SDP as a pranswer, hears it, then applies the final answer.
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      env.link(pc, far);
      const s = await env.mic();
      pc.addTrack(s.getTracks()[0], s);
      const fs = await env.farMic();
      far.addTrack(fs.getTracks()[0], fs);
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      env.record(pc, ['track'], log);
      const packets = async () => {
        let n = 0;
        (await pc.getStats()).forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'audio') n += x.packetsReceived ?? 0; });
        return n;
      };
      const t = pc.getTransceivers()[0];
      await pc.setLocalDescription();
      await far.setRemoteDescription(plain(pc.localDescription));
      const answer = await far.createAnswer();
      await far.setLocalDescription(answer);
      await pc.setRemoteDescription({ type: 'pranswer', sdp: answer.sdp });
      log.push('sRD(pranswer) resolved');
      env.pump();
      const r = {
        atPranswer: {
          state: pc.signalingState, remote: pc.remoteDescription?.type, pendingRemote: pc.pendingRemoteDescription?.type ?? null,
          currentRemote: pc.currentRemoteDescription?.type ?? null, pendingLocal: pc.pendingLocalDescription?.type ?? null,
          currentDirection: t.currentDirection, createOffer: await outcome(() => pc.createOffer()),
        },
      };
      let n = 0;
      const end = performance.now() + 8000;
      while (performance.now() < end && (n = await packets()) <= 20) await sleep(100);
      r.early = { heard: n > 20, _packets: n, state: pc.signalingState, connection: pc.connectionState };
      await pc.setRemoteDescription(plain(answer));
      log.push('sRD(answer) resolved');
      const before = await packets();
      await sleep(1000);
      r.final = {
        state: pc.signalingState, currentRemote: pc.currentRemoteDescription?.type ?? null, pendingRemote: pc.pendingRemoteDescription?.type ?? null,
        currentLocal: pc.currentLocalDescription?.type ?? null, currentDirection: t.currentDirection,
        stillReceiving: (await packets()) > before + 20, connection: pc.connectionState,
      };
      r.log = log;
      return r;
    },
  },

  {
    group: 'negotiation', name: 'rollback of a local re-offer and glare',
    // "Perfect negotiation": a re-offer withdrawn by rollback, then a glare resolved by the
    // far end's offer arriving in have-local-offer (implicit rollback); the call goes on.
    async run(env) {
      const { pc, far } = await env.call();
      const t = pc.getTransceivers()[0];
      await sleep(200);
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      env.record(pc, ['negotiationneeded'], log);
      const r = {};
      t.direction = 'sendonly';
      await sleep(300);
      await pc.setLocalDescription();
      r.offered = [pc.signalingState, outline(pc.pendingLocalDescription?.sdp)[0]?.dir ?? null, midShape(t.mid)];
      log.push('rollback');
      r.rollback = await outcome(() => pc.setLocalDescription({ type: 'rollback' }));
      await sleep(300);
      r.afterRollback = {
        state: pc.signalingState, pendingLocal: pc.pendingLocalDescription?.type ?? null, local: pc.localDescription?.type ?? null,
        localDir: outline(pc.localDescription?.sdp)[0]?.dir ?? null, direction: t.direction, currentDirection: t.currentDirection,
        mid: midShape(t.mid), again: await outcome(() => pc.setLocalDescription({ type: 'rollback' })),
      };
      await pc.setLocalDescription();
      const farOffer = await far.createOffer();
      await far.setLocalDescription(farOffer);
      log.push('far offer');
      r.implicit = await outcome(() => pc.setRemoteDescription(plain(farOffer)));
      r.afterImplicit = [pc.signalingState, pc.pendingLocalDescription?.type ?? null];
      await pc.setLocalDescription();
      await far.setRemoteDescription(plain(pc.localDescription));
      r.answered = { answer: outline(pc.currentLocalDescription?.sdp), currentDirection: t.currentDirection, state: pc.signalingState };
      t.direction = 'sendrecv';
      r.resume = await env.step(pc, far);
      r._resumeOffer = pc.localDescription?.sdp;
      await sleep(300);
      r.after = [pc.signalingState, pc.connectionState, t.currentDirection];
      r.log = log;
      return r;
    },
  },
  {
    group: 'negotiation', name: 'rollback of a remote re-offer',
    // The page refuses a far end's re-offer (hold) by rolling it back before answering.
    async run(env) {
      const { pc, far } = await env.call();
      const t = pc.getTransceivers()[0];
      const ft = far.getTransceivers()[0];
      await sleep(200);
      const log = env.record(pc, ['signalingstatechange'], [], { detail: () => `:${pc.signalingState}` });
      env.record(pc, ['negotiationneeded', 'track'], log);
      const r = {};
      ft.direction = 'sendonly';
      const offer = await far.createOffer();
      await far.setLocalDescription(offer);
      await pc.setRemoteDescription(plain(offer));
      r.offered = [pc.signalingState, pc.pendingRemoteDescription?.type ?? null];
      log.push('rollback');
      r.rollback = await outcome(() => pc.setRemoteDescription({ type: 'rollback' }));
      await sleep(300);
      r.afterRollback = {
        state: pc.signalingState, pendingRemote: pc.pendingRemoteDescription?.type ?? null, remote: pc.remoteDescription?.type ?? null,
        remoteDir: outline(pc.remoteDescription?.sdp)[0]?.dir ?? null, currentDirection: t.currentDirection, transceivers: pc.getTransceivers().length,
        again: await outcome(() => pc.setRemoteDescription({ type: 'rollback' })),
      };
      await far.setLocalDescription({ type: 'rollback' });
      r.retry = await env.step(far, pc);
      await sleep(300);
      r.final = [pc.signalingState, pc.connectionState, t.currentDirection];
      r.log = log;
      return r;
    },
  },
  {
    group: 'negotiation', name: 'track event again when the far end resumes sending',
    // WebRTC 1.0 §4.4.1.6: a description that stops the far end's sending "processes the
    // removal" of the remote track, one that restarts it "the addition": track fires again.
    async run(env) {
      const { pc, far } = await env.call();
      const t = pc.getTransceivers()[0];
      const ft = far.getTransceivers()[0];
      const rt = t.receiver.track;
      const log = [];
      const evs = [];
      pc.addEventListener('track', (e) => { log.push('track'); evs.push(e); });
      const mutes = env.record(rt, ['mute', 'unmute'], []);
      const r = {};
      ft.direction = 'recvonly';
      r.hold = await env.step(far, pc);
      log.push('far holds');
      await sleep(300);
      ft.direction = 'sendrecv';
      r.resume = await env.step(far, pc);
      log.push('far resumes');
      ft.direction = 'inactive';
      r.inactive = await env.step(pc, far);
      log.push('inactive, offered by us');
      ft.direction = 'sendrecv';
      r.resumeAnswered = await env.step(pc, far);
      log.push('far resumes in its answer');
      await sleep(300);
      r.log = log;
      r.events = evs.map((e) => ({
        sameTrack: e.track === rt, sameTransceiver: e.transceiver === t, receiver: e.receiver === t.receiver,
        streams: e.streams.length, readyState: e.track.readyState,
      }));
      r._mutes = mutes;
      r._remote = pc.remoteDescription?.sdp;
      r.connected = pc.connectionState;
      return r;
    },
  },

  // ---- ICE and connection states ----
  {
    group: 'ice', name: 'ICE gathering and icecandidate null end',
    async run(env) {
      const pc = env.pc();
      const log = [];
      let first = null;
      pc.addEventListener('icegatheringstatechange', () => log.push(`gathering:${pc.iceGatheringState}`));
      pc.addEventListener('icecandidate', (e) => {
        log.push(e.candidate === null ? 'candidate:null' : 'candidate');
        if (e.candidate && !first) first = e.candidate;
      });
      pc.addTransceiver('audio');
      const state0 = pc.iceGatheringState;
      await pc.setLocalDescription();
      log.push('sLD resolved');
      await env.until(() => log.includes('candidate:null'), 8000);
      return {
        state0, log: squash(log), state: pc.iceGatheringState,
        first: first && {
          sdpMid: midShape(first.sdpMid), sdpMidInSdp: pc.localDescription.sdp.includes(`a=mid:${first.sdpMid}`), sdpMLineIndex: first.sdpMLineIndex, type: first.type, component: first.component,
          ufragMatches: first.usernameFragment === ufragOf(pc.localDescription.sdp),
          json: Object.keys(first.toJSON()).sort(),
        },
        inLocalDescription: /^a=candidate:/m.test(pc.localDescription.sdp),
      };
    },
  },
  {
    group: 'ice', name: 'connection and ICE state sequences',
    async run(env) {
      const pc = env.pc();
      const far = env.far();
      env.link(pc, far);
      const conn = [];
      const ice = [];
      pc.addEventListener('connectionstatechange', () => conn.push(pc.connectionState));
      pc.addEventListener('iceconnectionstatechange', () => ice.push(pc.iceConnectionState));
      const s = await env.mic();
      pc.addTrack(s.getTracks()[0], s);
      await env.negotiate(pc, far);
      await env.until(() => pc.connectionState === 'connected', 10000);
      await sleep(500);
      return { conn, ice: squash(ice), final: [pc.connectionState, pc.iceConnectionState], canTrickle: pc.canTrickleIceCandidates };
    },
  },
  {
    group: 'ice', name: 'close() effects',
    async run(env) {
      const { pc, stream } = await env.call();
      const log = env.record(pc, ['signalingstatechange', 'connectionstatechange', 'iceconnectionstatechange', 'icegatheringstatechange', 'negotiationneeded', 'track'], []);
      const t = pc.getTransceivers()[0];
      const rtrack = t.receiver.track;
      pc.close();
      const sync = [pc.signalingState, pc.connectionState, pc.iceConnectionState];
      await sleep(500);
      return {
        sync, log, t: [t.direction, t.currentDirection, t.stopped], receiverTrack: rtrack.readyState,
        senderTrack: stream.getTracks()[0].readyState, senders: pc.getSenders().length, transceivers: pc.getTransceivers().length,
        localDescription: pc.localDescription?.type ?? null,
      };
    },
  },

  // ---- stats ----
  {
    group: 'stats', name: 'getStats report types',
    async run(env) {
      const { pc } = await env.call();
      await sleep(1500);
      const report = await pc.getStats();
      const types = new Set();
      report.forEach((s) => types.add(s.type));
      const want = ['codec', 'inbound-rtp', 'outbound-rtp', 'media-source', 'transport', 'candidate-pair', 'local-candidate', 'remote-candidate', 'peer-connection', 'certificate'];
      return { types: want.filter((t) => types.has(t)), isMap: typeof report.get === 'function' && typeof report.size === 'number' };
    },
  },
  {
    group: 'stats', name: 'getStats certificate stats',
    async run(env) {
      const { pc } = await env.call();
      await sleep(500);
      const report = await pc.getStats();
      const all = [...report.values()];
      const transport = all.find((s) => s.type === 'transport');
      const fingerprintOf = (d) => /^a=fingerprint:(\S+) (\S+)/m.exec(d?.sdp ?? '')?.slice(1);
      const describe = (id, desc) => {
        const c = report.get(id);
        if (!c) return { found: false };
        const [algo, fp] = fingerprintOf(desc) ?? [];
        let der0 = null;
        try { der0 = atob(c.base64Certificate).charCodeAt(0); } catch { der0 = 'not base64'; }
        return {
          found: true, type: c.type, timestampIsNumber: typeof c.timestamp === 'number',
          fingerprintAlgorithm: c.fingerprintAlgorithm, sdpAlgorithm: algo,
          fingerprintShape: /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(c.fingerprint),
          fingerprintIsSdps: c.fingerprint === fp?.toUpperCase(),
          derSequence: der0 === 0x30, issuerCertificateId: c.issuerCertificateId ?? null,
        };
      };
      const senderTypes = new Set();
      (await pc.getSenders()[0].getStats()).forEach((s) => senderTypes.add(s.type));
      return {
        local: describe(transport?.localCertificateId, pc.localDescription),
        remote: describe(transport?.remoteCertificateId, pc.remoteDescription),
        distinct: transport?.localCertificateId !== transport?.remoteCertificateId,
        senderSelectionHasCertificate: senderTypes.has('certificate'),
      };
    },
  },
  {
    group: 'stats', name: 'getStats with a track selector',
    async run(env) {
      const { pc, far } = await env.call();
      await sleep(500);
      const types = async (sel) => {
        const set = new Set();
        (await sel.getStats()).forEach((s) => set.add(s.type));
        return ['inbound-rtp', 'outbound-rtp'].filter((t) => set.has(t));
      };
      const track = pc.getSenders()[0].track;
      const ts = new Set();
      (await pc.getStats(track)).forEach((s) => ts.add(s.type));
      return {
        byTrack: ['inbound-rtp', 'outbound-rtp'].filter((t) => ts.has(t)),
        sender: await types(pc.getSenders()[0]), receiver: await types(pc.getReceivers()[0]),
        foreign: await outcome(() => pc.getStats(far.getReceivers()[0].track)),
      };
    },
  },

  // ---- DTMF ----
  {
    group: 'dtmf', name: 'RTCDTMFSender before negotiation',
    async run(env) {
      const pc = env.pc();
      const s = await env.mic();
      const sender = pc.addTrack(s.getTracks()[0], s);
      const d = sender.dtmf;
      return {
        exists: !!d, same: d === sender.dtmf, canInsertDTMF: d?.canInsertDTMF, toneBuffer: d?.toneBuffer,
        insert: await outcome(() => d.insertDTMF('1')),
      };
    },
  },
  {
    group: 'dtmf', name: 'insertDTMF and tonechange events',
    async run(env) {
      const { pc } = await env.call();
      const d = pc.getSenders()[0].dtmf;
      const r = { canInsertDTMF: d.canInsertDTMF, bad: await outcome(() => d.insertDTMF('12Z')) };
      const tones = [];
      const done = new Promise((resolve) => {
        d.ontonechange = (e) => { tones.push([e.tone, d.toneBuffer]); if (e.tone === '') resolve(); };
      });
      r.insert = await outcome(() => d.insertDTMF('1a#', 60, 40));
      r.toneBuffer = d.toneBuffer;
      await Promise.race([done, sleep(5000)]);
      r.tones = tones;
      return r;
    },
  },

  // ---- getUserMedia and devices ----
  {
    group: 'media', name: 'getUserMedia audio track',
    async run(env) {
      const s = await env.mic();
      const t = s.getTracks()[0];
      const set = t.getSettings();
      const r = {
        tracks: s.getTracks().length, audio: s.getAudioTracks().length, kind: t.kind, readyState: t.readyState, enabled: t.enabled,
        muted: t.muted, active: s.active, label: typeof t.label, byId: s.getTrackById(t.id) === t,
        settings: ['deviceId', 'groupId', 'sampleRate', 'channelCount', 'echoCancellation', 'autoGainControl', 'noiseSuppression'].filter((k) => k in set),
      };
      let ended = 0;
      t.addEventListener('ended', () => { ended += 1; });
      t.stop();
      await sleep(100);
      r.afterStop = [t.readyState, s.active, ended];
      return r;
    },
  },
  {
    group: 'media', name: 'getUserMedia errors',
    async run(env) {
      const named = async (c) => {
        try {
          await env.mic(c);
          return 'ok';
        } catch (e) {
          return e.name === 'OverconstrainedError' ? `${e.name}(${e.constraint})` : e.name;
        }
      };
      return {
        empty: await named({}),
        none: await named({ audio: false, video: false }),
        deviceIdExact: await named({ audio: { deviceId: { exact: 'no-such-device' } } }),
        groupIdExact: await named({ audio: { groupId: { exact: 'no-such-group' } } }),
        deviceIdIdeal: await named({ audio: { deviceId: 'no-such-device' } }),
      };
    },
  },
  {
    group: 'media', name: 'enumerateDevices shape',
    async run() {
      const list = await navigator.mediaDevices.enumerateDevices();
      const audio = list.filter((d) => d.kind === 'audioinput' || d.kind === 'audiooutput');
      return {
        kinds: [...new Set(audio.map((d) => d.kind))].sort(),
        strings: audio.every((d) => ['deviceId', 'kind', 'label', 'groupId'].every((k) => typeof d[k] === 'string')),
        json: [...new Set(audio.map((d) => Object.keys(d.toJSON()).sort().join(',')))],
        isInfo: audio.every((d) => d instanceof MediaDeviceInfo),
        hasDefault: audio.some((d) => d.deviceId === 'default'),
      };
    },
  },
];

/**
 * Runs one scenario by name with fresh helpers; resolves its observations, or `{threw}` when it
 * threw where no outcome() caught it, or `{timeout}`. Keys starting with `_` are notes, not compared.
 */
export async function runScenario(name) {
  const s = scenarios.find((x) => x.name === name);
  if (!s) return { harnessError: `no scenario ${name}` };
  const env = makeEnv();
  let timer;
  try {
    const value = await Promise.race([
      s.run(env),
      new Promise((resolve) => { timer = setTimeout(() => resolve({ timeout: SCENARIO_TIMEOUT_MS }), SCENARIO_TIMEOUT_MS); }),
    ]);
    return JSON.parse(JSON.stringify(value ?? null));
  } catch (e) {
    // Only the name is compared; the message (engine-specific wording) is kept as a note.
    return { threw: e?.name ?? 'Error', _message: String(e?.message ?? e).slice(0, 300) };
  } finally {
    clearTimeout(timer);
    env.cleanup();
    await sleep(50);
  }
}
