//! Serves one virtual channel: drives the sans-IO [`Channel`] over a byte stream and routes
//! each logical session's messages to its [`Session`] task.
//!
//! Frames are written one per `write_all`, so a channel plugin that forwards writes as VC
//! packets never sees a frame split across packets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use vdimedia_protocol::SessionId;
use vdimedia_protocol::channel::{Channel, ChannelConfig, ChannelEvent};
use vdimedia_protocol::message::{ErrorBody, ErrorCode, Message};

use crate::engine::Engine;
use crate::session::{Session, SessionInput};

/// What session tasks ask the channel to do.
#[derive(Debug)]
pub enum Outbound {
    Message(SessionId, Message),
    Error(SessionId, ErrorBody),
    Close(SessionId, ErrorCode, String),
}

/// Runs the channel until the peer goes away, the protocol closes it, or shutdown. Every
/// session of the channel is closed on the way out (peer connections closed, devices released).
pub async fn serve_channel<S>(stream: S, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let welcome = engine.welcome().await;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut config = ChannelConfig::endpoint(welcome);
    config.max_frame = engine.config.vc.max_frame as usize;
    let mut ch = Channel::new(config, Instant::now());
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outbound>();
    let mut sessions: HashMap<SessionId, mpsc::UnboundedSender<SessionInput>> = HashMap::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stopping = false;

    loop {
        while let Some(ev) = ch.poll_event() {
            handle_event(ev, &engine, &out_tx, &mut sessions);
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
            Some(out) = out_rx.recv() => {
                apply(&mut ch, out);
                // Drain what else is queued so a burst of events goes out together.
                while let Ok(out) = out_rx.try_recv() {
                    apply(&mut ch, out);
                }
            }
            _ = sleep => ch.handle_timeout(Instant::now()),
            _ = shutdown.changed() => {
                info!(sessions = sessions.len(), "stopping: closing sessions");
                for (id, tx) in sessions.drain() {
                    let _ = tx.send(SessionInput::Close);
                    ch.close_session(id, ErrorCode::Normal, "engine stopping");
                }
                ch.close(ErrorCode::Normal, "engine stopping");
                stopping = true;
            }
        }
    }
    // Sessions end when their input closes; each closes its peer connections.
    for (_, tx) in sessions.drain() {
        let _ = tx.send(SessionInput::Close);
    }
}

fn apply(ch: &mut Channel, out: Outbound) {
    let r = match out {
        Outbound::Message(sid, msg) => ch.send(sid, &msg),
        Outbound::Error(sid, err) => {
            ch.send_error(sid, err);
            Ok(())
        }
        Outbound::Close(sid, code, reason) => {
            ch.close_session(sid, code, &reason);
            Ok(())
        }
    };
    if let Err(e) = r {
        debug!(error = %e, "dropping output for a session that is gone");
    }
}

fn handle_event(
    ev: ChannelEvent,
    engine: &Arc<Engine>,
    out_tx: &mpsc::UnboundedSender<Outbound>,
    sessions: &mut HashMap<SessionId, mpsc::UnboundedSender<SessionInput>>,
) {
    match ev {
        ChannelEvent::Hello(hello) => {
            info!(agent = %hello.agent, min = hello.min_version, max = hello.max_version, "channel handshake done");
        }
        ChannelEvent::SessionOpened { session, open } => {
            let open = open.unwrap_or_default();
            info!(session, origin = ?open.origin, sdk = ?open.sdk, "logical session opened");
            // A page is here: load GStreamer and make the DTLS certificate now, in the
            // background, so its first pc.create/createOffer does not wait for them.
            engine.start_warm_up();
            let (tx, rx) = mpsc::unbounded_channel();
            let s = Session::new(session, engine.clone(), out_tx.clone());
            let span = info_span!("session", session = session);
            engine.tasks.spawn(s.run(rx).instrument(span));
            sessions.insert(session, tx);
        }
        ChannelEvent::Message { session, message } => match sessions.get(&session) {
            Some(tx) => {
                let _ = tx.send(SessionInput::Message(message));
            }
            None => debug!(session, "message for an unknown session ignored"),
        },
        ChannelEvent::SessionClosed { session, code, reason, by_peer } => {
            info!(session, code = ?code, reason = %reason, by_peer, "logical session closed");
            if let Some(tx) = sessions.remove(&session) {
                let _ = tx.send(SessionInput::Close);
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
