// Behaviour fixed after the native-vs-SDK conformance suite (tests/e2e/conformance.test.mjs)
// measured Chromium 156 doing otherwise; each test names the scenario that found it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as VdiMedia from '../dist/vdimedia.mjs';
import { CANDIDATE, OFFER_SDP, redirectedPage } from './fake-bridge.mjs';

let bridge;
let win;
redirectedPage({}, (p) => ({ bridge, win } = p));

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

test('getConfiguration lists iceServers as Chromium does ("getConfiguration round trip")', async () => {
  const pc = new win.RTCPeerConnection({
    iceServers: [{ urls: 'stun:127.0.0.1:3478' }, { urls: ['turn:127.0.0.1?transport=udp'], username: 'u', credential: 'p' }],
  });
  assert.deepEqual(pc.getConfiguration().iceServers, [
    { credential: '', urls: ['stun:127.0.0.1:3478'], username: '' },
    { credential: 'p', urls: ['turn:127.0.0.1?transport=udp'], username: 'u' },
  ]);
  // The wire keeps the page's own shape (docs/protocol.md RTCConfiguration).
  const create = await bridge.waitFor((m) => m.method === 'pc.create' && m.params.pc === pc.vdimediaId);
  assert.deepEqual(create.params.configuration.iceServers, [
    { urls: 'stun:127.0.0.1:3478' }, { urls: ['turn:127.0.0.1?transport=udp'], username: 'u', credential: 'p' },
  ]);
  pc.close();
});

test('an empty urls list is a SyntaxError ("bad configuration error names")', () => {
  assert.throws(() => new win.RTCPeerConnection({ iceServers: [{ urls: [] }] }), { name: 'SyntaxError' });
});

test('setConfiguration cannot change bundlePolicy or rtcpMuxPolicy ("setConfiguration rules")', () => {
  const pc = new win.RTCPeerConnection({ bundlePolicy: 'balanced' });
  pc.setConfiguration({ bundlePolicy: 'balanced' });
  assert.throws(() => pc.setConfiguration({ bundlePolicy: 'max-compat' }), { name: 'InvalidModificationError' });
  assert.equal(pc.getConfiguration().bundlePolicy, 'balanced');
  pc.close();
  assert.throws(() => pc.setConfiguration({}), { name: 'InvalidStateError' });
});

test('restartIce before the first negotiation sends nothing and fires no negotiationneeded; a no-op when closed ("restartIce", "closed connection")', async () => {
  const pc = new win.RTCPeerConnection();
  await bridge.waitFor((m) => m.method === 'pc.create' && m.params.pc === pc.vdimediaId);
  const before = bridge.received.length;
  let nn = 0;
  pc.onnegotiationneeded = () => { nn += 1; };
  assert.equal(pc.restartIce(), undefined);
  await tick();
  assert.deepEqual(bridge.received.slice(before).filter((m) => m.params?.pc === pc.vdimediaId).map((m) => m.method), []);
  assert.equal(nn, 0);
  pc.close();
  assert.doesNotThrow(() => pc.restartIce());
});

test('getSenders/getReceivers still list the stopped ones after close ("close() effects")', async () => {
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const sender = pc.addTrack(stream.getTracks()[0], stream);
  await tick();
  pc.close();
  assert.deepEqual(pc.getSenders(), [sender]);
  assert.equal(pc.getReceivers().length, 1);
  assert.equal(pc.getTransceivers()[0].stopped, true);
});

test('getStats: a native track selector is InvalidAccessError, closed resolves ("getStats with a track selector")', async () => {
  const saved = globalThis.MediaStreamTrack;
  class NativeTrack {}
  globalThis.MediaStreamTrack = NativeTrack;
  try {
    const pc = new win.RTCPeerConnection();
    await assert.rejects(pc.getStats(new NativeTrack()), { name: 'InvalidAccessError' });
    await assert.rejects(pc.getStats({ kind: 'audio' }), TypeError);
    pc.close();
    const report = await pc.getStats();
    assert.ok(report instanceof VdiMedia.RTCStatsReport);
    assert.equal(report.size, 0);
  } finally {
    if (saved === undefined) delete globalThis.MediaStreamTrack;
    else globalThis.MediaStreamTrack = saved;
  }
});

test('addIceCandidate with only sdpMid sends the m-line index of the remote description ("addIceCandidate errors")', async () => {
  const pc = new win.RTCPeerConnection();
  await pc.setRemoteDescription({ type: 'offer', sdp: OFFER_SDP });
  await pc.addIceCandidate({ candidate: CANDIDATE, sdpMid: '0' });
  const req = bridge.requests('pc.addIceCandidate').at(-1);
  assert.deepEqual(req.params.candidate, { candidate: CANDIDATE, sdpMid: '0', sdpMLineIndex: 0 });
  // An unknown mid is left to the engine (OperationError there), not guessed.
  await pc.addIceCandidate({ candidate: CANDIDATE, sdpMid: 'nope' }).catch(() => {});
  const req2 = bridge.requests('pc.addIceCandidate').at(-1);
  assert.deepEqual(req2.params.candidate, { candidate: CANDIDATE, sdpMid: 'nope', sdpMLineIndex: null });
  pc.close();
});

test('setLocalDescription: edits are allowed, a changed fingerprint or an answer never created is not ("modified local offer", "wrong-state errors")', async () => {
  const pc = new win.RTCPeerConnection();
  const offer = await pc.createOffer();
  const munged = offer.sdp.replace('a=ice-options:trickle\r\n', '') + 'a=fingerprint:sha-256 00:11:22\r\n';
  await assert.rejects(pc.setLocalDescription({ type: 'offer', sdp: munged }), { name: 'InvalidModificationError' });
  assert.equal(pc.signalingState, 'stable');
  // SIP stacks edit created descriptions (codecs, attributes): that stays allowed.
  await pc.setLocalDescription({ type: 'offer', sdp: offer.sdp.replace('a=ice-options:trickle\r\n', '') });
  assert.equal(pc.signalingState, 'have-local-offer');
  pc.close();
  const pc2 = new win.RTCPeerConnection();
  await assert.rejects(pc2.setLocalDescription({ type: 'answer', sdp: offer.sdp }), { name: 'InvalidModificationError' });
  pc2.close();
});

test('enumerateDevices entries are instanceof MediaDeviceInfo ("enumerateDevices shape")', async () => {
  // The endpoint's audio devices (the VDA's own cameras come from the native API, untouched).
  const devices = (await win.navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind.startsWith('audio'));
  assert.ok(devices.length > 0);
  for (const d of devices) assert.ok(d instanceof win.MediaDeviceInfo, JSON.stringify(d));
});
