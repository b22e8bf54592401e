// Playout of remoted streams on the endpoint: `audio.srcObject = remoteStream` becomes
// `playout.attach`, `setSinkId` becomes `playout.setSinkId`, and assigning anything else
// becomes `playout.detach` (docs/protocol.md, "Methods"). The native element plays nothing for
// the remoted part (its native srcObject stays null) while the getter returns the stream.

import { MediaStream, MediaStreamTrack } from './media.js';
import { debug, warn } from './util.js';

/** Finds a property descriptor on an object or its prototype chain. */
function findDescriptor(obj, key) {
  for (let o = obj; o; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, key);
    if (d) return d;
  }
  return undefined;
}

/**
 * Patches `HTMLMediaElement.prototype` (srcObject setter/getter, setSinkId, sinkId, play, pause)
 * of `win` for `session`.
 * @param {object} win the window whose HTMLMediaElement is patched
 * @param {import('./session.js').Session} session
 * @param {(obj: object, key: string, desc: PropertyDescriptor) => void} replace records the old
 *   descriptor so uninstall can restore it
 */
export function patchMediaElements(win, session, replace) {
  const proto = win.HTMLMediaElement?.prototype;
  if (!proto) return;
  const nativeSrc = findDescriptor(proto, 'srcObject');
  const nativeSinkId = findDescriptor(proto, 'sinkId');
  const nativeSetSinkId = proto.setSinkId;
  const nativePlay = proto.play;
  const nativePause = proto.pause;
  const NativeMediaStream = win.MediaStream && win.MediaStream !== MediaStream ? win.MediaStream : null;
  /** element → {id, stream, sinkId, observer} */
  const elements = new WeakMap();
  /** Live elements with an attached stream, to tidy up when the channel is lost. */
  const attached = new Set();

  const nativeSet = (el, value) => {
    if (nativeSrc?.set) nativeSrc.set.call(el, value);
  };
  const stateOf = (el) => {
    let st = elements.get(el);
    if (!st) {
      st = { id: session.newElementId(), stream: null, sinkId: undefined, observer: null };
      elements.set(el, st);
    }
    return st;
  };
  const remotedTracks = (stream) => stream.getTracks().filter((t) => t instanceof MediaStreamTrack);

  const attach = (el, st) => {
    const stream = st.stream;
    const params = { element: st.id, stream: stream.id, tracks: remotedTracks(stream).map((t) => t._remoteId) };
    if (st.sinkId !== undefined && st.sinkId !== '') params.sinkId = st.sinkId;
    session.request('playout.attach', params).catch((e) => warn(`playout.attach ${st.id} failed:`, e?.message));
    // Native (VDA-local, e.g. camera) tracks in the same stream still play natively.
    const natives = stream.getTracks().filter((t) => !(t instanceof MediaStreamTrack));
    nativeSet(el, natives.length && NativeMediaStream ? new NativeMediaStream(natives) : null);
  };
  const detach = (st) => {
    if (!st.stream) return;
    st.stream._observers.delete(st.observer);
    st.stream = null;
    st.observer = null;
    attached.delete(st);
    if (!session.lost) {
      session.request('playout.detach', { element: st.id }).catch((e) => debug(`playout.detach ${st.id} failed:`, e?.message));
    }
  };

  replace(proto, 'srcObject', {
    enumerable: true,
    get() {
      const st = elements.get(this);
      if (st?.stream) return st.stream;
      return nativeSrc?.get ? nativeSrc.get.call(this) : null;
    },
    set(value) {
      if (value instanceof MediaStream) {
        const st = stateOf(this);
        if (st.stream === value) return;
        detach(st);
        st.stream = value;
        // Tracks added later (SIP.js adds remote tracks to its own stream) re-attach.
        st.observer = () => {
          if (st.stream === value && !session.lost) attach(this, st);
        };
        value._observers.add(st.observer);
        attached.add(st);
        attach(this, st);
        return;
      }
      const st = elements.get(this);
      if (st) detach(st);
      nativeSet(this, value);
    },
  });

  replace(proto, 'sinkId', {
    enumerable: true,
    get() {
      const st = elements.get(this);
      if (st?.sinkId !== undefined) return st.sinkId;
      return nativeSinkId?.get ? nativeSinkId.get.call(this) : '';
    },
  });

  replace(proto, 'setSinkId', {
    value: function setSinkId(sinkId) {
      const id = String(sinkId ?? '');
      const st = stateOf(this);
      st.sinkId = id;
      if (st.stream) {
        return session.request('playout.setSinkId', { element: st.id, sinkId: id }).then(() => undefined);
      }
      // Device ids are the endpoint's: keep it for the next attach. Only the default device
      // also exists natively.
      if ((id === '' || id === 'default') && typeof nativeSetSinkId === 'function') {
        return Promise.resolve(nativeSetSinkId.call(this, id)).then(() => undefined, () => undefined);
      }
      return Promise.resolve();
    },
  });

  if (typeof nativePlay === 'function') {
    replace(proto, 'play', {
      value: function play() {
        const st = elements.get(this);
        // Playout runs on the endpoint from attach on; the element has no native source.
        if (st?.stream && !nativeSrc?.get?.call(this)) return Promise.resolve();
        return nativePlay.apply(this, arguments);
      },
    });
  }
  if (typeof nativePause === 'function') {
    replace(proto, 'pause', {
      value: function pause() {
        const st = elements.get(this);
        if (st?.stream && !nativeSrc?.get?.call(this)) return undefined;
        return nativePause.apply(this, arguments);
      },
    });
  }

  session.lostListeners.add(() => {
    for (const st of attached) {
      st.stream?._observers.delete(st.observer);
    }
    attached.clear();
  });
}
