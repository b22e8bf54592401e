//! The life cycle of peer connections within one page session, through the real `vdimediad`
//! on a private PipeWire graph: `pc.close` frees the connection's pipeline at once (no
//! webrtcbin thread outlives the hang-up while the page stays open, and GStreamer's clock and
//! pool threads end once no connection is left), closed connections do not
//! count against the per-session limit (a softphone page places call after call), and requests
//! naming a closed connection get `invalid_state` (WebRTC 1.0 §4.4.1: a closed
//! RTCPeerConnection rejects its operations). Skips only when PipeWire is not installed.

use std::time::{Duration, Instant};

use serde_json::json;
use vdimedia_protocol::message::ErrorCode;

mod common;
use common::{Page, Rig, tempdir};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");

/// Names of the daemon's threads.
fn threads(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the daemon's threads that belong to a webrtcbin (its ICE and signalling loops).
fn webrtcbin_threads(pid: u32) -> Vec<String> {
    threads(pid).into_iter().filter(|c| c.starts_with("webrtcbin")).collect()
}

/// Pumps the page until none of the daemon's threads is one `pick` names, for at most `secs`;
/// then fails with `what` and the threads left.
async fn until_no_thread(page: &mut Page, pid: u32, secs: u64, pick: impl Fn(&str) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left: Vec<String> = threads(pid).into_iter().filter(|t| pick(t)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {left:?}");
        page.pump(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn closed_connections_are_freed_and_refused_and_do_not_count_against_the_limit() {
    let dir = tempdir("pc-lifecycle");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    let daemon = rig.start_daemon(DAEMON, &dir, "vc");
    let pid = daemon.0.id();
    let mut page = Page::connect(&dir.join("vc.sock"), "pc-lifecycle-test/1").await;
    let sid = page.open().await;

    // A call with media between "a" and "b", then hang-up while the page stays open.
    let gum = page.request(sid, "media.getUserMedia", json!({"constraints": {"audio": true}})).await;
    let track = gum["tracks"][0]["id"].as_str().unwrap().to_string();
    page.negotiate_loopback(sid, &track).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        page.pump(Duration::from_millis(200)).await;
        page.trickle(sid).await;
        let st = page.request(sid, "pc.getStats", json!({"pc": "b"})).await;
        let received = st["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == "inbound-rtp")
            .filter_map(|s| s["packetsReceived"].as_u64())
            .sum::<u64>();
        if received > 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the call never carried media: {st:#}");
    }
    assert!(!webrtcbin_threads(pid).is_empty(), "a call runs webrtcbin threads");
    page.request(sid, "pc.close", json!({"pc": "a"})).await;
    page.request(sid, "pc.close", json!({"pc": "b"})).await;
    until_no_thread(
        &mut page,
        pid,
        5,
        |t| t.starts_with("webrtcbin"),
        "webrtcbin threads outlive pc.close while the page is open",
    )
    .await;
    // Issue 8, no extra thread while idle: once no peer connection is left, GStreamer's
    // system clock thread and GLib's pool threads end too (engine::release_gstreamer_threads,
    // IDLE_RELEASE_DELAY_MS after the last close). What stays is the runtime and tokio's
    // blocking pool, which ends its idle threads by itself.
    until_no_thread(
        &mut page,
        pid,
        6,
        |t| t != "vdimediad" && t != "tokio-rt-worker",
        "threads other than the runtime's stay after the last pc.close",
    )
    .await;

    // A closed connection: its operations are refused with invalid_state, close() stays
    // idempotent, and its id is not reused.
    let e = page.try_request(sid, "pc.createOffer", json!({"pc": "a"})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState, "{e:?}");
    page.try_request(sid, "pc.close", json!({"pc": "a"})).await.expect("close is idempotent");
    let e = page.try_request(sid, "pc.create", json!({"pc": "a"})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams, "{e:?}");
    let e = page.try_request(sid, "pc.getStats", json!({"pc": "never"})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");

    // More calls than the per-session limit (8 live connections by default), one after the
    // other: each is created, negotiates and closes.
    for i in 0..12 {
        let pc = format!("call{i}");
        page.try_request(sid, "pc.create", json!({"pc": pc}))
            .await
            .unwrap_or_else(|e| panic!("call {i}: pc.create refused after earlier calls closed: {e:?}"));
        page.request(sid, "pc.addTrack", json!({"pc": pc, "track": track, "streams": ["s"]})).await;
        let offer = page.request(sid, "pc.createOffer", json!({"pc": pc})).await;
        assert!(offer["sdp"].as_str().is_some_and(|s| s.contains("m=audio")), "{offer:#}");
        page.try_request(sid, "pc.close", json!({"pc": pc})).await.unwrap();
    }
    // The limit still holds for live connections.
    let mut refused = None;
    for i in 0..9 {
        if let Err(e) = page.try_request(sid, "pc.create", json!({"pc": format!("live{i}")})).await {
            refused = Some((i, e));
            break;
        }
    }
    let (n, e) = refused.expect("a ninth live peer connection must be refused");
    assert_eq!(n, 8, "refused at the wrong count: {e:?}");
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e:?}");
    drop(daemon);
}
