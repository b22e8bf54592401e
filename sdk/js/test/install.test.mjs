// install()/uninstall()/status(): redirection replaces the globals, every failure leaves the
// natives in place and reports why.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { WebSocket } from 'ws';
import * as VdiMedia from '../dist/vdimedia.mjs';
import { fakeWindow, startBridge } from './fake-bridge.mjs';

let bridge;
afterEach(async () => {
  VdiMedia.uninstall();
  await bridge?.close();
  bridge = undefined;
});

function assertNative(win) {
  assert.equal(win.RTCPeerConnection, win.natives.RTCPeerConnection);
  assert.equal(win.RTCSessionDescription, win.natives.RTCSessionDescription);
  assert.equal(win.RTCIceCandidate, win.natives.RTCIceCandidate);
  assert.equal(win.MediaStream, win.natives.MediaStream);
  assert.equal(win.navigator.mediaDevices.getUserMedia, win.natives.getUserMedia);
  assert.equal(win.navigator.mediaDevices.enumerateDevices, win.natives.enumerateDevices);
  assert.deepEqual(Object.getOwnPropertyDescriptor(win.HTMLMediaElement.prototype, 'srcObject'), win.natives.srcObject);
  assert.equal(win.HTMLMediaElement.prototype.setSinkId, win.natives.setSinkId);
}

test('redirected:true sends hello and replaces the globals; uninstall restores them', async () => {
  bridge = await startBridge();
  const win = fakeWindow();
  const changes = [];
  const st = await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket, onStatusChange: (s) => changes.push(s) });
  assert.equal(st.redirected, true);
  assert.equal(st.engine, 'vdimediad/0.1.0');
  assert.deepEqual(st.capabilities.codecs, ['opus', 'PCMU']);
  assert.deepEqual(VdiMedia.status(), st);
  assert.deepEqual(changes, [st]);

  const hello = bridge.received[0];
  assert.deepEqual(hello, { type: 'hello', sdk: VdiMedia.VERSION, min_version: 1, max_version: 1 });

  assert.equal(win.RTCPeerConnection, VdiMedia.RTCPeerConnection);
  assert.equal(win.RTCSessionDescription, VdiMedia.RTCSessionDescription);
  assert.equal(win.RTCIceCandidate, VdiMedia.RTCIceCandidate);
  assert.notEqual(win.navigator.mediaDevices.getUserMedia, win.natives.getUserMedia);

  // enumerateDevices answers from the endpoint (plus the VDA's cameras, which stay native).
  const devices = await win.navigator.mediaDevices.enumerateDevices();
  assert.deepEqual(
    devices.map((d) => [d.kind, d.deviceId]),
    [['audioinput', 'default'], ['audioinput', 'mic-1'], ['audiooutput', 'spk-1'], ['videoinput', 'vda-cam']],
  );
  assert.deepEqual(JSON.parse(JSON.stringify(devices[1])), { deviceId: 'mic-1', kind: 'audioinput', label: 'USB Headset Mic', groupId: 'g1' });

  // getUserMedia gives a remoted stream; native MediaStream use keeps working.
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true } });
  const [track] = stream.getAudioTracks();
  assert.equal(stream.id, 'ms1');
  assert.equal(track.id, 'lt1');
  assert.equal(track.getSettings().sampleRate, 48000);
  assert.deepEqual(track.getConstraints(), { echoCancellation: true });
  assert.ok(stream instanceof win.MediaStream);
  assert.ok(track instanceof win.MediaStreamTrack);
  const wrapped = new win.MediaStream([track]);
  assert.ok(wrapped instanceof VdiMedia.MediaStream);
  assert.equal(wrapped.getTracks()[0], track);
  const nativeTrack = new win.MediaStreamTrack('video');
  const nativeStream = new win.MediaStream([nativeTrack]);
  assert.equal(nativeStream.native, true);
  assert.ok(nativeStream instanceof win.MediaStream);

  // Video-only capture stays native.
  assert.deepEqual(await win.navigator.mediaDevices.getUserMedia({ video: true }), { native: true, constraints: { video: true } });
  await assert.rejects(win.navigator.mediaDevices.getUserMedia({}), TypeError);

  track.enabled = false;
  await bridge.waitFor((m) => m.method === 'track.setEnabled');
  track.stop();
  assert.equal(track.readyState, 'ended');
  const stop = await bridge.waitFor((m) => m.method === 'track.stop');
  assert.deepEqual(stop.params, { track: 'lt1' });

  VdiMedia.uninstall();
  assertNative(win);
  assert.equal(VdiMedia.status().redirected, false);
  assert.equal(VdiMedia.status().reason, 'uninstalled');
  assert.throws(() => new VdiMedia.RTCPeerConnection(), { name: 'InvalidStateError' });
});

test('devicechange events come from the engine', async () => {
  bridge = await startBridge();
  const win = fakeWindow();
  await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket });
  const md = win.navigator.mediaDevices;
  const seen = [];
  md.ondevicechange = () => seen.push('handler');
  md.addEventListener('devicechange', () => seen.push('listener'));
  bridge.broadcast({ type: 'event', event: 'devices.change', params: {} });
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(seen, ['handler', 'listener']);
});

test('getUserMedia errors carry the W3C names (OverconstrainedError.constraint)', async () => {
  bridge = await startBridge();
  const win = fakeWindow();
  await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket });
  await assert.rejects(win.navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: 'nope' } } }), (e) => {
    assert.ok(e instanceof DOMException);
    assert.equal(e.name, 'OverconstrainedError');
    assert.equal(e.constraint, 'deviceId');
    assert.equal(e.message, 'no such device');
    return true;
  });
});

test('redirected:false leaves natives and reports the bridge reason', async () => {
  bridge = await startBridge({ status: { type: 'status', redirected: false, reason: 'no_engine', message: 'no vdimediad on the virtual channel' } });
  const win = fakeWindow();
  const changes = [];
  const st = await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket, onStatusChange: (s) => changes.push(s) });
  assert.deepEqual(st, { redirected: false, reason: 'no_engine', message: 'no vdimediad on the virtual channel' });
  assert.deepEqual(changes, [st]);
  assertNative(win);
});

test('an unreachable bridge leaves natives and reports bridge_unreachable', async () => {
  // A port that was just free: nothing listens there.
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  const win = fakeWindow();
  const st = await VdiMedia.install({ bridgeUrl: `ws://127.0.0.1:${port}/`, window: win, WebSocket, timeoutMs: 2000 });
  assert.equal(st.redirected, false);
  assert.equal(st.reason, 'bridge_unreachable');
  assertNative(win);
});

test('a bridge that never answers hello times out and leaves natives', async () => {
  bridge = await startBridge({ status: null });
  const win = fakeWindow();
  const t0 = Date.now();
  const st = await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket, timeoutMs: 200 });
  assert.equal(st.redirected, false);
  assert.equal(st.reason, 'timeout');
  assert.ok(Date.now() - t0 >= 190);
  assertNative(win);
});

test('a status with an unsupported version is a version_mismatch', async () => {
  bridge = await startBridge({ status: { type: 'status', redirected: true, version: 7, engine: 'vdimediad/9' } });
  const win = fakeWindow();
  const st = await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket });
  assert.equal(st.redirected, false);
  assert.equal(st.reason, 'version_mismatch');
  assertNative(win);
  // The SDK hangs up instead of keeping a session it cannot use.
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(bridge.sockets.size, 0);
});

test('the UMD bundle defines the global VdiMedia', () => {
  const code = readFileSync(new URL('../dist/vdimedia.js', import.meta.url), 'utf8');
  const ctx = { EventTarget, Event, DOMException, console, setTimeout, clearTimeout };
  vm.createContext(ctx);
  vm.runInContext(code, ctx);
  assert.equal(typeof ctx.VdiMedia.install, 'function');
  assert.equal(typeof ctx.VdiMedia.RTCPeerConnection, 'function');
  assert.equal(ctx.VdiMedia.VERSION, VdiMedia.VERSION);
});

test('without a WebSocket implementation install falls back', async () => {
  const win = fakeWindow();
  const st = await VdiMedia.install({ window: win, WebSocket: undefined });
  // Node 20 has no global WebSocket.
  if (typeof globalThis.WebSocket !== 'function') assert.equal(st.reason, 'bridge_unreachable');
  assertNative(win);
});

