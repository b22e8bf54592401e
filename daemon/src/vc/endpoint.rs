//! Serves one virtual channel: drives the sans-IO [`Channel`] over a byte stream and routes
//! each logical session's messages to its [`Session`] task.
//!
//! Frames are written one per `write_all`, so a channel plugin that forwards writes as VC
//! packets never sees a frame split across packets.
//!
//! A channel that drops without a `CLOSE` (transport EOF or error, keepalive timeout, a
//! protocol fault) does not end its sessions: each is *parked* in [`ParkedSessions`] under the
//! `resume_token` its `OPENED` carried, its calls running and its events queued, until an
//! `OPEN` with that token re-binds it (on any channel) or `[vc] session_grace_ms` passes
//! (docs/protocol.md, "Sessions").

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::{Instrument, debug, info, info_span, warn};
use vdimedia_protocol::SessionId;
use vdimedia_protocol::channel::{Channel, ChannelConfig, ChannelEvent};
use vdimedia_protocol::handshake::Opened;
use vdimedia_protocol::message::{ErrorBody, ErrorCode, Message};

use crate::engine::Engine;
use crate::session::{Session, SessionInput};

/// Messages a parked session may queue (events, late responses); one more closes it, since a
/// page that comes back after missing events would hold a wrong picture of its calls.
pub const MAX_PARKED_MESSAGES: usize = 256;

/// What session tasks ask the channel to do. The session id is the one the task was created
/// with; the channel sends on the session the task is bound to now (they differ after a
/// resume).
#[derive(Debug)]
pub enum Outbound {
    Message(SessionId, Message),
    Error(SessionId, ErrorBody),
    Close(SessionId, ErrorCode, String),
}

/// A session task as its channel holds it: its input, its output, and the messages it
/// produced while parked (sent first, in order, after a resume).
pub struct SessionLink {
    input: mpsc::UnboundedSender<SessionInput>,
    output: mpsc::UnboundedReceiver<Outbound>,
    queued: Vec<Outbound>,
}

/// Engine-wide registry of parked sessions, keyed by resume token. Each entry is the claim
/// handle of the task that holds the session while it waits (see [`park`]).
#[derive(Default)]
pub struct ParkedSessions {
    map: std::sync::Mutex<HashMap<String, oneshot::Sender<oneshot::Sender<SessionLink>>>>,
}

impl ParkedSessions {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<oneshot::Sender<SessionLink>>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parked sessions now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the session parked under `token` out of the registry; `None` when the token is
    /// unknown, expired, or its session closed meanwhile.
    async fn claim(&self, token: &str) -> Option<SessionLink> {
        let claim = self.lock().remove(token)?;
        let (tx, rx) = oneshot::channel();
        claim.send(tx).ok()?;
        rx.await.ok()
    }
}

/// A fresh resume token: 128 bits from the kernel's generator as 32 lowercase hex digits.
fn new_resume_token() -> String {
    let mut b = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        // No randomness, no resumable sessions: an unguessable token is the whole protection.
        warn!(error = %e, "cannot read /dev/urandom; sessions will not be resumable");
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `"30 s"`, `"1.5 s"`: a grace period for log lines and close reasons.
fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{} s", ms / 1000) } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

/// Holds a session whose channel dropped: its calls keep running, what it sends is queued
/// (at most [`MAX_PARKED_MESSAGES`]) until [`ParkedSessions::claim`] hands it to a new channel,
/// or it is closed (peer connections closed, devices released) when `grace_ms` passes, the
/// queue overflows or the engine stops.
fn park(
    engine: &Arc<Engine>,
    session: SessionId,
    token: String,
    link: SessionLink,
    mut shutdown: watch::Receiver<bool>,
) {
    let grace_ms = engine.config.vc.session_grace_ms;
    if grace_ms == 0 || token.is_empty() || *shutdown.borrow() {
        info!(session, "virtual channel lost: session closed (no grace period)");
        let _ = link.input.send(SessionInput::Close);
        return;
    }
    let (claim_tx, mut claim_rx) = oneshot::channel::<oneshot::Sender<SessionLink>>();
    engine.parked.lock().insert(token.clone(), claim_tx);
    info!(
        session,
        grace_ms,
        "virtual channel lost: session parked, its calls keep running for {} waiting for the channel to return",
        secs(grace_ms)
    );
    let engine = engine.clone();
    let span = info_span!("session", session);
    engine.clone().tasks.spawn(
        async move {
            let SessionLink { input, mut output, mut queued } = link;
            let deadline = tokio::time::sleep(Duration::from_millis(grace_ms));
            tokio::pin!(deadline);
            enum End {
                Claimed(oneshot::Sender<SessionLink>),
                Close(String),
                Ended,
            }
            let end = loop {
                tokio::select! {
                    claim = &mut claim_rx => match claim {
                        Ok(reply) => break End::Claimed(reply),
                        Err(_) => break End::Close("parked-session registry dropped".into()),
                    },
                    out = output.recv() => match out {
                        Some(out) => {
                            queued.push(out);
                            if queued.len() > MAX_PARKED_MESSAGES {
                                break End::Close(format!(
                                    "more than {MAX_PARKED_MESSAGES} messages queued while the virtual channel was away"
                                ));
                            }
                        }
                        None => break End::Ended,
                    },
                    () = &mut deadline => {
                        break End::Close(format!("virtual channel did not return within {}", secs(grace_ms)));
                    }
                    Ok(()) = shutdown.changed() => break End::Close("engine stopping".into()),
                }
            };
            let reason = match end {
                End::Claimed(reply) => match reply.send(SessionLink { input, output, queued }) {
                    Ok(()) => return,
                    Err(link) => {
                        let _ = link.input.send(SessionInput::Close);
                        "the resuming channel went away".to_string()
                    }
                },
                End::Close(reason) => {
                    engine.parked.lock().remove(&token);
                    let _ = input.send(SessionInput::Close);
                    reason
                }
                End::Ended => {
                    engine.parked.lock().remove(&token);
                    "the session task ended".to_string()
                }
            };
            info!(reason = %reason, "parked session closed: {reason}");
        }
        .instrument(span),
    );
}

/// A session bound to this channel.
struct Bound {
    input: mpsc::UnboundedSender<SessionInput>,
    token: String,
}

/// The sessions of one channel and their outputs.
struct Sessions {
    bound: HashMap<SessionId, Bound>,
    outputs: StreamMap<SessionId, UnboundedReceiverStream<Outbound>>,
}

impl Sessions {
    /// Detaches `session` from this channel: its input and output, for closing or parking.
    fn unbind(&mut self, session: SessionId) -> Option<(String, SessionLink)> {
        let b = self.bound.remove(&session)?;
        let output = match self.outputs.remove(&session) {
            Some(stream) => stream.into_inner(),
            // The task ended already: an output that yields nothing more.
            None => mpsc::unbounded_channel().1,
        };
        Some((b.token, SessionLink { input: b.input, output, queued: Vec::new() }))
    }

    fn close(&mut self, session: SessionId) {
        if let Some((_, link)) = self.unbind(session) {
            let _ = link.input.send(SessionInput::Close);
        }
    }
}

/// Runs the channel until the peer goes away, the protocol closes it, or shutdown. On the way
/// out, sessions are closed (peer connections closed, devices released) when the peer closed
/// the channel or the engine stops, and parked (see the module docs) when the channel was lost.
pub async fn serve_channel<S>(stream: S, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let welcome = engine.welcome().await;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut config = ChannelConfig::endpoint(welcome);
    config.max_frame = engine.config.vc.max_frame as usize;
    config.defer_opened = true;
    let mut ch = Channel::new(config, Instant::now());
    let mut sessions = Sessions { bound: HashMap::new(), outputs: StreamMap::new() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut stopping = false;

    loop {
        while let Some(ev) = ch.poll_event() {
            handle_event(ev, &mut ch, &engine, &mut sessions, &shutdown).await;
        }
        while let Some(frame) = ch.poll_transmit() {
            if let Err(e) = wr.write_all(&frame).await {
                warn!(error = %e, "virtual channel write failed");
                ch.close(ErrorCode::Internal, "write failed");
            }
        }
        if ch.is_closed() || stopping {
            break;
        }
        let deadline = ch.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) => {
                    info!("virtual channel closed by the peer");
                    break;
                }
                Ok(n) => ch.handle_input(&buf[..n], Instant::now()),
                Err(e) => {
                    warn!(error = %e, "virtual channel read failed");
                    break;
                }
            },
            Some((sid, out)) = sessions.outputs.next(), if !sessions.outputs.is_empty() => {
                apply(&mut ch, sid, out);
                // Drain what else is queued so a burst of events goes out together.
                while let Some(Some((sid, out))) = sessions.outputs.next().now_or_never() {
                    apply(&mut ch, sid, out);
                }
            }
            _ = sleep => ch.handle_timeout(Instant::now()),
            _ = shutdown.changed() => {
                info!(sessions = sessions.bound.len(), "stopping: closing sessions");
                let ids: Vec<SessionId> = sessions.bound.keys().copied().collect();
                for id in ids {
                    sessions.close(id);
                    ch.close_session(id, ErrorCode::Normal, "engine stopping");
                }
                ch.close(ErrorCode::Normal, "engine stopping");
                stopping = true;
            }
        }
    }
    // Whatever is still bound lost its channel without a CLOSE (EOF, read or write error).
    let ids: Vec<SessionId> = sessions.bound.keys().copied().collect();
    for id in ids {
        if let Some((token, link)) = sessions.unbind(id) {
            if stopping {
                let _ = link.input.send(SessionInput::Close);
            } else {
                park(&engine, id, token, link, shutdown.clone());
            }
        }
    }
}

/// Sends a session task's output on channel session `sid` (the one it is bound to now).
fn apply(ch: &mut Channel, sid: SessionId, out: Outbound) {
    let r = match out {
        Outbound::Message(_, msg) => ch.send(sid, &msg),
        Outbound::Error(_, err) => {
            ch.send_error(sid, err);
            Ok(())
        }
        Outbound::Close(_, code, reason) => {
            ch.close_session(sid, code, &reason);
            Ok(())
        }
    };
    if let Err(e) = r {
        debug!(error = %e, "dropping output for a session that is gone");
    }
}

async fn handle_event(
    ev: ChannelEvent,
    ch: &mut Channel,
    engine: &Arc<Engine>,
    sessions: &mut Sessions,
    shutdown: &watch::Receiver<bool>,
) {
    match ev {
        ChannelEvent::Hello(hello) => {
            info!(agent = %hello.agent, min = hello.min_version, max = hello.max_version, "channel handshake done");
        }
        ChannelEvent::SessionOpened { session, open, .. } => {
            let open = open.unwrap_or_default();
            // A page is here: load GStreamer and make the DTLS certificate now, in the
            // background, so its first pc.create/createOffer does not wait for them (unless
            // the administrator keeps idle memory down instead: `[webrtc] warm_up`).
            if engine.config.webrtc.warm_up == crate::config::WarmUp::Session {
                engine.start_warm_up();
            }
            let resumed = match open.resume.as_deref() {
                Some(token) if !token.is_empty() => engine.parked.claim(token).await,
                _ => None,
            };
            let grace_ms = engine.config.vc.session_grace_ms;
            let token = if grace_ms > 0 { new_resume_token() } else { String::new() };
            let opened = Opened {
                resume_token: (!token.is_empty()).then(|| token.clone()),
                resumed: resumed.is_some(),
                resume_grace_ms: Some(if token.is_empty() { 0 } else { grace_ms }),
            };
            if let Err(e) = ch.accept_session(session, &opened) {
                warn!(session, error = %e, "cannot answer OPEN");
            }
            let link = match resumed {
                Some(link) => {
                    info!(session, queued = link.queued.len(), origin = ?open.origin, "logical session resumed");
                    link
                }
                None => {
                    if open.resume.is_some() {
                        info!(session, "resume token unknown or expired: new session");
                    }
                    info!(session, origin = ?open.origin, sdk = ?open.sdk, "logical session opened");
                    let (tx, rx) = mpsc::unbounded_channel();
                    let (out_tx, out_rx) = mpsc::unbounded_channel();
                    let s = Session::new(session, engine.clone(), out_tx);
                    let span = info_span!("session", session = session);
                    engine.tasks.spawn(s.run(rx).instrument(span));
                    SessionLink { input: tx, output: out_rx, queued: Vec::new() }
                }
            };
            let SessionLink { input, output, queued } = link;
            for out in queued {
                apply(ch, session, out);
            }
            sessions.outputs.insert(session, UnboundedReceiverStream::new(output));
            sessions.bound.insert(session, Bound { input, token });
        }
        ChannelEvent::Message { session, message } => match sessions.bound.get(&session) {
            Some(b) => {
                let _ = b.input.send(SessionInput::Message(message));
            }
            None => debug!(session, "message for an unknown session ignored"),
        },
        ChannelEvent::SessionClosed { session, code, reason, by_peer } => {
            // The channel failing (timeout, protocol fault, write error) is a loss: park. A
            // CLOSE from the peer, of the session or of the whole channel, ends it now.
            let lost = ch.is_closed() && !by_peer && !*shutdown.borrow();
            info!(session, code = ?code, reason = %reason, by_peer, parked = lost, "logical session closed");
            if lost {
                if let Some((token, link)) = sessions.unbind(session) {
                    park(engine, session, token, link, shutdown.clone());
                }
            } else {
                sessions.close(session);
            }
        }
        ChannelEvent::PeerError { session, error } => {
            warn!(session, code = ?error.code, message = %error.message, "peer reported an error");
        }
        ChannelEvent::ProtocolError { session, error } => {
            warn!(session, code = ?error.code, message = %error.message, "bad input on the virtual channel");
        }
        ChannelEvent::Closed { code, reason } => {
            info!(code = ?code, reason = %reason, "virtual channel closed");
        }
        ChannelEvent::Ready(_) | ChannelEvent::Rejected(_) => {
            // VDA-side events; the endpoint never sees them.
        }
    }
}
