// RTCRtpTransceiver / RTCRtpSender / RTCRtpReceiver (WebRTC 1.0 §5) as page-side handles of
// engine objects, plus RTCStatsReport and the peer connection's event classes.

import { RTCDTMFSender } from './dtmf.js';
import { notSupported } from './errors.js';
import { MediaStreamTrack } from './media.js';
import { RTCStatsReport, rtpSources, statsFor } from './stats.js';
import { randomId } from './util.js';

const DIRECTIONS = ['sendrecv', 'sendonly', 'recvonly', 'inactive', 'stopped'];

/** Codec capabilities (WebRTC 1.0 §5.2.1) of the codec names the engine reports. */
const CODEC_CAPS = {
  opus: { mimeType: 'audio/opus', clockRate: 48000, channels: 2, sdpFmtpLine: 'minptime=10;useinbandfec=1' },
  g722: { mimeType: 'audio/G722', clockRate: 8000, channels: 1 },
  pcmu: { mimeType: 'audio/PCMU', clockRate: 8000, channels: 1 },
  pcma: { mimeType: 'audio/PCMA', clockRate: 8000, channels: 1 },
  'telephone-event': { mimeType: 'audio/telephone-event', clockRate: 8000, channels: 1 },
};

/** `RTCRtpSender` (WebRTC 1.0 §5.2). `track` is the remoted track it sends, or null. */
export class RTCRtpSender {
  constructor(pc, track = null) {
    this._pc = pc;
    this._id = null;
    this._track = track;
    this._transactionId = randomId();
    /** Number of page requests (addTrack/removeTrack) changing `track` still in flight. */
    this._pending = 0;
    /** The RTCRtpTransceiver this sender belongs to (set by it). */
    this._transceiver = null;
    this._dtmf = null;
  }

  get track() { return this._track; }
  /**
   * `dtmf` (WebRTC 1.0 §5.2 / §7): the sender's RTCDTMFSender (always the same object) for an
   * audio sender, null otherwise.
   */
  get dtmf() {
    if (this._transceiver && this._transceiver._kind !== 'audio') return null;
    if (!this._dtmf) this._dtmf = new RTCDTMFSender(this);
    return this._dtmf;
  }
  get transport() { return null; }
  get rtcpTransport() { return null; }

  /** Minimal RTCRtpSendParameters: one active encoding, no codec detail. */
  getParameters() {
    return {
      transactionId: this._transactionId,
      encodings: [{ active: true }],
      headerExtensions: [],
      rtcp: { cname: '', reducedSize: false },
      codecs: [],
    };
  }

  setParameters() {
    return Promise.reject(notSupported('vdimedia: RTCRtpSender.setParameters is not remoted yet'));
  }

  /** Not implemented yet (no protocol method): always rejects with NotSupportedError. */
  replaceTrack() {
    return Promise.reject(notSupported('vdimedia: RTCRtpSender.replaceTrack is not implemented yet'));
  }

  /** getStats() (WebRTC 1.0 §5.2): this sender's outbound-rtp and what it references (§8.5). */
  getStats() {
    return statsFor(this._pc, { sender: this });
  }

  /** @param {'audio'|'video'} kind */
  static getCapabilities(kind) {
    return codecCapabilities(kind);
  }
}

/** `RTCRtpReceiver` (WebRTC 1.0 §5.3). `track` always exists (a remote track). */
export class RTCRtpReceiver {
  constructor(pc, track) {
    this._pc = pc;
    this._id = null;
    this._track = track;
  }

  get track() { return this._track; }
  get transport() { return null; }
  get rtcpTransport() { return null; }

  getParameters() {
    return { headerExtensions: [], rtcp: { cname: '', reducedSize: false }, codecs: [] };
  }

  /** RTCRtpContributingSource entries of the last 10 s (WebRTC 1.0 §5.3.4); see stats.js. */
  getContributingSources() { return rtpSources(this, 'contributingSources'); }
  /** RTCRtpSynchronizationSource entries of the last 10 s, with `audioLevel`; see stats.js. */
  getSynchronizationSources() { return rtpSources(this, 'synchronizationSources'); }

  /** getStats() (WebRTC 1.0 §5.3): this receiver's inbound-rtp and what it references (§8.5). */
  getStats() {
    return statsFor(this._pc, { receiver: this });
  }

  /** @param {'audio'|'video'} kind */
  static getCapabilities(kind) {
    return codecCapabilities(kind);
  }
}

/** The engine's codecs (from the bridge status' capabilities) as RTCRtpCapabilities. */
let engineCodecs = ['opus', 'G722', 'PCMU', 'PCMA'];
export function setEngineCodecs(codecs) {
  if (Array.isArray(codecs) && codecs.length) engineCodecs = codecs.map(String);
}
function codecCapabilities(kind) {
  if (kind !== 'audio') return null;
  const codecs = [];
  for (const name of [...engineCodecs, 'telephone-event']) {
    const c = CODEC_CAPS[name.toLowerCase()];
    if (c && !codecs.includes(c)) codecs.push({ ...c });
  }
  return { codecs, headerExtensions: [] };
}

/** `RTCRtpTransceiver` (WebRTC 1.0 §5.4). */
export class RTCRtpTransceiver {
  /**
   * @param {import('./peerconnection.js').RTCPeerConnection} pc
   * @param {string} kind
   * @param {{direction?: string, track?: MediaStreamTrack|null}} [init]
   */
  constructor(pc, kind, init = {}) {
    this._pc = pc;
    this._id = null;
    this._kind = kind;
    this._mid = null;
    this._direction = init.direction ?? 'sendrecv';
    this._currentDirection = null;
    this._senderEverHadTrack = !!init.track;
    this.sender = new RTCRtpSender(pc, init.track ?? null);
    this.sender._transceiver = this;
    const session = pc._session;
    // A placeholder until the engine names the receiver's track (WebRTC 1.0 §5.3: the
    // receiver has a track from the start).
    this.receiver = new RTCRtpReceiver(
      pc,
      new MediaStreamTrack(null, { id: randomId(), kind, label: 'remote audio' }, { remote: true }),
    );
    this.receiver._track._session = session;
  }

  get mid() { return this._mid; }
  get direction() { return this._direction; }
  /**
   * Setting the direction is not remoted yet (the protocol has no method for it): the value is
   * kept in the page only, and a warning is logged.
   */
  set direction(value) {
    if (!DIRECTIONS.includes(value) || value === 'stopped') {
      throw new TypeError(`The provided value '${value}' is not a valid enum value of type RTCRtpTransceiverDirection.`);
    }
    if (value !== this._direction) {
      this._direction = value;
      globalThis.console?.warn?.('[vdimedia] RTCRtpTransceiver.direction is not remoted yet; the engine keeps', this._id);
    }
  }
  get currentDirection() { return this._currentDirection; }
  get stopped() { return this._currentDirection === 'stopped'; }

  stop() {
    throw notSupported('vdimedia: RTCRtpTransceiver.stop is not remoted yet');
  }

  /** Updates from an engine `Transceiver` (docs/protocol.md, "Shapes"). */
  _update(info) {
    const session = this._pc._session;
    if (info.id != null) this._id = String(info.id);
    if ('mid' in info) this._mid = info.mid ?? null;
    if (DIRECTIONS.includes(info.direction)) this._direction = info.direction;
    // Once an answer set it, currentDirection never goes back to null (WebRTC 1.0 §5.4): a
    // `pc.track` event the engine built before it applied the answer (its transceiver says
    // null) may be delivered after the PcState that has the negotiated value.
    if ('currentDirection' in info && (info.currentDirection != null || this._currentDirection === null)) {
      this._currentDirection = info.currentDirection ?? null;
    }
    if (info.sender) {
      if (info.sender.id != null) this.sender._id = String(info.sender.id);
      // While the page's own addTrack/removeTrack is in flight its local value wins.
      if (!this.sender._pending) {
        if (info.sender.track == null) {
          this.sender._track = null;
        } else if (!this.sender._track || this.sender._track._remoteId !== info.sender.track) {
          const t = session?.findTrack(info.sender.track);
          if (t) this.sender._track = t;
        }
      }
      if (this.sender._track) this._senderEverHadTrack = true;
    }
    if (info.receiver) {
      if (info.receiver.id != null) this.receiver._id = String(info.receiver.id);
      const t = info.receiver.track;
      if (t && t.id != null && this.receiver._track._remoteId !== t.id) {
        const known = session?.findTrack(t.id);
        if (known) {
          this.receiver._track = known;
        } else {
          // Re-key the placeholder so the same object stays the receiver's track.
          const track = this.receiver._track;
          const old = session?.tracks.get(track._remoteId);
          old?.delete(track);
          if (old && old.size === 0) session.tracks.delete(track._remoteId);
          track._remoteId = String(t.id);
          track._id = String(t.id);
          if (t.label) track._label = t.label;
          if (t.kind) track._kind = t.kind;
          session?.addTrack(track);
        }
      }
    }
  }
}

/** `RTCStatsReport` lives with the rest of getStats in stats.js. */
export { RTCStatsReport };

/** `RTCPeerConnectionIceEvent` (WebRTC 1.0 §4.8.3). */
export class RTCPeerConnectionIceEvent extends Event {
  constructor(type, init = {}) {
    super(type, init);
    this.candidate = init.candidate ?? null;
    this.url = init.url ?? null;
  }
}

/** `RTCTrackEvent` (WebRTC 1.0 §5.7). */
export class RTCTrackEvent extends Event {
  constructor(type, init = {}) {
    super(type, init);
    this.receiver = init.receiver;
    this.track = init.track;
    this.streams = Object.freeze([...(init.streams ?? [])]);
    this.transceiver = init.transceiver;
  }
}
