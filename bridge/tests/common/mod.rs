//! Test rig: a bridge on ephemeral ports, an engine peer (the protocol crate's `Channel` in the
//! endpoint role over a real socket — test code, not part of the product) and WebSocket pages.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vdimedia_bridge::{Bridge, Config, VcMode, WsSecurity};
use vdimedia_protocol::channel::{Channel, ChannelConfig, ChannelEvent};
use vdimedia_protocol::handshake::{Capabilities, DeviceCounts, Welcome};
use vdimedia_protocol::message::{ErrorCode, Message};

pub const WAIT: Duration = Duration::from_secs(5);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VDIMEDIA_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("vdimedia-bridge-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Plain `ws://` on 127.0.0.1:0, VC listening on 127.0.0.1:0, pages from any process (the
/// pages are this test binary; tests/security.rs covers the process allow-list).
pub fn test_config() -> Config {
    let mut c = Config::with_defaults();
    c.process_policy.allow_any = true;
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.security = WsSecurity::Insecure;
    c.state_dir = temp_dir("state");
    c.vc = VcMode::Listen("127.0.0.1:0".parse().unwrap());
    c.hello_timeout = Duration::from_secs(2);
    c
}

pub async fn start(config: Config) -> Bridge {
    init_tracing();
    Bridge::start(config).await.expect("bridge starts")
}

/// What the engine peer saw.
#[derive(Debug)]
pub enum EngineSaw {
    Event(ChannelEvent),
}

/// An engine peer: answers every request with
/// `{"session","method","params"}`; `test.close` makes it close the session; `test.event`
/// makes it emit `{"type":"event","event":"test.ping","params":{"session"}}` before the reply.
pub struct Engine {
    pub events: mpsc::UnboundedReceiver<ChannelEvent>,
    pub task: JoinHandle<()>,
}

pub fn engine_welcome() -> Welcome {
    Welcome::new(
        "vdimediad/0.1.0-test",
        Capabilities {
            codecs: vec!["opus".into(), "G722".into(), "PCMU".into(), "PCMA".into()],
            aec: "software".into(),
            audio_backend: "pipewire".into(),
            devices: DeviceCounts { audioinput: 2, audiooutput: 3 },
        },
    )
}

impl Engine {
    /// Dials the bridge's `--vc-listen` address and waits until the handshake is done.
    pub async fn dial(addr: SocketAddr) -> Engine {
        let s = TcpStream::connect(addr).await.expect("engine dials the bridge");
        let mut e = Engine::spawn(s, ChannelConfig::endpoint(engine_welcome()));
        e.expect(|ev| matches!(ev, ChannelEvent::Hello(_))).await;
        e
    }

    pub fn spawn<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
        stream: S,
        cfg: ChannelConfig,
    ) -> Engine {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_engine(stream, cfg, tx));
        Engine { events: rx, task }
    }

    /// Waits (5 s) for an event matching `pred`, skipping others.
    pub async fn expect(&mut self, pred: impl Fn(&ChannelEvent) -> bool) -> ChannelEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if pred(&ev) => return ev,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("engine ended while waiting"),
                Err(_) => panic!("engine: expected event did not come"),
            }
        }
    }

    /// Drops the engine's socket (the daemon dies).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn run_engine<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cfg: ChannelConfig,
    tx: mpsc::UnboundedSender<ChannelEvent>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut ch = Channel::new(cfg, Instant::now());
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(f) = ch.poll_transmit() {
            if wr.write_all(&f).await.is_err() {
                return;
            }
        }
        if ch.is_closed() {
            return;
        }
        let timeout = ch.poll_timeout();
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => ch.handle_input(&buf[..n], Instant::now()),
            },
            () = async { match timeout { Some(t) => tokio::time::sleep_until(t.into()).await, None => std::future::pending().await } } => {
                ch.handle_timeout(Instant::now());
            }
        }
        while let Some(ev) = ch.poll_event() {
            if let ChannelEvent::Message { session, message: Message::Request(r) } = &ev {
                match r.method.as_str() {
                    "test.close" => ch.close_session(*session, ErrorCode::InvalidState, "asked to close"),
                    "test.flood" => {
                        let n = r.params["count"].as_u64().unwrap_or(0);
                        let pad = "x".repeat(r.params["bytes"].as_u64().unwrap_or(0) as usize);
                        for i in 0..n {
                            let _ =
                                ch.send(*session, &Message::event("test.flood", json!({"i": i, "pad": pad})));
                            while let Some(f) = ch.poll_transmit() {
                                if wr.write_all(&f).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    m => {
                        if m == "test.event" {
                            let _ =
                                ch.send(*session, &Message::event("test.ping", json!({"session": session})));
                        }
                        let result = json!({"session": session, "method": r.method, "params": r.params});
                        let _ = ch.send(*session, &Message::response_ok(r.id, result));
                    }
                }
            }
            let _ = tx.send(ev);
        }
    }
}

/// A page's WebSocket.
pub struct Page<S> {
    pub ws: WebSocketStream<S>,
}

pub type PlainPage = Page<TcpStream>;

/// Connects a page to `ws://ADDR/` with an `Origin` header.
pub async fn page(addr: SocketAddr, origin: &str) -> PlainPage {
    let tcp = TcpStream::connect(addr).await.expect("page connects");
    page_over(tcp, addr, origin).await
}

/// A page whose socket has a small receive buffer, so a page that stops reading is noticed
/// after little data.
pub async fn small_buffer_page(addr: SocketAddr, origin: &str) -> PlainPage {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(addr).await.expect("page connects");
    page_over(tcp, addr, origin).await
}

async fn page_over(tcp: TcpStream, addr: SocketAddr, origin: &str) -> PlainPage {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    req.headers_mut().insert("User-Agent", "Chromium/156 test".parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(req, tcp).await.expect("WebSocket handshake");
    Page { ws }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Page<S> {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(WsMessage::text(v.to_string())).await.expect("page sends");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(WsMessage::text(text.to_string())).await.expect("page sends");
    }

    /// The next text message as JSON (5 s).
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("page: no message within 5 s")
                .expect("page: connection ended")
                .expect("page: WebSocket error");
            match m {
                WsMessage::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("bridge sends JSON");
                }
                WsMessage::Close(c) => panic!("page: closed by the bridge: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Waits for the close frame (5 s) and returns it.
    pub async fn recv_close(&mut self) -> Option<(u16, String)> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("page: no close within 5 s") {
                Some(Ok(WsMessage::Close(c))) => {
                    return c.map(|c| (u16::from(c.code), c.reason.to_string()));
                }
                Some(Ok(WsMessage::Text(t))) => panic!("page: unexpected text before close: {t}"),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn hello(&mut self) -> Value {
        self.send(json!({"type":"hello","sdk":"0.1.0","min_version":1,"max_version":1})).await;
        self.recv().await
    }

    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"type":"request","id":id,"method":method,"params":params})).await;
        self.recv().await
    }
}
