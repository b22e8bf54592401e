// Maps the protocol's ErrorBody ({name, code, message, constraint?}) to the exceptions the W3C
// specs (and Chromium) throw, so apps that test `err.name` behave as on a native browser.

/**
 * `OverconstrainedError` (Media Capture and Streams §11.2): a DOMException named
 * "OverconstrainedError" with the name of the constraint that could not be met.
 */
export class OverconstrainedError extends DOMException {
  /**
   * @param {string} constraint constraint name, e.g. "deviceId"
   * @param {string} [message]
   */
  constructor(constraint, message = '') {
    super(message, 'OverconstrainedError');
    Object.defineProperty(this, 'constraint', { value: String(constraint ?? ''), enumerable: true });
  }
}

/**
 * Converts a response's `error` object (docs/protocol.md, "Message layer") to a throwable.
 * `TypeError` stays a TypeError, `OverconstrainedError` gets `.constraint`, every other name
 * becomes a DOMException of that name. The machine code is kept in `.vdimediaCode`.
 * @param {{name?: string, code?: string, message?: string, constraint?: string}} body
 * @returns {Error|DOMException}
 */
export function errorFromBody(body) {
  const message = typeof body?.message === 'string' ? body.message : 'vdimedia: request failed';
  const name = typeof body?.name === 'string' && body.name ? body.name : 'OperationError';
  let err;
  if (name === 'TypeError') err = new TypeError(message);
  else if (name === 'RangeError') err = new RangeError(message);
  else if (name === 'OverconstrainedError') err = new OverconstrainedError(body?.constraint ?? '', message);
  else err = new DOMException(message, name);
  if (typeof body?.code === 'string') {
    try {
      Object.defineProperty(err, 'vdimediaCode', { value: body.code, enumerable: false });
    } catch {
      // Non-extensible error object: the code is only a debugging aid.
    }
  }
  return err;
}

/** `InvalidStateError` DOMException with a message. */
export const invalidState = (message) => new DOMException(message, 'InvalidStateError');
/** `InvalidAccessError` DOMException with a message. */
export const invalidAccess = (message) => new DOMException(message, 'InvalidAccessError');
/** `NotSupportedError` DOMException with a message. */
export const notSupported = (message) => new DOMException(message, 'NotSupportedError');
/** `OperationError` DOMException with a message. */
export const operationError = (message) => new DOMException(message, 'OperationError');
