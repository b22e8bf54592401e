// RTCRtpSender.getParameters()/setParameters() and addTransceiver's sendEncodings (WebRTC 1.0
// §5.1, §5.2): maxBitrate (bit/s) is kept by the page and remoted to the engine, which caps
// the Opus encoder with it (daemon/src/webrtc/stats.rs tests the cap).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redirectedPage } from './fake-bridge.mjs';

let bridge;
let win;
redirectedPage({
  handlers: {
    'pc.setParameters': ({ sender, parameters }) => {
      if (parameters?.encodings?.[0]?.maxBitrate === 0) throw { name: 'TypeError', code: 'invalid_params', message: 'maxBitrate must be positive' };
      if (typeof sender !== 'string') throw { name: 'NotFoundError', code: 'not_found', message: 'sender' };
      return {};
    },
  },
}, (p) => ({ bridge, win } = p));

test('sendEncodings maxBitrate: getParameters, the engine request, setParameters rules', async () => {
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  assert.throws(() => pc.addTransceiver('audio', { sendEncodings: [{ maxBitrate: -1 }] }), TypeError);
  assert.equal(pc.getTransceivers().length, 0, 'nothing made for a bad sendEncodings');
  const t = pc.addTransceiver(stream.getTracks()[0], { streams: [stream], sendEncodings: [{ maxBitrate: 32000 }] });
  const p = t.sender.getParameters();
  assert.deepEqual(p.encodings, [{ active: true, maxBitrate: 32000 }]);
  await pc.createOffer();
  const [req] = bridge.requests('pc.addTransceiver').slice(-1);
  assert.deepEqual(req.params.init.sendEncodings, [{ active: true, maxBitrate: 32000 }]);

  p.encodings[0].maxBitrate = 16000;
  assert.equal(await t.sender.setParameters(p), undefined);
  const [set] = bridge.requests('pc.setParameters').slice(-1);
  assert.equal(set.params.sender, t.sender._id);
  assert.deepEqual(set.params.parameters, { encodings: [{ active: true, maxBitrate: 16000 }] });
  assert.equal(t.sender.getParameters().encodings[0].maxBitrate, 16000);
  await assert.rejects(t.sender.setParameters(p), { name: 'InvalidModificationError' }, 'stale transactionId');
  const q = t.sender.getParameters();
  await assert.rejects(t.sender.setParameters({ ...q, encodings: [] }), { name: 'InvalidModificationError' });
  await assert.rejects(t.sender.setParameters({ ...q, encodings: [{ maxBitrate: 'x' }] }), TypeError);
  q.encodings[0].maxBitrate = 0;
  await assert.rejects(t.sender.setParameters(q), 'the engine refuses maxBitrate 0');
  assert.equal(t.sender.getParameters().encodings[0].maxBitrate, 16000, 'a refused change is not kept');
  pc.close();
  await assert.rejects(t.sender.setParameters(t.sender.getParameters()), { name: 'InvalidStateError' });
});
