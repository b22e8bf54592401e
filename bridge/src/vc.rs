//! The virtual-channel side: one task owns the byte stream to `vdimediad` (accepted or dialled,
//! one at a time) and drives the sans-IO [`Channel`] of `vdimedia-protocol` in the `vda` role.
//! Pages talk to it only through [`VcCommand`]s and receive [`PageEvent`]s, so a slow or
//! hostile page can never stall the channel or another page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use vdimedia_protocol::SessionId;
use vdimedia_protocol::channel::{Channel, ChannelConfig, ChannelEvent};
use vdimedia_protocol::handshake::{Open, Welcome};
use vdimedia_protocol::message::{ErrorBody, ErrorCode, Message};

use crate::config::{VcMode, VcTarget};
use crate::page::{PageEvent, PageId, StatusReason};

/// Product token sent in `HELLO.agent`.
pub const AGENT: &str = concat!("vdimedia-bridge/", env!("CARGO_PKG_VERSION"));

/// Time the daemon has to answer `HELLO` with `WELCOME`/`REJECT` after the stream is up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Redial backoff bounds (connect mode).
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Bytes queued for the VC writer above which pages' messages are refused with
/// `limit_exceeded` instead of growing memory without bound.
const WRITE_BACKLOG_MAX: usize = 4 * 1024 * 1024;
/// Time given to flush `CLOSE` frames at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// What a page task asks of the VC task.
#[derive(Debug)]
pub(crate) enum VcCommand {
    /// The page sent its `hello`: open a logical session for it. Its events go to `events`.
    Open { page: PageId, open: Open, min_version: u16, max_version: u16, events: mpsc::Sender<PageEvent> },
    /// A parsed message of an attached page.
    Send { page: PageId, message: Message },
    /// The page left (or was refused): forget it and close its session.
    Close { page: PageId, code: ErrorCode, reason: String },
}

enum Attach {
    /// The channel's handshake has not finished yet.
    Waiting {
        open: Open,
        min_version: u16,
        max_version: u16,
    },
    /// `OPEN` sent, waiting for `OPENED`.
    Opening(SessionId),
    Open(SessionId),
    /// The channel dropped while the session was open and the daemon parked it: waiting for
    /// the channel to return (until `deadline`) to `OPEN` again with `resume`.
    Suspended {
        deadline: Instant,
    },
    /// `OPEN` with `resume` sent on the returned channel, waiting for `OPENED`.
    Resuming(SessionId),
}

struct PageEntry {
    events: mpsc::Sender<PageEvent>,
    attach: Attach,
    /// The page's `OPEN` (without `resume`), sent again to resume.
    open: Open,
    /// The last `OPENED.resume_token` and `resume_grace_ms`, when the daemon parks sessions.
    resume: Option<(String, u64)>,
}

impl PageEntry {
    fn session(&self) -> Option<SessionId> {
        match self.attach {
            Attach::Opening(s) | Attach::Open(s) | Attach::Resuming(s) => Some(s),
            Attach::Waiting { .. } | Attach::Suspended { .. } => None,
        }
    }
}

/// Page text of the final `channel_lost` status when a suspended session cannot be resumed.
const CALLS_ENDED: &str = "calls ended";

/// Source of virtual-channel byte streams.
pub(crate) enum VcSource {
    Listen(TcpListener),
    Connect(VcTarget),
    /// One user's channel (`vc_connect` with `{uid}`): the socket at `path` must be owned by
    /// `uid`, checked at every dial (see [`open_user_socket`]).
    ConnectUser {
        path: PathBuf,
        uid: u32,
    },
}

/// Opens `uid`'s channel socket without following a symlink in its last component and
/// checks it is a socket owned by `uid`, so a user can only ever send the bridge to a socket
/// of their own (a symlink to, or a socket planted for, another user's channel is refused).
/// The caller connects through `/proc/self/fd/N` of the returned descriptor, so the checked
/// inode is the one connected to.
pub(crate) fn open_user_socket(path: &Path, uid: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    if !m.file_type().is_socket() {
        return Err(std::io::Error::other(format!("{} is not a socket", path.display())));
    }
    if m.uid() != uid {
        return Err(std::io::Error::other(format!(
            "{} belongs to uid {}, not {uid}",
            path.display(),
            m.uid()
        )));
    }
    Ok(f)
}

trait VcStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> VcStream for T {}
type BoxStream = Box<dyn VcStream>;

impl VcSource {
    /// Binds the listener of `--vc-listen` (so the address is known before the task runs).
    pub(crate) async fn bind(mode: &VcMode) -> std::io::Result<(VcSource, Option<SocketAddr>)> {
        match mode {
            VcMode::Listen(addr) => {
                let l = TcpListener::bind(addr).await?;
                let local = l.local_addr()?;
                Ok((VcSource::Listen(l), Some(local)))
            }
            VcMode::Connect(t) => Ok((VcSource::Connect(t.clone()), None)),
        }
    }

    async fn dial(target: &VcTarget) -> std::io::Result<BoxStream> {
        Ok(match target {
            VcTarget::Tcp(hostport) => {
                let s = TcpStream::connect(hostport.as_str()).await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            VcTarget::Unix(path) => Box::new(UnixStream::connect(path).await?),
            VcTarget::UnixPerUid(t) => {
                return Err(std::io::Error::other(format!("{t} is a per-user template, not a socket")));
            }
        })
    }

    async fn dial_user(path: &Path, uid: u32) -> std::io::Result<BoxStream> {
        use std::os::fd::AsRawFd;
        let f = open_user_socket(path, uid)?;
        let s = UnixStream::connect(format!("/proc/self/fd/{}", f.as_raw_fd())).await?;
        drop(f);
        Ok(Box::new(s))
    }

    /// The next stream: an accepted daemon connection, or a successful dial after backoff.
    async fn next(&self, backoff: &mut Duration) -> BoxStream {
        match self {
            VcSource::Listen(l) => loop {
                match l.accept().await {
                    Ok((s, peer)) => {
                        info!(%peer, "vdimediad connected on the virtual channel");
                        let _ = s.set_nodelay(true);
                        return Box::new(s);
                    }
                    Err(e) => {
                        // EMFILE and friends: do not spin.
                        warn!(error = %e, "virtual-channel accept failed");
                        tokio::time::sleep(BACKOFF_MIN).await;
                    }
                }
            },
            VcSource::ConnectUser { path, uid } => loop {
                match Self::dial_user(path, *uid).await {
                    Ok(s) => {
                        info!(uid, path = %path.display(), "connected to the user's virtual channel");
                        return s;
                    }
                    Err(e) => {
                        if *backoff == BACKOFF_MIN {
                            warn!(uid, path = %path.display(), error = %e, "cannot reach the user's virtual channel; redialling with backoff");
                        } else {
                            debug!(uid, error = %e, retry_in_ms = backoff.as_millis() as u64, "redial failed");
                        }
                        tokio::time::sleep(*backoff).await;
                        *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    }
                }
            },
            VcSource::Connect(target) => loop {
                match Self::dial(target).await {
                    Ok(s) => {
                        info!(%target, "connected to vdimediad on the virtual channel");
                        return s;
                    }
                    Err(e) => {
                        if *backoff == BACKOFF_MIN {
                            warn!(%target, error = %e, "cannot reach vdimediad; redialling with backoff");
                        } else {
                            debug!(%target, error = %e, retry_in_ms = backoff.as_millis() as u64, "redial failed");
                        }
                        tokio::time::sleep(*backoff).await;
                        *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    }
                }
            },
        }
    }
}

/// Why [`VcTask::run_channel`] returned.
enum ChannelEnd {
    Lost(String),
    Shutdown,
}

/// The single task that owns the virtual channel and the page ↔ session map.
pub(crate) struct VcTask {
    source: VcSource,
    commands: mpsc::Receiver<VcCommand>,
    shutdown: watch::Receiver<bool>,
    pages: HashMap<PageId, PageEntry>,
    sessions: HashMap<SessionId, PageId>,
}

impl VcTask {
    pub(crate) fn new(
        source: VcSource,
        commands: mpsc::Receiver<VcCommand>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        VcTask { source, commands, shutdown, pages: HashMap::new(), sessions: HashMap::new() }
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        // A user's channel starts with that user's first page, whose hello is already queued:
        // dial once before serving commands so it is not answered `no_engine` by a race.
        let mut first = match &self.source {
            VcSource::ConnectUser { path, uid } => match VcSource::dial_user(path, *uid).await {
                Ok(s) => {
                    info!(uid, path = %path.display(), "connected to the user's virtual channel");
                    Some(s)
                }
                Err(e) => {
                    warn!(uid, path = %path.display(), error = %e, "cannot reach the user's virtual channel; redialling with backoff");
                    None
                }
            },
            _ => None,
        };
        loop {
            // Disconnected: answer pages with no_engine until a stream arrives.
            let stream = if let Some(s) = first.take() {
                s
            } else {
                let next = self.source.next(&mut backoff);
                tokio::pin!(next);
                loop {
                    let deadline = next_suspend_deadline(&self.pages);
                    tokio::select! {
                        s = &mut next => break s,
                        cmd = self.commands.recv() => match cmd {
                            Some(cmd) => command_disconnected(&mut self.pages, cmd),
                            None => return,
                        },
                        () = sleep_until_opt(deadline) => expire_suspended(&mut self.pages, Instant::now()),
                        // Dropping the senders tells every page task to close its WebSocket.
                        _ = self.shutdown.changed() => return self.pages.clear(),
                    }
                }
            };
            match self.run_channel(stream, &mut backoff).await {
                ChannelEnd::Shutdown => return self.detach_all_on_shutdown(),
                ChannelEnd::Lost(why) => {
                    warn!(reason = %why, pages = self.pages.len(), "virtual channel lost");
                    self.lose_all(&why);
                    if !matches!(self.source, VcSource::Listen(_)) {
                        // A daemon that drops right away should not be hammered.
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.shutdown.changed() => return self.detach_all_on_shutdown(),
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }
}

/// The answer to a page's message while its session is suspended: an `invalid_state` error
/// response (or `error` for a non-request), so no request waits on a channel that is away.
fn unavailable(message: &Message) -> PageEvent {
    let body = ErrorBody::new(
        ErrorCode::InvalidState,
        "the virtual channel to vdimediad is away; the session resumes when it returns",
    );
    match (message, message.id()) {
        (Message::Request(_), Some(id)) => PageEvent::Message(Message::response_err(id, body)),
        _ => PageEvent::Error(body),
    }
}

/// Sleeps until `deadline`; forever when `None`.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// The earliest deadline of a suspended page.
fn next_suspend_deadline(pages: &HashMap<PageId, PageEntry>) -> Option<Instant> {
    pages
        .values()
        .filter_map(|e| match e.attach {
            Attach::Suspended { deadline } => Some(deadline),
            _ => None,
        })
        .min()
}

/// Ends the suspended pages whose grace period passed: the daemon has closed their calls.
fn expire_suspended(pages: &mut HashMap<PageId, PageEntry>, now: Instant) {
    let expired: Vec<PageId> = pages
        .iter()
        .filter(|(_, e)| matches!(e.attach, Attach::Suspended { deadline } if deadline <= now))
        .map(|(p, _)| *p)
        .collect();
    for page in expired {
        if let Some(entry) = pages.remove(&page) {
            let grace = entry.resume.as_ref().map_or(0, |r| r.1);
            info!(page, grace_ms = grace, "suspended page ended: the virtual channel did not return in time");
            let _ = entry.events.try_send(PageEvent::status_down(
                StatusReason::ChannelLost,
                format!("the virtual channel to vdimediad did not return within {grace} ms; {CALLS_ENDED}"),
            ));
        }
    }
}

fn command_disconnected(pages: &mut HashMap<PageId, PageEntry>, cmd: VcCommand) {
    {
        match cmd {
            VcCommand::Open { page, events, .. } => {
                let _ = events.try_send(PageEvent::status_down(
                    StatusReason::NoEngine,
                    "no vdimediad on the virtual channel",
                ));
                debug!(page, "no engine for page");
            }
            VcCommand::Send { page, message } => {
                match pages.get(&page) {
                    Some(entry) if matches!(entry.attach, Attach::Suspended { .. }) => {
                        let _ = entry.events.try_send(unavailable(&message));
                    }
                    // Pages are detached when the channel drops; this is a race with that.
                    _ => debug!(page, id = ?message.id(), "message from a detached page dropped"),
                }
            }
            VcCommand::Close { page, .. } => {
                pages.remove(&page);
            }
        }
    }
}

impl VcTask {
    async fn run_channel(&mut self, stream: BoxStream, backoff: &mut Duration) -> ChannelEnd {
        let (mut rd, wr) = tokio::io::split(stream);
        let backlog = Arc::new(AtomicUsize::new(0));
        let (wtx, wrx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut writer = tokio::spawn(write_frames(wr, wrx, backlog.clone()));
        let mut ch = Channel::new(ChannelConfig::vda(AGENT), Instant::now());
        let mut welcome: Option<Welcome> = None;
        let handshake_deadline = tokio::time::sleep(HANDSHAKE_TIMEOUT);
        tokio::pin!(handshake_deadline);
        let mut buf = vec![0u8; 16 * 1024];
        let io = Io { wtx: &wtx, backlog: &backlog };
        io.flush(&mut ch);

        let end = loop {
            let timeout = ch.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) => break ChannelEnd::Lost("vdimediad closed the virtual channel".into()),
                    Ok(n) => ch.handle_input(&buf[..n], Instant::now()),
                    Err(e) => break ChannelEnd::Lost(format!("virtual channel read failed: {e}")),
                },
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd, &mut ch, welcome.as_ref(), &io),
                    None => break ChannelEnd::Shutdown,
                },
                () = sleep => ch.handle_timeout(Instant::now()),
                () = &mut handshake_deadline, if welcome.is_none() => {
                    break ChannelEnd::Lost(format!("vdimediad did not answer HELLO within {} s", HANDSHAKE_TIMEOUT.as_secs()));
                }
                r = &mut writer => {
                    let why = match r { Ok(Err(e)) => format!("virtual channel write failed: {e}"), _ => "virtual channel writer ended".into() };
                    break ChannelEnd::Lost(why);
                }
                extra = accept_extra(&self.source) => {
                    // One daemon at a time: a second one would split pages across engines.
                    if let Some(peer) = extra {
                        warn!(%peer, "refused a second virtual-channel connection: one daemon is already attached");
                    }
                }
                _ = self.shutdown.changed() => break ChannelEnd::Shutdown,
            }
            io.flush(&mut ch);
            if let Some(end) = self.drain_events(&mut ch, &mut welcome, &io, backoff) {
                break end;
            }
            io.flush(&mut ch);
        };

        if matches!(end, ChannelEnd::Shutdown) {
            for (page, entry) in self.pages.drain() {
                if let Some(sid) = entry.session() {
                    ch.close_session(sid, ErrorCode::Normal, "bridge shutting down");
                    debug!(page, session = sid, "session closed at shutdown");
                }
            }
            self.sessions.clear();
            io.flush(&mut ch);
            drop(wtx);
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, &mut writer).await;
        }
        writer.abort();
        end
    }

    fn command(&mut self, cmd: VcCommand, ch: &mut Channel, welcome: Option<&Welcome>, io: &Io<'_>) {
        match cmd {
            VcCommand::Open { page, open, min_version, max_version, events } => match welcome {
                None => {
                    debug!(page, "page waits for the channel handshake");
                    self.pages.insert(
                        page,
                        PageEntry {
                            events,
                            attach: Attach::Waiting { open: open.clone(), min_version, max_version },
                            open,
                            resume: None,
                        },
                    );
                }
                Some(w) => self.open(page, open, min_version, max_version, events, ch, w),
            },
            VcCommand::Send { page, message } => {
                let Some(entry) = self.pages.get(&page) else {
                    debug!(page, "message from an unknown page dropped");
                    return;
                };
                let id = message.id();
                let refuse = |body: ErrorBody| match id {
                    Some(id) if matches!(message, Message::Request(_)) => {
                        PageEvent::Message(Message::response_err(id, body))
                    }
                    _ => PageEvent::Error(body),
                };
                let ev = match entry.attach {
                    Attach::Open(sid) if io.backlog.load(Ordering::Relaxed) > WRITE_BACKLOG_MAX => {
                        warn!(page, session = sid, "virtual channel congested; message refused");
                        Some(refuse(ErrorBody::new(
                            ErrorCode::LimitExceeded,
                            "the virtual channel is congested; retry later",
                        )))
                    }
                    Attach::Open(sid) => match ch.send(sid, &message) {
                        Ok(_) => None,
                        Err(e) => {
                            warn!(page, session = sid, error = %e, "message not sent");
                            Some(refuse(ErrorBody::new(ErrorCode::SessionClosed, format!("not sent: {e}"))))
                        }
                    },
                    Attach::Suspended { .. } | Attach::Resuming(_) => Some(unavailable(&message)),
                    _ => Some(refuse(ErrorBody::new(ErrorCode::InvalidState, "the session is not open yet"))),
                };
                if let Some(ev) = ev {
                    self.deliver(page, ev, ch);
                }
            }
            VcCommand::Close { page, code, reason } => {
                if let Some(entry) = self.pages.remove(&page)
                    && let Some(sid) = entry.session()
                {
                    self.sessions.remove(&sid);
                    ch.close_session(sid, code, &reason);
                    info!(page, session = sid, %reason, "session closed by the page side");
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        page: PageId,
        open: Open,
        min_version: u16,
        max_version: u16,
        events: mpsc::Sender<PageEvent>,
        ch: &mut Channel,
        welcome: &Welcome,
    ) {
        if !(min_version..=max_version).contains(&welcome.version) {
            warn!(
                page,
                reason = "version_mismatch",
                min_version,
                max_version,
                channel_version = welcome.version,
                "page not redirected: page SDK version does not match the channel"
            );
            let _ = events.try_send(PageEvent::status_down(
                StatusReason::VersionMismatch,
                format!(
                    "the page SDK speaks protocol versions {min_version}..={max_version}; the channel to {} uses version {}",
                    welcome.engine, welcome.version
                ),
            ));
            return;
        }
        match ch.open_session(open.clone()) {
            Ok(sid) => {
                info!(page, session = sid, origin = open.origin.as_deref().unwrap_or(""), "session opening");
                self.sessions.insert(sid, page);
                self.pages
                    .insert(page, PageEntry { events, attach: Attach::Opening(sid), open, resume: None });
            }
            Err(e) => {
                warn!(page, error = %e, "cannot open a session");
                let _ = events.try_send(PageEvent::status_down(
                    StatusReason::EngineRejected,
                    format!("cannot open a session: {e}"),
                ));
            }
        }
    }

    /// Applies channel events; `Some` when the channel is over.
    fn drain_events(
        &mut self,
        ch: &mut Channel,
        welcome: &mut Option<Welcome>,
        io: &Io<'_>,
        backoff: &mut Duration,
    ) -> Option<ChannelEnd> {
        while let Some(ev) = ch.poll_event() {
            match ev {
                ChannelEvent::Ready(w) => {
                    info!(engine = %w.engine, version = w.version, os = %w.os, arch = %w.arch, max_frame = w.max_frame,
                          "virtual channel ready");
                    *backoff = BACKOFF_MIN;
                    let waiting: Vec<PageId> = self
                        .pages
                        .iter()
                        .filter(|(_, e)| matches!(e.attach, Attach::Waiting { .. }))
                        .map(|(p, _)| *p)
                        .collect();
                    for page in waiting {
                        if let Some(PageEntry {
                            events,
                            attach: Attach::Waiting { open, min_version, max_version },
                            ..
                        }) = self.pages.remove(&page)
                        {
                            self.open(page, open, min_version, max_version, events, ch, &w);
                        }
                    }
                    self.resume_suspended(ch, &w);
                    *welcome = Some(w);
                    io.flush(ch);
                }
                ChannelEvent::Rejected(r) => {
                    error!(code = %r.code, message = %r.message, endpoint_min = r.min_version, endpoint_max = r.max_version,
                           reason = if r.code == ErrorCode::VersionMismatch { "version_mismatch" } else { "engine_rejected" },
                           "vdimediad rejected the channel");
                    let (reason, msg) = if r.code == ErrorCode::VersionMismatch {
                        (
                            StatusReason::VersionMismatch,
                            format!(
                                "vdimediad speaks protocol versions {}..={}, the bridge {}..={}",
                                r.min_version,
                                r.max_version,
                                vdimedia_protocol::MIN_VERSION,
                                vdimedia_protocol::MAX_VERSION
                            ),
                        )
                    } else {
                        (
                            StatusReason::EngineRejected,
                            format!("vdimediad rejected the channel: {}", r.message),
                        )
                    };
                    for (_, entry) in self.pages.drain() {
                        let _ = entry.events.try_send(PageEvent::status_down(reason, msg.clone()));
                    }
                    self.sessions.clear();
                    return Some(ChannelEnd::Lost(format!("rejected: {}", r.message)));
                }
                ChannelEvent::SessionOpened { session, opened, .. } => {
                    let Some(&page) = self.sessions.get(&session) else {
                        debug!(session, "OPENED for a session no page holds");
                        continue;
                    };
                    let opened = opened.unwrap_or_default();
                    let mut resuming = false;
                    if let Some(entry) = self.pages.get_mut(&page) {
                        resuming = matches!(entry.attach, Attach::Resuming(_));
                        entry.attach = Attach::Open(session);
                        entry.resume = match (opened.resume_token, opened.resume_grace_ms) {
                            (Some(t), Some(g)) if g > 0 && !t.is_empty() => Some((t, g)),
                            _ => None,
                        };
                    }
                    let Some(w) = welcome else { continue };
                    if resuming && !opened.resumed {
                        // A daemon that does not know the token (restarted, or the grace passed):
                        // the page's objects are gone; the new empty session is not needed.
                        info!(page, session, "session not resumed: vdimediad no longer has it");
                        self.sessions.remove(&session);
                        ch.close_session(session, ErrorCode::Normal, "page's calls ended");
                        if let Some(entry) = self.pages.remove(&page) {
                            let _ = entry.events.try_send(PageEvent::status_down(
                                StatusReason::ChannelLost,
                                format!("vdimediad ({}) no longer has the session: the engine restarted or the grace period passed; {CALLS_ENDED}", w.engine),
                            ));
                        }
                        continue;
                    }
                    let status =
                        if resuming { PageEvent::status_resumed(w) } else { PageEvent::status_up(w) };
                    info!(page, session, resumed = resuming, "session open; page redirected");
                    self.deliver(page, status, ch);
                }
                ChannelEvent::Message { session, message } => match self.sessions.get(&session) {
                    Some(&page) => self.deliver(page, PageEvent::Message(message), ch),
                    None => debug!(session, "message for a closed session dropped"),
                },
                ChannelEvent::SessionClosed { session, code, reason, by_peer } => {
                    if ch.is_closed() {
                        // The whole channel is ending (`Closed` follows): pages get
                        // channel_lost from `lose_all`, not a per-session close.
                        continue;
                    }
                    let Some(page) = self.sessions.remove(&session) else {
                        continue;
                    };
                    let Some(entry) = self.pages.remove(&page) else {
                        continue;
                    };
                    if by_peer {
                        info!(page, session, %code, %reason, "vdimediad closed the session");
                        let opened = matches!(entry.attach, Attach::Open(_));
                        let _ = entry.events.try_send(PageEvent::EngineClosed { opened, code, reason });
                    } else {
                        debug!(page, session, %code, %reason, "session closed locally");
                        let _ = entry.events.try_send(PageEvent::EngineClosed { opened: true, code, reason });
                    }
                }
                ChannelEvent::PeerError { session, error } => {
                    warn!(session, code = %error.code, message = %error.message, "ERROR from vdimediad");
                    if let Some(&page) = self.sessions.get(&session) {
                        self.deliver(page, PageEvent::Error(error), ch);
                    }
                }
                ChannelEvent::ProtocolError { session, error } => {
                    warn!(session, code = %error.code, message = %error.message, "vdimediad sent a bad frame or message");
                }
                ChannelEvent::Closed { code, reason } => {
                    return Some(ChannelEnd::Lost(format!("channel closed ({code}): {reason}")));
                }
                other => debug!(event = ?other, "channel event ignored by the vda side"),
            }
        }
        None
    }

    /// Queues `ev` for `page` without ever waiting: a page that does not drain its queue is
    /// detached (its session closed) rather than allowed to stall the channel.
    fn deliver(&mut self, page: PageId, ev: PageEvent, ch: &mut Channel) {
        let Some(entry) = self.pages.get(&page) else {
            return;
        };
        match entry.events.try_send(ev) {
            Ok(()) => {}
            Err(e) => {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                let entry = self.pages.remove(&page).expect("entry present");
                if let Some(sid) = entry.session() {
                    self.sessions.remove(&sid);
                    if full {
                        ch.close_session(sid, ErrorCode::LimitExceeded, "page is not reading its WebSocket");
                    } else {
                        ch.close_session(sid, ErrorCode::Normal, "page closed");
                    }
                }
                if full {
                    warn!(page, "page does not keep up with its events; detached");
                }
            }
        }
    }

    /// The channel dropped: pages whose open session the daemon parks are suspended (told
    /// `channel_lost` with `resuming: true`, kept until the channel returns or the grace
    /// passes); the others are told the channel is lost and detached.
    fn lose_all(&mut self, why: &str) {
        let now = Instant::now();
        for (page, mut entry) in std::mem::take(&mut self.pages) {
            let ev = match (&entry.attach, &entry.resume) {
                (Attach::Waiting { .. }, _) => PageEvent::status_down(
                    StatusReason::NoEngine,
                    format!("vdimediad did not complete the handshake: {why}"),
                ),
                (Attach::Open(_) | Attach::Suspended { .. } | Attach::Resuming(_), Some((_, grace_ms))) => {
                    let deadline = match entry.attach {
                        Attach::Suspended { deadline } => deadline,
                        _ => now + Duration::from_millis(*grace_ms),
                    };
                    let left = deadline.saturating_duration_since(now).as_millis() as u64;
                    let first = !matches!(entry.attach, Attach::Suspended { .. } | Attach::Resuming(_));
                    entry.attach = Attach::Suspended { deadline };
                    if first {
                        info!(
                            page,
                            grace_ms = left,
                            "page suspended: waiting for the virtual channel to return"
                        );
                        let ev = PageEvent::status_suspended(
                            format!(
                                "the virtual channel to vdimediad was lost ({why}); calls continue on the endpoint and resume when it returns within {} ms",
                                left
                            ),
                            left,
                        );
                        if entry.events.try_send(ev).is_err() {
                            continue;
                        }
                    }
                    self.pages.insert(page, entry);
                    continue;
                }
                _ => PageEvent::status_down(
                    StatusReason::ChannelLost,
                    format!("the virtual channel to vdimediad was lost: {why}"),
                ),
            };
            debug!(page, "page told the channel is lost");
            let _ = entry.events.try_send(ev);
        }
        self.sessions.clear();
    }

    /// The channel is back: `OPEN` with `resume` for every suspended page.
    fn resume_suspended(&mut self, ch: &mut Channel, w: &Welcome) {
        expire_suspended(&mut self.pages, Instant::now());
        let suspended: Vec<PageId> = self
            .pages
            .iter()
            .filter(|(_, e)| matches!(e.attach, Attach::Suspended { .. }))
            .map(|(p, _)| *p)
            .collect();
        for page in suspended {
            let Some(mut entry) = self.pages.remove(&page) else { continue };
            let open = Open { resume: entry.resume.as_ref().map(|r| r.0.clone()), ..entry.open.clone() };
            match ch.open_session(open) {
                Ok(sid) => {
                    info!(page, session = sid, "resuming the page's session");
                    self.sessions.insert(sid, page);
                    entry.attach = Attach::Resuming(sid);
                    self.pages.insert(page, entry);
                }
                Err(e) => {
                    warn!(page, error = %e, "cannot resume the page's session");
                    let _ = entry.events.try_send(PageEvent::status_down(
                        StatusReason::ChannelLost,
                        format!("cannot resume the session on {}: {e}; {CALLS_ENDED}", w.engine),
                    ));
                }
            }
        }
    }

    fn detach_all_on_shutdown(&mut self) {
        // Dropping the senders tells every page task to close its WebSocket.
        self.pages.clear();
        self.sessions.clear();
    }
}

/// The frame queue towards the writer task and its byte count.
struct Io<'a> {
    wtx: &'a mpsc::UnboundedSender<Vec<u8>>,
    backlog: &'a AtomicUsize,
}

impl Io<'_> {
    fn flush(&self, ch: &mut Channel) {
        while let Some(frame) = ch.poll_transmit() {
            self.backlog.fetch_add(frame.len(), Ordering::Relaxed);
            // A closed writer is reported by its JoinHandle in the select loop.
            let _ = self.wtx.send(frame);
        }
    }
}

/// Writes each frame with one `write_all` (a remoting channel plugin may map writes to
/// channel PDUs) and flushes when the queue is empty.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    backlog: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    while let Some(frame) = rx.recv().await {
        wr.write_all(&frame).await?;
        backlog.fetch_sub(frame.len(), Ordering::Relaxed);
        if rx.is_empty() {
            wr.flush().await?;
        }
    }
    wr.flush().await?;
    wr.shutdown().await
}

/// In listen mode, accepts and drops connections beyond the first; never resolves otherwise.
async fn accept_extra(source: &VcSource) -> Option<SocketAddr> {
    match source {
        VcSource::Listen(l) => match l.accept().await {
            Ok((s, peer)) => {
                drop(s);
                Some(peer)
            }
            Err(_) => {
                tokio::time::sleep(BACKOFF_MIN).await;
                None
            }
        },
        VcSource::Connect(_) | VcSource::ConnectUser { .. } => std::future::pending().await,
    }
}

/// Which virtual channel a page's commands go to: the one channel, or (with a `{uid}`
/// `vc_connect` template) the channel of the uid of the process behind the page, one
/// [`VcTask`] per uid, started at that uid's first page.
pub(crate) enum VcRouter {
    Single(mpsc::Sender<VcCommand>),
    PerUid(PerUid),
}

pub(crate) struct PerUid {
    template: VcTarget,
    queue: usize,
    shutdown: watch::Receiver<bool>,
    channels: std::sync::Mutex<HashMap<u32, mpsc::Sender<VcCommand>>>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl VcRouter {
    pub(crate) fn per_uid(template: VcTarget, queue: usize, shutdown: watch::Receiver<bool>) -> VcRouter {
        VcRouter::PerUid(PerUid {
            template,
            queue,
            shutdown,
            channels: Default::default(),
            tasks: Default::default(),
        })
    }

    /// Whether pages must be traced to a uid.
    pub(crate) fn needs_uid(&self) -> bool {
        matches!(self, VcRouter::PerUid(_))
    }

    /// The command queue of the page's channel. Per uid: refused (with the reason, for the
    /// page's close frame) when `uid` is unknown or has no socket of its own at the template's
    /// path.
    pub(crate) fn channel_for(&self, uid: Option<u32>) -> Result<mpsc::Sender<VcCommand>, String> {
        let r = match self {
            VcRouter::Single(tx) => return Ok(tx.clone()),
            VcRouter::PerUid(r) => r,
        };
        let uid = uid.ok_or_else(|| "no uid for the page's process".to_string())?;
        let path = r.template.path_for_uid(uid).ok_or_else(|| "no per-user template".to_string())?;
        // Checked now so a uid without a channel is refused with a reason instead of waiting
        // on `no_engine`; the task checks again at every dial.
        open_user_socket(&path, uid).map_err(|e| format!("no virtual channel for uid {uid}: {e}"))?;
        let mut channels = r.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(&uid)
            && !tx.is_closed()
        {
            return Ok(tx.clone());
        }
        if *r.shutdown.borrow() {
            return Err("vdimedia-bridge shutting down".into());
        }
        let (tx, rx) = mpsc::channel(r.queue);
        let source = VcSource::ConnectUser { path: path.clone(), uid };
        info!(uid, path = %path.display(), "first page of this uid: opening its virtual channel");
        let task = tokio::spawn(VcTask::new(source, rx, r.shutdown.clone()).run());
        r.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        channels.insert(uid, tx.clone());
        Ok(tx)
    }

    /// The per-uid tasks started so far (for [`crate::Bridge::wait`]).
    pub(crate) fn take_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        match self {
            VcRouter::Single(_) => Vec::new(),
            VcRouter::PerUid(r) => std::mem::take(&mut *r.tasks.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}
