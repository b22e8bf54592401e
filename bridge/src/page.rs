//! One task per page: the WebSocket side of docs/protocol.md, "Bridge ↔ page (WebSocket)".
//!
//! A page connects, sends `{"type":"hello","sdk","min_version","max_version"}` within the
//! hello timeout, and gets one `{"type":"status",…}`. While redirected, its text messages are
//! parsed with [`Message::from_json`] and re-framed onto its logical session; garbage is
//! answered on the WebSocket and never forwarded. Everything a page does stays in its own task
//! and queue, so one page cannot slow down or break another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tracing::{debug, info, warn};
use vdimedia_protocol::handshake::{Open, Welcome};
use vdimedia_protocol::message::{ErrorBody, ErrorCode, Message, MessageError};

use crate::peer::{PeerError, PeerSocket, ProcessPolicy};
use crate::vc::{VcCommand, VcRouter};

/// Identifies one WebSocket connection for the bridge's lifetime (log field `page`).
pub type PageId = u64;

/// Events queued per page by the VC task; beyond this the page is detached.
pub(crate) const PAGE_QUEUE: usize = 256;
/// A WebSocket write that takes longer than this means the page stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Token bucket of page → engine messages: burst size and refill per second.
const RATE_BURST: f64 = 200.0;
const RATE_PER_SEC: f64 = 100.0;

/// `reason` of a negative `status` (docs/protocol.md, "Bridge ↔ page").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusReason {
    /// No channel, or no daemon on it.
    NoEngine,
    /// The page SDK's version range does not contain the channel's version (or the daemon's
    /// range does not meet the bridge's).
    VersionMismatch,
    /// The page's origin is not allow-listed.
    NotAllowed,
    /// The channel dropped after the session was open.
    ChannelLost,
    /// The daemon refused or closed the session.
    EngineRejected,
}

impl StatusReason {
    /// The wire spelling, e.g. `"no_engine"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::NoEngine => "no_engine",
            StatusReason::VersionMismatch => "version_mismatch",
            StatusReason::NotAllowed => "not_allowed",
            StatusReason::ChannelLost => "channel_lost",
            StatusReason::EngineRejected => "engine_rejected",
        }
    }
}

/// What the VC task tells a page task.
#[derive(Debug)]
pub(crate) enum PageEvent {
    /// A `status` message, ready to send.
    Status { redirected: bool, text: String },
    /// A `status` with `resuming: true`, ready to send: the channel is away, the session is
    /// kept (the page stays attached; its requests get `invalid_state` until it returns).
    Suspended { text: String },
    /// A message of the page's session from the engine.
    Message(Message),
    /// An `ERROR` from the engine or the bridge, sent as `{"type":"error","error":…}`.
    Error(ErrorBody),
    /// The session ended without the page asking; `opened` tells whether `OPENED` had come.
    EngineClosed { opened: bool, code: ErrorCode, reason: String },
}

impl PageEvent {
    /// `{"type":"status","redirected":true,"version","engine","os","arch","capabilities"}`.
    pub(crate) fn status_up(w: &Welcome) -> PageEvent {
        let v = json!({
            "type": "status",
            "redirected": true,
            "version": w.version,
            "engine": w.engine,
            "os": w.os,
            "arch": w.arch,
            "capabilities": w.capabilities,
        });
        PageEvent::Status { redirected: true, text: v.to_string() }
    }

    /// `{"type":"status","redirected":true,"resumed":true,…}`: as [`PageEvent::status_up`],
    /// after a suspended session was resumed with its objects and calls.
    pub(crate) fn status_resumed(w: &Welcome) -> PageEvent {
        let PageEvent::Status { text, .. } = Self::status_up(w) else { unreachable!() };
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["resumed"] = true.into();
        PageEvent::Status { redirected: true, text: v.to_string() }
    }

    /// `{"type":"status","redirected":false,"reason":"channel_lost","resuming":true,
    /// "grace_ms","message"}`: the channel dropped, the daemon keeps the session for `grace_ms`.
    pub(crate) fn status_suspended(message: impl Into<String>, grace_ms: u64) -> PageEvent {
        let v = json!({
            "type": "status",
            "redirected": false,
            "reason": StatusReason::ChannelLost.as_str(),
            "resuming": true,
            "grace_ms": grace_ms,
            "message": message.into(),
        });
        PageEvent::Suspended { text: v.to_string() }
    }

    /// `{"type":"status","redirected":false,"reason","message"}`.
    pub(crate) fn status_down(reason: StatusReason, message: impl Into<String>) -> PageEvent {
        let v = json!({"type": "status", "redirected": false, "reason": reason.as_str(), "message": message.into()});
        PageEvent::Status { redirected: false, text: v.to_string() }
    }
}

/// The page's first message.
#[derive(Debug, Deserialize)]
struct PageHello {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    sdk: Option<String>,
    min_version: u16,
    max_version: u16,
}

/// What every page task shares.
pub(crate) struct PageShared {
    pub router: Arc<VcRouter>,
    pub hello_timeout: Duration,
    pub allow_origins: Vec<String>,
    pub policy: ProcessPolicy,
    pub ws_config: WebSocketConfig,
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    /// `hello` forwarded; waiting for the status.
    Opening,
    Redirected,
    /// A negative status was sent; the page may send `hello` again or close.
    Detached,
}

/// Serves one accepted TCP connection: TLS (if configured), WebSocket handshake, then the page.
pub(crate) async fn serve_tcp(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    page: PageId,
    shared: Arc<PageShared>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + shared.hello_timeout;
    // Traced at once, while the TLS and WebSocket handshakes run: the shorter the wait, the
    // less a short-lived client can exit before it is identified.
    let ident = match tcp.local_addr() {
        Ok(local) if !shared.policy.allow_any || shared.router.needs_uid() => {
            Some(tokio::task::spawn_blocking(move || crate::peer::identify(local, peer)))
        }
        Ok(_) => None,
        Err(e) => Some(tokio::spawn(async move {
            Err(PeerError::Proc { what: "the socket's local address", message: e.to_string() })
        })),
    };
    match tls {
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => serve_ws(s, peer, page, shared, deadline, ident).await,
            Ok(Err(e)) => {
                info!(page, %peer, error = %e, "TLS handshake failed (is the certificate trusted by the browser?)")
            }
            Err(_) => info!(page, %peer, "TLS handshake timed out"),
        },
        None => serve_ws(tcp, peer, page, shared, deadline, ident).await,
    }
}

type Ident = Option<tokio::task::JoinHandle<Result<PeerSocket, PeerError>>>;

/// Applies the process allow-list and picks the page's channel; `Err` is the `status` reason
/// and the close reason (the log line is written here).
async fn admit(
    page: PageId,
    peer: SocketAddr,
    shared: &PageShared,
    ident: Ident,
) -> Result<mpsc::Sender<VcCommand>, (StatusReason, String)> {
    use StatusReason::{NoEngine, NotAllowed};
    let found = match ident {
        None => None,
        Some(h) => match h.await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                warn!(page, %peer, reason = "process_unknown", error = %e, "page refused: the process behind it cannot be identified");
                return Err((NotAllowed, format!("process not identified: {e}")));
            }
            Err(e) => {
                warn!(page, %peer, reason = "process_unknown", error = %e, "page refused: process lookup failed");
                return Err((NotAllowed, "process not identified".into()));
            }
        },
    };
    if let Some(sock) = &found {
        for h in &sock.holders {
            let exe = h.exe.display();
            if h.euid != sock.uid {
                warn!(page, pid = h.pid, exe = %exe, uid = h.euid, socket_uid = sock.uid, reason = "process_not_allowed", "page refused: its socket is shared with another user's process");
                return Err((
                    NotAllowed,
                    format!("socket of uid {} is held by pid {} of uid {}", sock.uid, h.pid, h.euid),
                ));
            }
            if shared.policy.allow_any {
                continue;
            }
            match shared.policy.rule_for(h) {
                Some(rule) => {
                    info!(page, pid = h.pid, exe = %exe, uid = h.euid, rule = %rule, "page process allowed")
                }
                None => {
                    warn!(page, pid = h.pid, exe = %exe, uid = h.euid, reason = "process_not_allowed", "page refused: executable not in allowed_executables");
                    return Err((
                        NotAllowed,
                        format!("process not allowed: {exe} (pid {}) is not in allowed_executables", h.pid),
                    ));
                }
            }
        }
    }
    shared.router.channel_for(found.as_ref().map(|s| s.uid)).map_err(|why| {
        warn!(page, uid = found.as_ref().map(|s| s.uid), reason = "no_channel", error = %why, "page refused: no virtual channel for its user");
        (NoEngine, why)
    })
}

/// Answers a connection over the page limit with HTTP 503 at the WebSocket handshake.
pub(crate) async fn refuse_busy(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_pages: usize,
    timeout: Duration,
) {
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let refuse = move |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
        let mut r = ErrorResponse::new(Some(format!("vdimedia-bridge serves at most {max_pages} pages")));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        Err(r)
    };
    let work = async {
        match tls {
            Some(a) => {
                if let Ok(s) = a.accept(tcp).await {
                    let _ = tokio_tungstenite::accept_hdr_async(s, refuse).await;
                }
            }
            None => {
                let _ = tokio_tungstenite::accept_hdr_async(tcp, refuse).await;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, work).await;
    warn!(%peer, max_pages, "page refused: too many pages");
}

async fn serve_ws<S>(
    stream: S,
    peer: SocketAddr,
    page: PageId,
    shared: Arc<PageShared>,
    deadline: Instant,
    ident: Ident,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut origin: Option<String> = None;
    let mut agent: Option<String> = None;
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let h = |name: header::HeaderName| {
            req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        origin = h(header::ORIGIN);
        agent = h(header::USER_AGENT);
        Ok(resp)
    };
    let accepted = tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(shared.ws_config)),
    )
    .await;
    let ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return info!(page, %peer, error = %e, "WebSocket handshake failed"),
        Err(_) => return info!(page, %peer, "WebSocket handshake timed out"),
    };
    let mut ws = ws;
    let vc = match admit(page, peer, &shared, ident).await {
        Ok(vc) => vc,
        Err((reason, why)) => {
            // The documented negative status first (docs/protocol.md: `not_allowed`,
            // `no_engine`), so the SDK can show why, then the close carrying the rule.
            if let PageEvent::Status { text, .. } = PageEvent::status_down(reason, why.clone()) {
                let _ = tokio::time::timeout(SEND_TIMEOUT, ws.send(WsMessage::text(text))).await;
            }
            close_ws(&mut ws, CloseCode::Policy, &why).await;
            // Wait (briefly) for the page's close reply so the frame is not lost to a reset.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), async { while ws.next().await.is_some() {} })
                    .await;
            return;
        }
    };
    info!(page, %peer, origin = origin.as_deref().unwrap_or(""), "page connected");
    let mut p = Page {
        id: page,
        ws,
        vc: vc.clone(),
        shared: shared.clone(),
        origin,
        agent,
        state: State::AwaitHello,
        events: None,
        tokens: RATE_BURST,
        refilled: Instant::now(),
        throttled: false,
    };
    let why = p.run(deadline).await;
    if matches!(p.state, State::Opening | State::Redirected) {
        let _ =
            vc.send(VcCommand::Close { page, code: ErrorCode::Normal, reason: "page closed".into() }).await;
    }
    info!(page, reason = %why, "page disconnected");
}

struct Page<S> {
    id: PageId,
    ws: WebSocketStream<S>,
    /// The page's channel (per uid with a `{uid}` template).
    vc: mpsc::Sender<VcCommand>,
    shared: Arc<PageShared>,
    origin: Option<String>,
    agent: Option<String>,
    state: State,
    events: Option<mpsc::Receiver<PageEvent>>,
    tokens: f64,
    refilled: Instant,
    throttled: bool,
}

/// Receives from an optional queue; pending forever when there is none.
async fn recv_opt(rx: &mut Option<mpsc::Receiver<PageEvent>>) -> Option<PageEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Page<S> {
    /// Runs until the page or the bridge ends the connection; returns why.
    async fn run(&mut self, hello_deadline: Instant) -> String {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                msg = self.ws.next() => {
                    let r = match msg {
                        None => return "connection closed".into(),
                        Some(Err(e)) => return self.ws_error(e).await,
                        Some(Ok(m)) => self.on_ws(m).await,
                    };
                    if let Err(why) = r { return why; }
                }
                ev = recv_opt(&mut self.events) => {
                    let r = match ev {
                        Some(ev) => self.on_event(ev).await,
                        None => self.on_detached().await,
                    };
                    if let Err(why) = r { return why; }
                }
                () = tokio::time::sleep_until(hello_deadline), if self.state == State::AwaitHello => {
                    let secs = self.shared.hello_timeout.as_secs_f32();
                    warn!(page = self.id, "no hello within {secs} s");
                    self.close(CloseCode::Policy, &format!("no hello within {secs} s")).await;
                    return "hello timeout".into();
                }
                _ = shutdown.changed() => {
                    self.close(CloseCode::Away, "vdimedia-bridge shutting down").await;
                    return "bridge shutting down".into();
                }
            }
        }
    }

    async fn ws_error(&mut self, e: tungstenite::Error) -> String {
        match e {
            tungstenite::Error::Capacity(c) => {
                warn!(page = self.id, error = %c, "page sent a message over the size limit");
                self.close(CloseCode::Size, "message too large").await;
                format!("message too large: {c}")
            }
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                "connection closed".into()
            }
            e => {
                info!(page = self.id, error = %e, "WebSocket error");
                format!("WebSocket error: {e}")
            }
        }
    }

    async fn on_ws(&mut self, m: WsMessage) -> Result<(), String> {
        match m {
            WsMessage::Text(t) => self.on_text(t.as_str()).await,
            WsMessage::Binary(_) => {
                warn!(page = self.id, "binary WebSocket message refused");
                self.send_error(ErrorBody::new(
                    ErrorCode::BadMessage,
                    "binary WebSocket messages are not part of the protocol; send JSON text",
                ))
                .await
            }
            WsMessage::Close(_) => Err("page closed".into()),
            // tungstenite answers pings itself.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(()),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), String> {
        match self.state {
            State::AwaitHello | State::Detached => match serde_json::from_str::<PageHello>(text) {
                Ok(h) if h.kind == "hello" => self.on_hello(h).await,
                _ => {
                    let (code, msg) = if self.state == State::AwaitHello {
                        (
                            ErrorCode::InvalidState,
                            "send {\"type\":\"hello\",\"sdk\",\"min_version\",\"max_version\"} first",
                        )
                    } else {
                        (ErrorCode::SessionClosed, "not redirected: send hello to try again")
                    };
                    debug!(page = self.id, "message outside a session refused");
                    self.reply_error(text, ErrorBody::new(code, msg)).await
                }
            },
            State::Opening => {
                self.reply_error(text, ErrorBody::new(ErrorCode::InvalidState, "wait for the status message"))
                    .await
            }
            State::Redirected => match Message::from_json(text.as_bytes()) {
                Ok(message) => {
                    if !self.take_token() {
                        let body = ErrorBody::new(ErrorCode::LimitExceeded, "too many messages; slow down");
                        return match message {
                            Message::Request(r) => {
                                self.send_message(&Message::response_err(r.id, body)).await
                            }
                            _ => self.send_error(body).await,
                        };
                    }
                    self.vc
                        .send(VcCommand::Send { page: self.id, message })
                        .await
                        .map_err(|_| "bridge stopping".to_string())
                }
                Err(MessageError { id, error }) => {
                    let error = if is_hello(text) {
                        ErrorBody::new(
                            ErrorCode::InvalidState,
                            "hello was already received on this connection",
                        )
                    } else {
                        error
                    };
                    warn!(page = self.id, id, code = %error.code, message = %error.message, "bad message from page; not forwarded");
                    match id {
                        Some(id) => self.send_message(&Message::response_err(id, error)).await,
                        None => self.send_error(error).await,
                    }
                }
            },
        }
    }

    async fn on_hello(&mut self, h: PageHello) -> Result<(), String> {
        debug!(
            page = self.id,
            sdk = h.sdk.as_deref().unwrap_or(""),
            min = h.min_version,
            max = h.max_version,
            "hello"
        );
        if h.min_version > h.max_version {
            return self
                .send_error(ErrorBody::new(
                    ErrorCode::BadMessage,
                    "hello: min_version is greater than max_version",
                ))
                .await;
        }
        let allowed = &self.shared.allow_origins;
        if !allowed.is_empty() && !self.origin.as_ref().is_some_and(|o| allowed.contains(o)) {
            warn!(
                page = self.id,
                reason = "not_allowed",
                origin = self.origin.as_deref().unwrap_or("(none)"),
                "page not redirected: origin not allowed"
            );
            self.state = State::Detached;
            let ev = PageEvent::status_down(
                StatusReason::NotAllowed,
                format!("origin {} is not allowed by the bridge", self.origin.as_deref().unwrap_or("(none)")),
            );
            return self.on_event(ev).await;
        }
        let (tx, rx) = mpsc::channel(PAGE_QUEUE);
        self.events = Some(rx);
        self.state = State::Opening;
        let open = Open { origin: self.origin.clone(), agent: self.agent.clone(), sdk: h.sdk, resume: None };
        let cmd = VcCommand::Open {
            page: self.id,
            open,
            min_version: h.min_version,
            max_version: h.max_version,
            events: tx,
        };
        self.vc.send(cmd).await.map_err(|_| "bridge stopping".to_string())
    }

    async fn on_event(&mut self, ev: PageEvent) -> Result<(), String> {
        match ev {
            PageEvent::Status { redirected, text } => {
                self.state = if redirected { State::Redirected } else { State::Detached };
                if !redirected {
                    info!(page = self.id, status = %text, "page not redirected");
                }
                self.send_text(text).await
            }
            PageEvent::Suspended { text } => {
                info!(page = self.id, status = %text, "page suspended: channel away");
                self.send_text(text).await
            }
            PageEvent::Message(m) => self.send_message(&m).await,
            PageEvent::Error(e) => self.send_error(e).await,
            PageEvent::EngineClosed { opened, code, reason } => {
                self.state = State::Detached;
                let ev = PageEvent::status_down(
                    StatusReason::EngineRejected,
                    format!(
                        "vdimediad {} the session ({code}): {reason}",
                        if opened { "closed" } else { "refused" }
                    ),
                );
                if let PageEvent::Status { text, .. } = ev {
                    self.send_text(text).await?;
                }
                if opened {
                    let cc = if code == ErrorCode::Normal { CloseCode::Normal } else { CloseCode::Error };
                    self.close(cc, &format!("vdimediad closed the session: {code}")).await;
                    return Err(format!("engine closed the session ({code}): {reason}"));
                }
                Ok(())
            }
        }
    }

    /// The VC task dropped this page's queue.
    async fn on_detached(&mut self) -> Result<(), String> {
        self.events = None;
        match self.state {
            // Expected after a negative status: the queue ends with it.
            State::Detached | State::AwaitHello => Ok(()),
            State::Opening | State::Redirected => {
                self.state = State::Detached;
                if *self.shared.shutdown.borrow() {
                    self.close(CloseCode::Away, "vdimedia-bridge shutting down").await;
                    return Err("bridge shutting down".into());
                }
                self.close(CloseCode::Error, "session detached by the bridge").await;
                Err("detached by the bridge (queue overflow or shutdown)".into())
            }
        }
    }

    /// Replies to an unusable message: an error response when an id can be recovered.
    async fn reply_error(&mut self, text: &str, error: ErrorBody) -> Result<(), String> {
        match Message::from_json(text.as_bytes()) {
            Ok(Message::Request(r)) => self.send_message(&Message::response_err(r.id, error)).await,
            Err(MessageError { id: Some(id), .. }) => {
                self.send_message(&Message::response_err(id, error)).await
            }
            _ => self.send_error(error).await,
        }
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * RATE_PER_SEC).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.throttled = false;
            true
        } else {
            if !self.throttled {
                warn!(page = self.id, "page exceeds {RATE_PER_SEC} messages/s; messages refused");
                self.throttled = true;
            }
            false
        }
    }

    async fn send_message(&mut self, m: &Message) -> Result<(), String> {
        let text = String::from_utf8(m.to_json()).map_err(|e| format!("message is not UTF-8: {e}"))?;
        self.send_text(text).await
    }

    async fn send_error(&mut self, e: ErrorBody) -> Result<(), String> {
        self.send_text(json!({"type": "error", "error": e}).to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), String> {
        match tokio::time::timeout(SEND_TIMEOUT, self.ws.send(WsMessage::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("WebSocket write failed: {e}")),
            Err(_) => {
                warn!(page = self.id, "page stopped reading its WebSocket");
                Err("page stopped reading".into())
            }
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        close_ws(&mut self.ws, code, reason).await
    }
}

fn is_hello(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("hello"))
}

/// Sends a close frame (2 s at most).
async fn close_ws<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: CloseCode,
    reason: &str,
) {
    // RFC 6455 limits a close reason to 123 bytes.
    let mut reason = reason.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
}
