//! Network faults of a call (issue 7): two real peer connections of the daemon call each other
//! over loopback ICE with live tones, then the far end misbehaves.
//!
//! - The far end vanishes (its pipeline goes to NULL: no RTP, no RTCP, no STUN): the near end's
//!   `iceConnectionState`/`connectionState` go `disconnected`, then `failed` on RFC 7675's
//!   consent timing (30 s after it was last heard from), it stops sending, and a new
//!   connection works. This test takes about 35 s.
//! - The far end goes quiet and comes back before consent expires: `disconnected`, then
//!   `connected` again.
//! - A page adds more remote candidates than a connection takes: `limit_exceeded`, and the
//!   call goes on.

use std::time::{Duration, Instant};

use vdimedia_protocol::api::*;
use vdimedia_protocol::message::ErrorCode;
use vdimediad::webrtc::peer_connection::{
    CONSENT_DISCONNECTED_AFTER, CONSENT_FAILED_AFTER, MAX_REMOTE_CANDIDATES,
};
use vdimediad::webrtc::{Codec, PcEvent};

mod common;
use common::loopback::{Peer, peer, pump, tone};

/// `a` offers a tone, `b` answers with one; returns once both are `connected`, with the far
/// end's tone source (its parent chain leads to `b`'s pipeline).
async fn call(name: &str) -> (Peer, Peer, gst::Element) {
    vdimediad::webrtc::prewarm().unwrap();
    let mut a = peer(&format!("{name}-a"), vec![Codec::Opus]);
    let mut b = peer(&format!("{name}-b"), vec![Codec::Opus]);
    a.pc.add_track("trackA", tone(440.0, 0.5), vec!["streamA".into()]).unwrap();
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    b.pc.set_remote_description(offer).await.unwrap();
    let far_tone = tone(880.0, 0.25);
    b.pc.add_track("trackB", far_tone.clone(), vec!["streamB".into()]).unwrap();
    b.pc.set_local_description(None).await.unwrap();
    a.pc.set_remote_description(b.pc.state().local_description.unwrap()).await.unwrap();
    let up = |p: &Peer| p.pc.state().connection_state == RtcPeerConnectionState::Connected;
    // pump_until's predicate cannot borrow the peers it pumps: pump in slices instead.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(up(&a) && up(&b)) && Instant::now() < deadline {
        pump(&mut a, &mut b, Duration::from_millis(100)).await;
    }
    assert!(
        up(&a) && up(&b),
        "call did not connect: a {:?}, b {:?}",
        a.pc.state().connection_state,
        b.pc.state().connection_state
    );
    // Media both ways for a moment.
    pump(&mut a, &mut b, Duration::from_millis(500)).await;
    (a, b, far_tone)
}

/// The top-level pipeline an element is in.
fn pipeline_of(e: &gst::Element) -> gst::Element {
    use gst::prelude::*;
    let mut top = e.clone();
    while let Some(p) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
        top = p;
    }
    top
}

/// The connection's transport `packetsSent` / `packetsReceived` (getStats).
async fn transport_packets(p: &Peer) -> (u64, u64) {
    let stats = p.pc.get_stats().await.unwrap();
    let t = stats.iter().find(|s| s["type"] == "transport").expect("a transport stat");
    (t["packetsSent"].as_u64().unwrap(), t["packetsReceived"].as_u64().unwrap())
}

/// A state change of `p` and when it arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Ice(RtcIceConnectionState),
    Conn(RtcPeerConnectionState),
}

/// Collects `p`'s ICE/connection state changes (with their time since `t0`) until `done`
/// holds for the list or `timeout` passes.
async fn watch(
    p: &mut Peer,
    t0: Instant,
    timeout: Duration,
    done: impl Fn(&[(Change, Duration)]) -> bool,
) -> Vec<(Change, Duration)> {
    let mut seen = Vec::new();
    let deadline = t0 + timeout;
    while !done(&seen) && Instant::now() < deadline {
        while let Ok(ev) = p.rx.try_recv() {
            match ev {
                PcEvent::IceConnectionStateChange(s) => seen.push((Change::Ice(s), t0.elapsed())),
                PcEvent::ConnectionStateChange(s) => seen.push((Change::Conn(s), t0.elapsed())),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

fn at(seen: &[(Change, Duration)], c: Change) -> Option<Duration> {
    seen.iter().find(|(x, _)| *x == c).map(|(_, t)| *t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_end_vanishes_then_disconnected_then_failed_on_consent_timing() {
    let (mut a, b, _) = call("vanish").await;
    while a.rx.try_recv().is_ok() {}
    // The far end vanishes: its pipeline stops, nothing answers on its ports any more.
    b.pc.close();
    let t0 = Instant::now();
    let seen = watch(&mut a, t0, Duration::from_secs(45), |s| {
        s.iter().any(|(c, _)| *c == Change::Conn(RtcPeerConnectionState::Failed))
    })
    .await;
    eprintln!("state changes after the far end vanished: {seen:?}");
    use RtcIceConnectionState as I;
    use RtcPeerConnectionState as C;
    let ice_disc = at(&seen, Change::Ice(I::Disconnected)).expect("iceConnectionState disconnected");
    let disc = at(&seen, Change::Conn(C::Disconnected)).expect("connectionState disconnected");
    let ice_failed = at(&seen, Change::Ice(I::Failed)).expect("iceConnectionState failed");
    let failed = at(&seen, Change::Conn(C::Failed)).expect("connectionState failed");
    // The watch notices silence within a tick (0.5 s) of the threshold; the last packet may have
    // been in flight a little after close().
    let lo = CONSENT_DISCONNECTED_AFTER - Duration::from_secs(1);
    assert!(
        disc >= lo && disc <= CONSENT_DISCONNECTED_AFTER + Duration::from_secs(4),
        "disconnected at {disc:?}"
    );
    assert!(failed >= Duration::from_secs(25) && failed <= Duration::from_secs(40), "failed at {failed:?}");
    assert!(failed >= CONSENT_FAILED_AFTER - Duration::from_secs(1));
    // W3C order: iceconnectionstatechange before connectionstatechange, disconnected before failed.
    let order: Vec<Change> = seen.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        order,
        vec![
            Change::Ice(I::Disconnected),
            Change::Conn(C::Disconnected),
            Change::Ice(I::Failed),
            Change::Conn(C::Failed)
        ],
    );
    assert!(ice_disc <= disc && ice_failed <= failed);
    let st = a.pc.state();
    assert_eq!((st.ice_connection_state, st.connection_state), (I::Failed, C::Failed));

    let stats = a.pc.get_stats().await.unwrap();
    let t = stats.iter().find(|s| s["type"] == "transport").unwrap();
    assert_eq!(t["iceState"], "failed", "getStats transport follows consent: {t:#}");
    // RFC 7675 §5.1: no consent, no sending.
    let (sent1, _) = transport_packets(&a).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sent2, _) = transport_packets(&a).await;
    assert_eq!(sent1, sent2, "the near end still sends after consent expired");

    // The engine is fine: a new call connects and carries media.
    a.pc.close();
    let (c, _d, _) = call("after-vanish").await;
    let (_, recv) = transport_packets(&c).await;
    assert!(recv > 10, "new call receives nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_end_silent_then_back_goes_disconnected_then_connected() {
    use gst::prelude::*;
    let (mut a, mut b, far_tone) = call("pause").await;
    while a.rx.try_recv().is_ok() {}
    // The far end stops sending anything through its pipeline (RTP, RTCP) for a while.
    let far = pipeline_of(&far_tone);
    far.set_state(gst::State::Paused).unwrap();
    let t0 = Instant::now();
    let seen = watch(&mut a, t0, CONSENT_DISCONNECTED_AFTER + Duration::from_secs(6), |s| {
        s.iter().any(|(c, _)| *c == Change::Conn(RtcPeerConnectionState::Disconnected))
    })
    .await;
    let disc = at(&seen, Change::Conn(RtcPeerConnectionState::Disconnected))
        .unwrap_or_else(|| panic!("no disconnected: {seen:?}"));
    assert!(disc >= CONSENT_DISCONNECTED_AFTER - Duration::from_secs(1), "disconnected too early: {disc:?}");
    far.set_state(gst::State::Playing).unwrap();
    let t1 = Instant::now();
    let back = watch(&mut a, t1, Duration::from_secs(10), |s| {
        s.iter().any(|(c, _)| *c == Change::Conn(RtcPeerConnectionState::Connected))
    })
    .await;
    eprintln!("silent: {seen:?}; back: {back:?}");
    let again = at(&back, Change::Conn(RtcPeerConnectionState::Connected))
        .unwrap_or_else(|| panic!("not connected again: {back:?}"));
    assert!(again < Duration::from_secs(3), "connected again only after {again:?}");
    // iceconnectionstatechange (back to what webrtcbin says: connected or completed) first.
    assert!(
        matches!(
            back.first().map(|c| c.0),
            Some(Change::Ice(RtcIceConnectionState::Connected | RtcIceConnectionState::Completed))
        ),
        "{back:?}"
    );
    // Media flows again both ways.
    let (_, r1) = transport_packets(&a).await;
    pump(&mut a, &mut b, Duration::from_secs(1)).await;
    let (_, r2) = transport_packets(&a).await;
    assert!(r2 > r1 + 10, "no media after the far end came back ({r1} → {r2})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_candidates_over_the_limit_get_limit_exceeded_and_the_call_goes_on() {
    let (a, b, _) = call("candidates").await;
    // Candidates a already took from b's trickle count too.
    let trickled = b.events.iter().filter(|e| matches!(e, PcEvent::IceCandidate(Some(_)))).count();
    assert!(trickled > 0 && trickled < MAX_REMOTE_CANDIDATES);
    let cand = |i: usize| RtcIceCandidateInit {
        candidate: format!("candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host", 40000 + i),
        sdp_mid: None,
        sdp_m_line_index: Some(0),
        username_fragment: None,
    };
    for i in trickled..MAX_REMOTE_CANDIDATES {
        a.pc.add_ice_candidate(Some(cand(i))).await.unwrap_or_else(|e| panic!("candidate {i}: {e:?}"));
    }
    let err = a.pc.add_ice_candidate(Some(cand(MAX_REMOTE_CANDIDATES))).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert!(err.message.contains(&MAX_REMOTE_CANDIDATES.to_string()), "{}", err.message);
    // Refused before anything reaches libnice; end-of-candidates is still fine.
    a.pc.add_ice_candidate(None).await.unwrap();
    // The call goes on.
    let (_, r1) = transport_packets(&a).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, r2) = transport_packets(&a).await;
    assert!(r2 > r1 + 10, "media stopped after the refused candidate ({r1} → {r2})");
    assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Connected);
}
