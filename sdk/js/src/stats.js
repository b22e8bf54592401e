// getStats (WebRTC 1.0 §8, webrtc-stats) and RTP sources (WebRTC 1.0 §5.3.4) on the page side:
// the RTCStatsReport maplike, the stats selection algorithm for senders, receivers and track
// selectors, and the synchronous getSynchronizationSources()/getContributingSources() cache.
//
// The engine's timestamps are ms since the Unix epoch on the *endpoint's* clock; replies carry
// `now` (that clock when the reply was made), and every timestamp is moved onto the page's clock
// (performance.timeOrigin + performance.now(), as Chromium's) by the difference. `remoteTimestamp`
// stays on the far end's clock, as the spec defines it.

/** Members holding a DOMHighResTimeStamp of the local clock (moved onto the page's clock). */
const LOCAL_TIME_MEMBERS = ['timestamp', 'lastPacketReceivedTimestamp', 'lastPacketSentTimestamp', 'estimatedPlayoutTimestamp'];

/** Members naming another stat of the same report (webrtc-stats), followed by selection. */
const REFERENCE_MEMBERS = [
  'codecId',
  'transportId',
  'mediaSourceId',
  'remoteId',
  'localId',
  'playoutId',
  'selectedCandidatePairId',
  'localCandidateId',
  'remoteCandidateId',
  'localCertificateId',
  'remoteCertificateId',
  'issuerCertificateId',
];

/** How long a cached getSynchronizationSources() answer is served before a refresh, ms. */
const SOURCES_REFRESH_MS = 50;
/** Sources older than this are not listed (WebRTC 1.0 §5.3.4: "the last 10 seconds"), ms. */
const SOURCES_KEEP_MS = 10_000;

/** The page's clock as a DOMHighResTimeStamp since the Unix epoch, ms. */
export function pageNow() {
  const p = globalThis.performance;
  if (p && typeof p.now === 'function' && typeof p.timeOrigin === 'number') return p.timeOrigin + p.now();
  return Date.now();
}

/** ms to add to an engine timestamp to put it on the page's clock (0 when `now` is absent). */
function clockShift(engineNow) {
  return typeof engineNow === 'number' && Number.isFinite(engineNow) ? pageNow() - engineNow : 0;
}

/**
 * `RTCStatsReport` (WebRTC 1.0 §8.3): a read-only maplike from stats id to RTCStats dictionary
 * (`size`, `get`, `has`, `keys`, `values`, `entries`, `forEach`, iteration).
 */
export class RTCStatsReport {
  /** @param {Array<{id: string, type: string, timestamp: number}>} stats */
  constructor(stats = []) {
    this._map = new Map();
    for (const s of stats) if (s && s.id != null) this._map.set(String(s.id), s);
  }

  get size() { return this._map.size; }
  get(id) { return this._map.get(id); }
  has(id) { return this._map.has(id); }
  keys() { return this._map.keys(); }
  values() { return this._map.values(); }
  entries() { return this._map.entries(); }
  forEach(fn, thisArg) {
    this._map.forEach((v, k) => fn.call(thisArg, v, k, this));
  }
  [Symbol.iterator]() { return this._map.entries(); }
  get [Symbol.toStringTag]() { return 'RTCStatsReport'; }
}

/**
 * Page-side finishing of an engine report: timestamps onto the page's clock and track
 * identifiers from the engine's track ids to the page's MediaStreamTrack ids.
 * @param {{stats?: object[], now?: number}} reply `pc.getStats` result
 * @param {import('./peerconnection.js').RTCPeerConnection} pc
 * @returns {object[]}
 */
export function pageStats(reply, pc) {
  const shift = clockShift(reply?.now);
  const trackIds = new Map();
  for (const t of pc?._transceivers ?? []) {
    for (const track of [t.sender?._track, t.receiver?._track]) {
      if (track && track._remoteId != null) trackIds.set(String(track._remoteId), track.id);
    }
  }
  const out = [];
  for (const raw of Array.isArray(reply?.stats) ? reply.stats : []) {
    if (!raw || typeof raw !== 'object' || raw.id == null) continue;
    const s = { ...raw };
    if (shift) {
      for (const k of LOCAL_TIME_MEMBERS) if (typeof s[k] === 'number') s[k] += shift;
    }
    if (typeof s.trackIdentifier === 'string' && trackIds.has(s.trackIdentifier)) {
      s.trackIdentifier = trackIds.get(s.trackIdentifier);
    }
    out.push(s);
  }
  return out;
}

/**
 * The stats selection algorithm (WebRTC 1.0 §8.5): for a sender its `outbound-rtp` stats, for a
 * receiver its `inbound-rtp` stats (matched by the transceiver's `mid`; with a single
 * transceiver and no mid in the report, all of that type), plus every stat they reference,
 * directly or not.
 * @param {object[]} stats
 * @param {{mid: string|null, outbound: boolean, only: boolean}} which
 */
export function selectStats(stats, { mid, outbound, only }) {
  const type = outbound ? 'outbound-rtp' : 'inbound-rtp';
  const byId = new Map(stats.map((s) => [String(s.id), s]));
  const wanted = [];
  for (const s of stats) {
    if (s.type !== type) continue;
    if (mid != null ? s.mid === mid : only && s.mid === undefined) wanted.push(String(s.id));
  }
  for (let i = 0; i < wanted.length; i++) {
    const s = byId.get(wanted[i]);
    if (!s) continue;
    for (const k of REFERENCE_MEMBERS) {
      const r = s[k];
      if (typeof r === 'string' && byId.has(r) && !wanted.includes(r)) wanted.push(r);
    }
  }
  return stats.filter((s) => wanted.includes(String(s.id)));
}

/**
 * A report for one sender or receiver of `pc` (RTCRtpSender/RTCRtpReceiver.getStats, or
 * RTCPeerConnection.getStats(track)).
 * @param {import('./peerconnection.js').RTCPeerConnection} pc
 * @param {{sender?: object, receiver?: object}} target
 * @returns {Promise<RTCStatsReport>}
 */
export function statsFor(pc, target) {
  return pc.getStats().then((report) => {
    const all = [...report.values()];
    const transceivers = pc._transceivers ?? [];
    const t = transceivers.find((x) => x.sender === target.sender || x.receiver === target.receiver);
    return new RTCStatsReport(
      selectStats(all, { mid: t?.mid ?? null, outbound: !!target.sender, only: transceivers.length === 1 }),
    );
  });
}

/**
 * `RTCRtpReceiver.getSynchronizationSources()` / `getContributingSources()`: synchronous, so
 * they answer from a cache that each call refreshes in the background (`pc.getSynchronizationSources`,
 * at most one request in flight, not more often than every 50 ms). The first call therefore
 * returns [] and later calls lag the engine by one round trip. Entries: `{timestamp, source,
 * rtpTimestamp, audioLevel?}` (timestamp on the page's clock, audioLevel linear 0..1).
 * @param {import('./rtp.js').RTCRtpReceiver} receiver
 * @param {'synchronizationSources'|'contributingSources'} key
 */
export function rtpSources(receiver, key) {
  const pc = receiver._pc;
  const c = (receiver._rtpSources ??= { at: 0, inflight: false, unsupported: false, synchronizationSources: [], contributingSources: [] });
  const now = pageNow();
  if (receiver._sourcesUnsupported) c.unsupported = true;
  if (!c.inflight && !c.unsupported && receiver._id != null && pc && !pc._closed && !pc._dead && now - c.at >= SOURCES_REFRESH_MS) {
    c.inflight = true;
    pc._request('pc.getSynchronizationSources', { receiver: receiver._id })
      .then((r) => {
        const shift = clockShift(r?.now);
        const convert = (list) =>
          (Array.isArray(list) ? list : [])
            .filter((e) => e && typeof e.source === 'number' && typeof e.timestamp === 'number')
            .map((e) => {
              const o = { timestamp: e.timestamp + shift, source: e.source, rtpTimestamp: e.rtpTimestamp };
              if (typeof e.audioLevel === 'number') o.audioLevel = e.audioLevel;
              return o;
            });
        c.synchronizationSources = convert(r?.synchronizationSources);
        c.contributingSources = convert(r?.contributingSources);
      })
      .catch((e) => {
        // An engine without the method (older daemon) is not asked again.
        if (e?.vdimediaCode === 'unknown_method' || e?.name === 'NotSupportedError') {
          c.unsupported = true;
          receiver._sourcesUnsupported = true;
        }
      })
      .finally(() => {
        c.inflight = false;
        c.at = pageNow();
      });
  }
  return c[key].filter((e) => now - e.timestamp <= SOURCES_KEEP_MS).map((e) => ({ ...e }));
}
