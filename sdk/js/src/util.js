// Small helpers shared by the W3C classes.

/**
 * Defines `on<type>` event handler IDL attributes (HTML §8.1.8.1) on a prototype of an
 * EventTarget subclass: setting a function registers one listener whose position in the
 * listener list is kept when the handler is replaced; a non-function clears it.
 * @param {object} proto
 * @param {string[]} types event types, e.g. ["icecandidate", "track"]
 */
export function defineEventHandlers(proto, types) {
  for (const type of types) {
    const slotKey = Symbol(`on${type}`);
    Object.defineProperty(proto, `on${type}`, {
      configurable: true,
      enumerable: true,
      get() {
        return this[slotKey]?.handler ?? null;
      },
      set(value) {
        const handler = typeof value === 'function' ? value : null;
        let slot = this[slotKey];
        if (handler) {
          if (slot) {
            slot.handler = handler;
            return;
          }
          slot = {
            handler,
            listener: (event) => {
              const ret = slot.handler?.call(this, event);
              if (ret === false) event.preventDefault();
            },
          };
          this[slotKey] = slot;
          this.addEventListener(type, slot.listener);
        } else if (slot) {
          this.removeEventListener(type, slot.listener);
          this[slotKey] = undefined;
        }
      },
    });
  }
}

/** A random identifier (UUID v4 where available), for objects the page creates locally. */
export function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-a${s.slice(17, 20)}-${s.slice(20)}`;
}

/** Logs a warning with the SDK prefix; never throws. */
export function warn(...args) {
  try {
    globalThis.console?.warn?.('[vdimedia]', ...args);
  } catch {
    // Logging must never break the page.
  }
}

/** Logs a debug line with the SDK prefix; never throws. */
export function debug(...args) {
  try {
    globalThis.console?.debug?.('[vdimedia]', ...args);
  } catch {
    // Logging must never break the page.
  }
}

/**
 * Wraps a promise for the legacy callback overloads of WebRTC 1.0 §4.4.3: calls
 * `success(value)` or `failure(error)` and resolves with undefined.
 */
export function legacyCallbacks(promise, success, failure) {
  return promise.then(
    (value) => {
      success(value);
    },
    (err) => {
      if (typeof failure === 'function') failure(err);
    },
  );
}
