// Playout: assigning a remoted stream to a media element plays it on the endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as VdiMedia from '../dist/vdimedia.mjs';
import { ANSWER_SDP, redirectedPage } from './fake-bridge.mjs';

let bridge;
let win;
redirectedPage({}, (p) => ({ bridge, win } = p));

async function remoteStream() {
  const pc = new win.RTCPeerConnection();
  const got = new Promise((r) => { pc.ontrack = (e) => r(e); });
  await pc.setLocalDescription(await pc.createOffer());
  await pc.setRemoteDescription({ type: 'answer', sdp: ANSWER_SDP });
  const ev = await got;
  return { pc, stream: ev.streams[0], track: ev.track };
}

test('srcObject = remoted stream sends playout.attach; the getter returns the stream', async () => {
  const { pc, stream, track } = await remoteStream();
  const audio = new win.HTMLAudioElement();
  await audio.setSinkId('spk-1');
  assert.equal(audio.sinkId, 'spk-1');
  audio.srcObject = stream;
  assert.equal(audio.srcObject, stream);
  // The native element plays nothing.
  assert.equal(audio._nativeSrc, null);
  const attach = await bridge.waitFor((m) => m.method === 'playout.attach');
  assert.deepEqual(attach.params, { element: attach.params.element, stream: 'far-stream', tracks: [track.id], sinkId: 'spk-1' });
  assert.match(attach.params.element, /^el\d+$/);
  // play() resolves: playout already runs on the endpoint.
  await audio.play();
  assert.equal(audio._nativePlayCalls, undefined);

  await audio.setSinkId('default');
  const sink = await bridge.waitFor((m) => m.method === 'playout.setSinkId');
  assert.deepEqual(sink.params, { element: attach.params.element, sinkId: 'default' });

  audio.srcObject = null;
  assert.equal(audio.srcObject, null);
  const detach = await bridge.waitFor((m) => m.method === 'playout.detach');
  assert.deepEqual(detach.params, { element: attach.params.element });
  pc.close();
});

test('a page-built MediaStream of remote tracks is attached with its tracks (SIP.js style)', async () => {
  const { pc, track } = await remoteStream();
  const mine = new win.MediaStream();
  assert.ok(mine instanceof VdiMedia.MediaStream);
  const audio = new win.HTMLAudioElement();
  audio.srcObject = mine;
  mine.addTrack(track);
  await bridge.waitFor((m) => m.method === 'playout.attach' && m.params.stream === mine.id && m.params.tracks.length === 1);
  // Assigning a native stream detaches and goes native.
  const native = new win.MediaStream([new win.MediaStreamTrack('video')]);
  const before = bridge.requests('playout.detach').length;
  audio.srcObject = native;
  assert.equal(audio.srcObject, native);
  assert.equal(audio._nativeSrc, native);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(bridge.requests('playout.detach').length, before + 1);
  pc.close();
});

test('native streams never touch the bridge', async () => {
  // Let earlier tests' requests (pc.close) arrive first.
  await new Promise((r) => setTimeout(r, 30));
  const before = bridge.received.length;
  const audio = new win.HTMLAudioElement();
  const native = new win.MediaStream([new win.MediaStreamTrack('video')]);
  audio.srcObject = native;
  assert.equal(audio.srcObject, native);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(bridge.received.length, before);
});
