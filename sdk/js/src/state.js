// The SDK's one active session, shared by the constructors (which must stay synchronous, as
// the W3C API requires) and install()/uninstall().

export const state = {
  /** @type {import('./session.js').Session|null} */
  session: null,
};

/** The active session if the channel is up, else null. */
export function activeSession() {
  const s = state.session;
  return s && !s.lost ? s : null;
}
