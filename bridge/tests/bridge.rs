//! End-to-end tests of the bridge: real sockets, a real engine peer (`Channel` in the endpoint
//! role), real WebSocket pages.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vdimedia_bridge::{VcMode, VcTarget, WsSecurity};
use vdimedia_protocol::channel::{ChannelConfig, ChannelEvent};

#[tokio::test]
async fn hello_redirects_and_reports_engine() {
    let bridge = start(test_config()).await;
    let mut engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    let st = p.hello().await;
    assert_eq!(st["type"], "status");
    assert_eq!(st["redirected"], true, "{st}");
    assert_eq!(st["version"], 1);
    assert_eq!(st["engine"], "vdimediad/0.1.0-test");
    assert_eq!(st["os"], std::env::consts::OS);
    assert_eq!(st["capabilities"]["codecs"], json!(["opus", "G722", "PCMU", "PCMA"]));
    assert_eq!(st["capabilities"]["devices"]["audiooutput"], 3);
    // The engine saw the page's origin, agent and SDK version in OPEN.
    let ev = engine.expect(|e| matches!(e, ChannelEvent::SessionOpened { .. })).await;
    let ChannelEvent::SessionOpened { open: Some(open), .. } = ev else { panic!("{ev:?}") };
    assert_eq!(open.origin.as_deref(), Some("https://softphone.example"));
    assert_eq!(open.agent.as_deref(), Some("Chromium/156 test"));
    assert_eq!(open.sdk.as_deref(), Some("0.1.0"));

    // Page disconnect closes the session on the engine.
    drop(p);
    let ev = engine.expect(|e| matches!(e, ChannelEvent::SessionClosed { .. })).await;
    assert!(matches!(ev, ChannelEvent::SessionClosed { by_peer: true, .. }), "{ev:?}");
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn two_pages_get_their_own_responses_and_events() {
    let bridge = start(test_config()).await;
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut a = page(bridge.ws_addr(), "https://a.example").await;
    let mut b = page(bridge.ws_addr(), "https://b.example").await;
    assert_eq!(a.hello().await["redirected"], true);
    assert_eq!(b.hello().await["redirected"], true);

    // Interleave requests with the same ids on both pages.
    for id in 1..=20u64 {
        a.send(json!({"type":"request","id":id,"method":"pc.create","params":{"pc":format!("a{id}")}})).await;
        b.send(json!({"type":"request","id":id,"method":"pc.create","params":{"pc":format!("b{id}")}})).await;
    }
    let mut session_a = None;
    let mut session_b = None;
    for id in 1..=20u64 {
        let ra = a.recv().await;
        assert_eq!(ra["type"], "response");
        assert_eq!(ra["id"], id);
        assert_eq!(ra["result"]["params"]["pc"], format!("a{id}"), "page a got {ra}");
        let rb = b.recv().await;
        assert_eq!(rb["id"], id);
        assert_eq!(rb["result"]["params"]["pc"], format!("b{id}"), "page b got {rb}");
        session_a.get_or_insert(ra["result"]["session"].clone());
        session_b.get_or_insert(rb["result"]["session"].clone());
        assert_eq!(Some(&ra["result"]["session"]), session_a.as_ref());
        assert_eq!(Some(&rb["result"]["session"]), session_b.as_ref());
    }
    assert_ne!(session_a, session_b);

    // An engine event for a's session reaches a only, before its response.
    let ev = a.request(99, "test.event", json!({})).await;
    assert_eq!(ev["type"], "event");
    assert_eq!(ev["event"], "test.ping");
    assert_eq!(ev["params"]["session"], session_a.clone().unwrap());
    assert_eq!(a.recv().await["id"], 99);
    let r = b.request(100, "devices.enumerate", json!({})).await;
    assert_eq!(r["id"], 100, "page b must not see a's event: {r}");
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn garbage_gets_a_typed_error_and_the_page_keeps_working() {
    let bridge = start(test_config()).await;
    let mut engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    let mut other = page(bridge.ws_addr(), "https://other.example").await;
    assert_eq!(p.hello().await["redirected"], true);
    assert_eq!(other.hello().await["redirected"], true);

    // Not JSON: no id to recover, so a {"type":"error"}.
    p.send_raw("{this is not json").await;
    let e = p.recv().await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["code"], "bad_message");
    assert_eq!(e["error"]["name"], "SyntaxError");

    // A request with an id but no method: an error response for that id.
    p.send(json!({"type":"request","id":5})).await;
    let e = p.recv().await;
    assert_eq!(e["type"], "response", "{e}");
    assert_eq!(e["id"], 5);
    assert!(e["error"]["code"].is_string(), "{e}");

    // Binary frames are refused.
    futures_util::SinkExt::send(&mut p.ws, WsMessage::binary(vec![0u8, 1, 2])).await.unwrap();
    let e = p.recv().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["code"], "bad_message");

    // A second hello is refused, the session stays.
    let e = p.hello().await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["code"], "invalid_state");

    // Many bad messages (more than the engine's 8-in-a-row limit) never reach the engine, so
    // the session survives.
    for _ in 0..20 {
        p.send_raw("[1,2,3]").await;
        assert_eq!(p.recv().await["type"], "error");
    }
    let r = p.request(6, "pc.create", json!({"pc":"pc1"})).await;
    assert_eq!(r["type"], "response");
    assert_eq!(r["id"], 6);
    assert_eq!(r["result"]["method"], "pc.create");
    // The other page was never bothered.
    let r = other.request(1, "devices.enumerate", json!({})).await;
    assert_eq!(r["id"], 1);
    // The engine saw only well-formed messages.
    while let Ok(ev) = engine.events.try_recv() {
        assert!(!matches!(ev, ChannelEvent::ProtocolError { .. }), "engine got garbage: {ev:?}");
    }
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn requests_before_hello_are_refused_and_hello_times_out() {
    let mut cfg = test_config();
    cfg.hello_timeout = Duration::from_millis(600);
    let bridge = start(cfg).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    let r = p.request(1, "pc.create", json!({"pc":"x"})).await;
    assert_eq!(r["type"], "response");
    assert_eq!(r["error"]["code"], "invalid_state");
    let (code, reason) = p.recv_close().await.expect("close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("hello"), "{reason}");
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn no_engine_then_engine_arrives() {
    let bridge = start(test_config()).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    let st = p.hello().await;
    assert_eq!(st["type"], "status");
    assert_eq!(st["redirected"], false);
    assert_eq!(st["reason"], "no_engine");
    assert!(st["message"].as_str().unwrap().contains("vdimediad"));
    // The WebSocket stays open; once an engine is there, a new hello succeeds.
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    assert_eq!(p.hello().await["redirected"], true);
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn version_mismatch_between_page_and_channel() {
    let bridge = start(test_config()).await;
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    p.send(json!({"type":"hello","sdk":"9.0.0","min_version":2,"max_version":3})).await;
    let st = p.recv().await;
    assert_eq!(st["redirected"], false, "{st}");
    assert_eq!(st["reason"], "version_mismatch");
    // Still open: the page may read and retry with a range that fits.
    assert_eq!(p.hello().await["redirected"], true);
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn engine_rejecting_the_channel_is_version_mismatch() {
    let bridge = start(test_config()).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    // The page waits for the handshake: connect an engine that only speaks version 2 while
    // the hello is pending.
    let tcp = TcpStream::connect(bridge.vc_addr().unwrap()).await.unwrap();
    // Once HELLO is readable the bridge holds the channel and waits for the handshake.
    let mut peek = [0u8; 4];
    tokio::time::timeout(WAIT, tcp.peek(&mut peek)).await.expect("bridge sends HELLO").unwrap();
    p.send(json!({"type":"hello","sdk":"0.1.0","min_version":1,"max_version":1})).await;
    // Let the hello reach the channel task (it waits there for the handshake, up to 5 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cfg = ChannelConfig::endpoint(engine_welcome());
    cfg.min_version = 2;
    cfg.max_version = 2;
    let _engine = Engine::spawn(tcp, cfg);
    let st = p.recv().await;
    assert_eq!(st["redirected"], false, "{st}");
    assert_eq!(st["reason"], "version_mismatch", "{st}");
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn engine_drop_is_channel_lost_and_a_new_engine_is_accepted() {
    let bridge = start(test_config()).await;
    let engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut a = page(bridge.ws_addr(), "https://a.example").await;
    let mut b = page(bridge.ws_addr(), "https://b.example").await;
    assert_eq!(a.hello().await["redirected"], true);
    assert_eq!(b.hello().await["redirected"], true);
    engine.kill().await;
    for p in [&mut a, &mut b] {
        let st = p.recv().await;
        assert_eq!(st["type"], "status");
        assert_eq!(st["redirected"], false);
        assert_eq!(st["reason"], "channel_lost", "{st}");
    }
    // Requests now get a typed error, not silence.
    let r = a.request(1, "pc.create", json!({"pc":"x"})).await;
    assert_eq!(r["error"]["code"], "session_closed", "{r}");
    // The bridge re-accepts a daemon; pages re-attach with hello.
    let _engine2 = Engine::dial(bridge.vc_addr().unwrap()).await;
    assert_eq!(a.hello().await["redirected"], true);
    let r = a.request(2, "pc.create", json!({"pc":"x"})).await;
    assert_eq!(r["id"], 2);
    assert_eq!(r["result"]["method"], "pc.create");
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn engine_closing_a_session_tells_that_page_only() {
    let bridge = start(test_config()).await;
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut a = page(bridge.ws_addr(), "https://a.example").await;
    let mut b = page(bridge.ws_addr(), "https://b.example").await;
    assert_eq!(a.hello().await["redirected"], true);
    assert_eq!(b.hello().await["redirected"], true);
    a.send(json!({"type":"request","id":1,"method":"test.close"})).await;
    let st = a.recv().await;
    assert_eq!(st["redirected"], false, "{st}");
    assert_eq!(st["reason"], "engine_rejected");
    assert!(st["message"].as_str().unwrap().contains("invalid_state"), "{st}");
    let (code, _) = a.recv_close().await.expect("close frame");
    assert_eq!(code, 1011);
    let r = b.request(1, "pc.create", json!({"pc":"b"})).await;
    assert_eq!(r["result"]["params"]["pc"], "b");
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn origin_allow_list() {
    let mut cfg = test_config();
    cfg.allow_origins = vec!["https://softphone.example".into()];
    let bridge = start(cfg).await;
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut bad = page(bridge.ws_addr(), "https://evil.example").await;
    let st = bad.hello().await;
    assert_eq!(st["reason"], "not_allowed", "{st}");
    let mut good = page(bridge.ws_addr(), "https://softphone.example").await;
    assert_eq!(good.hello().await["redirected"], true);
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn page_limit_and_message_size_limit() {
    let mut cfg = test_config();
    cfg.max_pages = 2;
    cfg.max_message_bytes = 4096;
    let bridge = start(cfg).await;
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut a = page(bridge.ws_addr(), "https://a.example").await;
    let mut b = page(bridge.ws_addr(), "https://b.example").await;
    assert_eq!(a.hello().await["redirected"], true);
    assert_eq!(b.hello().await["redirected"], true);
    // A third page is refused at the handshake with 503.
    let tcp = TcpStream::connect(bridge.ws_addr()).await.unwrap();
    let req = format!("ws://{}/", bridge.ws_addr()).into_client_request().unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("third page not refused: {:?}", other.map(|_| ())),
    }
    // An oversize message closes only that page (1009).
    a.send_raw(&format!(
        "{{\"type\":\"event\",\"event\":\"x\",\"params\":{{\"p\":\"{}\"}}}}",
        "x".repeat(8000)
    ))
    .await;
    let (code, _) = a.recv_close().await.expect("close frame");
    assert_eq!(code, 1009);
    let r = b.request(3, "pc.create", json!({"pc":"b"})).await;
    assert_eq!(r["id"], 3);
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn vc_connect_mode_over_unix_socket() {
    let dir = temp_dir("unix");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vc.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let mut cfg = test_config();
    cfg.vc = VcMode::Connect(VcTarget::Unix(path.clone()));
    let bridge = start(cfg).await;
    assert!(bridge.vc_addr().is_none());
    let (s, _) = tokio::time::timeout(WAIT, listener.accept()).await.expect("bridge dials").unwrap();
    let mut engine = Engine::spawn(s, ChannelConfig::endpoint(engine_welcome()));
    engine.expect(|e| matches!(e, ChannelEvent::Hello(_))).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    assert_eq!(p.hello().await["redirected"], true);
    let r = p.request(1, "devices.enumerate", json!({})).await;
    assert_eq!(r["result"]["method"], "devices.enumerate");
    // The daemon restarts: the bridge redials.
    engine.kill().await;
    assert_eq!(p.recv().await["reason"], "channel_lost");
    let (s, _) = tokio::time::timeout(WAIT, listener.accept()).await.expect("bridge redials").unwrap();
    let mut engine = Engine::spawn(s, ChannelConfig::endpoint(engine_welcome()));
    engine.expect(|e| matches!(e, ChannelEvent::Hello(_))).await;
    assert_eq!(p.hello().await["redirected"], true);
    bridge.shutdown();
    bridge.wait().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn tls_with_the_generated_certificate() {
    let mut cfg = test_config();
    cfg.security = WsSecurity::Tls { cert: None, key: None };
    let state = cfg.state_dir.clone();
    let bridge = start(cfg).await;
    let tls = bridge.tls().expect("TLS on").clone();
    assert!(tls.generated);
    assert!(state.join("bridge-cert.pem").exists());
    assert_eq!(tls.spki_sha256, vdimedia_bridge::tls::spki_sha256(&tls.cert_der).unwrap());
    assert!(bridge.url().starts_with("wss://127.0.0.1:"));
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(tls.cert_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    for host in ["127.0.0.1", "localhost"] {
        let tcp = TcpStream::connect(bridge.ws_addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
        let stream = connector.connect(name, tcp).await.unwrap_or_else(|e| panic!("TLS to {host}: {e}"));
        let req = format!("wss://{host}:{}/", bridge.ws_addr().port()).into_client_request().unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, stream).await.expect("wss handshake");
        let mut p = Page { ws };
        assert_eq!(p.hello().await["redirected"], true);
        let r = p.request(1, "devices.enumerate", json!({})).await;
        assert_eq!(r["id"], 1);
    }

    // A client that does not trust the certificate fails the handshake.
    let client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
    let tcp = TcpStream::connect(bridge.ws_addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    assert!(tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.is_err());
    bridge.shutdown();
    bridge.wait().await;

    // A restart reuses the same certificate (same SPKI pin for the browser).
    let mut cfg = test_config();
    cfg.security = WsSecurity::Tls { cert: None, key: None };
    cfg.state_dir = state.clone();
    let again = start(cfg).await;
    assert!(!again.tls().unwrap().generated);
    assert_eq!(again.tls().unwrap().spki_sha256, tls.spki_sha256);
    again.shutdown();
    again.wait().await;
    std::fs::remove_dir_all(&state).ok();
}

#[tokio::test]
async fn shutdown_closes_sessions_and_pages() {
    let bridge = start(test_config()).await;
    let mut engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    assert_eq!(p.hello().await["redirected"], true);
    bridge.shutdown();
    let ev = engine.expect(|e| matches!(e, ChannelEvent::SessionClosed { .. })).await;
    let ChannelEvent::SessionClosed { code, by_peer, .. } = ev else { unreachable!() };
    assert!(by_peer);
    assert_eq!(code, vdimedia_protocol::message::ErrorCode::Normal);
    let close = p.recv_close().await;
    assert!(matches!(close, Some((1001, _)) | Some((1011, _)) | None), "{close:?}");
    tokio::time::timeout(WAIT, bridge.wait()).await.expect("bridge stops");
}

#[tokio::test]
async fn a_flooding_page_is_throttled_and_others_are_unaffected() {
    let bridge = start(test_config()).await;
    let _engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut a = page(bridge.ws_addr(), "https://flood.example").await;
    let mut b = page(bridge.ws_addr(), "https://b.example").await;
    assert_eq!(a.hello().await["redirected"], true);
    assert_eq!(b.hello().await["redirected"], true);
    let n = 1000u64;
    for id in 0..n {
        a.send(json!({"type":"request","id":id,"method":"pc.getStats","params":{"pc":"a"}})).await;
    }
    // b is served promptly while a's burst is in flight.
    let t = std::time::Instant::now();
    let r = b.request(1, "pc.create", json!({"pc":"b"})).await;
    assert_eq!(r["result"]["params"]["pc"], "b");
    assert!(t.elapsed() < Duration::from_secs(2), "b waited {:?}", t.elapsed());
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..n {
        let r = a.recv().await;
        assert_eq!(r["type"], "response", "{r}");
        if r["error"]["code"] == "limit_exceeded" {
            limited += 1;
        } else {
            assert_eq!(r["result"]["method"], "pc.getStats");
            ok += 1;
        }
    }
    assert!(limited > 0, "no throttling: {ok} ok");
    assert!(ok >= 200, "burst not honoured: {ok} ok");
    bridge.shutdown();
    bridge.wait().await;
}

#[tokio::test]
async fn a_page_that_stops_reading_is_detached_alone() {
    let bridge = start(test_config()).await;
    let mut engine = Engine::dial(bridge.vc_addr().unwrap()).await;
    let mut slow = small_buffer_page(bridge.ws_addr(), "https://slow.example").await;
    let mut b = page(bridge.ws_addr(), "https://b.example").await;
    assert_eq!(slow.hello().await["redirected"], true);
    assert_eq!(b.hello().await["redirected"], true);
    // ~8 MB of events that `slow` never reads: more than socket buffers and its queue.
    let t = std::time::Instant::now();
    slow.send(json!({"type":"request","id":1,"method":"test.flood","params":{"count":4000,"bytes":2000}}))
        .await;
    let ev = engine.expect(|e| matches!(e, ChannelEvent::SessionClosed { .. })).await;
    let ChannelEvent::SessionClosed { code, by_peer, .. } = ev else { unreachable!() };
    assert!(by_peer);
    assert_eq!(code, vdimedia_protocol::message::ErrorCode::LimitExceeded);
    eprintln!("slow page detached after {:?}", t.elapsed());
    let r = b.request(7, "pc.create", json!({"pc":"b"})).await;
    assert_eq!(r["id"], 7);
    drop(slow);
    bridge.shutdown();
    bridge.wait().await;
}
