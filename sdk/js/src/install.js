// install()/uninstall()/status(): the handshake with the bridge (docs/protocol.md,
// "Bridge ↔ page") and the replacement of the page's WebRTC and media-capture globals.

import { RTCIceCandidate, RTCSessionDescription } from './description.js';
import {
  MediaDeviceInfo,
  MediaStream,
  MediaStreamTrack,
  MediaStreamTrackEvent,
  remoteEnumerateDevices,
  remoteGetUserMedia,
} from './media.js';
import { RTCDTMFSender, RTCDTMFToneChangeEvent } from './dtmf.js';
import { RTCPeerConnection } from './peerconnection.js';
import { patchMediaElements } from './playout.js';
import {
  RTCPeerConnectionIceEvent,
  RTCRtpReceiver,
  RTCRtpSender,
  RTCRtpTransceiver,
  RTCStatsReport,
  RTCTrackEvent,
  setEngineCodecs,
} from './rtp.js';
import { Session } from './session.js';
import { state } from './state.js';
import { MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, VERSION } from './version.js';
import { warn } from './util.js';

/** Default bridge address (the bridge listens like Citrix's WebSocketService on 9002). */
export const DEFAULT_BRIDGE_URL = 'wss://127.0.0.1:9002/';
/** Default time (ms) to wait for the bridge's `status` after connecting. */
export const DEFAULT_TIMEOUT_MS = 3000;

let currentStatus = Object.freeze({ redirected: false, reason: 'not_installed', message: 'VdiMedia.install() has not run' });
let installing = null;
let restoreGlobals = null;
let statusListener = null;

/**
 * The SDK's status: `{redirected, reason?, message?, version?, engine?, os?, arch?,
 * capabilities?, resuming?, grace_ms?, resumed?}`. `reason` (when not redirected) is one of
 * `bridge_unreachable`, `timeout`, `no_engine`, `version_mismatch`, `not_allowed`,
 * `engine_rejected`, `channel_lost`, `not_installed`, `uninstalled`, `bad_status`.
 * `{redirected: false, reason: 'channel_lost', resuming: true, grace_ms}`: the virtual channel
 * is away, calls keep running on the endpoint and the remoted objects stay; within `grace_ms`
 * (ms) the status becomes `{redirected: true, resumed: true, …}` again, or a final
 * `channel_lost` (without `resuming`) ends them.
 * @returns {object} a copy
 */
export function status() {
  return JSON.parse(JSON.stringify(currentStatus));
}

function setStatus(next) {
  currentStatus = Object.freeze(next);
  if (typeof statusListener === 'function') {
    try {
      statusListener(status());
    } catch (e) {
      warn('onStatusChange threw:', e);
    }
  }
}

/**
 * Connects to the bridge, sends `hello` and waits for `status`. Resolves with
 * `{ok: true, ws, msg, take}` (take(session) hands later messages to the session) or
 * `{ok: false, reason, message}`. Never rejects.
 */
function handshake(WebSocketImpl, url, timeoutMs) {
  return new Promise((resolve) => {
    let done = false;
    let sink = null;
    const buffered = [];
    let ws;
    const fail = (reason, message) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        ws?.close();
      } catch {
        // Closing a socket that never opened.
      }
      resolve({ ok: false, reason, message });
    };
    const timer = setTimeout(
      () => fail('timeout', `no status from the bridge at ${url} within ${timeoutMs} ms`),
      timeoutMs,
    );
    try {
      ws = new WebSocketImpl(url);
    } catch (e) {
      fail('bridge_unreachable', `cannot connect to ${url}: ${e?.message ?? e}`);
      return;
    }
    ws.addEventListener('open', () => {
      if (done) return;
      try {
        ws.send(JSON.stringify({ type: 'hello', sdk: VERSION, min_version: MIN_PROTOCOL_VERSION, max_version: MAX_PROTOCOL_VERSION }));
      } catch (e) {
        fail('bridge_unreachable', `sending hello failed: ${e?.message ?? e}`);
      }
    });
    ws.addEventListener('message', (ev) => {
      if (done) {
        if (sink) sink.onMessageEvent(ev);
        else buffered.push(ev);
        return;
      }
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      if (msg?.type !== 'status') return;
      done = true;
      clearTimeout(timer);
      resolve({
        ok: true,
        ws,
        msg,
        take(session) {
          sink = session;
          for (const b of buffered.splice(0)) session.onMessageEvent(b);
        },
      });
    });
    // 'error' is always followed by 'close'; the listener keeps Node's ws from throwing.
    ws.addEventListener('error', () => {});
    ws.addEventListener('close', (ev) => {
      if (!done) {
        fail('bridge_unreachable', `the bridge at ${url} closed or refused the connection (code ${ev?.code ?? '?'})`);
        return;
      }
      if (sink) sink.onCloseEvent(ev);
    });
  });
}

/**
 * Replaces the page's WebRTC and media-capture globals on `win` with the remoted ones.
 * @returns {() => void} restores every replaced property
 */
function patchGlobals(win, session) {
  const saved = [];
  const replace = (obj, key, desc) => {
    saved.push([obj, key, Object.getOwnPropertyDescriptor(obj, key)]);
    const d = { configurable: true, enumerable: false, ...desc };
    if (!('get' in d) && !('set' in d) && !('writable' in d)) d.writable = true;
    Object.defineProperty(obj, key, d);
  };
  const setGlobal = (key, value) => replace(win, key, { value, enumerable: false });

  setGlobal('RTCPeerConnection', RTCPeerConnection);
  if ('webkitRTCPeerConnection' in win) setGlobal('webkitRTCPeerConnection', RTCPeerConnection);
  setGlobal('RTCSessionDescription', RTCSessionDescription);
  setGlobal('RTCIceCandidate', RTCIceCandidate);
  setGlobal('RTCRtpSender', RTCRtpSender);
  setGlobal('RTCRtpReceiver', RTCRtpReceiver);
  setGlobal('RTCRtpTransceiver', RTCRtpTransceiver);
  setGlobal('RTCPeerConnectionIceEvent', RTCPeerConnectionIceEvent);
  setGlobal('RTCTrackEvent', RTCTrackEvent);
  setGlobal('RTCStatsReport', RTCStatsReport);
  setGlobal('RTCDTMFSender', RTCDTMFSender);
  setGlobal('RTCDTMFToneChangeEvent', RTCDTMFToneChangeEvent);

  // MediaStream: remoted when built from remoted tracks (or empty, so a page can add remote
  // tracks to it), native otherwise; `instanceof` is true for both kinds.
  const NativeMediaStream = win.MediaStream;
  const PatchedMediaStream = function PatchedMediaStream(arg) {
    if (!new.target) throw new TypeError("Failed to construct 'MediaStream': Please use the 'new' operator.");
    if (arg instanceof MediaStream) return new MediaStream(arg);
    const tracks = Array.isArray(arg) ? arg : arg && typeof arg.getTracks === 'function' ? arg.getTracks() : null;
    const remoted = tracks ? tracks.filter((t) => t instanceof MediaStreamTrack).length : 0;
    if (arg == null || !NativeMediaStream || (tracks && remoted > 0) || (tracks && tracks.length === 0 && Array.isArray(arg))) {
      return new MediaStream(arg);
    }
    return Reflect.construct(NativeMediaStream, [arg], NativeMediaStream);
  };
  Object.defineProperty(PatchedMediaStream, 'name', { value: 'MediaStream' });
  PatchedMediaStream.prototype = NativeMediaStream ? NativeMediaStream.prototype : MediaStream.prototype;
  Object.defineProperty(PatchedMediaStream, Symbol.hasInstance, {
    value: (obj) => obj instanceof MediaStream || (!!NativeMediaStream && obj instanceof NativeMediaStream),
  });
  setGlobal('MediaStream', PatchedMediaStream);

  // MediaStreamTrack cannot be constructed by pages, so the native constructor stays; it only
  // learns to recognise remoted tracks.
  const NativeTrack = win.MediaStreamTrack;
  if (typeof NativeTrack === 'function') {
    replace(NativeTrack, Symbol.hasInstance, {
      value: (obj) => obj instanceof MediaStreamTrack || Function.prototype[Symbol.hasInstance].call(NativeTrack, obj),
    });
  } else {
    setGlobal('MediaStreamTrack', MediaStreamTrack);
  }
  if (!('MediaStreamTrackEvent' in win)) setGlobal('MediaStreamTrackEvent', MediaStreamTrackEvent);
  // The same for MediaDeviceInfo: enumerateDevices() returns the endpoint's devices as the SDK's
  // objects, and pages check them with `instanceof MediaDeviceInfo`.
  const NativeInfo = win.MediaDeviceInfo;
  if (typeof NativeInfo === 'function') {
    replace(NativeInfo, Symbol.hasInstance, {
      value: (obj) => obj instanceof MediaDeviceInfo || Function.prototype[Symbol.hasInstance].call(NativeInfo, obj),
    });
  } else {
    setGlobal('MediaDeviceInfo', MediaDeviceInfo);
  }

  // navigator.mediaDevices: audio capture and devices come from the endpoint.
  const nav = win.navigator;
  if (nav) {
    let md = nav.mediaDevices;
    if (!md) {
      md = new EventTarget();
      replace(nav, 'mediaDevices', { value: md, enumerable: true });
    }
    const nativeGetUserMedia = typeof md.getUserMedia === 'function' ? md.getUserMedia.bind(md) : null;
    const nativeEnumerate = typeof md.enumerateDevices === 'function' ? md.enumerateDevices.bind(md) : null;
    const nativeAdd = md.addEventListener;
    const nativeRemove = md.removeEventListener;
    const getUserMedia = (constraints) => {
      if (!constraints || typeof constraints !== 'object' || (!constraints.audio && !constraints.video)) {
        return Promise.reject(new TypeError("Failed to execute 'getUserMedia' on 'MediaDevices': At least one of audio and video must be requested"));
      }
      // Video is not offloaded: a video-only request stays native (camera in the VDA).
      if (!constraints.audio && nativeGetUserMedia) return nativeGetUserMedia(constraints);
      return remoteGetUserMedia(session, constraints);
    };
    replace(md, 'getUserMedia', { value: getUserMedia });
    replace(md, 'enumerateDevices', {
      value: async () => {
        const devices = await remoteEnumerateDevices(session);
        // Cameras stay native, so list the VDA's video inputs after the endpoint's audio.
        if (nativeEnumerate) {
          try {
            for (const d of await nativeEnumerate()) if (d.kind === 'videoinput') devices.push(d);
          } catch {
            // No native devices: endpoint audio only.
          }
        }
        return devices;
      },
    });
    replace(md, 'addEventListener', {
      value: function addEventListener(type, listener, options) {
        if (type === 'devicechange') return session.deviceEvents.addEventListener(type, listener, options);
        return nativeAdd?.call(this, type, listener, options);
      },
    });
    replace(md, 'removeEventListener', {
      value: function removeEventListener(type, listener, options) {
        if (type === 'devicechange') return session.deviceEvents.removeEventListener(type, listener, options);
        return nativeRemove?.call(this, type, listener, options);
      },
    });
    let ondevicechange = null;
    const handlerListener = (ev) => ondevicechange?.call(md, ev);
    replace(md, 'ondevicechange', {
      enumerable: true,
      get: () => ondevicechange,
      set: (fn) => {
        const next = typeof fn === 'function' ? fn : null;
        if (next && !ondevicechange) session.deviceEvents.addEventListener('devicechange', handlerListener);
        if (!next && ondevicechange) session.deviceEvents.removeEventListener('devicechange', handlerListener);
        ondevicechange = next;
      },
    });
    // The callback form old SIP stacks still call.
    const legacyGum = (constraints, success, failure) => {
      getUserMedia(constraints).then(success, (e) => typeof failure === 'function' && failure(e));
    };
    for (const key of ['getUserMedia', 'webkitGetUserMedia']) {
      if (typeof nav[key] === 'function') replace(nav, key, { value: legacyGum });
    }
  }

  patchMediaElements(win, session, replace);

  return () => {
    for (const [obj, key, desc] of saved.reverse()) {
      try {
        if (desc) Object.defineProperty(obj, key, desc);
        else delete obj[key];
      } catch (e) {
        warn(`restoring ${String(key)} failed:`, e);
      }
    }
  };
}

/**
 * Connects to the bridge and, when it reports `redirected: true`, replaces the page's
 * WebRTC globals with the remoted ones. Never rejects: when the bridge is unreachable, slow,
 * has no engine or speaks another protocol version, the native APIs stay (fallback) and the
 * status says why.
 * @param {object} [options]
 * @param {string} [options.bridgeUrl='wss://127.0.0.1:9002/'] the bridge's WebSocket URL
 * @param {number} [options.timeoutMs=3000] ms to wait for the bridge's status
 * @param {(status: object) => void} [options.onStatusChange] called on every status change,
 *   including the outcome of this install
 * @param {boolean} [options.fallbackOnChannelLoss=true] restore native globals when the channel
 *   is lost, so the page's next call runs natively
 * @param {object} [options.window=globalThis] the global object to patch (tests, iframes)
 * @param {Function} [options.WebSocket] WebSocket constructor (default: the window's)
 * @returns {Promise<object>} the status (see status())
 */
export function install(options = {}) {
  if (state.session && !state.session.lost && (currentStatus.redirected || currentStatus.resuming)) return Promise.resolve(status());
  if (installing) return installing;
  installing = doInstall(options).finally(() => {
    installing = null;
  });
  return installing;
}

async function doInstall(options) {
  const win = options.window ?? globalThis;
  const url = options.bridgeUrl ?? DEFAULT_BRIDGE_URL;
  const timeoutMs = Number.isFinite(options.timeoutMs) ? options.timeoutMs : DEFAULT_TIMEOUT_MS;
  const fallbackOnChannelLoss = options.fallbackOnChannelLoss !== false;
  statusListener = options.onStatusChange ?? null;
  const WebSocketImpl = options.WebSocket ?? win.WebSocket ?? globalThis.WebSocket;
  if (typeof WebSocketImpl !== 'function') {
    setStatus({ redirected: false, reason: 'bridge_unreachable', message: 'no WebSocket in this context' });
    return status();
  }
  const hs = await handshake(WebSocketImpl, url, timeoutMs);
  if (!hs.ok) {
    warn(`not redirected (${hs.reason}): ${hs.message}; the native WebRTC APIs stay`);
    setStatus({ redirected: false, reason: hs.reason, message: hs.message });
    return status();
  }
  const msg = hs.msg;
  const close = () => {
    try {
      hs.ws.close(1000, 'vdimedia: not redirected');
    } catch {
      // Already closed.
    }
  };
  if (msg.redirected !== true) {
    close();
    const reason = typeof msg.reason === 'string' && msg.reason ? msg.reason : 'no_engine';
    const message = typeof msg.message === 'string' ? msg.message : `the bridge did not redirect (${reason})`;
    warn(`not redirected (${reason}): ${message}; the native WebRTC APIs stay`);
    setStatus({ redirected: false, reason, message });
    return status();
  }
  const version = msg.version ?? MIN_PROTOCOL_VERSION;
  if (!Number.isInteger(version) || version < MIN_PROTOCOL_VERSION || version > MAX_PROTOCOL_VERSION) {
    close();
    const message = `the bridge speaks protocol version ${version}, this SDK ${MIN_PROTOCOL_VERSION}..${MAX_PROTOCOL_VERSION}`;
    warn(`not redirected (version_mismatch): ${message}`);
    setStatus({ redirected: false, reason: 'version_mismatch', message });
    return status();
  }

  const session = new Session(hs.ws, msg, {
    onLost: (reason, message) => {
      if (state.session !== session) return;
      state.session = null;
      if (fallbackOnChannelLoss && restoreGlobals) {
        restoreGlobals();
        restoreGlobals = null;
      }
      setStatus({ redirected: false, reason, message });
    },
    onSuspend: (m) => {
      if (state.session !== session) return;
      const next = { redirected: false, reason: 'channel_lost', resuming: true, message: typeof m.message === 'string' ? m.message : 'the virtual channel is away' };
      if (Number.isFinite(m.grace_ms)) next.grace_ms = m.grace_ms;
      setStatus(next);
    },
    onResume: (m) => {
      if (state.session !== session) return;
      const next = { redirected: true, resumed: true, version: m.version ?? version };
      for (const k of ['engine', 'os', 'arch', 'capabilities']) if (m[k] !== undefined) next[k] = m[k];
      setStatus(next);
    },
  });
  state.session = session;
  setEngineCodecs(msg.capabilities?.codecs);
  restoreGlobals?.();
  restoreGlobals = patchGlobals(win, session);
  const next = { redirected: true, version };
  for (const k of ['engine', 'os', 'arch', 'capabilities']) if (msg[k] !== undefined) next[k] = msg[k];
  setStatus(next);
  hs.take(session);
  return status();
}

/**
 * Restores every native API and closes the channel; remoted peer connections become
 * `failed` and remoted tracks end. Safe to call when not installed.
 */
export function uninstall() {
  const session = state.session;
  state.session = null;
  if (restoreGlobals) {
    restoreGlobals();
    restoreGlobals = null;
  }
  if (session) {
    session.hooks.onLost = () => {};
    session.lose('uninstalled', 'VdiMedia.uninstall() was called');
  }
  if (currentStatus.redirected || session) {
    setStatus({ redirected: false, reason: 'uninstalled', message: 'VdiMedia.uninstall() was called' });
  }
}
