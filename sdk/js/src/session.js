// One logical session with the endpoint engine: the page's WebSocket to the bridge after a
// successful `hello`/`status` exchange (docs/protocol.md, "Bridge ↔ page"). Owns the request
// id counter, the pending-request map and the registries that give remoted objects a stable
// identity in the page (the same MediaStreamTrack object for the same track id, …).

import { errorFromBody, invalidState, operationError } from './errors.js';
import { debug, warn } from './util.js';

/** WebSocket readyState OPEN (HTML §9.3). */
const WS_OPEN = 1;

export class Session {
  /**
   * @param {WebSocket} ws an open WebSocket whose `status` said `redirected: true`
   * @param {object} status the bridge's status message
   * @param {{onLost: (reason: string, message: string) => void,
   *   onSuspend?: (status: object) => void, onResume?: (status: object) => void}} hooks
   */
  constructor(ws, status, hooks) {
    this.ws = ws;
    this.status = status;
    this.hooks = hooks;
    this.lost = false;
    /** True while the bridge reports the channel away but the session kept (`resuming`). */
    this.suspended = false;
    this.nextRequestId = 1;
    /** @type {Map<number, {resolve: Function, reject: Function, apply?: Function, method: string}>} */
    this.pending = new Map();
    this.pcCounter = 0;
    this.elementCounter = 0;
    /** @type {Map<string, import('./peerconnection.js').RTCPeerConnection>} */
    this.pcs = new Map();
    /** Remote track id → set of page tracks (the original and its clones). */
    this.tracks = new Map();
    /** Engine stream id → MediaStream. */
    this.streams = new Map();
    /** Target of `devicechange` events for navigator.mediaDevices. */
    this.deviceEvents = new EventTarget();
    /** Callbacks run once when the channel is lost (playout elements, …). */
    this.lostListeners = new Set();
    /** Ringtone id → Ringtone playing on the endpoint (ringtone.js). */
    this.ringtones = new Map();
  }

  /** Called by the handshake with each message event received after `status`. */
  onMessageEvent(ev) {
    let msg;
    try {
      msg = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
    } catch (e) {
      warn('ignoring a message that is not JSON:', e?.message);
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'response':
        this.onResponse(msg);
        break;
      case 'event':
        this.onEvent(msg);
        break;
      case 'status':
        if (msg.redirected === false && msg.resuming === true) {
          this.suspend(msg);
        } else if (msg.redirected === false) {
          this.lose(typeof msg.reason === 'string' ? msg.reason : 'channel_lost', msg.message ?? 'the bridge reported the channel lost');
        } else if (msg.redirected === true && this.suspended) {
          this.resume(msg);
        }
        break;
      case 'error':
        warn('bridge error:', msg.error?.code, msg.error?.message);
        break;
      default:
        debug('ignoring message of type', msg.type);
    }
  }

  /**
   * The channel to the engine is away but the engine keeps this session (docs/protocol.md,
   * "Bridge ↔ page": `resuming: true`): objects stay as they are, calls keep running on the
   * endpoint, pending requests wait; requests sent meanwhile are refused by the bridge.
   * @param {object} msg the bridge's status
   */
  suspend(msg) {
    if (this.lost || this.suspended) return;
    this.suspended = true;
    warn(`channel away, session kept for resumption: ${msg.message ?? ''}`);
    this.hooks.onSuspend?.(msg);
  }

  /**
   * The session was resumed on a returned channel: events that happened meanwhile follow.
   * @param {object} msg the bridge's status (`redirected: true, resumed: true`)
   */
  resume(msg) {
    if (this.lost || !this.suspended) return;
    this.suspended = false;
    this.status = msg;
    debug('session resumed');
    this.hooks.onResume?.(msg);
  }

  /** Called by the handshake when the WebSocket closes after `status`. */
  onCloseEvent(ev) {
    this.lose('channel_lost', `WebSocket to the bridge closed (code ${ev?.code ?? '?'})`);
  }

  onResponse(msg) {
    const entry = this.pending.get(msg.id);
    if (!entry) {
      debug('response for unknown request id', msg.id);
      return;
    }
    this.pending.delete(msg.id);
    if (msg.error) {
      entry.reject(errorFromBody(msg.error));
      return;
    }
    try {
      // Applied synchronously so attributes change before any later message is handled.
      if (entry.apply) entry.apply(msg.result);
      entry.resolve(msg.result);
    } catch (e) {
      entry.reject(e);
    }
  }

  onEvent(msg) {
    const name = msg.event;
    const params = msg.params ?? {};
    try {
      if (typeof name !== 'string') return;
      if (name.startsWith('pc.')) {
        const pc = this.pcs.get(params.pc);
        if (pc) pc._onEngineEvent(name, params);
        else debug('event for unknown pc', params.pc, name);
      } else if (name === 'track.ended') {
        for (const track of this.tracks.get(params.track) ?? []) track._end(true);
      } else if (name === 'devices.change') {
        this.deviceEvents.dispatchEvent(new Event('devicechange'));
      } else if (name === 'ringtone.ended') {
        this.ringtones.get(params.id)?._onEngineEvent(name, params);
      } else {
        debug('ignoring unknown event', name);
      }
    } catch (e) {
      warn(`handling event ${name} failed:`, e);
    }
  }

  /**
   * Sends a request (docs/protocol.md, "Message layer") and resolves with its `result`.
   * `apply(result)` runs synchronously when the response arrives, before the promise settles
   * and before any later message is processed.
   * @param {string} method e.g. "pc.createOffer"
   * @param {object} params
   * @param {(result: any) => void} [apply]
   * @returns {Promise<any>}
   */
  request(method, params, apply) {
    if (this.lost || this.ws.readyState !== WS_OPEN) {
      return Promise.reject(invalidState(`vdimedia: ${method} failed: the channel to the media engine is lost`));
    }
    const id = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, apply, method });
      try {
        this.ws.send(JSON.stringify({ type: 'request', id, method, params }));
      } catch (e) {
        this.pending.delete(id);
        reject(operationError(`vdimedia: sending ${method} failed: ${e?.message ?? e}`));
      }
    });
  }

  /** Allocates the next peer connection id (`pc1`, `pc2`, …). */
  newPcId() {
    this.pcCounter += 1;
    return `pc${this.pcCounter}`;
  }

  /** Allocates the next media element id (`el1`, …) for playout. */
  newElementId() {
    this.elementCounter += 1;
    return `el${this.elementCounter}`;
  }

  /** Registers a page track under its engine track id. */
  addTrack(track) {
    let set = this.tracks.get(track._remoteId);
    if (!set) {
      set = new Set();
      this.tracks.set(track._remoteId, set);
    }
    set.add(track);
  }

  /** The first page track for an engine track id, or undefined. */
  findTrack(remoteId) {
    const set = this.tracks.get(remoteId);
    if (!set) return undefined;
    for (const t of set) return t;
    return undefined;
  }

  /**
   * Marks the session lost: rejects every pending request with OperationError, tells the
   * peer connections and tracks, closes the WebSocket and calls `hooks.onLost` once.
   * @param {string} reason a status reason, e.g. "channel_lost"
   * @param {string} message
   */
  lose(reason, message) {
    if (this.lost) return;
    this.lost = true;
    warn(`channel lost (${reason}): ${message}`);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(operationError(`vdimedia: ${p.method} failed: ${message}`));
    for (const pc of [...this.pcs.values()]) {
      try {
        pc._onChannelLost();
      } catch (e) {
        warn('peer connection cleanup failed:', e);
      }
    }
    for (const set of this.tracks.values()) for (const t of set) t._end(true);
    for (const fn of this.lostListeners) {
      try {
        fn();
      } catch (e) {
        warn('cleanup failed:', e);
      }
    }
    try {
      if (this.ws.readyState <= WS_OPEN) this.ws.close(1000, 'vdimedia: session closed');
    } catch {
      // Already closing.
    }
    this.hooks.onLost(reason, message);
  }
}
