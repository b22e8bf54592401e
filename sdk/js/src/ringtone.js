// Ringtones on the endpoint (docs/protocol.md, `ringtone.play` / `ringtone.stop` /
// `ringtone.ended`): a page-supplied sound played on an output of the thin client chosen by
// its `deviceId` (the speaker), while the call stays on the headset. In a virtual desktop the
// page's own `new Audio(url).play()` plays in the VDA, whose audio the remoting product sends
// to whatever device it picked; this plays it on the endpoint itself.
//
// The file is sent once (base64 in the request) and decoded on the endpoint: WAV, Ogg
// Opus/Vorbis, and MP3/AAC where the endpoint has the decoders. At most MAX_RINGTONE_BYTES.

import { errorFromBody, invalidState, notSupported } from './errors.js';
import { activeSession } from './state.js';
import { debug, defineEventHandlers, warn } from './util.js';

/** Largest ringtone file (bytes, before base64) the endpoint accepts: 512 KiB. */
export const MAX_RINGTONE_BYTES = 512 * 1024;

let ringtoneCounter = 0;
/** Guards the Ringtone constructor: pages get ringtones from playRingtone() only. */
const INTERNAL = Symbol('vdimedia ringtone');
/** Sessions whose channel-loss cleanup is registered. */
const watched = new WeakSet();

/**
 * A ringtone playing on the endpoint, from `VdiMedia.playRingtone()`. Not constructible by
 * pages. Fires `ended` (an Event; `onended` works too) when it ends by itself: a
 * non-looping file played to its end, playback failed (`error` is then set), or the channel
 * to the endpoint was lost. `stop()` ends it without an `ended` event.
 */
export class Ringtone extends EventTarget {
  /** @private */
  constructor(token, session, id, sinkId, loop, volume) {
    if (token !== INTERNAL) throw new TypeError('Illegal constructor: use VdiMedia.playRingtone()');
    super();
    this._session = session;
    this._state = 'playing';
    this._error = null;
    this._id = id;
    this._sinkId = sinkId;
    this._loop = loop;
    this._volume = volume;
    this._ended = new Promise((resolve) => {
      this._resolveEnded = resolve;
    });
  }

  /** The SDK's id for it (`ring1`, …), as in the protocol messages. */
  get id() {
    return this._id;
  }
  /** The endpoint `audiooutput` deviceId it plays on; `''` for the default output. */
  get sinkId() {
    return this._sinkId;
  }
  /** Whether it starts again at the end of the file. */
  get loop() {
    return this._loop;
  }
  /** Linear gain, 0..1. */
  get volume() {
    return this._volume;
  }
  /** True until it ends or is stopped. */
  get playing() {
    return this._state === 'playing';
  }
  /** Why playback failed (a DOMException), or null. */
  get error() {
    return this._error;
  }
  /**
   * Resolves once it is over, for any reason, with `{reason}`: `"ended"` (played to its
   * end), `"stopped"` (`stop()`), `"error"` (see `error`) or `"channel_lost"`. Never rejects.
   * @returns {Promise<{reason: string}>}
   */
  get ended() {
    return this._ended;
  }

  /**
   * Stops it on the endpoint. Resolves once the endpoint stopped it (at once when it is not
   * playing or the channel is gone); never rejects.
   * @returns {Promise<void>}
   */
  stop() {
    if (this._state !== 'playing') return Promise.resolve();
    this._finish('stopped');
    const session = this._session;
    if (session.lost) return Promise.resolve();
    return session.request('ringtone.stop', { id: this._id }).then(
      () => undefined,
      (e) => debug(`ringtone.stop ${this._id} failed:`, e?.message),
    );
  }

  /** @private */
  _finish(reason) {
    this._state = reason;
    this._session.ringtones?.delete(this._id);
    this._resolveEnded({ reason });
  }

  /** @private An endpoint event for this ringtone (`ringtone.ended`). */
  _onEngineEvent(name, params) {
    if (name !== 'ringtone.ended' || this._state !== 'playing') return;
    if (params?.error) {
      this._error = errorFromBody(params.error);
      warn(`ringtone ${this._id} failed on the endpoint:`, this._error.message);
    }
    this._finish(params?.error ? 'error' : 'ended');
    this.dispatchEvent(new Event('ended'));
  }

  /** @private The channel is gone: so is the ringtone. */
  _onChannelLost() {
    if (this._state !== 'playing') return;
    this._finish('channel_lost');
    this.dispatchEvent(new Event('ended'));
  }
}
defineEventHandlers(Ringtone.prototype, ['ended']);


/**
 * Plays `source` on an output of the endpoint.
 * @param {ArrayBuffer|ArrayBufferView|Blob|string|URL} source the encoded sound file (WAV,
 *   Ogg Opus/Vorbis, MP3 where the endpoint decodes it), or a URL the page fetches it from
 * @param {object} [options]
 * @param {string} [options.sinkId=''] an `audiooutput` deviceId from `enumerateDevices()`;
 *   `''`/`'default'` = the endpoint's default output
 * @param {boolean} [options.loop=true] start again at the end of the file until `stop()`
 * @param {number} [options.volume=1] linear gain, 0..1
 * @returns {Promise<Ringtone>} once it plays. Rejects with InvalidStateError when not
 *   redirected (play it natively then), TypeError for a bad source, RangeError for a file over
 *   MAX_RINGTONE_BYTES or a volume outside 0..1, NotSupportedError when the endpoint cannot
 *   decode it (or a fetch answered an HTTP error), NotFoundError for an unknown sinkId,
 *   OperationError when too many ringtones play (4 per page) or the output fails.
 */
export async function playRingtone(source, options = {}) {
  const opts = options ?? {};
  const sinkId = opts.sinkId === undefined || opts.sinkId === null ? '' : String(opts.sinkId);
  const loop = opts.loop === undefined ? true : Boolean(opts.loop);
  const volume = opts.volume === undefined ? 1 : Number(opts.volume);
  if (!Number.isFinite(volume) || volume < 0 || volume > 1) {
    throw new RangeError(`vdimedia: ringtone volume ${opts.volume} is outside 0..1`);
  }
  if (!activeSession()) throw invalidState('vdimedia: playRingtone needs a redirected session (VdiMedia.install())');
  const bytes = await toBytes(source);
  if (bytes.byteLength === 0) throw new TypeError('vdimedia: the ringtone is empty');
  if (bytes.byteLength > MAX_RINGTONE_BYTES) {
    throw new RangeError(`vdimedia: a ringtone of ${bytes.byteLength} bytes exceeds the limit of ${MAX_RINGTONE_BYTES} bytes`);
  }
  // The session may have gone while the bytes were read.
  const session = activeSession();
  if (!session) throw invalidState('vdimedia: the channel to the media engine is lost');
  watchSession(session);
  ringtoneCounter += 1;
  const id = `ring${ringtoneCounter}`;
  const ring = new Ringtone(INTERNAL, session, id, sinkId === 'default' ? '' : sinkId, loop, volume);
  // Registered before the request: `ringtone.ended` of a very short file follows its response.
  session.ringtones.set(id, ring);
  const params = { id, data: toBase64(bytes), loop, volume };
  if (ring.sinkId !== '') params.sinkId = ring.sinkId;
  try {
    await session.request('ringtone.play', params);
  } catch (e) {
    session.ringtones.delete(id);
    // The endpoint's invalid_params here means the file cannot be decoded (the SDK checked
    // the rest): HTMLMediaElement.play() rejects with NotSupportedError for such a source.
    if (e?.vdimediaCode === 'invalid_params') {
      const err = notSupported(e.message);
      Object.defineProperty(err, 'vdimediaCode', { value: e.vdimediaCode, enumerable: false });
      throw err;
    }
    throw e;
  }
  return ring;
}

/** Ends a session's ringtones when its channel is lost (once per session). */
function watchSession(session) {
  if (watched.has(session)) return;
  watched.add(session);
  session.lostListeners.add(() => {
    for (const ring of [...session.ringtones.values()]) ring._onChannelLost();
    session.ringtones.clear();
  });
}

/** The bytes of a ringtone source as a Uint8Array (fetching URLs in the page). */
async function toBytes(source) {
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  if (source && typeof source === 'object' && typeof source.arrayBuffer === 'function' && typeof source.size === 'number') {
    if (source.size > MAX_RINGTONE_BYTES) {
      throw new RangeError(`vdimedia: a ringtone of ${source.size} bytes exceeds the limit of ${MAX_RINGTONE_BYTES} bytes`);
    }
    return new Uint8Array(await source.arrayBuffer()); // Blob, File
  }
  if (typeof source === 'string' || (typeof URL === 'function' && source instanceof URL)) {
    const url = String(source);
    if (typeof globalThis.fetch !== 'function') throw new TypeError('vdimedia: no fetch() to load the ringtone URL');
    const res = await globalThis.fetch(url);
    if (!res.ok) throw notSupported(`vdimedia: fetching the ringtone ${url} failed: HTTP ${res.status}`);
    const length = Number(res.headers?.get?.('content-length'));
    if (Number.isFinite(length) && length > MAX_RINGTONE_BYTES) {
      throw new RangeError(`vdimedia: a ringtone of ${length} bytes exceeds the limit of ${MAX_RINGTONE_BYTES} bytes`);
    }
    return new Uint8Array(await res.arrayBuffer());
  }
  throw new TypeError('vdimedia: a ringtone is an ArrayBuffer, a typed array, a Blob or a URL');
}

/** Base64 (RFC 4648, padded) of `bytes`, in chunks so large files do not overflow the stack. */
function toBase64(bytes) {
  let binary = '';
  const CHUNK = 0x8000;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + CHUNK));
  }
  return globalThis.btoa(binary);
}
