// The muted state of a received track, as Chromium: muted from its creation until RTP arrives;
// muted again when a description says the far end stops sending (WebRTC 1.0 §4.4.1.5-6
// "process the removal of a remote track"); unmuted only by RTP after a resume.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ANSWER_SDP, redirectedPage } from './fake-bridge.mjs';

/** Engine clock (ms) of the last RTP packet the fake engine "received"; null: none yet. */
let lastRtpAt = null;
const engineNow = () => Date.now();

let bridge;
let win;
redirectedPage({
  handlers: {
    'pc.getSynchronizationSources': () => ({
      synchronizationSources: lastRtpAt === null ? [] : [{ timestamp: lastRtpAt, source: 2, rtpTimestamp: 1 }],
      contributingSources: [],
      now: engineNow(),
    }),
  },
}, (p) => ({ bridge, win } = p));

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));
/** The far end's offer (a re-offer) with its direction. */
const farOffer = (dir) => ({ type: 'offer', sdp: ANSWER_SDP.replace('a=sendrecv', `a=${dir}`) });

test('a received track is muted until RTP arrives, muted on hold, unmuted by RTP after resume', async () => {
  lastRtpAt = null;
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  pc.addTrack(stream.getTracks()[0], stream);
  const log = [];
  let track = null;
  pc.ontrack = (e) => {
    if (track) return; // the fake engine fires track on every remote description
    track = e.track;
    log.push(`track muted=${e.track.muted}`);
    track.onmute = () => log.push('mute');
    track.onunmute = () => log.push('unmute');
  };
  assert.equal(pc.getReceivers()[0].track.muted, true, 'muted from its creation');
  await pc.setLocalDescription(await pc.createOffer());
  await pc.setRemoteDescription({ type: 'answer', sdp: ANSWER_SDP });
  await tick(350);
  assert.deepEqual(log, ['track muted=true'], 'no RTP: stays muted');
  lastRtpAt = engineNow();
  await tick(250);
  assert.deepEqual(log, ['track muted=true', 'unmute']);
  assert.equal(track.muted, false);

  // The far end holds (recvonly offer: it stops sending): muted when the offer is applied.
  await pc.setRemoteDescription(farOffer('recvonly'));
  assert.equal(track.muted, true);
  assert.deepEqual(log.slice(2), ['mute']);
  await pc.setLocalDescription();
  // It resumes: the old packets (from before the hold) do not unmute; a new one does.
  await pc.setRemoteDescription(farOffer('sendrecv'));
  await pc.setLocalDescription();
  await tick(350);
  assert.equal(track.muted, true, 'resumed but no new RTP');
  lastRtpAt = engineNow() + 5;
  await tick(250);
  assert.deepEqual(log.slice(2), ['mute', 'unmute']);

  // Polling stops once closed.
  await pc.setRemoteDescription(farOffer('inactive'));
  assert.deepEqual(log.slice(2), ['mute', 'unmute', 'mute']);
  pc.close();
  const n = bridge.requests('pc.getSynchronizationSources').length;
  await tick(300);
  assert.equal(bridge.requests('pc.getSynchronizationSources').length, n, 'no polling after close');
});
