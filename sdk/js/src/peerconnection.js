// RTCPeerConnection (WebRTC 1.0 §4.4) remoted to the endpoint engine: every method is a
// `pc.*` request, every state change a `pc.*` event (docs/protocol.md, "Methods", "Events").

import {
  RTCIceCandidate,
  RTCSessionDescription,
  addCandidatesToSdp,
  descriptionInit,
  sdpIceUfrag,
  sdpMidIndex,
} from './description.js';
import { invalidAccess, invalidState, notSupported } from './errors.js';
import { MediaStream, MediaStreamTrack } from './media.js';
import {
  RTCPeerConnectionIceEvent,
  RTCRtpSender,
  RTCRtpTransceiver,
  RTCStatsReport,
  RTCTrackEvent,
  encodingsFrom,
} from './rtp.js';
import { activeSession } from './state.js';
import { pageStats, statsFor } from './stats.js';
import { debug, defineEventHandlers, legacyCallbacks, warn } from './util.js';

const ICE_TRANSPORT_POLICIES = ['all', 'relay'];
const BUNDLE_POLICIES = ['balanced', 'max-compat', 'max-bundle'];
const DIRECTIONS = ['sendrecv', 'sendonly', 'recvonly', 'inactive'];
const DESC_KEYS = [
  'localDescription',
  'remoteDescription',
  'currentLocalDescription',
  'currentRemoteDescription',
  'pendingLocalDescription',
  'pendingRemoteDescription',
];
const STATE_EVENTS = {
  'pc.signalingstatechange': ['_signalingState', 'signalingstatechange'],
  'pc.icegatheringstatechange': ['_iceGatheringState', 'icegatheringstatechange'],
  'pc.iceconnectionstatechange': ['_iceConnectionState', 'iceconnectionstatechange'],
  'pc.connectionstatechange': ['_connectionState', 'connectionstatechange'],
};

/**
 * Validates an RTCConfiguration (WebRTC 1.0 §4.2.1, §4.4.1.3 "set the configuration") and
 * returns `{wire, full}`: what is sent in `pc.create` and what getConfiguration returns.
 */
function normalizeConfiguration(configuration) {
  const cfg = configuration ?? {};
  if (typeof cfg !== 'object') throw new TypeError("Failed to construct 'RTCPeerConnection': parameter 1 is not an object.");
  const iceServers = [];
  const shownServers = [];
  for (const server of cfg.iceServers ?? []) {
    // `url` is the pre-2014 spelling some SIP stacks still send.
    const raw = server?.urls ?? server?.url;
    if (raw === undefined) throw new TypeError("Failed to construct 'RTCPeerConnection': required member urls is undefined.");
    const urls = Array.isArray(raw) ? raw.map(String) : [String(raw)];
    if (urls.length === 0) {
      // Chromium: an empty `urls` list is a SyntaxError, like a bad URL (measured, conformance suite).
      throw new DOMException("Failed to construct 'RTCPeerConnection': ICE server has no URLs.", 'SyntaxError');
    }
    for (const url of urls) {
      const scheme = /^([a-z]+):/i.exec(url)?.[1]?.toLowerCase();
      if (!['stun', 'stuns', 'turn', 'turns'].includes(scheme)) {
        throw new DOMException(`Failed to construct 'RTCPeerConnection': '${url}' is not a valid URL.`, 'SyntaxError');
      }
      if ((scheme === 'turn' || scheme === 'turns') && (server.username == null || server.credential == null)) {
        throw new DOMException(
          `Failed to construct 'RTCPeerConnection': Both username and credential are required when the URL scheme is "turn" or "turns".`,
          'InvalidAccessError',
        );
      }
    }
    const entry = { urls: Array.isArray(raw) ? urls : urls[0] };
    if (server.username != null) entry.username = String(server.username);
    if (server.credential != null) entry.credential = String(server.credential);
    iceServers.push(entry);
    // What getConfiguration returns, as Chromium does: `urls` always a list, `username` and
    // `credential` always present ('' when not given).
    shownServers.push({ credential: entry.credential ?? '', urls, username: entry.username ?? '' });
  }
  const iceTransportPolicy = cfg.iceTransportPolicy ?? 'all';
  if (!ICE_TRANSPORT_POLICIES.includes(iceTransportPolicy)) {
    throw new TypeError(`The provided value '${iceTransportPolicy}' is not a valid enum value of type RTCIceTransportPolicy.`);
  }
  const bundlePolicy = cfg.bundlePolicy ?? 'balanced';
  if (!BUNDLE_POLICIES.includes(bundlePolicy)) {
    throw new TypeError(`The provided value '${bundlePolicy}' is not a valid enum value of type RTCBundlePolicy.`);
  }
  const wire = { iceServers, iceTransportPolicy, bundlePolicy };
  const rtcpMuxPolicy = cfg.rtcpMuxPolicy ?? 'require';
  const full = {
    ...wire,
    iceServers: shownServers,
    rtcpMuxPolicy,
    iceCandidatePoolSize: Number(cfg.iceCandidatePoolSize ?? 0),
    certificates: [],
  };
  return { wire, full };
}

/**
 * `RTCPeerConnection` whose WebRTC stack runs in the endpoint engine. The constructor is
 * synchronous: it picks the id (`pc1`, `pc2`, …) and sends `pc.create`; later requests wait for
 * it. Throws InvalidStateError when the SDK has no live channel.
 */
export class RTCPeerConnection extends EventTarget {
  /** @param {RTCConfiguration} [configuration] */
  constructor(configuration = {}) {
    super();
    const session = activeSession();
    if (!session) {
      throw invalidState("Failed to construct 'RTCPeerConnection': vdimedia has no channel to the media engine.");
    }
    const { wire, full } = normalizeConfiguration(configuration);
    this._session = session;
    this._configuration = full;
    this._id = session.newPcId();
    this._closed = false;
    /** WebRTC 1.0 [[LastCreatedOffer]] / [[LastCreatedAnswer]]: the SDP of the last createOffer/createAnswer. */
    this._lastCreated = { offer: null, answer: null };
    /** restartIce(): the ufrag to replace (WebRTC 1.0 [[LocalIceCredentialsToReplace]]), or null. */
    this._iceRestartUfrag = null;
    this._restartNnFired = false;
    this._dead = false;
    this._signalingState = 'stable';
    this._iceGatheringState = 'new';
    this._iceConnectionState = 'new';
    this._connectionState = 'new';
    /** Raw RTCSessionDescriptionInit values as the engine reported them. */
    this._desc = Object.fromEntries(DESC_KEYS.map((k) => [k, null]));
    /** Page-visible RTCSessionDescription objects, rebuilt when the raw value changes. */
    this._descCache = new Map();
    /** Local candidates gathered for the current local ufrag (added to local SDP). */
    this._candidates = [];
    this._candidateUfrag = null;
    /** @type {RTCRtpTransceiver[]} */
    this._transceivers = [];
    /** The connection's remote streams by msid stream id (WebRTC 1.0 §4.4.1.6). */
    this._remoteStreams = new Map();
    /** The operations chain (WebRTC 1.0 §4.4.1.2). */
    this._chain = Promise.resolve();
    /** Synchronous methods' requests that chained operations wait for. */
    this._syncOps = new Set();
    this._createError = null;
    session.pcs.set(this._id, this);
    this._track(
      session.request('pc.create', { pc: this._id, configuration: wire }).catch((e) => {
        warn(`pc.create ${this._id} failed:`, e?.message);
        this._createError = e;
      }),
    );
  }

  /** Always NotSupportedError: certificates are made by the engine. */
  static generateCertificate() {
    return Promise.reject(notSupported('vdimedia: certificates are generated by the media engine'));
  }

  get signalingState() { return this._signalingState; }
  get iceGatheringState() { return this._iceGatheringState; }
  get iceConnectionState() { return this._iceConnectionState; }
  get connectionState() { return this._connectionState; }
  get localDescription() { return this._description('localDescription'); }
  get remoteDescription() { return this._description('remoteDescription'); }
  get currentLocalDescription() { return this._description('currentLocalDescription'); }
  get currentRemoteDescription() { return this._description('currentRemoteDescription'); }
  get pendingLocalDescription() { return this._description('pendingLocalDescription'); }
  get pendingRemoteDescription() { return this._description('pendingRemoteDescription'); }
  /** null until a remote description is set, then whether it offers `a=ice-options:trickle`. */
  get canTrickleIceCandidates() {
    const remote = this._desc.remoteDescription;
    if (!remote) return null;
    return /^a=ice-options:.*\btrickle\b/m.test(remote.sdp ?? '');
  }
  get sctp() { return null; }
  /** The id this connection has on the wire (`pc1`, …); not a W3C attribute. */
  get vdimediaId() { return this._id; }

  getConfiguration() {
    return JSON.parse(JSON.stringify(this._configuration));
  }

  /**
   * Validates and stores the configuration in the page. Not remoted yet (the protocol has no
   * method): a changed ICE server list is logged and takes effect only for new connections.
   */
  setConfiguration(configuration = {}) {
    if (this._closed) throw invalidState("Failed to execute 'setConfiguration' on 'RTCPeerConnection': The RTCPeerConnection's signalingState is 'closed'.");
    const { full } = normalizeConfiguration(configuration);
    // WebRTC 1.0 §4.4.1.3 "set the configuration", steps 4–6: these cannot change.
    for (const k of ['bundlePolicy', 'rtcpMuxPolicy']) {
      if (full[k] !== this._configuration[k]) {
        throw new DOMException(`Failed to execute 'setConfiguration' on 'RTCPeerConnection': Attempted to modify the PeerConnection's configuration in an unsupported way (${k}).`, 'InvalidModificationError');
      }
    }
    if (JSON.stringify(full) !== JSON.stringify(this._configuration)) {
      warn(`setConfiguration on ${this._id} is not remoted yet; the engine keeps the first configuration`);
    }
    this._configuration = full;
  }

  /**
   * restartIce() (WebRTC 1.0 §4.4.1.6): remembers the ufrag to replace
   * ([[LocalIceCredentialsToReplace]]) and fires `negotiationneeded` (now if `stable`, else when
   * the connection is `stable` again); every offer, including the implicit one of
   * setLocalDescription(), restarts ICE (`iceRestart`) until a current local description has a
   * new ufrag. Before the first negotiation there is nothing to restart; on a closed
   * connection it does nothing, as in Chromium.
   */
  restartIce() {
    if (this._closed) return;
    const ufrag = sdpIceUfrag(this._desc.currentLocalDescription?.sdp);
    if (!ufrag) return;
    if (!this._iceRestartUfrag) this._restartNnFired = false;
    this._iceRestartUfrag = ufrag;
    this._queueRestartNegotiationNeeded();
  }

  /**
   * WebRTC 1.0 §4.7.3: `negotiationneeded` for a pending ICE restart, once per return to
   * `stable` (the flag going from false to true), as a queued task.
   */
  _queueRestartNegotiationNeeded() {
    if (this._signalingState !== 'stable') {
      this._restartNnFired = false;
      return;
    }
    if (this._restartNnFired) return;
    this._restartNnFired = true;
    setTimeout(() => {
      if (!this._closed && this._iceRestartUfrag && this._signalingState === 'stable') {
        this.dispatchEvent(new Event('negotiationneeded'));
      }
    }, 0);
  }

  // ---- offer/answer ----

  /** createOffer(options) or the legacy createOffer(success, failure, options). */
  createOffer(a, b, c) {
    if (typeof a === 'function') return legacyCallbacks(this._createOffer(c), a, b);
    return this._createOffer(a);
  }

  _createOffer(options = {}) {
    const wireOptions = {};
    for (const k of ['iceRestart', 'offerToReceiveAudio', 'offerToReceiveVideo', 'voiceActivityDetection']) {
      if (options && options[k] !== undefined) wireOptions[k] = options[k];
    }
    if (this._iceRestartUfrag) wireOptions.iceRestart = true; // restartIce() pending
    return this._op('createOffer', () =>
      this._request('pc.createOffer', { options: wireOptions }).then((r) => {
        this._lastCreated.offer = r.sdp;
        return new RTCSessionDescription(r);
      }),
    );
  }

  /** createAnswer(options) or the legacy createAnswer(success, failure). */
  createAnswer(a, b) {
    if (typeof a === 'function') return legacyCallbacks(this._createAnswer(), a, b);
    return this._createAnswer();
  }

  _createAnswer() {
    return this._op('createAnswer', () =>
      this._request('pc.createAnswer', { options: {} }).then((r) => {
        this._lastCreated.answer = r.sdp;
        return new RTCSessionDescription(r);
      }),
    );
  }

  /** setLocalDescription(description?) (implicit when omitted) or the legacy callback form. */
  setLocalDescription(description, success, failure) {
    if (typeof success === 'function') return legacyCallbacks(this._setLocal(description), success, failure);
    return this._setLocal(description);
  }

  _setLocal(description) {
    let params;
    try {
      const init = description == null ? null : descriptionInit(description, 'setLocalDescription');
      // No type, or an offer/answer without SDP, is the implicit form (JSEP §5.4): the engine
      // creates the description that fits the signaling state.
      if (!init || init.type === undefined || (init.type !== 'rollback' && !init.sdp)) params = {};
      else {
        checkMunging(init, this._lastCreated);
        params = { description: { type: init.type, sdp: init.sdp ?? '' } };
      }
    } catch (e) {
      return Promise.reject(e);
    }
    if (!params.description && this._iceRestartUfrag) {
      // Implicit offer while restartIce() is pending: the engine's implicit offer would not
      // restart ICE, so create the restart offer here and set it.
      return this._op('setLocalDescription', () => {
        if (this._signalingState !== 'stable' && this._signalingState !== 'have-local-offer') {
          return this._request('pc.setLocalDescription', params, (s) => this._applyState(s)).then(() => undefined);
        }
        return this._request('pc.createOffer', { options: { iceRestart: true } })
          .then((r) => {
            this._lastCreated.offer = r.sdp;
            const description = { type: 'offer', sdp: r.sdp };
            return this._request('pc.setLocalDescription', { description }, (s) => this._applyState(s));
          })
          .then(() => undefined);
      });
    }
    return this._op('setLocalDescription', () =>
      this._request('pc.setLocalDescription', params, (s) => this._applyState(s)).then(() => undefined),
    );
  }

  /** setRemoteDescription(description) or the legacy callback form. */
  setRemoteDescription(description, success, failure) {
    if (typeof success === 'function') return legacyCallbacks(this._setRemote(description), success, failure);
    return this._setRemote(description);
  }

  _setRemote(description) {
    let init;
    try {
      init = descriptionInit(description, 'setRemoteDescription');
      if (init.type === undefined) throw new TypeError("Failed to execute 'setRemoteDescription' on 'RTCPeerConnection': The provided value has no type.");
      if (init.sdp === undefined) init.sdp = '';
    } catch (e) {
      return Promise.reject(e);
    }
    return this._op('setRemoteDescription', () =>
      this._request('pc.setRemoteDescription', { description: init }, (s) => this._applyState(s)).then(() => undefined),
    );
  }

  /** addIceCandidate(candidate?) (absent/null/empty = end of candidates) or the legacy form. */
  addIceCandidate(candidate, success, failure) {
    if (typeof success === 'function') return legacyCallbacks(this._addIceCandidate(candidate), success, failure);
    return this._addIceCandidate(candidate);
  }

  _addIceCandidate(candidate) {
    let params = {};
    if (candidate != null && typeof candidate === 'object' && candidate.candidate) {
      const init = typeof candidate.toJSON === 'function' && candidate instanceof RTCIceCandidate ? candidate.toJSON() : candidate;
      if (init.sdpMid == null && init.sdpMLineIndex == null) {
        return Promise.reject(new TypeError("Failed to execute 'addIceCandidate' on 'RTCPeerConnection': Candidate missing values for both sdpMid and sdpMLineIndex"));
      }
      params = {
        candidate: {
          candidate: String(init.candidate),
          sdpMid: init.sdpMid ?? null,
          sdpMLineIndex: init.sdpMLineIndex ?? null,
        },
      };
      if (init.usernameFragment != null) params.candidate.usernameFragment = String(init.usernameFragment);
    } else if (candidate != null && typeof candidate !== 'object') {
      return Promise.reject(new TypeError("Failed to execute 'addIceCandidate' on 'RTCPeerConnection': parameter 1 is not of type 'RTCIceCandidateInit'."));
    }
    return this._op('addIceCandidate', () => {
      if (!this._desc.remoteDescription) {
        throw invalidState("Failed to execute 'addIceCandidate' on 'RTCPeerConnection': The remote description was null");
      }
      // The engine finds an sdpMid only among negotiated transceivers, so a candidate that
      // arrives between setRemoteDescription(offer) and the answer would fail; the m-line
      // index is known from the remote description (RFC 8839 §5.1: sdpMid names the section).
      const c = params.candidate;
      if (c && c.sdpMLineIndex == null && c.sdpMid != null) {
        const index = sdpMidIndex(this._desc.remoteDescription.sdp, c.sdpMid);
        if (index !== null) params = { candidate: { ...c, sdpMLineIndex: index } };
      }
      return this._request('pc.addIceCandidate', params).then(() => undefined);
    });
  }

  // ---- tracks and transceivers ----

  /**
   * addTrack(track, ...streams) (WebRTC 1.0 §5.1). Synchronous: returns the sender at once
   * and binds it to the engine's transceiver when `pc.addTrack` answers.
   */
  addTrack(track, ...streams) {
    this._throwIfClosed('addTrack');
    if (!(track instanceof MediaStreamTrack)) {
      throw new TypeError("Failed to execute 'addTrack' on 'RTCPeerConnection': the track is not a vdimedia (remoted) MediaStreamTrack.");
    }
    if (this._transceivers.some((t) => t.sender.track === track)) {
      throw invalidAccess("Failed to execute 'addTrack' on 'RTCPeerConnection': A sender already exists for the track.");
    }
    // The spec's reuse rule (§5.1 addTrack step 7) so the returned sender is the one the
    // engine will pick.
    let transceiver = this._transceivers.find(
      (t) => t._kind === track.kind && !t.sender.track && !t._senderEverHadTrack && !t.stopped && t._id !== null,
    );
    const fresh = !transceiver;
    if (fresh) {
      transceiver = new RTCRtpTransceiver(this, track.kind, { direction: 'sendrecv', track });
      this._transceivers.push(transceiver);
    } else {
      transceiver.sender._track = track;
      transceiver._senderEverHadTrack = true;
    }
    const sender = transceiver.sender;
    sender._pending += 1;
    const params = { track: track._remoteId, streams: streams.filter(Boolean).map((s) => s.id) };
    this._track(
      this._request('pc.addTrack', params)
        .then((r) => {
          sender._pending -= 1;
          this._bindTransceiver(transceiver, r?.transceiver);
        })
        .catch((e) => {
          sender._pending -= 1;
          warn(`pc.addTrack on ${this._id} failed:`, e?.message);
          if (fresh) this._transceivers = this._transceivers.filter((t) => t !== transceiver);
          sender._track = null;
        }),
    );
    return sender;
  }

  /** removeTrack(sender) (WebRTC 1.0 §5.1). */
  removeTrack(sender) {
    this._throwIfClosed('removeTrack');
    if (!(sender instanceof RTCRtpSender) || sender._pc !== this) {
      throw invalidAccess("Failed to execute 'removeTrack' on 'RTCPeerConnection': The sender was not created by this peer connection.");
    }
    if (!sender.track) return;
    sender._track = null;
    // WebRTC 1.0 §5.1 removeTrack step 11 (the engine does the same and fires
    // negotiationneeded): the direction loses "send".
    const t = sender._transceiver;
    const next = t && { sendrecv: 'recvonly', sendonly: 'inactive' }[t._direction];
    if (next) {
      t._direction = next;
      t._directionPending += 1;
    }
    sender._pending += 1;
    // The sender id is known once earlier synchronous requests have answered.
    const pendingBefore = [...this._syncOps];
    this._track(
      Promise.all(pendingBefore)
        .then(() => this._request('pc.removeTrack', { sender: sender._id }))
        .catch((e) => warn(`pc.removeTrack on ${this._id} failed:`, e?.message))
        .finally(() => {
          sender._pending -= 1;
          if (next) t._directionPending -= 1;
        }),
    );
  }

  /** addTransceiver(trackOrKind, init) (WebRTC 1.0 §5.1). Synchronous, like addTrack. */
  addTransceiver(trackOrKind, init = {}) {
    this._throwIfClosed('addTransceiver');
    const direction = init?.direction ?? 'sendrecv';
    if (!DIRECTIONS.includes(direction)) {
      throw new TypeError(`The provided value '${direction}' is not a valid enum value of type RTCRtpTransceiverDirection.`);
    }
    let kind;
    let track = null;
    if (typeof trackOrKind === 'string') {
      if (trackOrKind !== 'audio' && trackOrKind !== 'video') {
        throw new TypeError(`Failed to execute 'addTransceiver' on 'RTCPeerConnection': The track kind '${trackOrKind}' is not valid.`);
      }
      kind = trackOrKind;
    } else if (trackOrKind instanceof MediaStreamTrack) {
      track = trackOrKind;
      kind = track.kind;
    } else {
      throw new TypeError("Failed to execute 'addTransceiver' on 'RTCPeerConnection': the track is not a vdimedia (remoted) MediaStreamTrack.");
    }
    // sendEncodings (WebRTC 1.0 §5.1 step 8): a bad one throws before anything is made.
    const sendEncodings = init?.sendEncodings === undefined ? [] : encodingsFrom(init.sendEncodings);
    const transceiver = new RTCRtpTransceiver(this, kind, { direction, track });
    this._transceivers.push(transceiver);
    const params = track ? { track: track._remoteId } : { kind };
    params.init = { direction, streams: (init?.streams ?? []).filter(Boolean).map((s) => s.id) };
    if (sendEncodings.length) {
      transceiver.sender._encodings = sendEncodings;
      params.init.sendEncodings = sendEncodings;
    }
    transceiver.sender._pending += 1;
    this._track(
      this._request('pc.addTransceiver', params)
        .then((r) => {
          transceiver.sender._pending -= 1;
          this._bindTransceiver(transceiver, r?.transceiver);
        })
        .catch((e) => {
          transceiver.sender._pending -= 1;
          warn(`pc.addTransceiver on ${this._id} failed:`, e?.message);
          this._transceivers = this._transceivers.filter((t) => t !== transceiver);
        }),
    );
    return transceiver;
  }

  getTransceivers() { return [...this._transceivers]; }
  // After close() Chromium still lists the (stopped) senders and receivers, and pages rely on
  // it to stop their tracks after hanging up (`pc.getSenders().forEach((s) => s.track?.stop())`).
  getSenders() { return this._transceivers.filter((t) => this._closed || !t.stopped).map((t) => t.sender); }
  getReceivers() { return this._transceivers.filter((t) => this._closed || !t.stopped).map((t) => t.receiver); }

  /**
   * getStats(selector?) (WebRTC 1.0 §8.2) → RTCStatsReport of `pc.getStats`, timestamps on the
   * page's clock. A MediaStreamTrack selector picks the one sender or receiver with that track
   * and applies the stats selection algorithm (§8.5); no or several matches → InvalidAccessError.
   */
  getStats(selector) {
    if (typeof selector === 'function') {
      return Promise.reject(notSupported('vdimedia: the legacy callback form of getStats is not supported'));
    }
    if (selector != null) {
      const NativeTrack = globalThis.MediaStreamTrack;
      // A native track (a camera, another connection's track) is a track too: it just has no
      // sender or receiver here (InvalidAccessError below), as in Chromium.
      if (!(selector instanceof MediaStreamTrack) && !(typeof NativeTrack === 'function' && NativeTrack !== MediaStreamTrack && selector instanceof NativeTrack)) {
        return Promise.reject(new TypeError("Failed to execute 'getStats' on 'RTCPeerConnection': parameter 1 is not of type 'MediaStreamTrack'."));
      }
      const senders = this.getSenders().filter((s) => s.track === selector);
      const receivers = this.getReceivers().filter((r) => r.track === selector);
      if (senders.length + receivers.length !== 1) {
        return Promise.reject(invalidAccess("Failed to execute 'getStats' on 'RTCPeerConnection': There is no sender or receiver for the track."));
      }
      if (this._closed) return Promise.resolve(new RTCStatsReport([]));
      return statsFor(this, senders.length ? { sender: senders[0] } : { receiver: receivers[0] });
    }
    // Chromium 156 resolves getStats() on a closed connection; the engine has freed it, so the
    // report is empty.
    if (this._closed) return Promise.resolve(new RTCStatsReport([]));
    return this._request('pc.getStats', {}).then((r) => new RTCStatsReport(pageStats(r, this)));
  }

  /** Data channels are not remoted. */
  createDataChannel() {
    this._throwIfClosed('createDataChannel');
    throw notSupported('vdimedia: data channels are not remoted');
  }

  /**
   * close() (WebRTC 1.0 §4.4.1.5): states become "closed" at once without events, receiver
   * tracks end, and `pc.close` tells the engine.
   */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._signalingState = 'closed';
    this._iceConnectionState = 'closed';
    this._connectionState = 'closed';
    for (const t of this._transceivers) {
      t._currentDirection = 'stopped';
      t._direction = 'stopped';
      t.receiver.track?._end(false);
    }
    const session = this._session;
    session.pcs.delete(this._id);
    if (!this._dead && !session.lost) {
      session.request('pc.close', { pc: this._id }).catch((e) => debug(`pc.close ${this._id} failed:`, e?.message));
    }
  }

  // ---- internals ----

  _throwIfClosed(what) {
    if (this._closed) {
      throw invalidState(`Failed to execute '${what}' on 'RTCPeerConnection': The RTCPeerConnection's signalingState is 'closed'.`);
    }
  }

  /** Remembers a synchronous method's request so chained operations run after it. */
  _track(promise) {
    const p = promise.then(() => undefined, () => undefined);
    this._syncOps.add(p);
    p.then(() => this._syncOps.delete(p));
  }

  /** Queues an operation on the operations chain; rejects at once when closed. */
  _op(what, fn) {
    if (this._closed) {
      return Promise.reject(invalidState(`Failed to execute '${what}' on 'RTCPeerConnection': The RTCPeerConnection's signalingState is 'closed'.`));
    }
    const run = async () => {
      await Promise.all([...this._syncOps]);
      if (this._createError) throw this._createError;
      if (this._closed) throw invalidState(`Failed to execute '${what}' on 'RTCPeerConnection': The RTCPeerConnection's signalingState is 'closed'.`);
      return fn();
    };
    const p = this._chain.then(run, run);
    this._chain = p.then(() => undefined, () => undefined);
    return p;
  }

  _request(method, params, apply) {
    if (this._dead) return Promise.reject(invalidState(`vdimedia: ${method} failed: the channel to the media engine is lost`));
    return this._session.request(method, { pc: this._id, ...params }, apply);
  }

  _description(key) {
    const raw = this._desc[key];
    if (!raw) return null;
    const local = key.toLowerCase().includes('local');
    const n = local ? this._candidates.length : 0;
    const cached = this._descCache.get(key);
    if (cached && cached.raw === raw && cached.n === n) return cached.desc;
    const sdp = local && n ? addCandidatesToSdp(raw.sdp ?? '', this._candidates) : raw.sdp ?? '';
    const desc = new RTCSessionDescription({ type: raw.type, sdp });
    this._descCache.set(key, { raw, n, desc });
    return desc;
  }

  /** Applies an engine PcState (docs/protocol.md, "Shapes") without firing events. */
  _applyState(s) {
    if (!s || typeof s !== 'object' || this._closed) return;
    if (s.signalingState) this._signalingState = s.signalingState;
    if (s.iceGatheringState) this._iceGatheringState = s.iceGatheringState;
    if (s.iceConnectionState) this._iceConnectionState = s.iceConnectionState;
    if (s.connectionState) this._connectionState = s.connectionState;
    for (const k of DESC_KEYS) {
      if (!(k in s)) continue;
      const v = s[k];
      const old = this._desc[k];
      if (!v) this._desc[k] = null;
      else if (!old || old.type !== v.type || old.sdp !== v.sdp) this._desc[k] = { type: v.type, sdp: v.sdp ?? '' };
    }
    const ufrag = sdpIceUfrag(this._desc.localDescription?.sdp);
    if (this._iceRestartUfrag) {
      // restartIce() is done once a current local description has other credentials (an
      // answered restart offer, or our answer to the far end's restart); until then a
      // stable state asks for negotiation again (§4.4.1.6, §4.7.3).
      const current = sdpIceUfrag(this._desc.currentLocalDescription?.sdp);
      if (current && current !== this._iceRestartUfrag) this._iceRestartUfrag = null;
      else this._queueRestartNegotiationNeeded();
    }
    if (ufrag !== this._candidateUfrag) {
      // A new ICE generation (or a first local description): earlier candidates do not apply.
      this._candidateUfrag = ufrag;
      this._candidates = this._candidates.filter((c) => c.usernameFragment && c.usernameFragment === ufrag);
    }
    if (Array.isArray(s.transceivers)) for (const info of s.transceivers) this._transceiverFor(info);
    // Remote tracks' muted state follows the descriptions (mute) and RTP (unmute): rtp.js.
    for (const t of this._transceivers) t._syncReceiving();
  }

  /** Binds a page-created transceiver to the engine's answer, merging if the engine reused one. */
  _bindTransceiver(transceiver, info) {
    if (!info) return;
    const existing = this._transceivers.find((t) => t !== transceiver && t._id !== null && t._id === String(info.id));
    if (existing) {
      // The engine reused a transceiver the page did not predict: keep one object.
      existing.sender._track = transceiver.sender._track ?? existing.sender._track;
      transceiver.sender._id = info.sender?.id ?? null;
      this._transceivers = this._transceivers.filter((t) => t !== transceiver);
      existing._update(info);
      return;
    }
    transceiver._update(info);
  }

  /** The page transceiver for an engine Transceiver, created if new. */
  _transceiverFor(info) {
    if (!info || info.id == null) return null;
    let t = this._transceivers.find((x) => x._id === String(info.id));
    if (!t) {
      t = new RTCRtpTransceiver(this, info.receiver?.track?.kind ?? 'audio', { direction: info.direction });
      this._transceivers.push(t);
    }
    t._update(info);
    return t;
  }

  /** Handles a `pc.*` event: updates the attribute first, then dispatches the DOM event. */
  _onEngineEvent(name, params) {
    if (this._closed) return;
    const stateEvent = STATE_EVENTS[name];
    if (stateEvent) {
      const [field, type] = stateEvent;
      if (typeof params.state !== 'string') return;
      this[field] = params.state;
      this.dispatchEvent(new Event(type));
      return;
    }
    switch (name) {
      case 'pc.icecandidate': {
        const init = params.candidate;
        let candidate = null;
        if (init && typeof init === 'object') {
          try {
            candidate = new RTCIceCandidate(init);
          } catch {
            // Neither sdpMid nor sdpMLineIndex: with one audio section, index 0 is the section.
            candidate = new RTCIceCandidate({ ...init, sdpMLineIndex: 0 });
          }
          if (candidate.candidate) this._candidates.push(candidate.toJSON());
        }
        this.dispatchEvent(new RTCPeerConnectionIceEvent('icecandidate', { candidate }));
        break;
      }
      case 'pc.negotiationneeded':
        this.dispatchEvent(new Event('negotiationneeded'));
        break;
      case 'pc.track': {
        const transceiver = this._transceiverFor(params.transceiver);
        if (!transceiver) return;
        const receiver = transceiver.receiver;
        if (params.track?.id != null && receiver.track._remoteId !== params.track.id) {
          transceiver._update({ receiver: { id: receiver._id, track: params.track } });
        }
        const track = receiver.track;
        const streams = [];
        for (const id of params.streams ?? []) {
          let stream = this._remoteStreams.get(id);
          const existed = !!stream;
          if (!stream) {
            stream = MediaStream._withId(id);
            this._remoteStreams.set(id, stream);
          }
          stream._addRemoteTrack(track, existed);
          streams.push(stream);
        }
        this.dispatchEvent(new RTCTrackEvent('track', { receiver, track, streams, transceiver }));
        break;
      }
      default:
        debug(`ignoring event ${name} on ${this._id}`);
    }
  }

  /**
   * The channel is gone: the engine has closed this connection. ICE and connection states
   * become "failed" with their events, and every later request rejects with InvalidStateError.
   */
  _onChannelLost() {
    if (this._closed || this._dead) return;
    this._dead = true;
    if (this._iceConnectionState !== 'failed') {
      this._iceConnectionState = 'failed';
      this.dispatchEvent(new Event('iceconnectionstatechange'));
    }
    if (this._connectionState !== 'failed') {
      this._connectionState = 'failed';
      this.dispatchEvent(new Event('connectionstatechange'));
    }
  }
}

defineEventHandlers(RTCPeerConnection.prototype, [
  'icecandidate',
  'icecandidateerror',
  'icegatheringstatechange',
  'iceconnectionstatechange',
  'connectionstatechange',
  'signalingstatechange',
  'negotiationneeded',
  'track',
  'datachannel',
]);

/**
 * The SDP-munging check of setLocalDescription (WebRTC 1.0 §4.4.1.6 step "If type is … and sdp
 * is not equal to [[LastCreatedOffer/Answer]], reject with InvalidModificationError"), applied
 * as Chromium applies it: pages may edit most of a created description (SIP stacks remove codecs
 * or change attributes), but not its DTLS fingerprints, and an answer needs a created one.
 * @throws {DOMException} InvalidModificationError
 */
function checkMunging(init, lastCreated) {
  const type = init.type;
  if (type !== 'offer' && type !== 'answer' && type !== 'pranswer') return;
  const last = type === 'offer' ? lastCreated.offer : lastCreated.answer;
  const fail = (why) => {
    throw new DOMException(`Failed to execute 'setLocalDescription' on 'RTCPeerConnection': Failed to set local ${type} sdp: ${why}`, 'InvalidModificationError');
  };
  if (last == null) {
    if (type !== 'offer') fail('no answer was created for this description (createAnswer)');
    return;
  }
  const fingerprints = (sdp) => (String(sdp).match(/^a=fingerprint:.*$/gm) ?? []).map((l) => l.trim().toLowerCase()).join('\n');
  if (fingerprints(init.sdp) !== fingerprints(last)) fail('the DTLS fingerprint differs from the created description (SDP munging)');
}
