// Channel away and back (docs/protocol.md, "Bridge ↔ page": `resuming`): objects are kept,
// a pending request still settles, events sent after resumption reach the same objects; a
// final channel_lost after a suspension ends them as before.
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

const UP = { type: 'status', redirected: true, version: 1, engine: 'vdimediad/0.1.0', os: 'linux', arch: 'x86_64', capabilities: { codecs: ['opus'] } };
const AWAY = { type: 'status', redirected: false, reason: 'channel_lost', resuming: true, grace_ms: 30000, message: 'virtual channel away' };

async function setup(handlers) {
  bridge = await startBridge({ handlers });
  const win = fakeWindow();
  const changes = [];
  await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket, onStatusChange: (s) => changes.push(s) });
  assert.equal(VdiMedia.status().redirected, true);
  return { win, changes };
}

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

test('resuming keeps objects; resumed status continues them', async () => {
  let offerCtx;
  const { win, changes } = await setup({ 'pc.createOffer': (_p, ctx) => { offerCtx = ctx; return undefined; } });
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const [track] = stream.getTracks();
  const log = [];
  pc.onconnectionstatechange = () => log.push(`connection:${pc.connectionState}`);
  track.onended = () => log.push('track:ended');
  const offer = pc.createOffer();
  const req = await bridge.waitFor((m) => m.method === 'pc.createOffer');

  bridge.broadcast(AWAY);
  await tick();
  let st = VdiMedia.status();
  assert.equal(st.redirected, false);
  assert.equal(st.reason, 'channel_lost');
  assert.equal(st.resuming, true);
  assert.equal(st.grace_ms, 30000);
  assert.equal(track.readyState, 'live');
  assert.notEqual(pc.connectionState, 'failed');
  assert.deepEqual(log, []);
  // The natives are not restored: the page's objects are still the remoted ones.
  assert.equal(win.RTCPeerConnection, VdiMedia.RTCPeerConnection);
  // install() while suspended does not start a second session.
  assert.equal((await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket })).resuming, true);

  bridge.broadcast({ ...UP, resumed: true });
  await tick();
  st = VdiMedia.status();
  assert.equal(st.redirected, true);
  assert.equal(st.resumed, true);
  // The pending request is answered after resumption (the engine queued it), and an event
  // from the time away reaches the same object.
  offerCtx.ws.send(JSON.stringify({ type: 'response', id: req.id, result: { type: 'offer', sdp: 'v=0\r\n' } }));
  offerCtx.ws.send(JSON.stringify({ type: 'event', event: 'pc.connectionstatechange', params: { pc: pc._id, state: 'connecting' } }));
  assert.equal((await offer).type, 'offer');
  await tick();
  assert.deepEqual(log, ['connection:connecting']);
  assert.deepEqual(changes.map((c) => [c.redirected, c.resuming ?? false, c.resumed ?? false]), [
    [true, false, false],
    [false, true, false],
    [true, false, true],
  ]);
  pc.close();
});

test('final channel_lost after a suspension ends the objects', async () => {
  const { win } = await setup();
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const [track] = stream.getTracks();
  bridge.broadcast(AWAY);
  await tick();
  assert.equal(track.readyState, 'live');
  bridge.broadcast({ type: 'status', redirected: false, reason: 'channel_lost', message: 'vdimediad no longer has the session; calls ended' });
  await tick();
  const st = VdiMedia.status();
  assert.equal(st.redirected, false);
  assert.equal(st.resuming, undefined);
  assert.match(st.message, /calls ended/);
  assert.equal(pc.connectionState, 'failed');
  assert.equal(track.readyState, 'ended');
  assert.equal(win.RTCPeerConnection, win.natives.RTCPeerConnection);
});
