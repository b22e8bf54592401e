// Media Capture and Streams objects for remoted tracks: the audio is captured and played on
// the endpoint, the page holds handles (MediaStreamTrack, MediaStream) that name engine objects.

import { invalidState, notSupported } from './errors.js';
import { debug, defineEventHandlers, randomId } from './util.js';

/** The engine's capture ranges (sampleRate Hz, channelCount), what applyConstraints can reach. */
const CAPTURE_RANGES = { sampleRate: { min: 8000, max: 96000 }, channelCount: { min: 1, max: 2 } };

/**
 * `MediaStreamTrack` (Media Capture §4.3) for a track that lives in the endpoint engine.
 * `enabled` maps to `track.setEnabled`, `stop()` to `track.stop`, the `ended` event to the
 * engine's `track.ended`. Settings come from the engine's `Track.settings` (sampleRate in Hz).
 * Not constructible by pages (use getUserMedia or a peer connection's receivers).
 */
export class MediaStreamTrack extends EventTarget {
  /**
   * @param {import('./session.js').Session} session
   * @param {{id: string, kind?: string, label?: string, settings?: object}} info engine Track
   * @param {{remote?: boolean, constraints?: object, remoteId?: string, id?: string}} [opts]
   */
  constructor(session, info, opts = {}) {
    super();
    this._session = session;
    this._remoteId = opts.remoteId ?? info.id;
    this._id = opts.id ?? info.id;
    this._kind = info.kind ?? 'audio';
    this._label = info.label ?? '';
    this._settings = info.settings ? { ...info.settings } : {};
    this._constraints = opts.constraints ? { ...opts.constraints } : {};
    this._remote = !!opts.remote;
    this._enabled = true;
    // A receiver's track starts muted until media arrives (WebRTC 1.0 §5.3 "create an
    // RTCRtpReceiver": muted initialized to true; RTCRtpReceiver._watchRtp unmutes it).
    this._muted = this._remote;
    this._readyState = 'live';
    this._contentHint = '';
    session?.addTrack(this);
  }

  get id() { return this._id; }
  get kind() { return this._kind; }
  get label() { return this._label; }
  get muted() { return this._muted; }
  get readyState() { return this._readyState; }
  get contentHint() { return this._contentHint; }
  set contentHint(v) { this._contentHint = String(v); }
  get enabled() { return this._enabled; }
  set enabled(value) {
    const v = !!value;
    if (v === this._enabled) return;
    this._enabled = v;
    if (this._readyState !== 'live' || !this._session || this._session.lost) return;
    this._session
      .request('track.setEnabled', { track: this._remoteId, enabled: v })
      .catch((e) => debug(`track.setEnabled ${this._remoteId} failed:`, e?.message));
  }

  /** Ends the track; a capture track is stopped in the engine once no clone of it is live. */
  stop() {
    if (this._readyState === 'ended') return;
    this._readyState = 'ended';
    const s = this._session;
    if (this._remote || !s || s.lost) return;
    const siblings = s.tracks.get(this._remoteId) ?? new Set();
    if ([...siblings].some((t) => t._readyState === 'live')) return;
    s.request('track.stop', { track: this._remoteId }).catch((e) => debug(`track.stop ${this._remoteId} failed:`, e?.message));
  }

  /** Ends the track from the source side; fires `ended` when `fire` (Media Capture §4.3.1.2). */
  _end(fire) {
    if (this._readyState === 'ended') return;
    this._readyState = 'ended';
    if (fire) this.dispatchEvent(new Event('ended'));
  }

  /** @returns {object} MediaTrackSettings as reported by the engine (sampleRate in Hz). */
  getSettings() {
    return { ...this._settings };
  }

  /** @returns {object} the constraints the track was requested with. */
  getConstraints() {
    return JSON.parse(JSON.stringify(this._constraints ?? {}));
  }

  /** @returns {object} MediaTrackCapabilities: the engine's capture ranges, the device's ids. */
  getCapabilities() {
    if (this._remote) return {};
    const s = this._settings;
    const caps = {};
    if (s.deviceId !== undefined) caps.deviceId = s.deviceId;
    if (s.groupId !== undefined) caps.groupId = s.groupId;
    // The engine captures through audioconvert/audioresample: any rate and channel count in
    // its range is produced exactly (daemon media::MediaDevices::capture_capabilities).
    if (typeof s.sampleRate === 'number') caps.sampleRate = { ...CAPTURE_RANGES.sampleRate };
    if (typeof s.channelCount === 'number') caps.channelCount = { ...CAPTURE_RANGES.channelCount };
    for (const k of ['echoCancellation', 'noiseSuppression', 'autoGainControl']) {
      if (typeof s[k] === 'boolean') caps[k] = [true, false];
    }
    return caps;
  }

  /**
   * applyConstraints(constraints) (Media Capture §4.3.8, the ApplyConstraints algorithm):
   * `track.applyConstraints`; the engine selects settings again (deviceId, sampleRate,
   * channelCount, echoCancellation, noiseSuppression, autoGainControl), rebuilds the capture
   * in every call sending the track, and answers the new MediaTrackSettings, which this track
   * and its clones then report. No argument (or `{}`) = the defaults. An impossible constraint
   * rejects with OverconstrainedError naming it and changes nothing; not an object →
   * TypeError; an ended track → InvalidStateError. Remote tracks accept only `{}`.
   * @param {object} [constraints] MediaTrackConstraints
   * @returns {Promise<void>}
   */
  applyConstraints(constraints) {
    if (this._readyState === 'ended') return Promise.reject(invalidState('the track has ended'));
    const c = constraints ?? {};
    if (typeof c !== 'object' || Array.isArray(c)) {
      return Promise.reject(new TypeError("Failed to execute 'applyConstraints' on 'MediaStreamTrack': The provided value is not of type 'MediaTrackConstraints'."));
    }
    const copy = JSON.parse(JSON.stringify(c));
    const s = this._session;
    if (this._remote || !s) {
      if (Object.keys(copy).length === 0) {
        this._constraints = {};
        return Promise.resolve();
      }
      return Promise.reject(notSupported('vdimedia: constraints of a remote track cannot be changed'));
    }
    if (s.lost) return Promise.reject(invalidState('vdimedia: the channel to the media engine is lost'));
    return s.request('track.applyConstraints', { track: this._remoteId, constraints: copy }).then((r) => {
      // The engine track changed: every clone reports its new settings.
      const siblings = s.tracks.get(this._remoteId) ?? new Set([this]);
      for (const t of new Set([...siblings, this])) {
        if (r?.settings && typeof r.settings === 'object') t._settings = { ...r.settings };
        if (typeof r?.label === 'string') t._label = r.label;
      }
      this._constraints = copy;
    });
  }

  /**
   * A new track object with its own id that shares the engine track: `enabled` applies to the
   * engine track as a whole, the engine track stops when the last live clone stops.
   */
  clone() {
    const t = new MediaStreamTrack(
      this._session,
      { id: this._remoteId, kind: this._kind, label: this._label, settings: this._settings },
      { remote: this._remote, constraints: this._constraints, remoteId: this._remoteId, id: randomId() },
    );
    t._enabled = this._enabled;
    t._muted = this._muted;
    t._readyState = this._readyState;
    return t;
  }

  toJSON() {
    return { id: this.id, kind: this.kind, label: this.label, enabled: this.enabled, readyState: this.readyState };
  }

  /**
   * "Set a track's muted state" (Media Capture §4.3.1.1): updates `muted` and fires `mute` /
   * `unmute` when it changes; an ended track stays as it is.
   * @param {boolean} muted
   */
  _setMuted(muted) {
    const v = !!muted;
    if (this._readyState === 'ended' || this._muted === v) return;
    this._muted = v;
    this.dispatchEvent(new Event(v ? 'mute' : 'unmute'));
  }
}
defineEventHandlers(MediaStreamTrack.prototype, ['ended', 'mute', 'unmute']);

/** `MediaStreamTrackEvent` (Media Capture §4.4) for addtrack/removetrack. */
export class MediaStreamTrackEvent extends Event {
  constructor(type, init = {}) {
    super(type, init);
    this.track = init.track ?? null;
  }
}

/**
 * `MediaStream` (Media Capture §4.2) holding remoted tracks. It may also hold native tracks
 * (a page that does `new MediaStream()` then `addTrack(cameraTrack)`); media elements play the
 * native part natively and the remoted part on the endpoint.
 */
export class MediaStream extends EventTarget {
  /** @param {MediaStream|MediaStreamTrack[]} [arg] */
  constructor(arg) {
    super();
    this._id = randomId();
    /** @type {Set<any>} */
    this._tracks = new Set();
    /** Callbacks run when the track set changes (media elements re-attach playout). */
    this._observers = new Set();
    const tracks = arg == null ? [] : Array.isArray(arg) ? arg : typeof arg.getTracks === 'function' ? arg.getTracks() : null;
    if (tracks === null) {
      throw new TypeError("Failed to construct 'MediaStream': The provided value is not of type '(MediaStream or sequence<MediaStreamTrack>)'.");
    }
    for (const t of tracks) this._tracks.add(t);
  }

  /** A stream whose id was chosen by the engine (getUserMedia result, msid of a remote stream). */
  static _withId(id, tracks = []) {
    const s = new MediaStream(tracks);
    s._id = String(id);
    return s;
  }

  get id() { return this._id; }
  get active() { return [...this._tracks].some((t) => t.readyState !== 'ended'); }
  getTracks() { return [...this._tracks]; }
  getAudioTracks() { return [...this._tracks].filter((t) => t.kind === 'audio'); }
  getVideoTracks() { return [...this._tracks].filter((t) => t.kind === 'video'); }
  getTrackById(id) { return [...this._tracks].find((t) => t.id === id) ?? null; }

  addTrack(track) {
    if (!track || typeof track.kind !== 'string') {
      throw new TypeError("Failed to execute 'addTrack' on 'MediaStream': parameter 1 is not of type 'MediaStreamTrack'.");
    }
    if (this._tracks.has(track)) return;
    this._tracks.add(track);
    this._changed();
  }

  removeTrack(track) {
    if (this._tracks.delete(track)) this._changed();
  }

  /** Adds a track on the engine's behalf and fires `addtrack` (WebRTC 1.0 §4.4.1.6). */
  _addRemoteTrack(track, fire) {
    if (this._tracks.has(track)) return;
    this._tracks.add(track);
    this._changed();
    if (fire) this.dispatchEvent(new MediaStreamTrackEvent('addtrack', { track }));
  }

  _changed() {
    for (const fn of this._observers) {
      try {
        fn(this);
      } catch (e) {
        debug('stream observer failed:', e);
      }
    }
  }

  clone() {
    return new MediaStream(this.getTracks().map((t) => (typeof t.clone === 'function' ? t.clone() : t)));
  }

  toJSON() {
    return { id: this.id, active: this.active };
  }
}
defineEventHandlers(MediaStream.prototype, ['addtrack', 'removetrack', 'active', 'inactive']);

/** `MediaDeviceInfo` (Media Capture §9.2) for an endpoint device. */
export class MediaDeviceInfo {
  /** @param {{deviceId: string, kind: string, label: string, groupId: string}} info */
  constructor(info) {
    this._info = {
      deviceId: String(info.deviceId ?? ''),
      kind: String(info.kind ?? ''),
      label: String(info.label ?? ''),
      groupId: String(info.groupId ?? ''),
    };
  }

  get deviceId() { return this._info.deviceId; }
  get kind() { return this._info.kind; }
  get label() { return this._info.label; }
  get groupId() { return this._info.groupId; }

  /** @returns {{deviceId: string, kind: string, label: string, groupId: string}} */
  toJSON() {
    return { ...this._info };
  }
}

/**
 * `getUserMedia` (Media Capture §10.2) answered by the engine (`media.getUserMedia`).
 * @param {import('./session.js').Session} session
 * @param {object} constraints MediaStreamConstraints
 * @returns {Promise<MediaStream>}
 */
export async function remoteGetUserMedia(session, constraints) {
  const result = await session.request('media.getUserMedia', { constraints });
  const audioConstraints = constraints && typeof constraints.audio === 'object' ? constraints.audio : {};
  const tracks = (result?.tracks ?? []).map(
    (info) => new MediaStreamTrack(session, info, { constraints: audioConstraints }),
  );
  const stream = MediaStream._withId(result?.stream?.id ?? randomId(), tracks);
  session.streams.set(stream.id, stream);
  return stream;
}

/**
 * `enumerateDevices` (Media Capture §9.2) answered by the engine (`devices.enumerate`).
 * @returns {Promise<MediaDeviceInfo[]>}
 */
export async function remoteEnumerateDevices(session) {
  const result = await session.request('devices.enumerate', {});
  return (result?.devices ?? []).map((d) => new MediaDeviceInfo(d));
}
