//! vdimedia virtual-channel protocol, sans-IO. The normative spec is `docs/protocol.md`.
//!
//! - [`frame`]: the binary frame layer (length prefix, kind, flags, session id) and its
//!   incremental decoder.
//! - [`handshake`]: the JSON payloads of `HELLO`, `WELCOME`, `REJECT`, `OPEN` and `CLOSE`.
//! - [`message`]: the JSON message layer (requests, responses, events, typed errors).
//! - [`api`]: the W3C dictionaries carried inside messages.
//! - [`channel`]: the channel state machine (handshake, sessions, fragmentation, keepalive).
//!
//! Nothing in this crate does I/O or reads a clock: callers feed bytes and `Instant`s in and
//! take frames and events out, so every behaviour is unit-testable and fuzzable.

pub mod api;
pub mod channel;
pub mod frame;
pub mod handshake;
pub mod message;

/// The protocol version this crate speaks best (the `version` of `WELCOME`).
pub const PROTOCOL_VERSION: u16 = 1;
/// Lowest protocol version this crate can speak (`HELLO.min_version` by default).
pub const MIN_VERSION: u16 = 1;
/// Highest protocol version this crate can speak (`HELLO.max_version` by default).
pub const MAX_VERSION: u16 = PROTOCOL_VERSION;

/// Logical session id carried in every frame header; `0` is the channel itself, non-zero ids
/// are chosen by the vda side (docs/protocol.md, "Sessions").
pub type SessionId = u32;

pub use channel::{Channel, ChannelConfig, ChannelError, ChannelEvent, Role};
pub use frame::{Frame, FrameDecoder, FrameError, FrameKind};
pub use handshake::{Capabilities, Close, DeviceCounts, Hello, Open, Reject, Welcome};
pub use message::{ErrorBody, ErrorCode, Event, Message, MessageError, Request, Response};
