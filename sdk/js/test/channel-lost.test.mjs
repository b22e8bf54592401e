// Channel loss: status changes, pending requests reject, connections fail, natives return.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import * as VdiMedia from '../dist/vdimedia.mjs';
import { fakeWindow, startBridge } from './fake-bridge.mjs';

let bridge;
afterEach(async () => {
  VdiMedia.uninstall();
  await bridge?.close();
});

async function setup(handlers) {
  bridge = await startBridge({ handlers });
  const win = fakeWindow();
  const changes = [];
  await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket, onStatusChange: (s) => changes.push(s) });
  assert.equal(VdiMedia.status().redirected, true);
  return { win, changes };
}

for (const how of ['socket drop', 'status channel_lost']) {
  test(`channel lost (${how}): status, pending rejects, pc failed with events, natives restored`, async () => {
    // createOffer never answers, so it is pending when the channel goes.
    const { win, changes } = await setup({ 'pc.createOffer': () => undefined });
    const pc = new win.RTCPeerConnection();
    const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
    const [track] = stream.getTracks();
    const log = [];
    pc.oniceconnectionstatechange = () => log.push(`ice:${pc.iceConnectionState}`);
    pc.onconnectionstatechange = () => log.push(`connection:${pc.connectionState}`);
    track.onended = () => log.push('track:ended');
    const offer = pc.createOffer();
    await bridge.waitFor((m) => m.method === 'pc.createOffer');
    const lost = new Promise((r) => {
      const t = setInterval(() => {
        if (!VdiMedia.status().redirected) {
          clearInterval(t);
          r();
        }
      }, 5);
    });
    if (how === 'socket drop') bridge.dropAll();
    else bridge.broadcast({ type: 'status', redirected: false, reason: 'channel_lost', message: 'virtual channel closed' });
    await lost;

    await assert.rejects(offer, (e) => e instanceof DOMException && e.name === 'OperationError');
    const st = VdiMedia.status();
    assert.equal(st.redirected, false);
    assert.equal(st.reason, 'channel_lost');
    if (how !== 'socket drop') assert.equal(st.message, 'virtual channel closed');
    assert.equal(changes.length, 2);
    assert.deepEqual(changes[1], st);
    assert.equal(pc.iceConnectionState, 'failed');
    assert.equal(pc.connectionState, 'failed');
    assert.equal(track.readyState, 'ended');
    assert.deepEqual(log, ['ice:failed', 'connection:failed', 'track:ended']);
    await assert.rejects(pc.createOffer(), { name: 'InvalidStateError' });
    pc.close();
    assert.equal(pc.signalingState, 'closed');
    // The page's next call runs natively.
    assert.equal(win.RTCPeerConnection, win.natives.RTCPeerConnection);
    assert.equal(win.navigator.mediaDevices.getUserMedia, win.natives.getUserMedia);
    assert.throws(() => new VdiMedia.RTCPeerConnection(), { name: 'InvalidStateError' });
  });
}

test('install again after a loss redirects again', async () => {
  const { win } = await setup();
  bridge.dropAll();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(VdiMedia.status().reason, 'channel_lost');
  const st = await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket });
  assert.equal(st.redirected, true);
  assert.equal(win.RTCPeerConnection, VdiMedia.RTCPeerConnection);
  const pc = new win.RTCPeerConnection();
  assert.equal((await pc.createOffer()).type, 'offer');
  pc.close();
});
