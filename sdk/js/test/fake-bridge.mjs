// A small stand-in for vdimedia-bridge + vdimediad speaking the page-side protocol of
// docs/protocol.md ("Bridge ↔ page", "Message layer") over a real WebSocket on 127.0.0.1.
// Unit tests only: the product path is tested end to end elsewhere.

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import * as VdiMedia from '../dist/vdimedia.mjs';

export const OFFER_SDP = [
  'v=0',
  'o=- 1 0 IN IP4 0.0.0.0',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'c=IN IP4 0.0.0.0',
  'a=mid:0',
  'a=ice-ufrag:engU',
  'a=ice-pwd:engPasswordengPasswordxx',
  'a=ice-options:trickle',
  'a=sendrecv',
  'a=rtpmap:111 opus/48000/2',
  '',
].join('\r\n');

export const ANSWER_SDP = OFFER_SDP.replace('engU', 'farU');

export const CANDIDATE = 'candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host';

const tx = (id, trackId = 'rt1', senderTrack = null, extra = {}) => ({
  id,
  mid: null,
  direction: 'sendrecv',
  currentDirection: null,
  sender: { id: `s-${id}`, track: senderTrack },
  receiver: { id: `r-${id}`, track: { id: trackId, kind: 'audio', label: 'remote audio' } },
  ...extra,
});

/**
 * A per-connection fake engine: tracks per-pc signaling state and answers like vdimediad.
 * Each handler gets (params, ctx) where ctx.emit(event, params) sends an event before the
 * response and ctx.after(fn) runs fn right after the response is sent.
 */
export function defaultHandlers() {
  const pcs = new Map();
  const pcState = (pc) => {
    const p = pcs.get(pc);
    return {
      signalingState: p.signalingState,
      iceGatheringState: p.iceGatheringState,
      iceConnectionState: p.iceConnectionState,
      connectionState: p.connectionState,
      localDescription: p.local,
      remoteDescription: p.remote,
      currentLocalDescription: p.signalingState === 'stable' ? p.local : null,
      currentRemoteDescription: p.signalingState === 'stable' ? p.remote : null,
      pendingLocalDescription: p.signalingState === 'have-local-offer' ? p.local : null,
      pendingRemoteDescription: p.signalingState === 'have-remote-offer' ? p.remote : null,
      transceivers: p.transceivers,
    };
  };
  const need = (pc) => {
    const p = pcs.get(pc);
    if (!p) throw { name: 'NotFoundError', code: 'not_found', message: `no peer connection ${pc}` };
    if (p.closed) throw { name: 'InvalidStateError', code: 'invalid_state', message: `${pc} is closed` };
    return p;
  };
  let trackN = 0;
  return {
    'devices.enumerate': () => ({
      devices: [
        { deviceId: 'default', kind: 'audioinput', label: 'Default', groupId: 'g1' },
        { deviceId: 'mic-1', kind: 'audioinput', label: 'USB Headset Mic', groupId: 'g1' },
        { deviceId: 'spk-1', kind: 'audiooutput', label: 'USB Headset', groupId: 'g1' },
      ],
    }),
    'media.getUserMedia': ({ constraints }) => {
      if (constraints?.audio?.deviceId?.exact === 'nope') {
        throw { name: 'OverconstrainedError', code: 'overconstrained', message: 'no such device', constraint: 'deviceId' };
      }
      trackN += 1;
      return {
        stream: { id: `ms${trackN}` },
        tracks: [
          {
            id: `lt${trackN}`,
            kind: 'audio',
            label: 'USB Headset Mic',
            settings: { deviceId: 'mic-1', sampleRate: 48000, channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
          },
        ],
      };
    },
    'track.stop': () => ({}),
    'track.setEnabled': () => ({}),
    // MediaStreamTrack.applyConstraints: exact/bare values win over the defaults; sampleRate
    // outside 8–96 kHz and deviceId 'nope' are impossible.
    'track.applyConstraints': ({ constraints }) => {
      const c = constraints ?? {};
      const v = (x) => (x && typeof x === 'object' && !Array.isArray(x) ? x.exact ?? x.ideal : x);
      const rate = v(c.sampleRate);
      if (rate !== undefined && (rate < 8000 || rate > 96000)) {
        throw { name: 'OverconstrainedError', code: 'overconstrained', message: 'Cannot satisfy constraint sampleRate', constraint: 'sampleRate' };
      }
      if (v(c.deviceId) === 'nope') {
        throw { name: 'OverconstrainedError', code: 'overconstrained', message: 'Cannot satisfy constraint deviceId', constraint: 'deviceId' };
      }
      const deviceId = v(c.deviceId) ?? 'mic-1';
      return {
        label: deviceId === 'mic-2' ? 'Second Mic' : 'USB Headset Mic',
        settings: {
          deviceId,
          sampleRate: rate ?? 48000,
          channelCount: v(c.channelCount) ?? 1,
          echoCancellation: v(c.echoCancellation) ?? true,
          noiseSuppression: v(c.noiseSuppression) ?? true,
          autoGainControl: v(c.autoGainControl) ?? true,
        },
      };
    },
    'pc.create': ({ pc }) => {
      pcs.set(pc, {
        signalingState: 'stable',
        iceGatheringState: 'new',
        iceConnectionState: 'new',
        connectionState: 'new',
        local: null,
        remote: null,
        transceivers: [],
        closed: false,
      });
      return {};
    },
    'pc.addTrack': ({ pc, track }, ctx) => {
      const p = need(pc);
      const t = tx(`t${p.transceivers.length + 1}`, `rt-${pc}-${p.transceivers.length + 1}`, track);
      p.transceivers.push(t);
      ctx.after(() => ctx.event('pc.negotiationneeded', { pc }));
      return { transceiver: t };
    },
    'pc.addTransceiver': ({ pc, kind, track, init }) => {
      const p = need(pc);
      const t = tx(`t${p.transceivers.length + 1}`, `rt-${pc}-${p.transceivers.length + 1}`, track ?? null, { direction: init?.direction ?? 'sendrecv' });
      p.transceivers.push(t);
      return { transceiver: t };
    },
    'pc.removeTrack': ({ pc, sender }) => {
      const p = need(pc);
      const t = p.transceivers.find((x) => x.sender.id === sender);
      if (!t) throw { name: 'InvalidAccessError', code: 'invalid_access', message: 'unknown sender' };
      t.sender.track = null;
      return {};
    },
    'pc.setDirection': ({ pc, transceiver, direction }, ctx) => {
      const p = need(pc);
      const t = p.transceivers.find((x) => x.id === transceiver);
      if (!t) throw { name: 'NotFoundError', code: 'not_found', message: 'unknown transceiver' };
      if (t.direction !== direction) ctx.after(() => ctx.event('pc.negotiationneeded', { pc }));
      t.direction = direction;
      return { transceiver: t };
    },
    'pc.stopTransceiver': ({ pc, transceiver }, ctx) => {
      const p = need(pc);
      const t = p.transceivers.find((x) => x.id === transceiver);
      if (!t) throw { name: 'NotFoundError', code: 'not_found', message: 'unknown transceiver' };
      if (t.direction !== 'stopped') ctx.after(() => ctx.event('pc.negotiationneeded', { pc }));
      t.direction = 'stopped';
      return { transceiver: t };
    },
    'pc.setCodecPreferences': ({ pc }) => {
      need(pc);
      return {};
    },
    'pc.replaceTrack': ({ pc, sender, track }) => {
      const p = need(pc);
      const t = p.transceivers.find((x) => x.sender.id === sender);
      if (!t) throw { name: 'NotFoundError', code: 'not_found', message: 'unknown sender' };
      t.sender.track = track ?? null;
      return {};
    },
    'pc.createOffer': ({ pc }) => {
      need(pc);
      return { type: 'offer', sdp: OFFER_SDP };
    },
    'pc.createAnswer': ({ pc }) => {
      const p = need(pc);
      if (p.signalingState !== 'have-remote-offer') {
        throw { name: 'InvalidStateError', code: 'invalid_state', message: `createAnswer in state ${p.signalingState}` };
      }
      return { type: 'answer', sdp: ANSWER_SDP.replace('farU', 'engU') };
    },
    'pc.setLocalDescription': ({ pc, description }, ctx) => {
      const p = need(pc);
      const type = description?.type ?? (p.signalingState === 'have-remote-offer' ? 'answer' : 'offer');
      const sdp = description?.sdp || (type === 'offer' ? OFFER_SDP : ANSWER_SDP.replace('farU', 'engU'));
      if (!sdp.startsWith('v=0')) throw { name: 'OperationError', code: 'invalid_sdp', message: 'SDP does not parse' };
      p.local = { type, sdp };
      p.signalingState = type === 'offer' ? 'have-local-offer' : 'stable';
      for (const t of p.transceivers) t.mid = '0';
      if (p.signalingState === 'stable') for (const t of p.transceivers) if (t.direction === 'stopped') t.currentDirection = 'stopped';
      ctx.emit('pc.signalingstatechange', { pc, state: p.signalingState });
      ctx.after(() => {
        p.iceGatheringState = 'gathering';
        ctx.event('pc.icegatheringstatechange', { pc, state: 'gathering' });
        ctx.event('pc.icecandidate', { pc, candidate: { candidate: CANDIDATE, sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'engU' } });
        p.iceGatheringState = 'complete';
        ctx.event('pc.icegatheringstatechange', { pc, state: 'complete' });
        ctx.event('pc.icecandidate', { pc, candidate: null });
      });
      return pcState(pc);
    },
    'pc.setRemoteDescription': ({ pc, description }, ctx) => {
      const p = need(pc);
      if (description.type === 'answer' && p.signalingState !== 'have-local-offer') {
        throw { name: 'InvalidStateError', code: 'invalid_state', message: `cannot set remote answer in state ${p.signalingState}` };
      }
      if (!description.sdp.startsWith('v=0')) throw { name: 'OperationError', code: 'invalid_sdp', message: 'SDP does not parse' };
      p.remote = description;
      p.signalingState = description.type === 'offer' ? 'have-remote-offer' : 'stable';
      if (p.transceivers.length === 0) p.transceivers.push(tx('t1', `rt-${pc}-1`));
      const t = p.transceivers[0];
      t.mid = '0';
      if (p.signalingState === 'stable') t.currentDirection = 'sendrecv';
      if (p.signalingState === 'stable') for (const x of p.transceivers) if (x.direction === 'stopped') x.currentDirection = 'stopped';
      ctx.emit('pc.signalingstatechange', { pc, state: p.signalingState });
      ctx.emit('pc.track', { pc, transceiver: t, track: t.receiver.track, streams: ['far-stream'] });
      if (p.signalingState === 'stable') {
        ctx.after(() => {
          ctx.event('pc.iceconnectionstatechange', { pc, state: 'checking' });
          ctx.event('pc.connectionstatechange', { pc, state: 'connecting' });
          ctx.event('pc.iceconnectionstatechange', { pc, state: 'connected' });
          ctx.event('pc.connectionstatechange', { pc, state: 'connected' });
        });
      }
      return pcState(pc);
    },
    'pc.addIceCandidate': ({ pc }) => {
      need(pc);
      return {};
    },
    'pc.getStats': ({ pc }) => {
      need(pc);
      return {
        stats: [
          { id: 'OT01', type: 'outbound-rtp', timestamp: 1, kind: 'audio', packetsSent: 10 },
          { id: 'IT01', type: 'inbound-rtp', timestamp: 1, kind: 'audio', packetsReceived: 9, jitter: 0.002 },
        ],
      };
    },
    'pc.close': ({ pc }) => {
      const p = need(pc);
      p.closed = true;
      return {};
    },
    'playout.attach': () => ({}),
    'playout.setSinkId': () => ({}),
    'playout.detach': () => ({}),
    // Ringtones: RIFF/OggS/ID3 files "decode"; a non-looping one ends 50 ms after it starts.
    'ringtone.play': ({ id, data, sinkId, loop }, ctx) => {
      if (typeof id !== 'string' || typeof data !== 'string') throw { name: 'TypeError', code: 'invalid_params', message: 'id and data are required' };
      if (sinkId !== undefined && !['default', 'spk-1'].includes(sinkId)) {
        throw { name: 'NotFoundError', code: 'not_found', message: `Requested audio output "${sinkId}" not found` };
      }
      const head = Buffer.from(data, 'base64').subarray(0, 4).toString('latin1');
      if (!['RIFF', 'OggS'].includes(head) && !head.startsWith('ID3')) {
        throw { name: 'TypeError', code: 'invalid_params', message: 'the ringtone cannot be decoded on this endpoint' };
      }
      if (loop === false) {
        ctx.after(() =>
          setTimeout(() => {
            if (ctx.ws.readyState === 1) ctx.event('ringtone.ended', { id });
          }, 50),
        );
      }
      return {};
    },
    'ringtone.stop': () => ({}),
  };
}

/**
 * Starts the fake bridge on 127.0.0.1 (random port).
 * @param {object} opts
 * @param {object|null} [opts.status] status message sent after hello (null: never answer)
 * @param {object} [opts.handlers] method → handler overrides
 */
export async function startBridge(opts = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const received = [];
  const sockets = new Set();
  const waiters = [];
  const statusMsg =
    opts.status === undefined
      ? { type: 'status', redirected: true, version: 1, engine: 'vdimediad/0.1.0', os: 'linux', arch: 'x86_64', capabilities: { codecs: ['opus', 'PCMU'] } }
      : opts.status;
  const notify = () => {
    for (const w of [...waiters]) {
      const hit = received.find(w.pred);
      if (hit) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(hit);
      }
    }
  };
  wss.on('connection', (ws) => {
    sockets.add(ws);
    const handlers = { ...defaultHandlers(), ...(opts.handlers ?? {}) };
    const send = (m) => ws.send(JSON.stringify(m));
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      received.push(msg);
      notify();
      if (msg.type === 'hello') {
        if (statusMsg) send(statusMsg);
        return;
      }
      if (msg.type !== 'request') return;
      const h = handlers[msg.method];
      const afters = [];
      const ctx = {
        emit: (event, params) => send({ type: 'event', event, params }),
        event: (event, params) => send({ type: 'event', event, params }),
        after: (fn) => afters.push(fn),
        ws,
      };
      if (!h) {
        send({ type: 'response', id: msg.id, error: { name: 'NotSupportedError', code: 'unknown_method', message: `unknown method ${msg.method}` } });
        return;
      }
      let result;
      try {
        result = h(msg.params ?? {}, ctx);
      } catch (error) {
        send({ type: 'response', id: msg.id, error });
        return;
      }
      if (result === undefined) return; // handler answers later (or never)
      send({ type: 'response', id: msg.id, result });
      for (const fn of afters) fn();
    });
    ws.on('close', () => sockets.delete(ws));
  });
  const url = `ws://127.0.0.1:${wss.address().port}/`;
  return {
    url,
    received,
    sockets,
    requests: (method) => received.filter((m) => m.type === 'request' && (!method || m.method === method)),
    /** Resolves with the first received message matching pred. */
    waitFor(pred, ms = 2000) {
      const hit = received.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error('waitFor timed out')), ms).unref();
      });
    },
    /** Sends a message to every connected page. */
    broadcast(m) {
      for (const ws of sockets) ws.send(JSON.stringify(m));
    },
    /** Drops every page connection abruptly. */
    dropAll() {
      for (const ws of sockets) ws.terminate();
    },
    close() {
      for (const ws of sockets) ws.terminate();
      return new Promise((r) => wss.close(() => r()));
    },
  };
}

/** A minimal browser-like window: native stand-ins the SDK must replace and restore. */
export function fakeWindow() {
  class NativeRTCPeerConnection {}
  class NativeRTCSessionDescription {}
  class NativeRTCIceCandidate {}
  class NativeMediaDeviceInfo {}
  class NativeMediaStreamTrack {
    constructor(kind = 'video') {
      this.kind = kind;
      this.id = `native-${kind}`;
      this.readyState = 'live';
    }
  }
  class NativeMediaStream {
    constructor(arg = []) {
      this.native = true;
      this.tracks = Array.isArray(arg) ? arg : arg.getTracks();
    }
    getTracks() {
      return this.tracks;
    }
  }
  class HTMLMediaElement extends EventTarget {}
  Object.defineProperty(HTMLMediaElement.prototype, 'srcObject', {
    configurable: true,
    enumerable: true,
    get() {
      return this._nativeSrc ?? null;
    },
    set(v) {
      this._nativeSrc = v;
    },
  });
  Object.defineProperty(HTMLMediaElement.prototype, 'sinkId', {
    configurable: true,
    enumerable: true,
    get() {
      return this._nativeSink ?? '';
    },
  });
  HTMLMediaElement.prototype.setSinkId = function setSinkId(id) {
    this._nativeSink = id;
    return Promise.resolve();
  };
  HTMLMediaElement.prototype.play = function play() {
    this._nativePlayCalls = (this._nativePlayCalls ?? 0) + 1;
    return this._nativeSrc ? Promise.resolve() : Promise.reject(new DOMException('The element has no supported sources.', 'NotSupportedError'));
  };
  HTMLMediaElement.prototype.pause = function pause() {};
  class HTMLAudioElement extends HTMLMediaElement {}
  const mediaDevices = new EventTarget();
  mediaDevices.getUserMedia = async (constraints) => ({ native: true, constraints });
  mediaDevices.enumerateDevices = async () => [
    { kind: 'audioinput', deviceId: 'vda-mic', label: 'VDA mic', groupId: 'v' },
    { kind: 'videoinput', deviceId: 'vda-cam', label: 'VDA camera', groupId: 'v' },
  ];
  const win = {
    RTCPeerConnection: NativeRTCPeerConnection,
    RTCSessionDescription: NativeRTCSessionDescription,
    RTCIceCandidate: NativeRTCIceCandidate,
    MediaStream: NativeMediaStream,
    MediaStreamTrack: NativeMediaStreamTrack,
    MediaDeviceInfo: NativeMediaDeviceInfo,
    HTMLMediaElement,
    HTMLAudioElement,
    navigator: { mediaDevices },
  };
  win.natives = {
    RTCPeerConnection: NativeRTCPeerConnection,
    RTCSessionDescription: NativeRTCSessionDescription,
    RTCIceCandidate: NativeRTCIceCandidate,
    MediaStream: NativeMediaStream,
    getUserMedia: mediaDevices.getUserMedia,
    enumerateDevices: mediaDevices.enumerateDevices,
    srcObject: Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'srcObject'),
    setSinkId: HTMLMediaElement.prototype.setSinkId,
  };
  return win;
}

/**
 * For a test file whose tests share one redirected page: registers node:test hooks that start
 * the fake bridge with `opts` (as `startBridge`), install the SDK into a `fakeWindow()` and
 * check that it redirected; afterwards, uninstall and close the bridge.
 * @param {object} [opts] as for `startBridge`
 * @param {(page: {bridge: object, win: object}) => void} [ready] called in the `before` hook
 */
export function redirectedPage(opts = {}, ready = () => {}) {
  let bridge;
  before(async () => {
    bridge = await startBridge(opts);
    const win = fakeWindow();
    const st = await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket });
    assert.equal(st.redirected, true);
    ready({ bridge, win });
  });
  after(async () => {
    VdiMedia.uninstall();
    await bridge.close();
  });
}
