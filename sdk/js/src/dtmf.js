// RTCDTMFSender (WebRTC 1.0 §7, https://www.w3.org/TR/webrtc/#peer-to-peer-dtmf) for a remoted
// RTCRtpSender. The spec's tone buffer and playout timing run here, in the page, exactly as the
// spec words them (toneBuffer, tonechange, ',' pauses, duration/gap clamps); each tone is sent to
// the engine when it starts (`pc.insertDtmf`, docs/protocol.md), which sends it as RFC 4733
// telephone-event packets in place of the audio packets it covers.

import { debug, defineEventHandlers, warn } from './util.js';

/** W3C §7.2: allowed tone characters (after upper-casing). */
const VALID_TONES = /^[0-9A-D#*,]*$/;
/** W3C §7.2 clamps and defaults, ms. */
export const DTMF_MIN_DURATION = 40;
export const DTMF_MAX_DURATION = 6000;
export const DTMF_DEFAULT_DURATION = 100;
export const DTMF_MIN_GAP = 30;
export const DTMF_MAX_GAP = 6000;
export const DTMF_DEFAULT_GAP = 70;
/** W3C §7.2: a ',' delays the next tone by 2 s. */
export const DTMF_COMMA_DELAY = 2000;

/** WebIDL `unsigned long` conversion (ECMAScript ToUint32) of an optional argument. */
function toUnsignedLong(v, dflt) {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) return 0;
  return (Math.trunc(n) % 2 ** 32 + 2 ** 32) % 2 ** 32;
}

/** Whether an m-section of `sdp` (the one with `a=mid:<mid>`, else the first audio one) has telephone-event. */
export function sdpHasTelephoneEvent(sdp, mid) {
  if (typeof sdp !== 'string') return false;
  const sections = sdp.split(/\r?\n(?=m=)/).filter((s) => s.startsWith('m='));
  const section =
    (mid != null && sections.find((s) => new RegExp(`^a=mid:${mid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`, 'm').test(s))) ||
    sections.find((s) => s.startsWith('m=audio'));
  return !!section && /^a=rtpmap:\d+ telephone-event\/\d+/im.test(section);
}

/** `RTCDTMFToneChangeEvent` (WebRTC 1.0 §7.3): `tone` is the tone starting, '' at the end. */
export class RTCDTMFToneChangeEvent extends Event {
  constructor(type, init = {}) {
    super(type, init);
    Object.defineProperty(this, 'tone', { value: String(init.tone ?? ''), enumerable: true });
  }
}

/** `RTCDTMFSender` (WebRTC 1.0 §7.2) of one audio RTCRtpSender. */
export class RTCDTMFSender extends EventTarget {
  /** @param {import('./rtp.js').RTCRtpSender} sender */
  constructor(sender) {
    super();
    this._sender = sender;
    this._toneBuffer = '';
    this._duration = DTMF_DEFAULT_DURATION;
    this._gap = DTMF_DEFAULT_GAP;
    /** The playout task's timer while one is scheduled (W3C: "a Playout task is scheduled"). */
    this._timer = null;
  }

  get toneBuffer() { return this._toneBuffer; }

  /**
   * W3C §7.2 "determine if DTMF can be sent": the connection is open, the transceiver is not
   * stopped and currently sends, and the remote description negotiated telephone-event for it.
   */
  get canInsertDTMF() {
    const t = this._sender._transceiver;
    const pc = this._sender._pc;
    if (!t || !pc || pc._closed || t.stopped) return false;
    if (t.currentDirection !== 'sendrecv' && t.currentDirection !== 'sendonly') return false;
    return sdpHasTelephoneEvent(pc.currentRemoteDescription?.sdp, t.mid);
  }

  /**
   * insertDTMF(tones, duration = 100, interToneGap = 70) (W3C §7.2). Replaces the tone buffer;
   * `duration` is clamped to 40..6000 ms and `interToneGap` to 30..6000 ms. Throws
   * InvalidStateError on a closed connection or a sender that cannot send DTMF, and
   * InvalidCharacterError for a character other than 0-9 A-D # * , (any case).
   */
  insertDTMF(tones, duration, interToneGap) {
    const pc = this._sender._pc;
    const t = this._sender._transceiver;
    if (arguments.length < 1) {
      throw new TypeError("Failed to execute 'insertDTMF' on 'RTCDTMFSender': 1 argument required, but only 0 present.");
    }
    if (!pc || pc._closed) {
      throw new DOMException("Failed to execute 'insertDTMF' on 'RTCDTMFSender': The peer connection is closed.", 'InvalidStateError');
    }
    if (!t || t.stopped || t.currentDirection === 'recvonly' || t.currentDirection === 'inactive' || !this.canInsertDTMF) {
      throw new DOMException("Failed to execute 'insertDTMF' on 'RTCDTMFSender': The 'canInsertDTMF' attribute is false: this sender cannot send DTMF.", 'InvalidStateError');
    }
    const buffer = String(tones).toUpperCase();
    if (!VALID_TONES.test(buffer)) {
      const bad = [...buffer].find((c) => !/[0-9A-D#*,]/.test(c));
      throw new DOMException(`Failed to execute 'insertDTMF' on 'RTCDTMFSender': The tones provided contain an invalid character ${JSON.stringify(bad)} (allowed: 0-9, A-D, #, *, ',').`, 'InvalidCharacterError');
    }
    this._toneBuffer = buffer;
    this._duration = Math.min(Math.max(toUnsignedLong(duration, DTMF_DEFAULT_DURATION), DTMF_MIN_DURATION), DTMF_MAX_DURATION);
    this._gap = Math.min(Math.max(toUnsignedLong(interToneGap, DTMF_DEFAULT_GAP), DTMF_MIN_GAP), DTMF_MAX_GAP);
    if (this._toneBuffer === '' || this._timer !== null) return;
    this._schedule(0);
  }

  _schedule(ms) {
    this._timer = setTimeout(() => {
      this._timer = null;
      this._playout();
    }, ms);
    // Node (tests, tools): a pending tone must not keep the process alive. Browsers return a number.
    this._timer?.unref?.();
  }

  /** The spec's "DTMF playout task". */
  _playout() {
    const t = this._sender._transceiver;
    const pc = this._sender._pc;
    if (!pc || pc._closed || !t || (t.currentDirection !== 'sendrecv' && t.currentDirection !== 'sendonly')) {
      debug('DTMF playout stopped: the sender no longer sends');
      return;
    }
    if (this._toneBuffer === '') {
      this.dispatchEvent(new RTCDTMFToneChangeEvent('tonechange', { tone: '' }));
      return;
    }
    const tone = this._toneBuffer[0];
    this._toneBuffer = this._toneBuffer.slice(1);
    if (tone === ',') {
      this._schedule(DTMF_COMMA_DELAY);
    } else {
      const [duration, gap] = [this._duration, this._gap];
      // Fire-and-forget: insertDTMF already returned; a failing engine is logged, the page's
      // timing (tonechange events) goes on as the spec has it.
      pc._request('pc.insertDtmf', { sender: this._sender._id, tones: tone, duration, interToneGap: gap })
        .catch((e) => warn(`pc.insertDtmf on ${pc._id} failed:`, e?.message));
      this._schedule(duration + gap);
    }
    this.dispatchEvent(new RTCDTMFToneChangeEvent('tonechange', { tone }));
  }
}

defineEventHandlers(RTCDTMFSender.prototype, ['tonechange']);
