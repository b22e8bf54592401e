/** SDK version sent in `hello` (docs/protocol.md, "Bridge ↔ page"). Keep in step with package.json. */
export const VERSION = '0.1.0';
/** Lowest message-layer protocol version this SDK speaks (docs/protocol.md). */
export const MIN_PROTOCOL_VERSION = 1;
/** Highest message-layer protocol version this SDK speaks (docs/protocol.md). */
export const MAX_PROTOCOL_VERSION = 1;
