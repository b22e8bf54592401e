// RTCPeerConnection remoting: offer/answer, events and their order, errors, closed state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as VdiMedia from '../dist/vdimedia.mjs';
import { ANSWER_SDP, CANDIDATE, OFFER_SDP, redirectedPage } from './fake-bridge.mjs';

let bridge;
let win;
redirectedPage({}, (p) => ({ bridge, win } = p));

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

/** Records every event of a pc as "type:value" in order. */
function record(pc) {
  const log = [];
  pc.onsignalingstatechange = () => log.push(`signaling:${pc.signalingState}`);
  pc.onicegatheringstatechange = () => log.push(`gathering:${pc.iceGatheringState}`);
  pc.addEventListener('iceconnectionstatechange', () => log.push(`ice:${pc.iceConnectionState}`));
  pc.onconnectionstatechange = () => log.push(`connection:${pc.connectionState}`);
  pc.onicecandidate = (e) => log.push(`candidate:${e.candidate ? e.candidate.type : 'null'}`);
  pc.onnegotiationneeded = () => log.push('negotiationneeded');
  pc.ontrack = (e) => log.push(`track:${e.track.id}`);
  return log;
}

test('offerer flow: states update before events, events in engine order', async () => {
  const pc = new win.RTCPeerConnection({ iceServers: [{ urls: 'stun:127.0.0.1:3478' }] });
  assert.ok(pc instanceof EventTarget);
  const create = await bridge.waitFor((m) => m.method === 'pc.create');
  assert.match(create.params.pc, /^pc\d+$/);
  assert.deepEqual(create.params.configuration, { iceServers: [{ urls: 'stun:127.0.0.1:3478' }], iceTransportPolicy: 'all', bundlePolicy: 'balanced' });
  assert.equal(pc.signalingState, 'stable');
  assert.equal(pc.localDescription, null);
  assert.equal(pc.canTrickleIceCandidates, null);
  const log = record(pc);

  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const [track] = stream.getTracks();
  const sender = pc.addTrack(track, stream);
  assert.equal(sender.track, track);
  assert.equal(pc.getSenders()[0], sender);
  assert.throws(() => pc.addTrack(track, stream), { name: 'InvalidAccessError' });
  const addTrack = await bridge.waitFor((m) => m.method === 'pc.addTrack');
  assert.deepEqual(addTrack.params, { pc: pc.vdimediaId, track: track.id, streams: [stream.id] });

  const offer = await pc.createOffer();
  assert.ok(offer instanceof VdiMedia.RTCSessionDescription);
  assert.equal(offer.type, 'offer');
  assert.equal(offer.sdp, OFFER_SDP);
  assert.deepEqual(JSON.parse(JSON.stringify(offer)), { type: 'offer', sdp: OFFER_SDP });

  let stateAtEvent;
  pc.addEventListener('signalingstatechange', () => { stateAtEvent = pc.signalingState; }, { once: true });
  await pc.setLocalDescription(offer);
  assert.equal(stateAtEvent, 'have-local-offer');
  assert.equal(pc.signalingState, 'have-local-offer');
  // Node's ws may deliver the trickled candidate before this continuation runs.
  assert.ok(pc.pendingLocalDescription.sdp.startsWith(OFFER_SDP));
  assert.equal(pc.currentLocalDescription, null);
  const [tr] = pc.getTransceivers();
  assert.equal(tr.mid, '0');
  assert.equal(tr.sender, sender);
  assert.equal(sender._id, 's-t1');

  await tick();
  // Gathered candidates appear in localDescription as in a browser.
  assert.equal(pc.iceGatheringState, 'complete');
  assert.ok(pc.localDescription.sdp.includes(`a=${CANDIDATE}\r\n`));
  assert.ok(pc.localDescription.sdp.indexOf('a=candidate') > pc.localDescription.sdp.indexOf('m=audio'));

  await pc.setRemoteDescription({ type: 'answer', sdp: ANSWER_SDP });
  assert.equal(pc.signalingState, 'stable');
  assert.equal(pc.currentRemoteDescription.sdp, ANSWER_SDP);
  assert.equal(pc.canTrickleIceCandidates, true);
  await pc.addIceCandidate({ candidate: CANDIDATE, sdpMid: '0', sdpMLineIndex: 0 });
  await pc.addIceCandidate(null);
  const ends = bridge.requests('pc.addIceCandidate');
  assert.deepEqual(ends[0].params.candidate, { candidate: CANDIDATE, sdpMid: '0', sdpMLineIndex: 0 });
  assert.equal(ends[1].params.candidate, undefined);
  await tick();

  assert.deepEqual(log, [
    'negotiationneeded',
    'signaling:have-local-offer',
    'gathering:gathering',
    'candidate:host',
    'gathering:complete',
    'candidate:null',
    'signaling:stable',
    'track:rt-' + pc.vdimediaId + '-1',
    'ice:checking',
    'connection:connecting',
    'ice:connected',
    'connection:connected',
  ]);
  assert.equal(pc.iceConnectionState, 'connected');
  assert.equal(pc.connectionState, 'connected');
  pc.close();
});

test('answerer flow with implicit setLocalDescription and the track event', async () => {
  const pc = new VdiMedia.RTCPeerConnection();
  const tracks = [];
  pc.ontrack = (e) => tracks.push(e);
  await pc.setRemoteDescription(new VdiMedia.RTCSessionDescription({ type: 'offer', sdp: OFFER_SDP }));
  assert.equal(pc.signalingState, 'have-remote-offer');
  assert.equal(tracks.length, 1);
  const ev = tracks[0];
  assert.ok(ev instanceof VdiMedia.RTCTrackEvent);
  assert.equal(ev.track.kind, 'audio');
  assert.equal(ev.receiver.track, ev.track);
  assert.equal(ev.transceiver.receiver, ev.receiver);
  assert.equal(ev.streams.length, 1);
  assert.equal(ev.streams[0].id, 'far-stream');
  assert.equal(ev.streams[0].getTracks()[0], ev.track);
  assert.equal(pc.getReceivers()[0].track, ev.track);

  await pc.setLocalDescription();
  const sld = bridge.requests('pc.setLocalDescription').at(-1);
  assert.deepEqual(sld.params, { pc: pc.vdimediaId });
  assert.equal(pc.signalingState, 'stable');
  assert.equal(pc.localDescription.type, 'answer');
  pc.close();
});

test('legacy callback overloads', async () => {
  const pc = new VdiMedia.RTCPeerConnection();
  const offer = await new Promise((resolve, reject) => {
    const ret = pc.createOffer(resolve, reject, { offerToReceiveAudio: true });
    assert.ok(ret instanceof Promise);
  });
  assert.equal(offer.type, 'offer');
  assert.deepEqual(bridge.requests('pc.createOffer').at(-1).params.options, { offerToReceiveAudio: true });
  await new Promise((resolve, reject) => pc.setLocalDescription(offer, resolve, reject));
  assert.equal(pc.signalingState, 'have-local-offer');
  const err = await new Promise((resolve) => pc.createAnswer(() => resolve(null), resolve));
  assert.equal(err.name, 'InvalidStateError');
  pc.close();
});

test('an error response rejects with a DOMException of that name', async () => {
  const pc = new VdiMedia.RTCPeerConnection();
  await assert.rejects(pc.setRemoteDescription({ type: 'answer', sdp: ANSWER_SDP }), (e) => {
    assert.ok(e instanceof DOMException);
    assert.equal(e.name, 'InvalidStateError');
    assert.match(e.message, /cannot set remote answer/);
    return true;
  });
  await assert.rejects(pc.setRemoteDescription({ type: 'offer', sdp: 'garbage' }), { name: 'OperationError' });
  await assert.rejects(pc.setRemoteDescription({ type: 'bogus', sdp: '' }), TypeError);
  await assert.rejects(pc.addIceCandidate({ candidate: CANDIDATE }), TypeError);
  // The chain goes on after failures.
  const offer = await pc.createOffer();
  assert.equal(offer.type, 'offer');
  pc.close();
});

test('a closed connection rejects locally with InvalidStateError and fires nothing', async () => {
  const pc = new VdiMedia.RTCPeerConnection();
  const log = record(pc);
  await pc.createOffer();
  pc.close();
  assert.equal(pc.signalingState, 'closed');
  assert.equal(pc.connectionState, 'closed');
  assert.equal(pc.iceConnectionState, 'closed');
  const before = bridge.received.length;
  await assert.rejects(pc.createOffer(), { name: 'InvalidStateError' });
  await assert.rejects(pc.setLocalDescription({ type: 'offer', sdp: OFFER_SDP }), { name: 'InvalidStateError' });
  await assert.rejects(pc.addIceCandidate(null), { name: 'InvalidStateError' });
  assert.equal((await pc.getStats()).size, 0, 'getStats resolves (empty) when closed, as in Chromium');
  assert.throws(() => pc.addTransceiver('audio'), { name: 'InvalidStateError' });
  await bridge.waitFor((m) => m.method === 'pc.close' && m.params.pc === pc.vdimediaId);
  await tick();
  // Only pc.close went out after close().
  assert.deepEqual(bridge.received.slice(before).map((m) => m.method), ['pc.close']);
  // Engine events for a closed connection are dropped.
  bridge.broadcast({ type: 'event', event: 'pc.connectionstatechange', params: { pc: pc.vdimediaId, state: 'failed' } });
  await tick();
  assert.equal(pc.connectionState, 'closed');
  assert.deepEqual(log, []);
});

test('getStats returns a Map-like RTCStatsReport', async () => {
  const pc = new VdiMedia.RTCPeerConnection();
  const report = await pc.getStats();
  assert.equal(report.size, 2);
  assert.equal(report.get('IT01').type, 'inbound-rtp');
  assert.deepEqual([...report.keys()], ['OT01', 'IT01']);
  const types = [];
  report.forEach((s) => types.push(s.type));
  assert.deepEqual(types, ['outbound-rtp', 'inbound-rtp']);
  assert.deepEqual([...report].map(([k]) => k), ['OT01', 'IT01']);
  pc.close();
});

test('addTransceiver, removeTrack, replaceTrack and the direction setter are remoted', async () => {
  const pc = new VdiMedia.RTCPeerConnection();
  const t = pc.addTransceiver('audio', { direction: 'recvonly' });
  assert.equal(t.direction, 'recvonly');
  assert.equal(t.receiver.track.kind, 'audio');
  const placeholder = t.receiver.track;
  const req = await bridge.waitFor((m) => m.method === 'pc.addTransceiver' && m.params.pc === pc.vdimediaId);
  assert.deepEqual(req.params, { pc: pc.vdimediaId, kind: 'audio', init: { direction: 'recvonly', streams: [] } });
  await pc.createOffer();
  // The engine named the receiver's track; the object stays the same.
  assert.equal(t.receiver.track, placeholder);
  assert.equal(placeholder.id, `rt-${pc.vdimediaId}-1`);
  assert.throws(() => pc.addTransceiver('data'), TypeError);

  const stream = await VdiMedia.status() && (await win.navigator.mediaDevices.getUserMedia({ audio: true }));
  const sender = pc.addTrack(stream.getTracks()[0]);
  const first = stream.getTracks()[0];
  const [second] = (await win.navigator.mediaDevices.getUserMedia({ audio: true })).getTracks();
  await sender.replaceTrack(second);
  assert.equal(sender.track, second);
  const rt = bridge.requests('pc.replaceTrack').at(-1);
  assert.deepEqual(rt.params, { pc: pc.vdimediaId, sender: sender._id, track: second._remoteId });
  await sender.replaceTrack(null);
  assert.equal(sender.track, null);
  assert.equal(bridge.requests('pc.replaceTrack').at(-1).params.track, null);
  await assert.rejects(sender.replaceTrack({ kind: 'audio' }), TypeError);
  await sender.replaceTrack(first);
  assert.equal(sender.getParameters().encodings.length, 1);

  // The direction setter: the page sees the value at once, the engine gets pc.setDirection
  // and answers with negotiationneeded.
  const st = pc.getTransceivers().find((x) => x.sender === sender);
  const nn = new Promise((resolve) => pc.addEventListener('negotiationneeded', resolve, { once: true }));
  st.direction = 'sendonly';
  assert.equal(st.direction, 'sendonly');
  const sd = await bridge.waitFor((m) => m.method === 'pc.setDirection' && m.params.pc === pc.vdimediaId);
  assert.deepEqual(sd.params, { pc: pc.vdimediaId, transceiver: st._id, direction: 'sendonly' });
  await nn;
  assert.equal(st.direction, 'sendonly');
  assert.throws(() => { st.direction = 'stopped'; }, TypeError);
  assert.throws(() => { st.direction = 'bogus'; }, TypeError);

  // removeTrack: sendonly → inactive in the page at once (WebRTC 1.0 §5.1 step 11).
  pc.removeTrack(sender);
  assert.equal(sender.track, null);
  assert.equal(st.direction, 'inactive');
  const rm = await bridge.waitFor((m) => m.method === 'pc.removeTrack' && m.params.pc === pc.vdimediaId);
  assert.equal(rm.params.sender, sender._id);
  assert.ok(rm.params.sender);
  // setCodecPreferences: checked against the capabilities synchronously, then remoted.
  const caps = VdiMedia.RTCRtpReceiver.getCapabilities('audio').codecs;
  st.setCodecPreferences(caps.filter((c) => c.mimeType === 'audio/PCMU'));
  const cp = await bridge.waitFor((m) => m.method === 'pc.setCodecPreferences' && m.params.pc === pc.vdimediaId);
  assert.deepEqual(cp.params, { pc: pc.vdimediaId, transceiver: st._id, codecs: [{ mimeType: 'audio/PCMU', clockRate: 8000 }] });
  assert.throws(() => st.setCodecPreferences([{ mimeType: 'audio/bogus', clockRate: 1234 }]), { name: 'InvalidModificationError' });
  assert.throws(() => st.setCodecPreferences(null), TypeError);
  pc.close();
  assert.throws(() => { st.direction = 'sendrecv'; }, { name: 'InvalidStateError' });
  await assert.rejects(sender.replaceTrack(null), { name: 'InvalidStateError' });
});

test('configuration is validated as the spec says', () => {
  assert.throws(() => new VdiMedia.RTCPeerConnection({ iceServers: [{ urls: 'http://x' }] }), { name: 'SyntaxError' });
  assert.throws(() => new VdiMedia.RTCPeerConnection({ iceServers: [{ urls: 'turn:127.0.0.1' }] }), { name: 'InvalidAccessError' });
  assert.throws(() => new VdiMedia.RTCPeerConnection({ bundlePolicy: 'all' }), TypeError);
  const pc = new VdiMedia.RTCPeerConnection({ iceServers: [{ url: 'turn:127.0.0.1', username: 'u', credential: 'p' }], bundlePolicy: 'max-bundle' });
  assert.deepEqual(pc.getConfiguration().iceServers, [{ urls: ['turn:127.0.0.1'], username: 'u', credential: 'p' }]);
  assert.equal(pc.getConfiguration().bundlePolicy, 'max-bundle');
  pc.close();
});

test('RTCIceCandidate parses candidate fields like Chromium', () => {
  const c = new VdiMedia.RTCIceCandidate({
    candidate: 'candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 10.0.0.2 rport 46154 generation 0 ufrag abcd network-cost 999',
    sdpMid: '0',
    sdpMLineIndex: 0,
  });
  assert.equal(c.foundation, '842163049');
  assert.equal(c.component, 'rtp');
  assert.equal(c.protocol, 'udp');
  assert.equal(c.priority, 1677729535);
  assert.equal(c.address, '203.0.113.7');
  assert.equal(c.port, 46154);
  assert.equal(c.type, 'srflx');
  assert.equal(c.relatedAddress, '10.0.0.2');
  assert.equal(c.relatedPort, 46154);
  assert.equal(c.usernameFragment, 'abcd');
  assert.deepEqual(c.toJSON(), { candidate: c.candidate, sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'abcd' });
  const tcp = new VdiMedia.RTCIceCandidate({ candidate: 'candidate:2 1 TCP 1518280447 192.0.2.1 9 typ host tcptype active', sdpMLineIndex: 0 });
  assert.equal(tcp.protocol, 'tcp');
  assert.equal(tcp.tcpType, 'active');
  assert.throws(() => new VdiMedia.RTCIceCandidate({ candidate: 'candidate:1 1 udp 1 1.2.3.4 1 typ host' }), TypeError);
  const bad = new VdiMedia.RTCIceCandidate({ candidate: 'nonsense', sdpMid: '0' });
  assert.equal(bad.address, null);
});
