//! The channel state machine (docs/protocol.md, all of "Frame layer"): handshake, sessions,
//! fragmentation and reassembly, keepalive, and the error rules. Sans-IO: the caller feeds
//! received bytes with [`Channel::handle_input`], writes each item of
//! [`Channel::poll_transmit`] to the virtual channel, reacts to [`Channel::poll_event`], and
//! calls [`Channel::handle_timeout`] at [`Channel::poll_timeout`].
//!
//! ```no_run
//! # use vdimedia_protocol::channel::*;
//! # use std::time::Instant;
//! # fn write(_: &[u8]) {} fn read() -> Vec<u8> { vec![] }
//! let mut ch = Channel::new(ChannelConfig::vda("vdimedia-bridge/0.1.0"), Instant::now());
//! loop {
//!     while let Some(frame) = ch.poll_transmit() { write(&frame); }
//!     if ch.is_closed() { break; }
//!     ch.handle_input(&read(), Instant::now());
//!     while let Some(ev) = ch.poll_event() { println!("{ev:?}"); }
//! }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, error, info, warn};

use crate::frame::{
    DEFAULT_MAX_FRAME, FLAG_MORE, Frame, FrameDecoder, FrameKind, HEADER_LEN, MAX_MAX_FRAME, MAX_MESSAGE,
    MIN_MAX_FRAME, clamp_max_frame,
};
use crate::handshake::{Capabilities, Close, Hello, MAGIC, Open, Opened, Reject, Welcome};
use crate::message::{ErrorBody, ErrorCode, Message};
use crate::{MAX_VERSION, MIN_VERSION, SessionId};

/// Default cap on concurrent logical sessions per channel.
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Default `PING` interval: sent after this long without sending anything (10 s).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Default idle timeout: the channel is dead after this long without receiving a frame (30 s).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of bad messages in a row after which a session is closed.
pub const DEFAULT_MAX_BAD_MESSAGES: u32 = 8;
/// Default cap on requests an endpoint has received on one session and not yet answered.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 128;
/// Default request budget of one session (endpoint): a burst of this many requests...
pub const DEFAULT_REQUEST_BURST: u32 = 400;
/// ...then this many per second (a token bucket). Twice the bridge's per-page budget (200,
/// 100/s, `bridge/src/page.rs`), so requests the bridge admitted and the virtual channel
/// delivered in a clump are not refused here; the daemon's own guard against a VDA-side peer
/// that does not limit its pages.
pub const DEFAULT_REQUEST_RATE: u32 = 200;

/// Which side of the channel this is (docs/protocol.md, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The bridge: sends `HELLO`, opens and closes sessions.
    Vda,
    /// The daemon: answers `WELCOME`/`REJECT`, serves sessions.
    Endpoint,
}

/// Channel settings. Build with [`ChannelConfig::vda`] or [`ChannelConfig::endpoint`] and
/// adjust fields as needed.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub role: Role,
    /// Largest frame this side accepts and announces (bytes incl. the 4-byte length),
    /// clamped to `256..=65536`. The negotiated value is the smaller of both sides'.
    pub max_frame: usize,
    /// Send `PING` after this long without sending (10 s).
    pub keepalive_interval: Duration,
    /// Close with `timeout` after this long without receiving any frame (30 s).
    pub idle_timeout: Duration,
    /// Vda: `HELLO.agent`, e.g. `"vdimedia-bridge/0.1.0"`.
    pub agent: String,
    /// Endpoint: the `WELCOME` to answer; its `version` and `max_frame` are filled in by
    /// negotiation. `None` answers a minimal one.
    pub welcome: Option<Welcome>,
    /// Version range this side speaks.
    pub min_version: u16,
    pub max_version: u16,
    /// Bad messages in a row after which the session is closed with `bad_message` (8).
    pub max_bad_messages: u32,
    /// Concurrent sessions allowed (64); an `OPEN` over it gets `ERROR limit_exceeded`.
    pub max_sessions: usize,
    /// Endpoint: requests received on one session and not yet answered with [`Channel::send`]
    /// (128). A request over it is answered at once with a `limit_exceeded` error response and
    /// not delivered, so a page cannot queue unbounded work in the engine.
    pub max_pending_requests: usize,
    /// Endpoint: token bucket of requests per session: at most `request_burst` requests at
    /// once (400), refilled at `request_rate` requests per second (200/s). A request over it is
    /// answered at once with a `limit_exceeded` error response and not delivered; the session
    /// stays open and other sessions are unaffected. `request_rate` 0 turns the limit off.
    pub request_burst: u32,
    pub request_rate: u32,
    /// Endpoint: do not answer `OPEN` with `OPENED` at once; the caller sends it with
    /// [`Channel::accept_session`] (to put a `resume_token` in it). Off by default.
    pub defer_opened: bool,
}

impl ChannelConfig {
    fn base(role: Role) -> Self {
        ChannelConfig {
            role,
            max_frame: DEFAULT_MAX_FRAME,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            agent: String::new(),
            welcome: None,
            min_version: MIN_VERSION,
            max_version: MAX_VERSION,
            max_bad_messages: DEFAULT_MAX_BAD_MESSAGES,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            request_burst: DEFAULT_REQUEST_BURST,
            request_rate: DEFAULT_REQUEST_RATE,
            defer_opened: false,
        }
    }

    /// Vda-side defaults with `HELLO.agent = agent`.
    pub fn vda(agent: impl Into<String>) -> Self {
        ChannelConfig { agent: agent.into(), ..ChannelConfig::base(Role::Vda) }
    }

    /// Endpoint-side defaults answering `welcome`.
    pub fn endpoint(welcome: Welcome) -> Self {
        ChannelConfig {
            agent: welcome.engine.clone(),
            welcome: Some(welcome),
            ..ChannelConfig::base(Role::Endpoint)
        }
    }
}

/// Misuse of the local API (nothing is sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("the handshake has not finished")]
    NotReady,
    #[error("the channel is closed")]
    Closed,
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
    #[error("only the {0:?} role may do this")]
    WrongRole(Role),
    #[error("session limit of {0} reached")]
    TooManySessions(usize),
    #[error("message of {size} bytes exceeds max_message ({MAX_MESSAGE} bytes)")]
    MessageTooLarge { size: usize },
    #[error("control payload of {size} bytes does not fit max_frame {max_frame}")]
    FrameTooLarge { size: usize, max_frame: usize },
}

/// What happened on the channel; drain with [`Channel::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEvent {
    /// Endpoint: `HELLO` accepted, `WELCOME` queued; the channel is ready.
    Hello(Hello),
    /// Vda: `WELCOME` received (with the negotiated `max_frame`); the channel is ready.
    Ready(Welcome),
    /// Vda: `REJECT` received; `Closed` follows.
    Rejected(Reject),
    /// Endpoint: `OPEN` accepted and `OPENED` queued (`open` is `Some`; with
    /// [`ChannelConfig::defer_opened`], `OPENED` is queued by [`Channel::accept_session`]).
    /// Vda: `OPENED` received (`open` is `None`, `opened` its payload).
    SessionOpened { session: SessionId, open: Option<Open>, opened: Option<Opened> },
    /// A whole message of a session.
    Message { session: SessionId, message: Message },
    /// A session is gone: closed by the peer (`by_peer`), by us (`close_session`, too many bad
    /// messages), its `OPEN` refused by the endpoint, or the channel closed. Every session
    /// ends with exactly one of these.
    SessionClosed { session: SessionId, code: ErrorCode, reason: String, by_peer: bool },
    /// The peer sent an `ERROR` frame (session 0 = about the channel).
    PeerError { session: SessionId, error: ErrorBody },
    /// We found a fault in the peer's input and already answered it as the spec says; for
    /// logging.
    ProtocolError { session: SessionId, error: ErrorBody },
    /// The channel is over; the last event. Flush `poll_transmit` then drop the transport.
    Closed { code: ErrorCode, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Ready,
    Closed,
}

#[derive(Debug, Default)]
struct Session {
    /// Vda: `OPENED` received. Endpoint: always true.
    opened: bool,
    /// Fragments of the message being reassembled (≤ `MAX_MESSAGE` bytes).
    partial: Vec<u8>,
    /// Dropping the rest of an oversize message until its last fragment.
    discarding: bool,
    bad_in_row: u32,
    /// Endpoint: requests delivered and not yet answered.
    pending: usize,
    /// Endpoint: requests are being refused for `pending` (logged once per episode).
    refusing: bool,
    /// Endpoint: the request token bucket (`request_burst`, `request_rate`); made full at the
    /// first request.
    budget: Option<RequestBudget>,
    /// Endpoint: requests are being refused for the rate (logged once per episode).
    rate_limited: bool,
}

/// A token bucket of requests: `tokens` left at `at`.
#[derive(Debug, Clone, Copy)]
struct RequestBudget {
    tokens: f64,
    at: Instant,
}

impl RequestBudget {
    /// Refills up to `burst` at `rate` tokens per second since the last call, then takes one
    /// token if there is one.
    fn take(&mut self, now: Instant, burst: u32, rate: u32) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + dt * f64::from(rate)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One virtual channel, either role. See the module docs for the driving loop.
#[derive(Debug)]
pub struct Channel {
    cfg: ChannelConfig,
    state: State,
    decoder: FrameDecoder,
    /// Frame limit for sending (bytes): 4096 until the handshake ends, then negotiated.
    max_frame: usize,
    welcome: Option<Welcome>,
    sessions: BTreeMap<SessionId, Session>,
    next_session: SessionId,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ChannelEvent>,
    /// Latest `Instant` the caller gave us; frames queued by `send` etc. count as sent then.
    now: Instant,
    last_sent: Instant,
    last_recv: Instant,
    ping_nonce: u64,
}

impl Channel {
    /// A channel in handshake state. The vda role queues `HELLO` at once.
    pub fn new(mut config: ChannelConfig, now: Instant) -> Self {
        config.max_frame = clamp_max_frame(config.max_frame);
        let mut ch = Channel {
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME),
            state: State::Handshake,
            max_frame: DEFAULT_MAX_FRAME,
            welcome: None,
            sessions: BTreeMap::new(),
            next_session: 1,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            now,
            last_sent: now,
            last_recv: now,
            ping_nonce: 0,
            cfg: config,
        };
        if ch.cfg.role == Role::Vda {
            let mut hello = Hello::new(ch.cfg.agent.clone(), ch.cfg.max_frame as u32);
            hello.min_version = ch.cfg.min_version;
            hello.max_version = ch.cfg.max_version;
            let limit = DEFAULT_MAX_FRAME - HEADER_LEN;
            let payload =
                fit_json(&hello.agent.clone(), limit, |a| Hello { agent: a.to_string(), ..hello.clone() });
            ch.queue(Frame::new(FrameKind::Hello, 0, payload));
        }
        ch
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.cfg.role
    }

    /// Frame limit in force (bytes): 4096 before the handshake ends, then negotiated.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// True once the handshake has ended and until the channel closes.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// True once the channel is over (frames may still wait in `poll_transmit`).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The negotiated `WELCOME` (both roles), once the handshake has ended.
    pub fn welcome(&self) -> Option<&Welcome> {
        self.welcome.as_ref()
    }

    /// Ids of the sessions that exist (vda: including those waiting for `OPENED`).
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    /// Vda: true once `OPENED` arrived. Endpoint: true while the session exists.
    pub fn is_session_open(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_some_and(|s| s.opened)
    }

    /// The next encoded frame to write, whole (≤ `max_frame` bytes): write each item in one
    /// virtual-channel write, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }

    /// When to call [`Channel::handle_timeout`] next; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let idle = self.last_recv.checked_add(self.cfg.idle_timeout);
        let ping = if self.state == State::Ready {
            self.last_sent.checked_add(self.cfg.keepalive_interval)
        } else {
            None
        };
        match (idle, ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers: closes with `timeout` when nothing was received for `idle_timeout`,
    /// queues `PING` when nothing was sent for `keepalive_interval` (only after the handshake).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        if self.state == State::Closed {
            return;
        }
        if self.last_recv.checked_add(self.cfg.idle_timeout).is_some_and(|t| now >= t) {
            let reason = format!("nothing received for {} ms", self.cfg.idle_timeout.as_millis());
            self.fail(ErrorCode::Timeout, reason);
            return;
        }
        if self.state == State::Ready
            && self.last_sent.checked_add(self.cfg.keepalive_interval).is_some_and(|t| now >= t)
        {
            self.ping_nonce = self.ping_nonce.wrapping_add(1);
            let nonce = self.ping_nonce.to_be_bytes().to_vec();
            self.queue(Frame::new(FrameKind::Ping, 0, nonce));
        }
    }

    /// Feeds bytes read from the virtual channel (any split). Never panics: faults become
    /// `ERROR` frames, session closes or a channel close, plus events.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.tick(now);
        let mut rest = data;
        while self.state != State::Closed {
            let took = self.decoder.push_bounded(rest);
            rest = &rest[took..];
            let decoded = self.drain_decoder(now);
            if rest.is_empty() || self.state == State::Closed {
                break;
            }
            if took == 0 && decoded == 0 {
                // Cannot happen (a full buffer always holds a frame or a fatal header); never
                // spin if it does.
                self.fail(ErrorCode::Internal, "frame decoder stalled".to_string());
            }
        }
    }

    fn drain_decoder(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while self.state != State::Closed {
            match self.decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    n += 1;
                    self.last_recv = now;
                    self.handle_frame(frame);
                }
                Err(e) if e.is_fatal() => {
                    self.fail(ErrorCode::BadFrame, e.to_string());
                    n += 1;
                }
                Err(e) => {
                    n += 1;
                    self.last_recv = now;
                    if self.state == State::Handshake {
                        self.fail(ErrorCode::BadFrame, format!("{e} before the handshake ended"));
                    } else {
                        self.reply_bad_frame(e.session(), e.to_string());
                    }
                }
            }
        }
        n
    }

    fn handle_frame(&mut self, f: Frame) {
        let role = self.cfg.role;
        let s = f.session;
        match self.state {
            State::Closed => {}
            State::Handshake => match (role, f.kind) {
                (Role::Endpoint, FrameKind::Hello) if s == 0 => self.on_hello(&f.payload),
                (Role::Vda, FrameKind::Welcome) if s == 0 => self.on_welcome(&f.payload),
                (Role::Vda, FrameKind::Reject) if s == 0 => self.on_reject(&f.payload),
                (_, FrameKind::Close) if s == 0 => self.on_close(0, &f.payload),
                (_, kind) => self
                    .fail(ErrorCode::BadFrame, format!("{kind} on session {s} before the handshake ended")),
            },
            State::Ready => match f.kind {
                FrameKind::Ping | FrameKind::Pong if s != 0 || f.payload.len() != 8 => {
                    self.reply_bad_frame(s, format!("{} must be 8 bytes on session 0", f.kind));
                }
                FrameKind::Ping => self.queue(Frame::new(FrameKind::Pong, 0, f.payload)),
                FrameKind::Pong => debug!(nonce = ?f.payload, "PONG"),
                FrameKind::Open if role == Role::Endpoint => self.on_open(s, &f.payload),
                FrameKind::Opened if role == Role::Vda => self.on_opened(s, &f.payload),
                FrameKind::Close => self.on_close(s, &f.payload),
                FrameKind::Data => self.on_data(s, f.flags & FLAG_MORE != 0, &f.payload),
                FrameKind::Error => self.on_error(s, &f.payload),
                kind => self.reply_bad_frame(
                    s,
                    format!("unexpected {kind} for the {role:?} role after the handshake"),
                ),
            },
        }
    }

    fn on_hello(&mut self, payload: &[u8]) {
        let hello: Hello = match serde_json::from_slice(payload) {
            Ok(h) => h,
            Err(e) => {
                return self.fail(ErrorCode::BadFrame, format!("HELLO payload is not a Hello: {e}"));
            }
        };
        if hello.magic != MAGIC {
            return self.fail(ErrorCode::BadFrame, format!("HELLO magic {:?} is not {MAGIC:?}", hello.magic));
        }
        let peer_max = hello.max_frame as usize;
        if !(MIN_MAX_FRAME..=MAX_MAX_FRAME).contains(&peer_max) {
            return self.fail(ErrorCode::BadFrame, format!("HELLO max_frame {peer_max} outside 256..=65536"));
        }
        let lo = hello.min_version.max(self.cfg.min_version);
        let hi = hello.max_version.min(self.cfg.max_version);
        if lo > hi {
            let message = format!(
                "endpoint speaks versions {}..={}, vda {}..={}",
                self.cfg.min_version, self.cfg.max_version, hello.min_version, hello.max_version
            );
            warn!(agent = %hello.agent, "handshake: {message}");
            let reject = Reject {
                code: ErrorCode::VersionMismatch,
                message: message.clone(),
                min_version: self.cfg.min_version,
                max_version: self.cfg.max_version,
            };
            let payload = fit_json(&message, self.max_frame - HEADER_LEN, |m| Reject {
                message: m.to_string(),
                ..reject.clone()
            });
            self.queue(Frame::new(FrameKind::Reject, 0, payload));
            return self.shutdown(ErrorCode::VersionMismatch, message, false);
        }
        let negotiated = self.cfg.max_frame.min(peer_max);
        let mut welcome = self.cfg.welcome.clone().unwrap_or_else(|| {
            Welcome::new(concat!("vdimedia-protocol/", env!("CARGO_PKG_VERSION")), Capabilities::default())
        });
        welcome.version = hi;
        welcome.max_frame = negotiated as u32;
        let payload = to_json(&welcome);
        // WELCOME still travels under the pre-handshake limit.
        if HEADER_LEN + payload.len() > self.max_frame {
            return self
                .fail(ErrorCode::Internal, format!("WELCOME of {} bytes does not fit 4096", payload.len()));
        }
        self.queue(Frame::new(FrameKind::Welcome, 0, payload));
        info!(agent = %hello.agent, version = hi, max_frame = negotiated, "handshake done (endpoint)");
        self.set_ready(negotiated, welcome);
        self.events.push_back(ChannelEvent::Hello(hello));
    }

    fn on_welcome(&mut self, payload: &[u8]) {
        let mut welcome: Welcome = match serde_json::from_slice(payload) {
            Ok(w) => w,
            Err(e) => {
                return self.fail(ErrorCode::BadFrame, format!("WELCOME payload is not a Welcome: {e}"));
            }
        };
        if !(self.cfg.min_version..=self.cfg.max_version).contains(&welcome.version) {
            let reason = format!(
                "endpoint chose version {} outside {}..={}",
                welcome.version, self.cfg.min_version, self.cfg.max_version
            );
            return self.fail(ErrorCode::VersionMismatch, reason);
        }
        let peer_max = welcome.max_frame as usize;
        if !(MIN_MAX_FRAME..=MAX_MAX_FRAME).contains(&peer_max) {
            return self
                .fail(ErrorCode::BadFrame, format!("WELCOME max_frame {peer_max} outside 256..=65536"));
        }
        let negotiated = self.cfg.max_frame.min(peer_max);
        welcome.max_frame = negotiated as u32;
        info!(engine = %welcome.engine, version = welcome.version, max_frame = negotiated, "handshake done (vda)");
        self.set_ready(negotiated, welcome.clone());
        self.events.push_back(ChannelEvent::Ready(welcome));
    }

    fn on_reject(&mut self, payload: &[u8]) {
        let reject = serde_json::from_slice::<Reject>(payload).unwrap_or_else(|e| Reject {
            code: ErrorCode::BadFrame,
            message: format!("REJECT payload is not a Reject: {e}"),
            min_version: 0,
            max_version: 0,
        });
        warn!(code = %reject.code, "handshake rejected: {}", reject.message);
        let (code, reason) = (reject.code, reject.message.clone());
        self.events.push_back(ChannelEvent::Rejected(reject));
        // The endpoint closes the channel itself; nothing to send.
        self.shutdown(code, reason, true);
    }

    fn set_ready(&mut self, max_frame: usize, welcome: Welcome) {
        self.max_frame = max_frame;
        self.decoder.set_max_frame(max_frame);
        self.welcome = Some(welcome);
        self.state = State::Ready;
    }

    fn on_open(&mut self, s: SessionId, payload: &[u8]) {
        if s == 0 {
            return self.reply_bad_frame(0, "OPEN on session 0".to_string());
        }
        if self.sessions.contains_key(&s) {
            return self.reply_error(
                s,
                ErrorBody::new(ErrorCode::SessionExists, format!("session {s} is already open")),
            );
        }
        if self.sessions.len() >= self.cfg.max_sessions {
            let msg = format!("session limit of {} reached", self.cfg.max_sessions);
            return self.reply_error(s, ErrorBody::new(ErrorCode::LimitExceeded, msg));
        }
        let open = if payload.is_empty() {
            Open::default()
        } else {
            match serde_json::from_slice::<Open>(payload) {
                Ok(o) => o,
                Err(e) => {
                    return self.reply_bad_frame(s, format!("OPEN payload is not an Open: {e}"));
                }
            }
        };
        debug!(session = s, origin = ?open.origin, "session opened");
        self.sessions.insert(s, Session { opened: true, ..Session::default() });
        if !self.cfg.defer_opened {
            self.queue(Frame::new(FrameKind::Opened, s, Vec::new()));
        }
        self.events.push_back(ChannelEvent::SessionOpened { session: s, open: Some(open), opened: None });
    }

    /// Endpoint with [`ChannelConfig::defer_opened`]: answers the `OPEN` of `session` with
    /// `OPENED` carrying `opened`. Call it while handling its `SessionOpened`, before anything
    /// is sent on the session.
    pub fn accept_session(&mut self, session: SessionId, opened: &Opened) -> Result<(), ChannelError> {
        if self.cfg.role != Role::Endpoint {
            return Err(ChannelError::WrongRole(Role::Endpoint));
        }
        self.check_ready()?;
        if !self.sessions.contains_key(&session) {
            return Err(ChannelError::UnknownSession(session));
        }
        self.queue(Frame::new(FrameKind::Opened, session, to_json(opened)));
        Ok(())
    }

    fn on_opened(&mut self, s: SessionId, payload: &[u8]) {
        match self.sessions.get_mut(&s) {
            Some(sess) if !sess.opened => {
                sess.opened = true;
                // Lenient: an empty or foreign payload is an endpoint without resumption.
                let opened = serde_json::from_slice::<Opened>(payload).unwrap_or_default();
                debug!(session = s, resumed = opened.resumed, "session opened");
                self.events.push_back(ChannelEvent::SessionOpened {
                    session: s,
                    open: None,
                    opened: Some(opened),
                });
            }
            _ => debug!(session = s, "OPENED for an unknown or already open session ignored"),
        }
    }

    fn on_close(&mut self, s: SessionId, payload: &[u8]) {
        let close = serde_json::from_slice::<Close>(payload).unwrap_or_else(|e| Close {
            code: ErrorCode::BadFrame,
            reason: format!("CLOSE payload is not a Close: {e}"),
        });
        if s == 0 {
            info!(code = %close.code, "channel closed by the peer: {}", close.reason);
            return self.shutdown(close.code, close.reason, true);
        }
        if self.sessions.remove(&s).is_some() {
            debug!(session = s, code = %close.code, "session closed by the peer: {}", close.reason);
            self.events.push_back(ChannelEvent::SessionClosed {
                session: s,
                code: close.code,
                reason: close.reason,
                by_peer: true,
            });
        } else {
            debug!(session = s, "CLOSE for an unknown session ignored");
        }
    }

    fn on_data(&mut self, s: SessionId, more: bool, payload: &[u8]) {
        if s == 0 {
            return self.reply_bad_frame(0, "DATA on session 0".to_string());
        }
        let Some(sess) = self.sessions.get_mut(&s) else {
            return debug!(session = s, "DATA for an unknown session ignored");
        };
        if sess.discarding {
            sess.discarding = more;
            return;
        }
        if sess.partial.len() + payload.len() > MAX_MESSAGE {
            sess.partial = Vec::new();
            sess.discarding = more;
            let msg = format!("message exceeds max_message ({MAX_MESSAGE} bytes)");
            return self.reply_error(s, ErrorBody::new(ErrorCode::MessageTooLarge, msg));
        }
        sess.partial.extend_from_slice(payload);
        if more {
            return;
        }
        let bytes = std::mem::take(&mut sess.partial);
        match Message::from_json(&bytes) {
            Ok(message) => {
                sess.bad_in_row = 0;
                if let (Role::Endpoint, Message::Request(req)) = (self.cfg.role, &message) {
                    let (burst, rate, now) = (self.cfg.request_burst, self.cfg.request_rate, self.now);
                    let budget =
                        sess.budget.get_or_insert(RequestBudget { tokens: f64::from(burst), at: now });
                    if rate > 0 && !budget.take(now, burst, rate) {
                        let error = ErrorBody::new(
                            ErrorCode::LimitExceeded,
                            format!("more than {rate} requests per second (burst {burst}) on this session"),
                        );
                        let resp = Message::response_err(req.id, error.clone());
                        // Reported once per episode: a flood must not become a log flood.
                        if !std::mem::replace(&mut sess.rate_limited, true) {
                            warn!(
                                session = s,
                                id = req.id,
                                rate,
                                burst,
                                "requests refused: request rate over the session's budget"
                            );
                            self.events.push_back(ChannelEvent::ProtocolError { session: s, error });
                        }
                        return self.queue_data(s, &resp.to_json());
                    }
                    sess.rate_limited = false;
                    if sess.pending >= self.cfg.max_pending_requests {
                        let max = self.cfg.max_pending_requests;
                        let error = ErrorBody::new(
                            ErrorCode::LimitExceeded,
                            format!("more than {max} requests pending on this session"),
                        );
                        let resp = Message::response_err(req.id, error.clone());
                        // Reported once per episode: a flood must not become a log flood.
                        if !std::mem::replace(&mut sess.refusing, true) {
                            warn!(
                                session = s,
                                id = req.id,
                                max,
                                "requests refused: too many pending requests"
                            );
                            self.events.push_back(ChannelEvent::ProtocolError { session: s, error });
                        }
                        return self.queue_data(s, &resp.to_json());
                    }
                    sess.pending += 1;
                    sess.refusing = false;
                }
                self.events.push_back(ChannelEvent::Message { session: s, message });
            }
            Err(e) => {
                sess.bad_in_row += 1;
                let bad = sess.bad_in_row;
                warn!(session = s, id = ?e.id, bad_in_row = bad, "bad message: {}", e.error.message);
                self.events.push_back(ChannelEvent::ProtocolError { session: s, error: e.error.clone() });
                match e.to_response() {
                    Some(resp) => self.queue_data(s, &resp.to_json()),
                    None => self.queue_error(s, &e.error),
                }
                if bad >= self.cfg.max_bad_messages {
                    let reason = format!("{bad} bad messages in a row");
                    self.close_session(s, ErrorCode::BadMessage, &reason);
                }
            }
        }
    }

    fn on_error(&mut self, s: SessionId, payload: &[u8]) {
        let error = serde_json::from_slice::<ErrorBody>(payload).unwrap_or_else(|e| {
            ErrorBody::new(ErrorCode::BadFrame, format!("ERROR payload is not an error object: {e}"))
        });
        // Never answered, so two peers cannot bounce ERRORs forever.
        if s != 0 && !self.sessions.contains_key(&s) {
            return debug!(session = s, code = %error.code, "ERROR for an unknown session ignored");
        }
        warn!(session = s, code = %error.code, "peer reported: {}", error.message);
        let refused_open = self.cfg.role == Role::Vda
            && self.sessions.get(&s).is_some_and(|sess| !sess.opened)
            && matches!(
                error.code,
                ErrorCode::SessionExists | ErrorCode::LimitExceeded | ErrorCode::BadFrame
            );
        self.events.push_back(ChannelEvent::PeerError { session: s, error: error.clone() });
        if refused_open {
            self.sessions.remove(&s);
            self.events.push_back(ChannelEvent::SessionClosed {
                session: s,
                code: error.code,
                reason: error.message,
                by_peer: true,
            });
        }
    }

    /// Vda: opens a logical session (queues `OPEN`) and returns its id. `SessionOpened`
    /// follows when the endpoint answers; messages may be sent before that.
    pub fn open_session(&mut self, open: Open) -> Result<SessionId, ChannelError> {
        if self.cfg.role != Role::Vda {
            return Err(ChannelError::WrongRole(Role::Vda));
        }
        self.check_ready()?;
        if self.sessions.len() >= self.cfg.max_sessions {
            return Err(ChannelError::TooManySessions(self.cfg.max_sessions));
        }
        let payload = to_json(&open);
        if HEADER_LEN + payload.len() > self.max_frame {
            return Err(ChannelError::FrameTooLarge {
                size: HEADER_LEN + payload.len(),
                max_frame: self.max_frame,
            });
        }
        // The map holds at most `max_sessions` ids, so a free one is found quickly.
        let mut id = self.next_session;
        while id == 0 || self.sessions.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_session = id.wrapping_add(1);
        self.sessions.insert(id, Session::default());
        self.queue(Frame::new(FrameKind::Open, id, payload));
        Ok(id)
    }

    /// Sends one message on a session, split into `DATA` frames of at most `max_frame` bytes.
    pub fn send(&mut self, session: SessionId, msg: &Message) -> Result<(), ChannelError> {
        self.check_ready()?;
        if !self.sessions.contains_key(&session) {
            return Err(ChannelError::UnknownSession(session));
        }
        let bytes = msg.to_json();
        if bytes.len() > MAX_MESSAGE {
            return Err(ChannelError::MessageTooLarge { size: bytes.len() });
        }
        if let (Role::Endpoint, Message::Response(_)) = (self.cfg.role, msg)
            && let Some(sess) = self.sessions.get_mut(&session)
        {
            sess.pending = sess.pending.saturating_sub(1);
        }
        self.queue_data(session, &bytes);
        Ok(())
    }

    /// Sends an `ERROR` frame on `session` (0 = about the channel). The message is shortened
    /// if the body would not fit one frame. Dropped (with a log line) unless ready.
    pub fn send_error(&mut self, session: SessionId, error: ErrorBody) {
        if self.state != State::Ready {
            return debug!(session, code = %error.code, "send_error while not ready: dropped");
        }
        self.queue_error(session, &error);
    }

    /// Closes one session: queues `CLOSE` and emits `SessionClosed { by_peer: false }`.
    /// Unknown sessions are ignored.
    pub fn close_session(&mut self, session: SessionId, code: ErrorCode, reason: &str) {
        if self.state == State::Closed || self.sessions.remove(&session).is_none() {
            return debug!(session, "close_session for an unknown session ignored");
        }
        self.queue_close(session, code, reason);
        self.events.push_back(ChannelEvent::SessionClosed {
            session,
            code,
            reason: reason.to_string(),
            by_peer: false,
        });
    }

    /// Closes the whole channel: queues `CLOSE` on session 0, emits `SessionClosed` for every
    /// session and then `Closed`. Idempotent.
    pub fn close(&mut self, code: ErrorCode, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        self.queue_close(0, code, reason);
        self.shutdown(code, reason.to_string(), false);
    }

    fn check_ready(&self) -> Result<(), ChannelError> {
        match self.state {
            State::Ready => Ok(()),
            State::Handshake => Err(ChannelError::NotReady),
            State::Closed => Err(ChannelError::Closed),
        }
    }

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// A channel-level fault found by us: tell the peer (`CLOSE` on 0) and shut down.
    fn fail(&mut self, code: ErrorCode, reason: String) {
        if self.state == State::Closed {
            return;
        }
        warn!(code = %code, "closing channel: {reason}");
        self.queue_close(0, code, &reason);
        self.shutdown(code, reason, false);
    }

    fn shutdown(&mut self, code: ErrorCode, reason: String, by_peer: bool) {
        self.state = State::Closed;
        for (session, _) in std::mem::take(&mut self.sessions) {
            self.events.push_back(ChannelEvent::SessionClosed {
                session,
                code,
                reason: reason.clone(),
                by_peer,
            });
        }
        self.events.push_back(ChannelEvent::Closed { code, reason });
    }

    fn reply_bad_frame(&mut self, s: SessionId, why: String) {
        self.reply_error(s, ErrorBody::new(ErrorCode::BadFrame, why));
    }

    /// Answers a fault in the peer's input with `ERROR` and reports it as `ProtocolError`.
    fn reply_error(&mut self, s: SessionId, error: ErrorBody) {
        warn!(session = s, code = %error.code, "protocol error: {}", error.message);
        self.queue_error(s, &error);
        self.events.push_back(ChannelEvent::ProtocolError { session: s, error });
    }

    fn queue_error(&mut self, s: SessionId, error: &ErrorBody) {
        let limit = self.max_frame - HEADER_LEN;
        let payload =
            fit_json(&error.message, limit, |m| ErrorBody { message: m.to_string(), ..error.clone() });
        self.queue(Frame::new(FrameKind::Error, s, payload));
    }

    fn queue_close(&mut self, s: SessionId, code: ErrorCode, reason: &str) {
        let limit = self.max_frame - HEADER_LEN;
        let payload = fit_json(reason, limit, |r| Close { code, reason: r.to_string() });
        self.queue(Frame::new(FrameKind::Close, s, payload));
    }

    fn queue_data(&mut self, s: SessionId, bytes: &[u8]) {
        let chunk = self.max_frame - HEADER_LEN;
        let n = bytes.len().div_ceil(chunk).max(1);
        for (i, part) in bytes.chunks(chunk).enumerate() {
            let flags = if i + 1 < n { FLAG_MORE } else { 0 };
            self.queue(Frame { kind: FrameKind::Data, flags, session: s, payload: part.to_vec() });
        }
    }

    fn queue(&mut self, frame: Frame) {
        if frame.encoded_len() > self.max_frame {
            // Only a caller-built ErrorBody with a huge name/constraint gets here; the peer
            // would have to close the channel over it, so drop it instead.
            return error!(
                kind = %frame.kind,
                session = frame.session,
                size = frame.encoded_len(),
                max_frame = self.max_frame,
                "frame does not fit max_frame: dropped"
            );
        }
        self.last_sent = self.now;
        self.transmit.push_back(frame.to_bytes());
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Only plain structs of strings and integers are written: cannot fail.
    serde_json::to_vec(v).expect("control payload serializes")
}

/// JSON of `build(text)`, shortening `text` (at char boundaries, halving) until it fits
/// `limit` bytes, so a long human message never makes an unsendable frame.
fn fit_json<T: Serialize>(text: &str, limit: usize, build: impl Fn(&str) -> T) -> Vec<u8> {
    let mut end = text.len();
    loop {
        let payload = to_json(&build(&text[..end]));
        if payload.len() <= limit || end == 0 {
            return payload;
        }
        end /= 2;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
    }
}
