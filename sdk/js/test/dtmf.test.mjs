// RTCRtpSender.dtmf / RTCDTMFSender (WebRTC 1.0 §7): argument rules, tone timing, tonechange
// events, errors, and the `pc.insertDtmf` requests the engine gets (one per tone, when it starts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OFFER_SDP, redirectedPage } from './fake-bridge.mjs';

const TE_ANSWER = OFFER_SDP.replace('engU', 'farU')
  .replace('SAVPF 111', 'SAVPF 111 110')
  .concat('a=rtpmap:110 telephone-event/48000\r\n');
const PLAIN_ANSWER = OFFER_SDP.replace('engU', 'farU');

let bridge;
let win;
/** `pc.insertDtmf` requests in arrival order, with the time they arrived (ms). */
const dtmfRequests = [];
redirectedPage({
  handlers: {
    'pc.insertDtmf': (params) => {
      dtmfRequests.push({ ...params, at: performance.now() });
      if (params.tones === '#') throw { name: 'OperationError', code: 'operation_error', message: 'engine failed' };
      return {};
    },
  },
}, (p) => ({ bridge, win } = p));

/** A connected pc whose remote answer is `answer`; returns [pc, sender]. */
async function connected(answer = TE_ANSWER) {
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const sender = pc.addTrack(stream.getTracks()[0], stream);
  await pc.setLocalDescription(await pc.createOffer());
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  assert.equal(pc.getTransceivers()[0].currentDirection, 'sendrecv');
  return [pc, sender];
}

/** Records tonechange events as [tone, ms since start]. */
function recordTones(dtmf) {
  const t0 = performance.now();
  const log = [];
  dtmf.ontonechange = (e) => log.push([e.tone, Math.round(performance.now() - t0), dtmf.toneBuffer]);
  return log;
}

const until = async (pred, ms = 5000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('sender.dtmf is one RTCDTMFSender per audio sender; canInsertDTMF follows negotiation', async () => {
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const sender = pc.addTrack(stream.getTracks()[0], stream);
  const dtmf = sender.dtmf;
  assert.ok(dtmf instanceof EventTarget);
  assert.equal(sender.dtmf, dtmf, 'same object every time');
  assert.equal(dtmf.toneBuffer, '');
  assert.equal(dtmf.ontonechange, null);
  // Not negotiated yet: no currentDirection.
  assert.equal(dtmf.canInsertDTMF, false);
  assert.throws(() => dtmf.insertDTMF('1'), { name: 'InvalidStateError' });
  await pc.setLocalDescription(await pc.createOffer());
  await pc.setRemoteDescription({ type: 'answer', sdp: TE_ANSWER });
  assert.equal(dtmf.canInsertDTMF, true);
  pc.close();
  assert.equal(dtmf.canInsertDTMF, false);
  assert.throws(() => dtmf.insertDTMF('1'), (e) => e.name === 'InvalidStateError' && /closed/.test(e.message));
  // Closed: InvalidStateError even for invalid characters (the spec checks state first).
  assert.throws(() => dtmf.insertDTMF('xyz'), { name: 'InvalidStateError' });
});

test('without telephone-event in the answer insertDTMF throws InvalidStateError', async () => {
  const [pc, sender] = await connected(PLAIN_ANSWER);
  assert.equal(sender.dtmf.canInsertDTMF, false);
  assert.throws(() => sender.dtmf.insertDTMF('1'), { name: 'InvalidStateError' });
  pc.close();
});

test('invalid characters throw InvalidCharacterError naming the character; buffer unchanged', async () => {
  const [pc, sender] = await connected();
  const before = dtmfRequests.length;
  for (const bad of ['12E', 'x', '1 2', '1-2', 'ä']) {
    assert.throws(
      () => sender.dtmf.insertDTMF(bad),
      (e) => e instanceof DOMException && e.name === 'InvalidCharacterError' && e.message.includes('invalid character'),
      bad,
    );
  }
  assert.throws(() => sender.dtmf.insertDTMF(), { name: 'TypeError' });
  assert.equal(sender.dtmf.toneBuffer, '');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(dtmfRequests.length, before, 'nothing sent to the engine');
  pc.close();
});

test('timing: clamps, comma pause, tonechange per tone then "" at the end, one request per tone', async () => {
  const [pc, sender] = await connected();
  const dtmf = sender.dtmf;
  const log = recordTones(dtmf);
  const first = dtmfRequests.length;
  dtmf.insertDTMF('1,a', 10, 5); // clamped to 40 ms / 30 ms
  assert.equal(dtmf.toneBuffer, '1,A', 'upper-cased, set synchronously');
  await until(() => log.some(([t]) => t === ''));
  assert.deepEqual(log.map(([t]) => t), ['1', ',', 'A', '']);
  assert.deepEqual(log.map(([, , b]) => b), [',A', 'A', '', ''], 'toneBuffer loses each tone as it starts');
  const at = log.map(([, ms]) => ms);
  assert.ok(at[0] < 40, `first tone at once (${at[0]} ms)`);
  assert.ok(at[1] - at[0] >= 69 && at[1] - at[0] < 150, `40 + 30 ms to the comma (${at[1] - at[0]})`);
  assert.ok(at[2] - at[1] >= 1999 && at[2] - at[1] < 2150, `a comma waits 2 s (${at[2] - at[1]})`);
  assert.ok(at[3] - at[2] >= 69 && at[3] - at[2] < 150, `end after duration + gap (${at[3] - at[2]})`);
  await until(() => dtmfRequests.length >= first + 2);
  const reqs = dtmfRequests.slice(first).map(({ at: _, ...r }) => r);
  assert.deepEqual(reqs, [
    { pc: pc.vdimediaId, sender: sender._id, tones: '1', duration: 40, interToneGap: 30 },
    { pc: pc.vdimediaId, sender: sender._id, tones: 'A', duration: 40, interToneGap: 30 },
  ]);
  pc.close();
});

test('defaults 100/70, upper clamps 6000, insertDTMF replaces the buffer of a running playout', async () => {
  const [pc, sender] = await connected();
  const dtmf = sender.dtmf;
  const log = recordTones(dtmf);
  const first = dtmfRequests.length;
  dtmf.insertDTMF('12');
  dtmf.insertDTMF('9'); // before the first playout task ran: only '9' plays
  await until(() => log.some(([t]) => t === ''));
  assert.deepEqual(log.map(([t]) => t), ['9', '']);
  assert.ok(log[1][1] - log[0][1] >= 169, `100 + 70 ms (${log[1][1] - log[0][1]})`);
  assert.equal(dtmfRequests[first].duration, 100);
  assert.equal(dtmfRequests[first].interToneGap, 70);
  dtmf.insertDTMF('5', 99999, 1e9);
  await until(() => dtmfRequests.length > first + 1);
  assert.equal(dtmfRequests[first + 1].duration, 6000);
  assert.equal(dtmfRequests[first + 1].interToneGap, 6000);
  // While '5' plays (6 s), a new insertDTMF replaces what is left; an empty string clears it.
  dtmf.insertDTMF('*#');
  assert.equal(dtmf.toneBuffer, '*#');
  dtmf.insertDTMF('');
  assert.equal(dtmf.toneBuffer, '');
  // Closing stops the playout: no more tonechange, not even ''.
  const n = log.length;
  pc.close();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(log.length, n);
});

test('an engine failure on a tone is logged, the playout goes on (no throw, no hang)', async () => {
  const [pc, sender] = await connected();
  const log = recordTones(sender.dtmf);
  const warnings = [];
  const origWarn = console.warn;
  console.warn = (...a) => warnings.push(a.join(' '));
  try {
    sender.dtmf.insertDTMF('#1', 40, 30);
    await until(() => log.some(([t]) => t === ''));
  } finally {
    console.warn = origWarn;
  }
  assert.deepEqual(log.map(([t]) => t), ['#', '1', '']);
  assert.ok(warnings.some((w) => w.includes('pc.insertDtmf') && w.includes('engine failed')), warnings.join('\n'));
  pc.close();
});

test('addEventListener("tonechange") gets RTCDTMFToneChangeEvent-shaped events', async () => {
  const [pc, sender] = await connected();
  const tones = [];
  sender.dtmf.addEventListener('tonechange', (e) => tones.push(e.tone));
  sender.dtmf.insertDTMF('D', 40, 30);
  await until(() => tones.includes(''));
  assert.deepEqual(tones, ['D', '']);
  pc.close();
});
