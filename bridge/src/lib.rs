//! `vdimedia-bridge`: the VDA-side service between the page SDK and `vdimediad`.
//!
//! - Page side: a WebSocket server (`wss://127.0.0.1:9002/` by default, TLS with rustls) that
//!   speaks docs/protocol.md, "Bridge ↔ page (WebSocket)": one connection = one page = one
//!   logical session.
//! - Engine side: the virtual channel, a byte stream carrying the frame layer of
//!   docs/protocol.md, driven through the sans-IO `vdimedia_protocol::Channel` in the `vda`
//!   role. The daemon dials the bridge (`--vc-listen`) or the bridge dials the daemon's socket
//!   (`--vc-connect`); one daemon at a time, re-accepted or redialled when it drops.
//!
//! [`Bridge::start`] binds everything and returns the bound addresses, so tests can use
//! ephemeral ports; the `vdimedia-bridge` binary adds the CLI, signals and systemd readiness.

pub mod config;
mod page;
pub mod peer;
pub mod tls;
mod vc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{info, warn};

pub use config::{Cli, Config, ConfigError, VcMode, VcTarget, WsSecurity};
pub use page::{PageId, StatusReason};
pub use peer::{PeerProcess, PeerSocket, ProcessPolicy};
pub use tls::TlsMaterial;
pub use vc::AGENT;

/// Connections over the page limit that are still answered with HTTP 503 (the rest are
/// dropped at once, so a connection flood costs nothing).
const MAX_REFUSALS: usize = 16;
/// Time pages get to close their WebSockets at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Page → VC command queue (shared; FIFO so every page gets its turn).
const COMMAND_QUEUE: usize = 1024;

/// Why the bridge cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot listen for pages on {addr}: {source}")]
    ListenWs { addr: SocketAddr, source: std::io::Error },
    #[error("cannot listen for vdimediad on {mode}: {source}")]
    ListenVc { mode: VcMode, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// A running bridge. Dropping it does not stop it; call [`Bridge::shutdown`] and
/// [`Bridge::wait`].
pub struct Bridge {
    ws_addr: SocketAddr,
    vc_addr: Option<SocketAddr>,
    tls: Option<TlsMaterial>,
    shutdown: watch::Sender<bool>,
    acceptor: JoinHandle<()>,
    vc: Option<JoinHandle<()>>,
    router: Arc<vc::VcRouter>,
}

impl Bridge {
    /// Loads or generates the TLS certificate, binds the WebSocket listener and (in
    /// `--vc-listen` mode) the virtual-channel listener, and spawns the tasks. Must run inside
    /// a tokio runtime.
    pub async fn start(config: Config) -> Result<Bridge, BridgeError> {
        let tls = match &config.security {
            WsSecurity::Tls { cert, key } => {
                Some(tls::load_or_generate(cert.as_deref(), key.as_deref(), &config.state_dir)?)
            }
            WsSecurity::Insecure => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| BridgeError::ListenWs { addr: config.listen, source })?;
        let ws_addr =
            listener.local_addr().map_err(|source| BridgeError::ListenWs { addr: config.listen, source })?;
        let (source, vc_addr) = vc::VcSource::bind(&config.vc)
            .await
            .map_err(|source| BridgeError::ListenVc { mode: config.vc.clone(), source })?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let (router, vc) = match &config.vc {
            VcMode::Connect(t @ VcTarget::UnixPerUid(_)) => {
                (vc::VcRouter::per_uid(t.clone(), COMMAND_QUEUE, shutdown_rx.clone()), None)
            }
            _ => {
                let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
                let vc = tokio::spawn(vc::VcTask::new(source, cmd_rx, shutdown_rx.clone()).run());
                (vc::VcRouter::Single(cmd_tx), Some(vc))
            }
        };
        let router = Arc::new(router);

        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        let shared = Arc::new(page::PageShared {
            router: router.clone(),
            hello_timeout: config.hello_timeout,
            allow_origins: config.allow_origins.clone(),
            policy: config.process_policy.clone(),
            ws_config,
            shutdown: shutdown_rx.clone(),
        });
        let acceptor = tokio::spawn(accept_pages(
            listener,
            tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone())),
            shared,
            config.max_pages,
            config.hello_timeout,
            shutdown_rx,
        ));

        let scheme = if tls.is_some() { "wss" } else { "ws" };
        match &tls {
            Some(t) => {
                info!(url = %format!("{scheme}://{ws_addr}/"), cert = %t.cert_path.display(), spki_sha256 = %t.spki_sha256,
                             "listening for pages; Chromium test rigs: --ignore-certificate-errors-spki-list={}", t.spki_sha256)
            }
            None => {
                warn!(url = %format!("{scheme}://{ws_addr}/"), "listening for pages WITHOUT TLS (--insecure-ws)")
            }
        }
        match vc_addr {
            Some(a) => {
                info!(vc = %format!("tcp://{a}"), "waiting for vdimediad (vdimediad --connect tcp://{a})")
            }
            None => info!(vc = %config.vc, "dialling vdimediad"),
        }
        let p = &config.process_policy;
        if p.allow_any {
            warn!("pages are accepted from ANY local process (allow_any_process, development only)");
        } else {
            info!(allowed_executables = ?p.executables, allowed_electron_apps = ?p.electron_apps, "process allow-list");
        }
        Ok(Bridge { ws_addr, vc_addr, tls, shutdown, acceptor, vc, router })
    }

    /// The bound WebSocket address (useful with port 0).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The bound virtual-channel address in `--vc-listen` mode.
    pub fn vc_addr(&self) -> Option<SocketAddr> {
        self.vc_addr
    }

    /// The TLS material, unless `--insecure-ws`.
    pub fn tls(&self) -> Option<&TlsMaterial> {
        self.tls.as_ref()
    }

    /// `wss://ADDR/` or `ws://ADDR/`.
    pub fn url(&self) -> String {
        format!("{}://{}/", if self.tls.is_some() { "wss" } else { "ws" }, self.ws_addr)
    }

    /// Starts a clean stop: no new pages, every session closed (`CLOSE normal`), every
    /// WebSocket closed with 1001 "going away".
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until the tasks have stopped (after [`Bridge::shutdown`]).
    pub async fn wait(self) {
        if let Some(vc) = self.vc {
            let _ = vc.await;
        }
        let _ = self.acceptor.await;
        for t in self.router.take_tasks() {
            let _ = t.await;
        }
    }
}

async fn accept_pages(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<page::PageShared>,
    max_pages: usize,
    hello_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let pages_limit = Arc::new(Semaphore::new(max_pages));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let mut tasks = JoinSet::new();
    let mut next_id: PageId = 1;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let id = next_id;
                    next_id += 1;
                    match pages_limit.clone().try_acquire_owned() {
                        Ok(permit) => {
                            tasks.spawn(page::serve_tcp(tcp, peer, tls.clone(), id, shared.clone(), permit));
                        }
                        Err(_) => match refusals.clone().try_acquire_owned() {
                            Ok(permit) => {
                                let tls = tls.clone();
                                tasks.spawn(async move {
                                    page::refuse_busy(tcp, peer, tls, max_pages, hello_timeout).await;
                                    drop(permit);
                                });
                            }
                            Err(_) => warn!(%peer, "connection dropped: too many pages and refusals in progress"),
                        },
                    }
                }
                Err(e) => {
                    // EMFILE/ENFILE: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(pages = tasks.len(), "pages did not close in time; dropping them");
        tasks.abort_all();
    }
}
