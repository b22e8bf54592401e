// RTCRtpTransceiver / RTCRtpSender / RTCRtpReceiver (WebRTC 1.0 §5) as page-side handles of
// engine objects, plus RTCStatsReport and the peer connection's event classes.

import { RTCDTMFSender } from './dtmf.js';
import { invalidState } from './errors.js';
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
    /** RTCRtpEncodingParameters (WebRTC 1.0 §5.2.1): one encoding for audio. */
    this._encodings = [{ active: true }];
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

  /**
   * RTCRtpSendParameters (WebRTC 1.0 §5.2): the encodings (`active`, `maxBitrate` bit/s from
   * `sendEncodings` or setParameters), no codec detail.
   */
  getParameters() {
    return {
      transactionId: this._transactionId,
      encodings: this._encodings.map((e) => ({ ...e })),
      headerExtensions: [],
      rtcp: { cname: '', reducedSize: false },
      codecs: [],
    };
  }

  /**
   * setParameters(parameters) (WebRTC 1.0 §5.2): `pc.setParameters`; the engine caps the
   * Opus encoder at `encodings[0].maxBitrate` (bit/s). A `transactionId` other than the last
   * getParameters' or another number of encodings → InvalidModificationError; a bad
   * `maxBitrate` → TypeError; closed connection → InvalidStateError.
   */
  setParameters(parameters) {
    const pc = this._pc;
    const modified = () => new DOMException("Failed to execute 'setParameters' on 'RTCRtpSender': Read-only field modified in setParameters().", 'InvalidModificationError');
    if (pc._closed) return Promise.reject(invalidState("Failed to execute 'setParameters' on 'RTCRtpSender': The peer connection is closed."));
    if (parameters?.transactionId !== this._transactionId) return Promise.reject(modified());
    let encodings;
    try {
      encodings = encodingsFrom(parameters?.encodings);
    } catch (e) {
      return Promise.reject(e);
    }
    if (encodings.length !== this._encodings.length) return Promise.reject(modified());
    return pc._op('setParameters', async () => {
      await pc._request('pc.setParameters', { sender: this._id, parameters: { encodings } });
      this._encodings = encodings;
      this._transactionId = randomId();
    });
  }

  /**
   * replaceTrack(withTrack) (WebRTC 1.0 §5.2): `pc.replaceTrack`; the engine swaps the sender's
   * source without renegotiation (same SSRC, no gap longer than a packet). `null` sends
   * nothing. A track of another kind → TypeError; a track that is not remoted → TypeError;
   * closed connection → InvalidStateError.
   */
  replaceTrack(withTrack) {
    const pc = this._pc;
    if (withTrack != null) {
      if (!(withTrack instanceof MediaStreamTrack)) {
        return Promise.reject(new TypeError("Failed to execute 'replaceTrack' on 'RTCRtpSender': the track is not a vdimedia (remoted) MediaStreamTrack."));
      }
      const kind = this._transceiver?._kind ?? this._track?.kind;
      if (kind && withTrack.kind !== kind) {
        return Promise.reject(new TypeError("Failed to execute 'replaceTrack' on 'RTCRtpSender': The new track's kind does not match the sender's kind."));
      }
    }
    if (pc._closed) {
      return Promise.reject(invalidState("Failed to execute 'replaceTrack' on 'RTCRtpSender': The peer connection is closed."));
    }
    if (this._transceiver?._stopping || this._transceiver?.stopped) {
      return Promise.reject(invalidState("Failed to execute 'replaceTrack' on 'RTCRtpSender': The transceiver is stopped."));
    }
    const track = withTrack ?? null;
    this._pending += 1;
    const run = async () => {
      // The sender id is known once earlier synchronous requests (addTrack …) have answered.
      await Promise.all([...pc._syncOps]);
      if (this._id === null) throw invalidState("Failed to execute 'replaceTrack' on 'RTCRtpSender': The sender is not known to the media engine.");
      await pc._request('pc.replaceTrack', { sender: this._id, track: track ? track._remoteId : null });
      this._track = track;
      if (track && this._transceiver) this._transceiver._senderEverHadTrack = true;
    };
    return run().finally(() => { this._pending -= 1; });
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

/**
 * RTCRtpEncodingParameters (WebRTC 1.0 §5.2.1) as the SDK keeps and remotes them: `active`
 * (default true) and `maxBitrate` (bit/s) when given. Not a list, or a `maxBitrate` that is not
 * a non-negative integer → TypeError.
 * @param {unknown} list
 * @returns {{active: boolean, maxBitrate?: number}[]}
 */
export function encodingsFrom(list) {
  if (!Array.isArray(list)) throw new TypeError('encodings must be a sequence of RTCRtpEncodingParameters');
  return list.map((e) => {
    const out = { active: e?.active === undefined ? true : !!e.active };
    if (e?.maxBitrate !== undefined) {
      const v = Number(e.maxBitrate);
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new TypeError(`maxBitrate ${e.maxBitrate} is not an unsigned long (bit/s)`);
      out.maxBitrate = v;
    }
    return out;
  });
}

/** Polling of a muted receiver for RTP (`pc.getSynchronizationSources`), ms: fast at first. */
const RTP_WATCH_FAST_MS = 100;
const RTP_WATCH_SLOW_MS = 1000;
/** How long the watch polls fast before it slows down, ms. */
const RTP_WATCH_FAST_FOR_MS = 5000;

/** `RTCRtpReceiver` (WebRTC 1.0 §5.3). `track` always exists (a remote track). */
export class RTCRtpReceiver {
  constructor(pc, track) {
    this._pc = pc;
    this._id = null;
    this._track = track;
    /** The RTP watch in progress: `{timer, since, startedAt}` or null. */
    this._rtpWatch = null;
    /** The track was unmuted by RTP once: later RTP must be newer than the watch's start. */
    this._heardRtp = false;
    /** The engine has no `pc.getSynchronizationSources` (shared with stats.js rtpSources). */
    this._sourcesUnsupported = false;
  }

  /**
   * Unmutes the track once RTP arrives, as Chromium does for a received track (muted from its
   * creation, and again from "process the removal of a remote track", WebRTC 1.0 §4.4.1.6,
   * until packets come). The engine has no event for it: the receiver's RTP sources
   * (`pc.getSynchronizationSources`, engine clock) are polled every 100 ms, after 5 s every
   * second, while the track is muted and the transceiver receives. After a first unmute, only
   * a packet newer than the watch's start counts (the list keeps 10 s of sources). An engine
   * without the method unmutes at once (the old behaviour).
   */
  _watchRtp() {
    if (this._rtpWatch || !this._track?._muted) return;
    if (this._sourcesUnsupported) {
      this._track._setMuted(false);
      return;
    }
    const watch = { timer: null, since: null, startedAt: Date.now() };
    this._rtpWatch = watch;
    const pc = this._pc;
    const again = () => {
      const fast = Date.now() - watch.startedAt < RTP_WATCH_FAST_FOR_MS;
      watch.timer = setTimeout(tick, fast ? RTP_WATCH_FAST_MS : RTP_WATCH_SLOW_MS);
    };
    const tick = () => {
      watch.timer = null;
      if (this._rtpWatch !== watch) return;
      const track = this._track;
      if (!track || !track._muted || track._readyState === 'ended' || pc._closed || pc._dead) {
        this._rtpWatch = null;
        return;
      }
      if (this._id == null) return again();
      pc._request('pc.getSynchronizationSources', { receiver: this._id })
        .then((r) => {
          if (this._rtpWatch !== watch) return;
          const now = typeof r?.now === 'number' ? r.now : null;
          if (watch.since === null) watch.since = this._heardRtp ? now ?? Infinity : -Infinity;
          const list = Array.isArray(r?.synchronizationSources) ? r.synchronizationSources : [];
          if (list.some((e) => typeof e?.timestamp === 'number' && e.timestamp > watch.since)) {
            this._rtpWatch = null;
            this._heardRtp = true;
            this._track?._setMuted(false);
            return;
          }
          again();
        })
        .catch((e) => {
          if (this._rtpWatch !== watch) return;
          if (e?.vdimediaCode === 'unknown_method' || e?.name === 'NotSupportedError') {
            this._rtpWatch = null;
            this._sourcesUnsupported = true;
            this._track?._setMuted(false);
            return;
          }
          again();
        });
    };
    tick();
  }

  /** Stops a running RTP watch (the transceiver stopped receiving, or the track changed). */
  _stopRtpWatch() {
    if (this._rtpWatch?.timer) clearTimeout(this._rtpWatch.timer);
    this._rtpWatch = null;
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
    /** Number of page direction changes (setter, removeTrack) still in flight: the page's value wins. */
    this._directionPending = 0;
    this._currentDirection = null;
    this._senderEverHadTrack = !!init.track;
    /** WebRTC 1.0 §5.4 [[Stopping]]: stop() was called or a description rejected the m-line. */
    this._stopping = false;
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
   * The direction setter (WebRTC 1.0 §5.4): takes effect at once in the page and is sent as
   * `pc.setDirection`; the engine updates the negotiation-needed flag (negotiationneeded) and
   * writes the direction into the next offer or answer (hold and resume). An invalid value →
   * TypeError; `stopped` → TypeError (as Chromium: it is not settable); closed connection or
   * stopped transceiver → InvalidStateError.
   */
  set direction(value) {
    if (!DIRECTIONS.includes(value) || value === 'stopped') {
      throw new TypeError(`The provided value '${value}' is not a valid enum value of type RTCRtpTransceiverDirection.`);
    }
    if (this._pc._closed || this.stopped || this._stopping) {
      throw invalidState("Failed to set the 'direction' property on 'RTCRtpTransceiver': The transceiver is stopped.");
    }
    if (value === this._direction) return;
    this._direction = value;
    this._setDirectionInEngine(value);
  }

  /** Sends the page's [[Direction]] to the engine (after the requests that name this transceiver). */
  _setDirectionInEngine(value) {
    const pc = this._pc;
    this._directionPending += 1;
    const pendingBefore = [...pc._syncOps];
    pc._track(
      Promise.all(pendingBefore)
        .then(() => {
          if (this._id === null) throw new Error('the transceiver is not known to the media engine');
          return pc._request('pc.setDirection', { transceiver: this._id, direction: value });
        })
        .then((r) => { if (r?.transceiver) this._update({ ...r.transceiver, direction: this._direction }); })
        .catch((e) => globalThis.console?.warn?.('[vdimedia] pc.setDirection failed:', e?.message))
        .finally(() => { this._directionPending -= 1; }),
    );
  }
  /**
   * setCodecPreferences(codecs) (WebRTC 1.0 §5.4): synchronous, like Chromium. Every entry must
   * be one of RTCRtpReceiver.getCapabilities(kind).codecs (same mimeType, case-insensitive, and
   * clockRate), else InvalidModificationError; an empty list restores the engine's order. Sent
   * as `pc.setCodecPreferences`; the next offer (or answer) lists only these codecs, in order.
   */
  setCodecPreferences(codecs) {
    if (codecs == null || typeof codecs[Symbol.iterator] !== 'function') {
      throw new TypeError("Failed to execute 'setCodecPreferences' on 'RTCRtpTransceiver': The provided value cannot be converted to a sequence.");
    }
    const list = [...codecs];
    const caps = codecCapabilities(this._kind)?.codecs ?? [];
    const out = [];
    for (const c of list) {
      const mime = String(c?.mimeType ?? '').toLowerCase();
      const known = caps.find((k) => k.mimeType.toLowerCase() === mime && k.clockRate === c?.clockRate);
      if (!known) {
        throw new DOMException(`Failed to execute 'setCodecPreferences' on 'RTCRtpTransceiver': Invalid codec preferences: invalid codec with name "${c?.mimeType}".`, 'InvalidModificationError');
      }
      out.push({ mimeType: known.mimeType, clockRate: known.clockRate });
    }
    if (out.length && out.every((c) => c.mimeType.toLowerCase() === 'audio/telephone-event')) {
      throw new DOMException("Failed to execute 'setCodecPreferences' on 'RTCRtpTransceiver': Invalid codec preferences: Missing codec from codec capabilities.", 'InvalidModificationError');
    }
    if (this._pc._closed) return;
    const pc = this._pc;
    const pendingBefore = [...pc._syncOps];
    pc._track(
      Promise.all(pendingBefore)
        .then(() => {
          if (this._id === null) throw new Error('the transceiver is not known to the media engine');
          return pc._request('pc.setCodecPreferences', { transceiver: this._id, codecs: out });
        })
        .catch((e) => globalThis.console?.warn?.('[vdimedia] pc.setCodecPreferences failed:', e?.message)),
    );
  }

  get currentDirection() { return this._currentDirection; }
  get stopped() { return this._currentDirection === 'stopped'; }

  /**
   * stop() (WebRTC 1.0 §5.4, "stop the RTCRtpTransceiver"): at once `direction` is "stopped",
   * the receiver's track ends and the sender stops sending (`pc.stopTransceiver`; the engine
   * fires negotiationneeded). The next offer/answer rejects the m-line (port 0); then
   * `currentDirection` is "stopped". Idempotent; closed connection → InvalidStateError.
   */
  stop() {
    const pc = this._pc;
    if (pc._closed) {
      throw invalidState("Failed to execute 'stop' on 'RTCRtpTransceiver': The peer connection is closed.");
    }
    if (this._stopping) return;
    this._stopLocally(false);
    const pendingBefore = [...pc._syncOps];
    pc._track(
      Promise.all(pendingBefore)
        .then(() => {
          if (this._id === null) throw new Error('the transceiver is not known to the media engine');
          return pc._request('pc.stopTransceiver', { transceiver: this._id });
        })
        .then((r) => { if (r?.transceiver) this._update(r.transceiver); })
        .catch((e) => globalThis.console?.warn?.('[vdimedia] pc.stopTransceiver failed:', e?.message)),
    );
  }

  /**
   * "Stop sending and receiving" as the page sees it: direction stopped, receiver track ended
   * (`ended` fires; after stop() from a task, as in Chromium, where the track is still "live"
   * when stop() returns).
   */
  _stopLocally(now) {
    this._stopping = true;
    this._direction = 'stopped';
    const track = this.receiver.track;
    if (now) track?._end(true);
    else setTimeout(() => track?._end(true), 0);
  }

  /**
   * Whether the far end may send on this transceiver now, from the descriptions: its remote
   * m-section (by mid) sends (`sendrecv`/`sendonly`, port not 0) and, once negotiated, the
   * current direction receives. WebRTC 1.0 §4.4.1.6 sets [[Receptive]] and processes the
   * removal of a remote track from the same facts.
   */
  _receiving() {
    if (this._stopping || this._currentDirection === 'stopped') return false;
    if (this._currentDirection === 'sendonly' || this._currentDirection === 'inactive') return false;
    const sdp = this._pc._desc?.remoteDescription?.sdp;
    if (!sdp || this._mid == null) return false;
    for (const sec of String(sdp).split(/\r?\n(?=m=)/).slice(1)) {
      const lines = sec.split(/\r?\n/);
      if (!lines.some((l) => l === `a=mid:${this._mid}`)) continue;
      if (lines[0].split(' ')[1] === '0') return false;
      const dir = lines.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) ?? 'sendrecv';
      return dir === 'sendrecv' || dir === 'sendonly';
    }
    return false;
  }

  /**
   * The receiver track's muted state after a description was applied (as Chromium): muted
   * when the far end stops sending ("process the removal of a remote track", WebRTC 1.0
   * §4.4.1.5-6), unmuted by RTP ([`RTCRtpReceiver._watchRtp`]) while it may send.
   */
  _syncReceiving() {
    const receiver = this.receiver;
    const track = receiver._track;
    if (!track || track._readyState === 'ended' || this._pc._closed) {
      receiver._stopRtpWatch();
      return;
    }
    if (!this._receiving()) {
      receiver._stopRtpWatch();
      track._setMuted(true);
    } else if (track._muted) {
      receiver._watchRtp();
    }
  }

  /** Updates from an engine `Transceiver` (docs/protocol.md, "Shapes"). */
  _update(info) {
    const session = this._pc._session;
    if (info.id != null) this._id = String(info.id);
    if ('mid' in info) this._mid = info.mid ?? null;
    // The engine stopped it (a remote description rejected the m-line): stop here too.
    if (info.direction === 'stopped' && !this._stopping && !this._pc._closed) this._stopLocally(true);
    if (DIRECTIONS.includes(info.direction) && !this._directionPending && !this._stopping) this._direction = info.direction;
    // Once an answer set it, currentDirection never goes back to null (WebRTC 1.0 §5.4): a
    // `pc.track` event the engine built before it applied the answer (its transceiver says
    // null) may be delivered after the PcState that has the negotiated value.
    if ('currentDirection' in info && (info.currentDirection != null || this._currentDirection === null)) {
      this._currentDirection = info.currentDirection ?? null;
    }
    const pc = this._pc;
    if (this._currentDirection === 'stopped' && this._stopping && !pc._closed) {
      // WebRTC 1.0 §4.4.1.6: once an answer stopped it, the transceiver leaves the connection's
      // set of transceivers (getTransceivers/getSenders/getReceivers). The engine still lists
      // it; an object made for it again is dropped here too.
      pc._transceivers = pc._transceivers.filter((t) => t !== this);
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
