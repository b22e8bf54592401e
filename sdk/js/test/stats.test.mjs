// getStats fidelity on the page side: the RTCStatsReport maplike, timestamps moved onto the
// page's clock, track identifiers mapped to the page's tracks, the stats selection algorithm
// (sender / receiver / track selector) and getSynchronizationSources()/getContributingSources().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as VdiMedia from '../dist/vdimedia.mjs';
import { ANSWER_SDP, redirectedPage } from './fake-bridge.mjs';

/** The endpoint's clock runs 1 h behind the page's in these tests. */
const SKEW_MS = 3_600_000;
const engineNow = () => performance.timeOrigin + performance.now() - SKEW_MS;

/** A report shaped like vdimediad's (daemon/tests/stats.rs checks the real one). */
function engineReport(now, receiverTrack) {
  const ts = now - 5;
  return [
    { id: 'codec-stats-sink_0', type: 'codec', timestamp: ts, payloadType: 111, mimeType: 'audio/opus', clockRate: 48000, channels: 2, sdpFmtpLine: 'useinbandfec=1', transportId: 'T' },
    { id: 'codec-stats-src_0', type: 'codec', timestamp: ts, payloadType: 111, mimeType: 'audio/opus', clockRate: 48000, channels: 2, transportId: 'T' },
    { id: 'OUT', type: 'outbound-rtp', timestamp: ts, kind: 'audio', ssrc: 1, mid: '0', codecId: 'codec-stats-sink_0', transportId: 'T', mediaSourceId: 'MS', remoteId: 'RIN', packetsSent: 100, bytesSent: 9000, lastPacketSentTimestamp: ts - 20 },
    { id: 'RIN', type: 'remote-inbound-rtp', timestamp: ts, kind: 'audio', ssrc: 1, codecId: 'codec-stats-sink_0', transportId: 'T', localId: 'OUT', roundTripTime: 0.012, jitter: 0.001, packetsLost: 0, fractionLost: 0 },
    { id: 'MS', type: 'media-source', timestamp: ts, kind: 'audio', trackIdentifier: 'lt1', audioLevel: 0.25, totalAudioEnergy: 0.5, totalSamplesDuration: 8 },
    { id: 'IN', type: 'inbound-rtp', timestamp: ts, kind: 'audio', ssrc: 2, mid: '0', trackIdentifier: receiverTrack, codecId: 'codec-stats-src_0', transportId: 'T', remoteId: 'ROUT', packetsReceived: 99, jitter: 0.002, lastPacketReceivedTimestamp: ts - 10 },
    { id: 'ROUT', type: 'remote-outbound-rtp', timestamp: ts, kind: 'audio', ssrc: 2, codecId: 'codec-stats-src_0', transportId: 'T', localId: 'IN', remoteTimestamp: 1234.5, packetsSent: 99, bytesSent: 8000 },
    { id: 'T', type: 'transport', timestamp: ts, selectedCandidatePairId: 'CP', dtlsState: 'connected', iceState: 'connected' },
    { id: 'CP', type: 'candidate-pair', timestamp: ts, transportId: 'T', localCandidateId: 'LC', remoteCandidateId: 'RC', state: 'succeeded', nominated: true },
    { id: 'LC', type: 'local-candidate', timestamp: ts, transportId: 'T', address: '127.0.0.1', port: 1, protocol: 'udp', candidateType: 'host' },
    { id: 'RC', type: 'remote-candidate', timestamp: ts, transportId: 'T', address: '127.0.0.1', port: 2, protocol: 'udp', candidateType: 'host' },
    { id: 'P', type: 'peer-connection', timestamp: ts, dataChannelsOpened: 0, dataChannelsClosed: 0 },
  ];
}

let bridge;
let win;
let receiverTrackId = null;
let sourcesMode = 'ok';
redirectedPage({
  handlers: {
    'pc.getStats': () => {
      const now = engineNow();
      return { stats: engineReport(now, receiverTrackId), now };
    },
    'pc.getSynchronizationSources': ({ receiver }) => {
      if (sourcesMode === 'unsupported') {
        throw { name: 'NotSupportedError', code: 'unknown_method', message: 'unknown method pc.getSynchronizationSources' };
      }
      if (receiver == null) throw { name: 'TypeError', code: 'invalid_params', message: 'receiver' };
      const now = engineNow();
      return {
        synchronizationSources: [{ timestamp: now - 30, source: 2, rtpTimestamp: 4242, audioLevel: 0.5 }],
        contributingSources: [
          { timestamp: now - 40, source: 77, rtpTimestamp: 4200 },
          { timestamp: now - 11_000, source: 78, rtpTimestamp: 1 },
        ],
        now,
      };
    },
  },
}, (p) => ({ bridge, win } = p));

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

/** A connected call: a cloned mic track sent, the far end's track received, mid "0". */
async function call() {
  const pc = new win.RTCPeerConnection();
  const stream = await win.navigator.mediaDevices.getUserMedia({ audio: true });
  const track = stream.getTracks()[0].clone();
  const sender = pc.addTrack(track, stream);
  await pc.setLocalDescription(await pc.createOffer());
  await pc.setRemoteDescription({ type: 'answer', sdp: ANSWER_SDP });
  const [t] = pc.getTransceivers();
  assert.equal(t.mid, '0');
  receiverTrackId = t.receiver.track._remoteId;
  return { pc, track, sender, receiver: t.receiver };
}

test('getStats: a maplike RTCStatsReport on the page clock, track ids of the page', async () => {
  const { pc, track, receiver } = await call();
  const report = await pc.getStats();
  assert.ok(report instanceof VdiMedia.RTCStatsReport);
  assert.equal(Object.prototype.toString.call(report), '[object RTCStatsReport]');
  assert.equal(report.size, 12);
  assert.equal(report.has('OUT'), true);
  assert.equal(report.get('nope'), undefined);
  assert.deepEqual([...report.keys()].length, 12);
  let n = 0;
  report.forEach((s, id, r) => {
    assert.equal(s.id, id);
    assert.equal(r, report);
    n += 1;
  });
  assert.equal(n, 12);
  assert.deepEqual([...report.entries()].map(([k]) => k), [...report].map(([k]) => k));

  // Timestamps: engine clock + skew ≈ page clock (within the request's round trip).
  const now = performance.timeOrigin + performance.now();
  for (const s of report.values()) assert.ok(Math.abs(now - s.timestamp) < 1000, `${s.id} timestamp ${s.timestamp} vs ${now}`);
  const out = report.get('OUT');
  assert.ok(Math.abs(out.timestamp - out.lastPacketSentTimestamp - 20) < 1e-6, 'relative times kept');
  const inb = report.get('IN');
  assert.ok(Math.abs(now - inb.lastPacketReceivedTimestamp) < 1000);
  // remoteTimestamp is on the far end's clock: untouched.
  assert.equal(report.get('ROUT').remoteTimestamp, 1234.5);
  // The cloned track has its own page id; the engine knows only the original's.
  assert.notEqual(track.id, 'lt1');
  assert.equal(report.get('MS').trackIdentifier, track.id);
  assert.equal(inb.trackIdentifier, receiver.track.id);
  // Units pass through as numbers.
  assert.equal(typeof inb.jitter, 'number');
  assert.equal(typeof report.get('RIN').roundTripTime, 'number');
  pc.close();
});

test('sender/receiver getStats and getStats(track) follow the selection algorithm', async () => {
  const { pc, track, sender, receiver } = await call();
  const ids = (r) => [...r.keys()].sort();
  const sent = await sender.getStats();
  assert.ok(sent instanceof VdiMedia.RTCStatsReport);
  assert.deepEqual(ids(sent), ['CP', 'LC', 'MS', 'OUT', 'RC', 'RIN', 'T', 'codec-stats-sink_0']);
  const received = await receiver.getStats();
  assert.deepEqual(ids(received), ['CP', 'IN', 'LC', 'RC', 'ROUT', 'T', 'codec-stats-src_0']);
  assert.deepEqual(ids(await pc.getStats(track)), ids(sent));
  assert.deepEqual(ids(await pc.getStats(receiver.track)), ids(received));
  const stranger = (await win.navigator.mediaDevices.getUserMedia({ audio: true })).getTracks()[0];
  await assert.rejects(pc.getStats(stranger), { name: 'InvalidAccessError' });
  await assert.rejects(pc.getStats('OUT'), { name: 'TypeError' });
  pc.close();
  // Chromium 156 resolves on a closed connection (tests/e2e/conformance.test.mjs); the engine
  // has freed it, so the report is empty.
  assert.equal((await pc.getStats()).size, 0);
});

test('getSynchronizationSources / getContributingSources: cached, refreshed, on the page clock', async () => {
  const { pc, receiver } = await call();
  const before = bridge.requests('pc.getSynchronizationSources').length;
  // Synchronous: the first call answers from the (empty) cache and asks the engine.
  assert.deepEqual(receiver.getSynchronizationSources(), []);
  const req = await bridge.waitFor((m) => m.method === 'pc.getSynchronizationSources' && m.params.pc === pc.vdimediaId);
  assert.equal(req.params.receiver, receiver._id);
  await tick(80);
  const [s] = receiver.getSynchronizationSources();
  assert.deepEqual(Object.keys(s).sort(), ['audioLevel', 'rtpTimestamp', 'source', 'timestamp']);
  assert.equal(s.source, 2);
  assert.equal(s.rtpTimestamp, 4242);
  assert.equal(s.audioLevel, 0.5);
  const now = performance.timeOrigin + performance.now();
  assert.ok(Math.abs(now - s.timestamp) < 1000, `timestamp ${s.timestamp} on the page clock (${now})`);
  // Sources older than 10 s are not listed; contributing sources carry no level here.
  const csrcs = receiver.getContributingSources();
  assert.deepEqual(csrcs.map((c) => c.source), [77]);
  assert.equal('audioLevel' in csrcs[0], false);
  // Callers get copies.
  receiver.getSynchronizationSources()[0].source = 9;
  assert.equal(receiver.getSynchronizationSources()[0].source, 2);
  // Calls within 50 ms of a refresh do not each cost a request.
  const count = bridge.requests('pc.getSynchronizationSources').length;
  assert.ok(count - before <= 3, `${count - before} requests`);
  pc.close();
  await tick();
  const closedCount = bridge.requests('pc.getSynchronizationSources').length;
  receiver.getSynchronizationSources();
  await tick();
  assert.equal(bridge.requests('pc.getSynchronizationSources').length, closedCount, 'no request after close');
});

test('an engine without pc.getSynchronizationSources is asked once, and [] is kept', async () => {
  sourcesMode = 'unsupported';
  try {
    // The receiver's RTP watch (unmute) and getSynchronizationSources may each ask once before
    // the first answer; once one knows, neither asks again, and the track is unmuted.
    const before = bridge.requests('pc.getSynchronizationSources').length;
    const { pc, receiver } = await call();
    assert.deepEqual(receiver.getSynchronizationSources(), []);
    await tick(80);
    const asked = bridge.requests('pc.getSynchronizationSources').length - before;
    assert.ok(asked >= 1 && asked <= 2, `asked ${asked} times`);
    assert.equal(receiver.track.muted, false, 'no RTP watch possible: unmuted at once');
    assert.deepEqual(receiver.getSynchronizationSources(), []);
    await tick(80);
    assert.deepEqual(receiver.getContributingSources(), []);
    await tick(30);
    assert.equal(bridge.requests('pc.getSynchronizationSources').length - before, asked, 'not asked again');
    pc.close();
  } finally {
    sourcesMode = 'ok';
  }
});
