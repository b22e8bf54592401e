// MediaStreamTrack.applyConstraints (issue 4, `track.applyConstraints`) and
// RTCRtpTransceiver.stop() (issue 6, `pc.stopTransceiver`) against the fake bridge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ANSWER_SDP, redirectedPage } from './fake-bridge.mjs';

let bridge;
let win;
redirectedPage({}, (p) => ({ bridge, win } = p));

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

test('applyConstraints changes the settings of the track and its clones', async () => {
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const [track] = stream.getTracks();
  const clone = track.clone();
  assert.equal(track.getSettings().deviceId, 'mic-1');
  assert.deepEqual(track.getCapabilities().sampleRate, { min: 8000, max: 96000 });

  await track.applyConstraints({ deviceId: { exact: 'mic-2' }, echoCancellation: false });
  const req = await bridge.waitFor((m) => m.method === 'track.applyConstraints');
  assert.deepEqual(req.params, { track: track.id, constraints: { deviceId: { exact: 'mic-2' }, echoCancellation: false } });
  assert.equal(track.getSettings().deviceId, 'mic-2');
  assert.equal(track.getSettings().echoCancellation, false);
  assert.equal(track.label, 'Second Mic');
  assert.equal(clone.getSettings().deviceId, 'mic-2', 'a clone shares the engine track');
  assert.deepEqual(track.getConstraints(), { deviceId: { exact: 'mic-2' }, echoCancellation: false });

  // Impossible: OverconstrainedError naming the constraint, nothing changes.
  await assert.rejects(track.applyConstraints({ sampleRate: { exact: 192000 } }), (e) => {
    assert.equal(e.name, 'OverconstrainedError');
    assert.equal(e.constraint, 'sampleRate');
    return true;
  });
  assert.equal(track.getSettings().deviceId, 'mic-2');
  assert.deepEqual(track.getConstraints(), { deviceId: { exact: 'mic-2' }, echoCancellation: false });

  // No argument: the defaults.
  await track.applyConstraints();
  const last = bridge.requests('track.applyConstraints').at(-1);
  assert.deepEqual(last.params.constraints, {});
  assert.equal(track.getSettings().echoCancellation, true);
  assert.deepEqual(track.getConstraints(), {});

  await assert.rejects(track.applyConstraints('loud'), { name: 'TypeError' });
  track.stop();
  clone.stop();
  await assert.rejects(track.applyConstraints({}), { name: 'InvalidStateError' });
});

test('transceiver.stop(): direction stopped at once, track ended, negotiationneeded, currentDirection after the answer', async () => {
  const pc = new win.RTCPeerConnection();
  const t = pc.addTransceiver('audio');
  let nn = 0;
  pc.onnegotiationneeded = () => { nn += 1; };
  await pc.setLocalDescription(await pc.createOffer());
  await pc.setRemoteDescription({ type: 'answer', sdp: ANSWER_SDP });
  assert.equal(t.currentDirection, 'sendrecv');
  const track = t.receiver.track;
  let ended = 0;
  track.addEventListener('ended', () => { ended += 1; });

  assert.equal(t.stop(), undefined);
  assert.equal(t.direction, 'stopped');
  assert.equal(t.currentDirection, 'sendrecv', 'currentDirection changes only when negotiated');
  assert.equal(track.readyState, 'live', 'the track ends from a task, as in Chromium');
  await tick(5);
  assert.equal(track.readyState, 'ended');
  assert.equal(ended, 1);
  assert.deepEqual(pc.getTransceivers(), [t], 'listed until the stop is negotiated');
  assert.throws(() => { t.direction = 'sendrecv'; }, { name: 'InvalidStateError' });
  await assert.rejects(t.sender.replaceTrack(null), { name: 'InvalidStateError' });
  t.stop(); // idempotent: one request
  const req = await bridge.waitFor((m) => m.method === 'pc.stopTransceiver' && m.params.pc === pc.vdimediaId);
  assert.deepEqual(req.params, { pc: pc.vdimediaId, transceiver: t._id });
  await tick();
  assert.equal(bridge.requests('pc.stopTransceiver').filter((m) => m.params.pc === pc.vdimediaId).length, 1);
  assert.equal(nn, 1, 'the engine fires negotiationneeded');
  assert.equal(t.direction, 'stopped', 'the engine answer keeps it stopped');

  await pc.setLocalDescription(await pc.createOffer());
  await pc.setRemoteDescription({ type: 'answer', sdp: ANSWER_SDP });
  assert.equal(t.currentDirection, 'stopped');
  assert.equal(t.direction, 'stopped');
  assert.deepEqual(pc.getTransceivers(), [], 'a stopped transceiver leaves the connection');
  assert.deepEqual(pc.getSenders(), []);
  pc.close();
  assert.throws(() => t.stop(), { name: 'InvalidStateError' });
});
