//! Byte-stream transports for the virtual channel: a Unix listener (own or systemd's) and a
//! dialler with redial. Each connection is handed to [`super::endpoint::serve_channel`].

use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{info, warn};

use super::VcAddr;
use super::endpoint::serve_channel;
use crate::engine::Engine;

/// Takes the first listening socket systemd passed (`LISTEN_FDS`, sd_listen_fds(3)), if any.
pub fn socket_activation_listener() -> std::io::Result<Option<UnixListener>> {
    let fds: Vec<_> = sd_notify::listen_fds()?.collect();
    let Some(&fd) = fds.first() else { return Ok(None) };
    if fds.len() > 1 {
        warn!(count = fds.len(), "systemd passed several sockets; using the first");
    }
    // SAFETY: systemd hands this fd to us alone (LISTEN_PID matched); we own it from here on.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener.set_nonblocking(true)?;
    Ok(Some(UnixListener::from_std(std_listener)?))
}

/// Binds `path` (creating its folder, mode 0700, and replacing a stale socket) with mode 0600:
/// only the user the daemon runs as may open the channel.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        // A socket left by a killed daemon refuses connections; anything else is not ours.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is in use by another daemon", path.display()),
                ));
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts channels until shutdown; each connection is one channel served on its own task, so
/// a broken channel never affects another.
pub async fn run_listener(listener: UnixListener, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    info!(vc = "unix", "virtual channel connected");
                    tasks.spawn(serve_channel(stream, engine.clone(), shutdown.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "accept on the virtual-channel socket failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Channels see the same shutdown signal and close their sessions; wait for them.
    while tasks.join_next().await.is_some() {}
}

/// A virtual-channel byte stream, whichever transport carries it.
pub trait VcStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> VcStream for T {}

/// Connects to `addr` (`tcp://` with Nagle off, since frames are small and latency matters, or
/// `unix:`).
pub async fn dial(addr: &VcAddr) -> std::io::Result<Box<dyn VcStream>> {
    Ok(match addr {
        VcAddr::Tcp(a) => {
            let s = TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
        VcAddr::Unix(p) => Box::new(UnixStream::connect(p).await?),
    })
}

/// Dials `addr` and serves the channel; redials `redial` after it drops or fails, until
/// shutdown.
pub async fn run_dialler(
    addr: VcAddr,
    redial: Duration,
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let served = match dial(&addr).await {
            Ok(stream) => {
                info!(vc = %addr, "virtual channel dialled");
                serve_channel(stream, engine.clone(), shutdown.clone()).await;
                true
            }
            Err(e) => {
                warn!(vc = %addr, error = %e, "cannot dial the bridge");
                false
            }
        };
        if *shutdown.borrow() {
            break;
        }
        if served {
            info!(vc = %addr, after_secs = redial.as_secs(), "virtual channel closed; redialling");
        }
        tokio::select! {
            _ = tokio::time::sleep(redial) => {}
            _ = shutdown.changed() => break,
        }
    }
}
