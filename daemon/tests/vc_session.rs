//! The daemon's virtual-channel endpoint against a VDA-side protocol peer: the real session
//! dispatcher and real webrtcbin pipelines, over an in-memory byte stream.
//!
//! Shows the bad-input behaviour: unknown methods and bad params get typed errors on
//! that request; garbage on the VC closes only the affected logical session; a session that
//! closes mid-call has its peer connections closed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use vdimedia_protocol::frame::{Frame, FrameKind};
use vdimedia_protocol::{
    Channel, ChannelConfig, ChannelEvent, ErrorCode, Message, Open, Response, SessionId,
};
use vdimediad::config::{BackendChoice, Config};
use vdimediad::engine::Engine;
use vdimediad::vc::endpoint::serve_channel;

/// The VDA side of the test: a protocol channel over one end of the duplex stream.
struct Vda {
    ch: Channel,
    io: DuplexStream,
    events: Vec<ChannelEvent>,
    next_id: u64,
}

impl Vda {
    async fn flush(&mut self) {
        while let Some(f) = self.ch.poll_transmit() {
            self.io.write_all(&f).await.unwrap();
        }
    }

    /// Reads until `pred` matches a new event (which is removed and returned).
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&ChannelEvent) -> bool) -> ChannelEvent {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65536];
        loop {
            self.flush().await;
            while let Some(ev) = self.ch.poll_event() {
                self.events.push(ev);
            }
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}; events so far: {:#?}", self.events);
            match tokio::time::timeout(left, self.io.read(&mut buf)).await {
                Ok(Ok(0)) => panic!("daemon closed the channel while waiting for {what}"),
                Ok(Ok(n)) => self.ch.handle_input(&buf[..n], Instant::now()),
                Ok(Err(e)) => panic!("read: {e}"),
                Err(_) => panic!("timed out waiting for {what}; events so far: {:#?}", self.events),
            }
        }
    }

    async fn open(&mut self) -> SessionId {
        let sid = self.ch.open_session(Open::default()).unwrap();
        self.wait_for(
            "OPENED",
            |e| matches!(e, ChannelEvent::SessionOpened { session, .. } if *session == sid),
        )
        .await;
        sid
    }

    async fn request(
        &mut self,
        sid: SessionId,
        method: &str,
        params: Value,
    ) -> Result<Value, (ErrorCode, String)> {
        self.next_id += 1;
        let id = self.next_id;
        self.ch.send(sid, &Message::request(id, method, params)).unwrap();
        let ev = self
            .wait_for(method, |e| {
                matches!(e, ChannelEvent::Message { session, message: Message::Response(Response { id: rid, .. }) }
                    if *session == sid && *rid == id)
            })
            .await;
        let ChannelEvent::Message { message: Message::Response(r), .. } = ev else { unreachable!() };
        r.outcome.map_err(|e| (e.code, e.name))
    }
}

async fn start() -> (Vda, Arc<Engine>, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let mut config = Config::default();
    config.audio.backend = BackendChoice::Alsa; // no devices are needed by these tests
    config.webrtc.loopback_ice = true;
    let engine = Engine::new(config);
    let (a, b) = tokio::io::duplex(1 << 20);
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve_channel(b, engine.clone(), stop_rx));
    let mut vda = Vda {
        ch: Channel::new(ChannelConfig::vda("vc-session-test/1"), Instant::now()),
        io: a,
        events: Vec::new(),
        next_id: 0,
    };
    let ready = vda.wait_for("WELCOME", |e| matches!(e, ChannelEvent::Ready(_))).await;
    let ChannelEvent::Ready(w) = ready else { unreachable!() };
    assert!(w.engine.starts_with("vdimediad/"), "{w:?}");
    assert!(w.capabilities.codecs.iter().any(|c| c == "opus"), "opus must be announced: {w:?}");
    (vda, engine, stop_tx, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_the_session_keeps_working() {
    let (mut vda, _engine, _stop, _server) = start().await;
    let s = vda.open().await;

    let e = vda.request(s, "pc.fly", json!({})).await.unwrap_err();
    assert_eq!(e, (ErrorCode::UnknownMethod, "NotSupportedError".into()));

    let e = vda.request(s, "pc.create", json!({"pc": 5})).await.unwrap_err();
    assert_eq!(e, (ErrorCode::InvalidParams, "TypeError".into()));

    let e = vda.request(s, "pc.createOffer", json!({"pc": "nope"})).await.unwrap_err();
    assert_eq!(e, (ErrorCode::NotFound, "NotFoundError".into()));

    let e = vda
        .request(s, "pc.setRemoteDescription", json!({"pc": "nope", "description": {"type": "answer"}}))
        .await
        .unwrap_err();
    assert_eq!(e.0, ErrorCode::NotFound);

    // The same session still serves a real request afterwards.
    vda.request(s, "pc.create", json!({"pc": "pc1", "configuration": {}})).await.unwrap();
    let e = vda
        .request(
            s,
            "pc.setRemoteDescription",
            json!({"pc": "pc1", "description": {"type": "offer", "sdp": "garbage"}}),
        )
        .await
        .unwrap_err();
    assert!(matches!(e.0, ErrorCode::InvalidSdp | ErrorCode::OperationError), "{e:?}");
    vda.request(
        s,
        "pc.addTransceiver",
        json!({"pc": "pc1", "kind": "audio", "init": {"direction": "sendrecv"}}),
    )
    .await
    .unwrap();
    let offer = vda.request(s, "pc.createOffer", json!({"pc": "pc1", "options": {}})).await.unwrap();
    assert_eq!(offer["type"], "offer");
    assert!(offer["sdp"].as_str().unwrap().contains("m=audio"), "{offer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_vc_closes_only_that_session() {
    let (mut vda, engine, _stop, _server) = start().await;
    let bad = vda.open().await;
    let good = vda.open().await;
    vda.request(good, "pc.create", json!({"pc": "pc1"})).await.unwrap();
    vda.request(good, "pc.addTransceiver", json!({"pc": "pc1", "kind": "audio"})).await.unwrap();

    // Raw DATA frames that are not JSON, written straight onto the channel.
    vda.flush().await;
    for _ in 0..8 {
        let mut out = Vec::new();
        Frame { kind: FrameKind::Data, flags: 0, session: bad, payload: b"\xff not json {".to_vec() }
            .encode(&mut out);
        vda.io.write_all(&out).await.unwrap();
    }
    let closed = vda
        .wait_for(
            "bad session closed",
            |e| matches!(e, ChannelEvent::SessionClosed { session, .. } if *session == bad),
        )
        .await;
    let ChannelEvent::SessionClosed { code, .. } = closed else { unreachable!() };
    assert_eq!(code, ErrorCode::BadMessage);

    // The other page's peer connection is untouched and still negotiates.
    let offer = vda.request(good, "pc.createOffer", json!({"pc": "pc1"})).await.unwrap();
    assert!(offer["sdp"].as_str().unwrap().to_ascii_lowercase().contains("opus/48000/2"), "{offer}");
    assert_eq!(engine.peer_connections.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_session_closes_its_peer_connections() {
    let (mut vda, engine, _stop, _server) = start().await;
    let s = vda.open().await;
    vda.request(s, "pc.create", json!({"pc": "a"})).await.unwrap();
    vda.request(s, "pc.create", json!({"pc": "b"})).await.unwrap();
    vda.request(s, "pc.addTransceiver", json!({"pc": "a", "kind": "audio"})).await.unwrap();
    let offer = vda.request(s, "pc.createOffer", json!({"pc": "a"})).await.unwrap();
    vda.request(s, "pc.setLocalDescription", json!({"pc": "a", "description": offer})).await.unwrap();
    assert_eq!(engine.peer_connections.load(Ordering::Relaxed), 2);

    // The page goes away (the bridge closes its session).
    vda.ch.close_session(s, ErrorCode::Normal, "page closed");
    vda.flush().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.peer_connections.load(Ordering::Relaxed) != 0 {
        assert!(Instant::now() < deadline, "peer connections still open after the session closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_typed_errors() {
    let (mut vda, _engine, _stop, _server) = start().await;
    let s = vda.open().await;
    for i in 0..8 {
        vda.request(s, "pc.create", json!({"pc": format!("pc{i}")})).await.unwrap();
    }
    let e = vda.request(s, "pc.create", json!({"pc": "one-too-many"})).await.unwrap_err();
    assert_eq!(e.0, ErrorCode::LimitExceeded);
    let huge = "a".repeat(70 * 1024);
    let e = vda
        .request(
            s,
            "pc.setRemoteDescription",
            json!({"pc": "pc0", "description": {"type": "offer", "sdp": huge}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.0, ErrorCode::LimitExceeded);
}
