// VdiMedia.playRingtone / Ringtone (docs/protocol.md, `ringtone.*`): the API shape, the bytes
// and options the endpoint gets, the size limit, stop()/ended/onended, errors, channel loss.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import * as VdiMedia from '../dist/vdimedia.mjs';
import { fakeWindow, startBridge } from './fake-bridge.mjs';

let bridge;
let win;
before(async () => {
  bridge = await startBridge();
  win = fakeWindow();
});
after(async () => {
  VdiMedia.uninstall();
  await bridge.close();
});

/** A tiny "WAV file" (the fake engine only looks at the magic). */
const wav = (n = 64) => {
  const b = new Uint8Array(n);
  b.set([0x52, 0x49, 0x46, 0x46]); // RIFF
  for (let i = 4; i < n; i++) b[i] = i & 0xff;
  return b;
};
const lastRequest = (method) => bridge.requests(method).at(-1);

test('playRingtone before install rejects with InvalidStateError and sends nothing', async () => {
  await assert.rejects(VdiMedia.playRingtone(wav()), { name: 'InvalidStateError' });
  const st = await VdiMedia.install({ bridgeUrl: bridge.url, window: win, WebSocket });
  assert.equal(st.redirected, true);
  assert.equal(bridge.requests('ringtone.play').length, 0);
});

test('API shape: exported on VdiMedia, Ringtone not constructible', () => {
  assert.equal(typeof VdiMedia.playRingtone, 'function');
  assert.equal(typeof VdiMedia.Ringtone, 'function');
  assert.equal(VdiMedia.MAX_RINGTONE_BYTES, 512 * 1024);
  assert.throws(() => new VdiMedia.Ringtone(), TypeError);
});

test('a looping ringtone: bytes sent once as base64 with sinkId/loop/volume; stop() stops it', async () => {
  const bytes = wav(3000);
  const ring = await VdiMedia.playRingtone(bytes, { sinkId: 'spk-1', volume: 0.25 });
  assert.ok(ring instanceof VdiMedia.Ringtone);
  assert.ok(ring instanceof EventTarget);
  const req = lastRequest('ringtone.play');
  assert.deepEqual(Object.keys(req.params).sort(), ['data', 'id', 'loop', 'sinkId', 'volume']);
  assert.equal(req.params.id, ring.id);
  assert.equal(req.params.data, Buffer.from(bytes).toString('base64'));
  assert.equal(req.params.sinkId, 'spk-1');
  assert.equal(req.params.loop, true);
  assert.equal(req.params.volume, 0.25);
  assert.equal(ring.sinkId, 'spk-1');
  assert.equal(ring.loop, true);
  assert.equal(ring.volume, 0.25);
  assert.equal(ring.playing, true);
  assert.equal(ring.error, null);
  let endedEvents = 0;
  ring.onended = () => endedEvents++;
  await ring.stop();
  assert.deepEqual(lastRequest('ringtone.stop').params, { id: ring.id });
  assert.equal(ring.playing, false);
  assert.deepEqual(await ring.ended, { reason: 'stopped' });
  const stops = bridge.requests('ringtone.stop').length;
  await ring.stop();
  assert.equal(bridge.requests('ringtone.stop').length, stops, 'a second stop() sends nothing');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(endedEvents, 0, 'stop() fires no ended event');
});

test('the default output: no sinkId in the request; ids are unique', async () => {
  const a = await VdiMedia.playRingtone(wav().buffer, { sinkId: 'default' });
  assert.equal(lastRequest('ringtone.play').params.sinkId, undefined);
  assert.equal(a.sinkId, '');
  const b = await VdiMedia.playRingtone(new DataView(wav().buffer));
  assert.equal(lastRequest('ringtone.play').params.sinkId, undefined);
  assert.notEqual(a.id, b.id);
  await Promise.all([a.stop(), b.stop()]);
});

test('a non-looping ringtone fires ended (onended and addEventListener) and resolves ended', async () => {
  const ring = await VdiMedia.playRingtone(wav(), { loop: false });
  assert.equal(lastRequest('ringtone.play').params.loop, false);
  const got = [];
  ring.onended = (e) => got.push(['on', e.type]);
  ring.addEventListener('ended', (e) => got.push(['listener', e.type]));
  assert.deepEqual(await ring.ended, { reason: 'ended' });
  assert.deepEqual(got, [['on', 'ended'], ['listener', 'ended']]);
  assert.equal(ring.playing, false);
  const stops = bridge.requests('ringtone.stop').length;
  await ring.stop();
  assert.equal(bridge.requests('ringtone.stop').length, stops, 'stop() after the end sends nothing');
});

test('an ended event with an error sets ring.error', async () => {
  const ring = await VdiMedia.playRingtone(wav());
  bridge.broadcast({
    type: 'event',
    event: 'ringtone.ended',
    params: { id: ring.id, error: { name: 'OperationError', code: 'operation_error', message: 'the ringtone stopped: device gone' } },
  });
  assert.deepEqual(await ring.ended, { reason: 'error' });
  assert.equal(ring.error.name, 'OperationError');
  assert.match(ring.error.message, /device gone/);
});

test('Blob and URL sources are read in the page', async () => {
  const blob = new Blob([wav(100)], { type: 'audio/wav' });
  const a = await VdiMedia.playRingtone(blob);
  assert.equal(lastRequest('ringtone.play').params.data, Buffer.from(wav(100)).toString('base64'));
  await a.stop();
  const url = `data:audio/wav;base64,${Buffer.from(wav(200)).toString('base64')}`;
  const b = await VdiMedia.playRingtone(url);
  assert.equal(lastRequest('ringtone.play').params.data, Buffer.from(wav(200)).toString('base64'));
  await b.stop();
  const c = await VdiMedia.playRingtone(new URL(url));
  await c.stop();
});

test('size limit: over 512 KiB is a RangeError and nothing is sent; 512 KiB exactly is sent', async () => {
  const before = bridge.requests('ringtone.play').length;
  await assert.rejects(VdiMedia.playRingtone(wav(VdiMedia.MAX_RINGTONE_BYTES + 1)), RangeError);
  await assert.rejects(VdiMedia.playRingtone(new Blob([wav(VdiMedia.MAX_RINGTONE_BYTES + 1)])), RangeError);
  assert.equal(bridge.requests('ringtone.play').length, before);
  const ring = await VdiMedia.playRingtone(wav(VdiMedia.MAX_RINGTONE_BYTES));
  const sent = lastRequest('ringtone.play');
  assert.equal(Buffer.from(sent.params.data, 'base64').length, VdiMedia.MAX_RINGTONE_BYTES);
  assert.ok(JSON.stringify(sent).length < 1024 * 1024, 'the request fits the 1 MiB message cap');
  await ring.stop();
});

test('bad arguments and endpoint errors', async () => {
  await assert.rejects(VdiMedia.playRingtone(42), TypeError);
  await assert.rejects(VdiMedia.playRingtone(null), TypeError);
  await assert.rejects(VdiMedia.playRingtone(new Uint8Array(0)), TypeError);
  await assert.rejects(VdiMedia.playRingtone(wav(), { volume: 1.5 }), RangeError);
  await assert.rejects(VdiMedia.playRingtone(wav(), { volume: Number.NaN }), RangeError);
  await assert.rejects(VdiMedia.playRingtone('data:audio/wav;base64,'), TypeError, 'an empty file');
  // Bytes the endpoint cannot decode: NotSupportedError, as HTMLMediaElement.play() rejects.
  const garbage = new Uint8Array(256).fill(7);
  await assert.rejects(VdiMedia.playRingtone(garbage), (e) => e.name === 'NotSupportedError' && e.vdimediaCode === 'invalid_params');
  await assert.rejects(VdiMedia.playRingtone(wav(), { sinkId: 'nope' }), { name: 'NotFoundError' });
});

test('channel loss ends playing ringtones with ended; later calls reject', async () => {
  const ring = await VdiMedia.playRingtone(wav());
  let fired = 0;
  ring.onended = () => fired++;
  bridge.dropAll();
  assert.deepEqual(await ring.ended, { reason: 'channel_lost' });
  assert.equal(fired, 1);
  assert.equal(ring.playing, false);
  await ring.stop(); // resolves, sends nothing
  await assert.rejects(VdiMedia.playRingtone(wav()), { name: 'InvalidStateError' });
});
