//! Two real peer connections in one process, connected over loopback ICE with trickled
//! candidates, `audiotestsrc` tones as their tracks (A 440 Hz, B 880 Hz) and metering sinks as
//! playout: each side must decode the other's tone (energy and frequency), for every codec.

use super::*;
use crate::error::EngineResult;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use vdimedia_protocol::api::*;
use vdimedia_protocol::message::ErrorCode;

/// Decoded audio seen by a playout sink: S16 mono samples, their energy and zero crossings.
#[derive(Default, Debug)]
struct Meter {
    rate: u32,
    voiced_samples: u64,
    crossings: u64,
    sum_sq: f64,
}

impl Meter {
    fn seconds(&self) -> f64 {
        if self.rate == 0 { 0.0 } else { self.voiced_samples as f64 / self.rate as f64 }
    }
    fn frequency(&self) -> f64 {
        self.crossings as f64 / 2.0 / self.seconds().max(1e-9)
    }
    fn rms(&self) -> f64 {
        (self.sum_sq / self.voiced_samples.max(1) as f64).sqrt()
    }
}

/// A playout sink (`capsfilter ! fakesink` bin) whose pad probe feeds a [`Meter`].
fn metering_sink() -> (gst::Element, Arc<Mutex<Meter>>) {
    let meter = Arc::new(Mutex::new(Meter::default()));
    let bin = gst::Bin::new();
    let capsf = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw").field("format", "S16LE").field("channels", 1).build(),
        )
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .property("async", false)
        .build()
        .unwrap();
    bin.add_many([&capsf, &sink]).unwrap();
    capsf.link(&sink).unwrap();
    let ghost = gst::GhostPad::with_target(&capsf.static_pad("sink").unwrap()).unwrap();
    bin.add_pad(&ghost).unwrap();
    let m = meter.clone();
    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buf) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let rate = pad
            .current_caps()
            .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("rate").ok()))
            .unwrap_or(0) as u32;
        let Ok(map) = buf.map_readable() else {
            return gst::PadProbeReturn::Ok;
        };
        let samples: Vec<f64> =
            map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0).collect();
        let energy: f64 = samples.iter().map(|s| s * s).sum();
        if samples.is_empty() || (energy / samples.len() as f64).sqrt() < 0.01 {
            return gst::PadProbeReturn::Ok; // silence / concealment at start-up
        }
        let crossings = samples.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count() as u64;
        let mut m = m.lock().unwrap();
        m.rate = rate;
        m.voiced_samples += samples.len() as u64;
        m.crossings += crossings;
        m.sum_sq += energy;
        gst::PadProbeReturn::Ok
    });
    (bin.upcast(), meter)
}

fn tone(freq: f64) -> gst::Element {
    gst::ElementFactory::make("audiotestsrc")
        .property("is-live", true)
        .property("freq", freq)
        .property("volume", 0.5)
        .property("samplesperbuffer", 480i32)
        .build()
        .unwrap()
}

struct Peer {
    pc: PeerConnection,
    rx: UnboundedReceiver<PcEvent>,
    events: Vec<PcEvent>,
}

fn peer(name: &str, codecs: Vec<Codec>) -> Peer {
    peer_with(name, codecs, &RtcConfiguration::default())
}

fn peer_with(name: &str, codecs: Vec<Codec>, config: &RtcConfiguration) -> Peer {
    // RUST_LOG=vdimediad=debug shows the engine's log lines for a failing test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (tx, rx) = unbounded_channel();
    let opts = PcOptions { loopback_ice: true, codecs, ..PcOptions::default() };
    let pc = PeerConnection::with_options(name, config, opts, tx).unwrap();
    Peer { pc, rx, events: Vec::new() }
}

/// Moves trickled candidates between the peers and records all events, until `done` or timeout.
async fn pump(a: &mut Peer, b: &mut Peer, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        while let Ok(ev) = a.rx.try_recv() {
            if let PcEvent::IceCandidate(c) = &ev {
                b.pc.add_ice_candidate(c.clone()).await.unwrap();
            }
            a.events.push(ev);
        }
        while let Ok(ev) = b.rx.try_recv() {
            if let PcEvent::IceCandidate(c) = &ev {
                a.pc.add_ice_candidate(c.clone()).await.unwrap();
            }
            b.events.push(ev);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn remote_track_of(p: &Peer) -> TrackRef {
    p.events
        .iter()
        .find_map(|e| match e {
            PcEvent::Track { track, .. } => Some(track.clone()),
            _ => None,
        })
        .expect("a track event")
}

/// A offers (addTrack → createOffer → setLocal), B answers (setRemote → addTrack → createAnswer →
/// setLocal), A applies the answer; then audio must flow both ways.
async fn call(codecs: Vec<Codec>, expect: &str) -> (Peer, Peer, Arc<Mutex<Meter>>, Arc<Mutex<Meter>>) {
    call_with(codecs, expect, &RtcConfiguration::default()).await
}

async fn call_with(
    codecs: Vec<Codec>,
    expect: &str,
    config: &RtcConfiguration,
) -> (Peer, Peer, Arc<Mutex<Meter>>, Arc<Mutex<Meter>>) {
    let mut a = peer_with(&format!("a-{expect}"), codecs.clone(), config);
    let mut b = peer_with(&format!("b-{expect}"), codecs, config);
    let ta = a.pc.add_track("trackA", tone(440.0), vec!["streamA".into()]).unwrap();
    assert_eq!(ta.sender.track.as_deref(), Some("trackA"));
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    assert!(
        offer.sdp.to_lowercase().contains(&expect.to_lowercase()),
        "offer lacks {expect}:\n{}",
        offer.sdp
    );
    let st = a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::HaveLocalOffer);

    let st = b.pc.set_remote_description(offer).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::HaveRemoteOffer);
    assert_eq!(st.transceivers.len(), 1, "webrtcbin made one transceiver for the offer: {st:?}");
    let tb = b.pc.add_track("trackB", tone(880.0), vec!["streamB".into()]).unwrap();
    assert_eq!(tb.id, st.transceivers[0].id, "addTrack reuses the offer's transceiver");
    let answer = b.pc.create_answer().await.unwrap();
    assert!(answer.sdp.contains("a=sendrecv"), "answer must be sendrecv:\n{}", answer.sdp);
    assert!(
        answer.sdp.to_lowercase().contains(&expect.to_lowercase()),
        "answer lacks {expect}:\n{}",
        answer.sdp
    );
    let st = b.pc.set_local_description(None).await.unwrap(); // implicit answer
    assert_eq!(st.signaling_state, RtcSignalingState::Stable);
    let st = a.pc.set_remote_description(b.pc.state().local_description.unwrap()).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::Stable);
    assert_eq!(st.transceivers[0].current_direction, Some(RtcRtpTransceiverDirection::Sendrecv));

    // Playout: metering sinks on both remote tracks (A's set before media, B's too).
    let (sink_a, meter_a) = metering_sink();
    let (sink_b, meter_b) = metering_sink();
    a.pc.set_playout(&a.pc.state().transceivers[0].receiver.track.id, Some(sink_a)).unwrap();
    b.pc.set_playout(&b.pc.state().transceivers[0].receiver.track.id, Some(sink_b)).unwrap();

    let (ma, mb) = (meter_a.clone(), meter_b.clone());
    let ok = pump(&mut a, &mut b, Duration::from_secs(15), || {
        ma.lock().unwrap().seconds() > 1.0 && mb.lock().unwrap().seconds() > 1.0
    })
    .await;
    assert!(
        ok,
        "audio did not flow: A heard {:?}, B heard {:?}",
        meter_a.lock().unwrap(),
        meter_b.lock().unwrap()
    );
    assert_eq!(remote_track_of(&a).id, a.pc.state().transceivers[0].receiver.track.id);
    assert_eq!(remote_track_of(&b).id, b.pc.state().transceivers[0].receiver.track.id);
    (a, b, meter_a, meter_b)
}

fn assert_tone(m: &Meter, freq: f64, who: &str) {
    let f = m.frequency();
    eprintln!("{who}: {f:.1} Hz, rms {:.3}, {:.2} s voiced", m.rms(), m.seconds());
    assert!((f - freq).abs() < freq * 0.1, "{who} heard {f:.0} Hz, want {freq} Hz ({m:?})");
    assert!(m.rms() > 0.1, "{who} heard too little energy ({m:?})");
}

fn assert_event_order(p: &Peer) {
    let pos = |f: &dyn Fn(&PcEvent) -> bool| p.events.iter().position(f);
    let gathering =
        pos(&|e| matches!(e, PcEvent::IceGatheringStateChange(RtcIceGatheringState::Gathering))).unwrap();
    let first_cand = pos(&|e| matches!(e, PcEvent::IceCandidate(Some(_)))).unwrap();
    assert!(gathering < first_cand, "gathering must precede candidates: {:?}", p.events);
    if let Some(complete) =
        pos(&|e| matches!(e, PcEvent::IceGatheringStateChange(RtcIceGatheringState::Complete)))
    {
        assert_eq!(p.events.get(complete + 1), Some(&PcEvent::IceCandidate(None)), "{:?}", p.events);
    }
    let connected =
        pos(&|e| matches!(e, PcEvent::ConnectionStateChange(RtcPeerConnectionState::Connected))).unwrap();
    let ice_connected = pos(&|e| {
        matches!(
            e,
            PcEvent::IceConnectionStateChange(
                RtcIceConnectionState::Connected | RtcIceConnectionState::Completed
            )
        )
    })
    .unwrap();
    assert!(ice_connected < connected, "{:?}", p.events);
    let nn = p.events.iter().filter(|e| matches!(e, PcEvent::NegotiationNeeded)).count();
    assert!(nn <= 1, "negotiationneeded fired {nn} times: {:?}", p.events);
    // Deduplicated: no event repeats its predecessor of the same kind.
    for w in p.events.windows(2) {
        assert!(w[0] != w[1] || matches!(w[0], PcEvent::NegotiationNeeded), "duplicate event {:?}", w[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_opus_both_ways_with_stats_and_sink_swap() {
    prewarm().unwrap();
    let (mut a, mut b, meter_a, meter_b) = call(Codec::DEFAULT_ORDER.to_vec(), "opus/48000/2").await;
    assert_tone(&meter_a.lock().unwrap(), 880.0, "A");
    assert_tone(&meter_b.lock().unwrap(), 440.0, "B");
    let offer = a.pc.state().local_description.unwrap().sdp;
    assert!(offer.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8"), "offer codec order:\n{offer}");
    assert!(offer.contains("useinbandfec=1"), "offer lacks in-band FEC:\n{offer}");
    assert_event_order(&a);
    assert_event_order(&b);
    assert_eq!(a.events.first(), Some(&PcEvent::NegotiationNeeded), "addTrack must fire negotiationneeded");
    assert!(!b.events.contains(&PcEvent::NegotiationNeeded), "the answerer has nothing to renegotiate");

    // setSinkId: swap A's playout to a new sink mid-call; it must receive the tone.
    let (sink2, meter2) = metering_sink();
    a.pc.set_playout(&remote_track_of(&a).id, Some(sink2)).unwrap();
    let m2 = meter2.clone();
    assert!(
        pump(&mut a, &mut b, Duration::from_secs(10), || m2.lock().unwrap().seconds() > 0.5).await,
        "swapped sink got no audio"
    );
    assert_tone(&meter2.lock().unwrap(), 880.0, "A after swap");

    // Disabled track sends silence: B's meter stops growing while A's track is disabled.
    a.pc.set_track_enabled("trackA", false).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = meter_b.lock().unwrap().voiced_samples;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = meter_b.lock().unwrap().voiced_samples;
    assert!(after - before < 48000 / 10, "disabled track still audible ({} samples)", after - before);
    a.pc.set_track_enabled("trackA", true).unwrap();

    let stats = a.pc.get_stats().await.unwrap();
    let of_type = |t: &str| stats.iter().filter(|s| s["type"] == t).cloned().collect::<Vec<_>>();
    let inbound = of_type("inbound-rtp");
    let outbound = of_type("outbound-rtp");
    assert!(!inbound.is_empty() && !outbound.is_empty(), "stats: {stats:#?}");
    assert!(inbound[0]["packetsReceived"].as_u64().unwrap_or(0) > 10, "inbound: {:#?}", inbound[0]);
    assert!(outbound[0]["packetsSent"].as_u64().unwrap_or(0) > 10, "outbound: {:#?}", outbound[0]);
    assert!(!of_type("candidate-pair").is_empty(), "no candidate-pair stats: {stats:#?}");
    assert!(!of_type("transport").is_empty(), "no transport stats: {stats:#?}");

    // removeTrack: B stops hearing A (no renegotiation: webrtcbin 1.22 cannot change
    // directions); addTrack again reuses the sender and B hears the new tone at once.
    let sender = a.pc.state().transceivers[0].sender.id.clone();
    a.pc.remove_track(&sender).unwrap();
    assert_eq!(a.pc.state().transceivers[0].sender.track, None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = meter_b.lock().unwrap().voiced_samples;
    pump(&mut a, &mut b, Duration::from_millis(700), || false).await;
    let after = meter_b.lock().unwrap().voiced_samples;
    assert!(after - before < 48000 / 10, "removed track still audible ({} samples)", after - before);
    let (sink3, meter3) = metering_sink();
    b.pc.set_playout(&b.pc.state().transceivers[0].receiver.track.id, Some(sink3)).unwrap();
    let t = a.pc.add_track("trackA2", tone(660.0), vec![]).unwrap();
    assert_eq!(t.sender.id, sender, "addTrack reuses the emptied sender");
    let m3 = meter3.clone();
    assert!(
        pump(&mut a, &mut b, Duration::from_secs(5), || m3.lock().unwrap().seconds() > 0.5).await,
        "re-added track not heard"
    );
    assert_tone(&meter3.lock().unwrap(), 660.0, "B after re-add");
    assert!(!a.events.iter().skip(1).any(|e| *e == PcEvent::NegotiationNeeded), "{:?}", a.events);

    a.pc.close();
    a.pc.close();
    assert_eq!(a.pc.state().signaling_state, RtcSignalingState::Closed);
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_g722_both_ways() {
    let (a, b, ma, mb) = call(vec![Codec::G722], "G722/8000").await;
    assert_tone(&ma.lock().unwrap(), 880.0, "A");
    assert_tone(&mb.lock().unwrap(), 440.0, "B");
    a.pc.close();
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_pcmu_both_ways() {
    let (a, b, ma, mb) = call(vec![Codec::Pcmu], "PCMU/8000").await;
    assert_tone(&ma.lock().unwrap(), 880.0, "A");
    assert_tone(&mb.lock().unwrap(), 440.0, "B");
    a.pc.close();
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_pcma_both_ways() {
    let (a, b, ma, mb) = call(vec![Codec::Pcma], "PCMA/8000").await;
    assert_tone(&ma.lock().unwrap(), 880.0, "A");
    assert_tone(&mb.lock().unwrap(), 440.0, "B");
    a.pc.close();
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_bad_sdp_is_rejected() {
    let p = peer("bad-sdp", Codec::DEFAULT_ORDER.to_vec());
    let garbage = RtcSessionDescriptionInit { sdp_type: RtcSdpType::Offer, sdp: "hello world".into() };
    let e = p.pc.set_remote_description(garbage).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidSdp, "{e}");
    // Well-formed SDP that webrtcbin refuses (no ICE credentials, no DTLS fingerprint).
    let refused = RtcSessionDescriptionInit {
        sdp_type: RtcSdpType::Offer,
        sdp: "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\n".into(),
    };
    let e = p.pc.set_remote_description(refused).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidSdp, "{e}");
    assert!(!e.message.is_empty());
    // The connection is still usable afterwards.
    assert_eq!(p.pc.state().signaling_state, RtcSignalingState::Stable);
    p.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    // A malformed candidate after a valid offer is an OperationError.
    let q = peer("bad-cand", Codec::DEFAULT_ORDER.to_vec());
    q.pc.add_track("t", tone(440.0), vec![]).unwrap();
    let offer = q.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    p.pc.set_remote_description(offer).await.unwrap();
    let bad = RtcIceCandidateInit {
        candidate: "candidate:nonsense".into(),
        sdp_mid: None,
        sdp_m_line_index: Some(0),
        username_fragment: None,
    };
    assert_eq!(p.pc.add_ice_candidate(Some(bad)).await.unwrap_err().code, ErrorCode::OperationError);
    let no_index = RtcIceCandidateInit {
        candidate: "candidate:1 1 UDP 1 127.0.0.1 9 typ host".into(),
        sdp_mid: None,
        sdp_m_line_index: None,
        username_fragment: None,
    };
    assert_eq!(p.pc.add_ice_candidate(Some(no_index)).await.unwrap_err().code, ErrorCode::InvalidParams);
    p.pc.close();
    q.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_wrong_state_is_invalid_state() -> EngineResult<()> {
    let p = peer("wrong-state", Codec::DEFAULT_ORDER.to_vec());
    assert_eq!(p.pc.create_answer().await.unwrap_err().code, ErrorCode::InvalidState);
    let cand = RtcIceCandidateInit {
        candidate: "candidate:1 1 UDP 1 127.0.0.1 9 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
        username_fragment: None,
    };
    assert_eq!(p.pc.add_ice_candidate(Some(cand)).await.unwrap_err().code, ErrorCode::InvalidState);
    p.pc.add_transceiver(
        TransceiverKindOrTrack::Kind("audio".into()),
        RtcRtpTransceiverDirection::Recvonly,
        vec![],
    )?;
    let offer = p.pc.create_offer(&RtcOfferOptions::default()).await?;
    // An offer is not an answer: applying it as a remote answer in stable is InvalidState.
    let as_answer = RtcSessionDescriptionInit { sdp_type: RtcSdpType::Answer, sdp: offer.sdp.clone() };
    assert_eq!(p.pc.set_remote_description(as_answer).await.unwrap_err().code, ErrorCode::InvalidState);
    p.pc.set_local_description(Some(offer)).await?;
    assert_eq!(p.pc.create_answer().await.unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(
        p.pc.add_transceiver(
            TransceiverKindOrTrack::Kind("video".into()),
            RtcRtpTransceiverDirection::Sendrecv,
            vec![]
        )
        .unwrap_err()
        .code,
        ErrorCode::InvalidParams
    );
    assert_eq!(p.pc.remove_track("nope").unwrap_err().code, ErrorCode::NotFound);
    p.pc.close();
    assert_eq!(
        p.pc.create_offer(&RtcOfferOptions::default()).await.unwrap_err().code,
        ErrorCode::InvalidState
    );
    assert_eq!(p.pc.add_track("x", tone(440.0), vec![]).unwrap_err().code, ErrorCode::InvalidState);
    let st = p.pc.state();
    assert_eq!(st.signaling_state, RtcSignalingState::Closed);
    assert_eq!(st.connection_state, RtcPeerConnectionState::Closed);
    Ok(())
}

/// Measurement, not a check: `WEBRTC_PREWARM=0|1 cargo test -p vdimediad webrtc_prewarm_timing
/// -- --ignored --nocapture` prints the time of the first createOffer in a fresh process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn webrtc_prewarm_timing() {
    let t0 = Instant::now();
    if std::env::var("WEBRTC_PREWARM").as_deref() == Ok("1") {
        prewarm().unwrap();
    }
    let t1 = Instant::now();
    let a = peer("timing", vec![Codec::Opus]);
    a.pc.add_track("t", tone(440.0), vec![]).unwrap();
    a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    eprintln!(
        "prewarm {} ms, pc.new + addTrack + first createOffer {} ms",
        (t1 - t0).as_millis(),
        t1.elapsed().as_millis()
    );
    let t2 = Instant::now();
    let b = peer("timing2", vec![Codec::Opus]);
    b.pc.add_track("t", tone(440.0), vec![]).unwrap();
    b.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    eprintln!("second pc.new + addTrack + createOffer {} ms", t2.elapsed().as_millis());
}

/// A coturn server on 127.0.0.1 for one test; killed (by its pid) on drop.
struct Turn {
    child: std::process::Child,
    port: u16,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_turn(user: &str, pass: &str) -> Option<Turn> {
    // A free port: bind, read, release (racy only against other tests doing the same).
    let port = std::net::UdpSocket::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = std::process::Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--allow-loopback-peers",
            "--lt-cred-mech",
            "--realm=vdimedia.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--log-file=stdout",
            "--simple-log",
        ])
        .arg(format!("--listening-port={port}"))
        .arg(format!("--user={user}:{pass}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some(Turn { child, port })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_relay_only_over_turn() {
    // Credentials with URL-reserved characters exercise the percent-encoding.
    let (user, pass) = ("agent@vdi", "p:ss/w%rd");
    let Some(turn) = start_turn(user, pass) else {
        eprintln!("SKIP: turnserver (coturn) is not installed");
        return;
    };
    let config: RtcConfiguration = serde_json::from_value(serde_json::json!({
        "iceServers": [{"urls": [format!("turn:127.0.0.1:{}?transport=udp", turn.port)],
                        "username": user, "credential": pass}],
        "iceTransportPolicy": "relay",
    }))
    .unwrap();
    let (a, b, ma, mb) = call_with(vec![Codec::Opus], "opus/48000/2", &config).await;
    assert_tone(&ma.lock().unwrap(), 880.0, "A");
    assert_tone(&mb.lock().unwrap(), 440.0, "B");
    for ev in a.events.iter().chain(b.events.iter()) {
        if let PcEvent::IceCandidate(Some(c)) = ev {
            assert!(c.candidate.contains("typ relay"), "relay policy leaked a candidate: {}", c.candidate);
        }
    }
    let stats = a.pc.get_stats().await.unwrap();
    let local: Vec<_> = stats.iter().filter(|s| s["type"] == "local-candidate").collect();
    assert!(local.iter().all(|c| c["candidateType"] == "relay"), "local candidates: {local:#?}");
    a.pc.close();
    b.pc.close();
}
