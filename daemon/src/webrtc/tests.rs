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
#[derive(Default, Debug, Clone)]
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
        // Never unwrap here: a panic on this streaming thread aborts the whole test binary.
        let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
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
    // No UPnP IGD discovery (ice::disable_upnp): libnice's SSDP client would have joined the
    // SSDP multicast group 239.255.255.250 on the interfaces it gathered on. Compared with
    // before the call, as another process on the host may be a member already.
    let ssdp = || {
        std::fs::read_to_string("/proc/net/igmp")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("FAFFFFEF"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let ssdp_before = ssdp();
    let (mut a, mut b, meter_a, meter_b) = call(Codec::DEFAULT_ORDER.to_vec(), "opus/48000/2").await;
    assert_eq!(ssdp(), ssdp_before, "an ICE agent joined the SSDP group 239.255.255.250 (UPnP on)");
    // Snapshots: a failing assertion must not poison the meters the probes still write.
    let (snap_a, snap_b) = (meter_a.lock().unwrap().clone(), meter_b.lock().unwrap().clone());
    assert_tone(&snap_a, 880.0, "A");
    assert_tone(&snap_b, 440.0, "B");
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
    let snap = meter2.lock().unwrap().clone();
    assert_tone(&snap, 880.0, "A after swap");

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

    // removeTrack: B stops hearing A at once; the direction becomes recvonly and
    // negotiationneeded fires (WebRTC 1.0 §5.1). addTrack again before renegotiating reuses
    // the sender (the m-line still sends) and B hears the new tone at once.
    let sender = a.pc.state().transceivers[0].sender.id.clone();
    a.pc.remove_track(&sender).unwrap();
    assert_eq!(a.pc.state().transceivers[0].sender.track, None);
    assert_eq!(a.pc.state().transceivers[0].direction, RtcRtpTransceiverDirection::Recvonly);
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
    assert_tone(&meter3.lock().unwrap().clone(), 660.0, "B after re-add");
    assert_eq!(
        a.events.iter().skip(1).filter(|e| **e == PcEvent::NegotiationNeeded).count(),
        1,
        "removeTrack fires negotiationneeded once: {:?}",
        a.events
    );
    assert_eq!(a.pc.state().transceivers[0].direction, RtcRtpTransceiverDirection::Sendrecv);

    a.pc.close();
    a.pc.close();
    assert_eq!(a.pc.state().signaling_state, RtcSignalingState::Closed);
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_g722_both_ways() {
    let (a, b, ma, mb) = call(vec![Codec::G722], "G722/8000").await;
    assert_tone(&ma.lock().unwrap().clone(), 880.0, "A");
    assert_tone(&mb.lock().unwrap().clone(), 440.0, "B");
    a.pc.close();
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_pcmu_both_ways() {
    let (a, b, ma, mb) = call(vec![Codec::Pcmu], "PCMU/8000").await;
    assert_tone(&ma.lock().unwrap().clone(), 880.0, "A");
    assert_tone(&mb.lock().unwrap().clone(), 440.0, "B");
    a.pc.close();
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_call_pcma_both_ways() {
    let (a, b, ma, mb) = call(vec![Codec::Pcma], "PCMA/8000").await;
    assert_tone(&ma.lock().unwrap().clone(), 880.0, "A");
    assert_tone(&mb.lock().unwrap().clone(), 440.0, "B");
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
    assert_tone(&ma.lock().unwrap().clone(), 880.0, "A");
    assert_tone(&mb.lock().unwrap().clone(), 440.0, "B");
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

// ---- transceivers and renegotiation (issue 6, item 3) ----

/// One offer/answer exchange, `from` offering, with the descriptions each created applied as
/// they are: (offer, answer) texts.
async fn negotiate(from: &Peer, to: &Peer) -> (String, String) {
    let offer = from.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    from.pc.set_local_description(Some(offer.clone())).await.unwrap();
    to.pc.set_remote_description(offer.clone()).await.unwrap();
    let answer = to.pc.create_answer().await.unwrap();
    to.pc.set_local_description(Some(answer.clone())).await.unwrap();
    from.pc.set_remote_description(answer.clone()).await.unwrap();
    (offer.sdp, answer.sdp)
}

/// The first `a=setup` value of an SDP.
fn setup_of(sdp: &str) -> String {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=setup:")).unwrap_or("").to_string()
}

/// The first direction attribute of an SDP (sendrecv when none).
fn direction_of(sdp: &str) -> String {
    sdp.lines()
        .map(str::trim)
        .find(|l| matches!(*l, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"))
        .map_or("sendrecv".into(), |l| l[2..].to_string())
}

/// A member of the first stats entry of `ty`.
async fn stat(p: &Peer, ty: &str, member: &str) -> u64 {
    let report = p.pc.get_stats().await.unwrap();
    report.iter().find(|s| s["type"] == ty).and_then(|s| s[member].as_u64()).unwrap_or(0)
}

/// RTP packets `to` received from `from` while pumping for `d`.
async fn received_during(to: &mut Peer, from: &mut Peer, d: Duration) -> u64 {
    let before = stat(to, "inbound-rtp", "packetsReceived").await;
    pump(to, from, d, || false).await;
    stat(to, "inbound-rtp", "packetsReceived").await - before
}

fn nn_count(p: &Peer) -> usize {
    p.events.iter().filter(|e| matches!(e, PcEvent::NegotiationNeeded)).count()
}

/// Re-offers from the far end keep the DTLS role (RFC 8842 §5.5); hold and resume by
/// direction change (RFC 3264 §8.4) stop and restart the RTP of the held direction;
/// replaceTrack switches the tone without renegotiation and without an RTP timestamp gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_reoffer_hold_resume_and_replace_track() {
    let (mut a, mut b, _meter_a, _meter_b) = call(vec![Codec::Opus], "opus/48000/2").await;
    let tid = a.pc.state().transceivers[0].id.clone();
    let sender = a.pc.state().transceivers[0].sender.id.clone();
    // A offered first, B answered active: A is the DTLS server.
    let b_answer = b.pc.state().local_description.unwrap().sdp;
    assert_eq!(setup_of(&b_answer), "active");

    // 1. The far end re-offers: A's answer must stay passive (webrtcbin writes active).
    let (offer, answer) = negotiate(&b, &a).await;
    assert_ne!(setup_of(&offer), "passive", "B offers to stay the client (actpass/active)");
    assert_eq!(setup_of(&answer), "passive", "answer changed the DTLS role:\n{answer}");
    assert_eq!(direction_of(&answer), "sendrecv");
    assert!(
        received_during(&mut a, &mut b, Duration::from_millis(800)).await > 20,
        "A hears B after re-offer"
    );
    assert!(
        received_during(&mut b, &mut a, Duration::from_millis(800)).await > 20,
        "B hears A after re-offer"
    );

    // 2. Local hold: A sendonly → negotiationneeded, offer sendonly, answer recvonly.
    let before = nn_count(&a);
    let info = a.pc.set_direction(&tid, RtcRtpTransceiverDirection::Sendonly).unwrap();
    assert_eq!(info.direction, RtcRtpTransceiverDirection::Sendonly);
    assert_eq!(
        info.current_direction,
        Some(RtcRtpTransceiverDirection::Sendrecv),
        "unchanged until negotiated"
    );
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    assert_eq!(nn_count(&a), before + 1, "direction setter fires negotiationneeded: {:?}", a.events);
    let (offer, answer) = negotiate(&a, &b).await;
    assert_eq!(direction_of(&offer), "sendonly", "{offer}");
    assert_eq!(direction_of(&answer), "recvonly", "{answer}");
    assert_eq!(a.pc.state().transceivers[0].current_direction, Some(RtcRtpTransceiverDirection::Sendonly));
    assert_eq!(b.pc.state().transceivers[0].current_direction, Some(RtcRtpTransceiverDirection::Recvonly));
    assert_eq!(direction_of(&a.pc.state().local_description.unwrap().sdp), "sendonly");
    pump(&mut a, &mut b, Duration::from_millis(300), || false).await; // in flight
    let criticals = SendPathCriticals::null_unrefs();
    let held = received_during(&mut a, &mut b, Duration::from_secs(1)).await;
    assert!(held <= 1, "B sent {held} RTP packets while A holds");
    // The hold gate drops B's packets silently (it once logged a CRITICAL per packet held).
    let c = criticals.seen();
    assert!(c.is_empty(), "{} GStreamer CRITICALs while held, e.g. {:?}", c.len(), c.first());
    drop(criticals);
    assert!(received_during(&mut b, &mut a, Duration::from_secs(1)).await > 30, "B still hears A");

    // 3. Inactive, then resume by the far end's offer. A's RTP sequence numbers must stay
    // continuous across the pause (the gate is before the payloader): a gap of one number per
    // 20 ms held made the far end's jitter buffer wait out lost-packet timers for seconds.
    let seqs = Arc::new(Mutex::new(Vec::<u16>::new()));
    let seqs2 = seqs.clone();
    let sender0 = a.pc.state().transceivers[0].sender.id.clone();
    // On webrtcbin's sink pad: what really goes out, after any gating.
    let into_webrtcbin = a.pc.payloader_src(&sender0).and_then(|p| p.peer()).expect("send branch linked");
    into_webrtcbin.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer()
            && let Ok(map) = buf.map_readable()
            && map.len() >= 4
        {
            seqs2.lock().unwrap_or_else(|e| e.into_inner()).push(u16::from_be_bytes([map[2], map[3]]));
        }
        gst::PadProbeReturn::Ok
    });
    a.pc.set_direction(&tid, RtcRtpTransceiverDirection::Inactive).unwrap();
    let (offer, answer) = negotiate(&a, &b).await;
    assert_eq!((direction_of(&offer), direction_of(&answer)), ("inactive".into(), "inactive".into()));
    pump(&mut a, &mut b, Duration::from_millis(300), || false).await;
    assert!(received_during(&mut b, &mut a, Duration::from_secs(1)).await <= 1, "A sends while inactive");
    a.pc.set_direction(&tid, RtcRtpTransceiverDirection::Sendrecv).unwrap();
    let (offer, answer) = negotiate(&b, &a).await;
    assert_eq!((direction_of(&offer), direction_of(&answer)), ("sendrecv".into(), "sendrecv".into()));
    assert_eq!(setup_of(&answer), "passive");
    assert_eq!(a.pc.state().transceivers[0].current_direction, Some(RtcRtpTransceiverDirection::Sendrecv));
    assert!(received_during(&mut a, &mut b, Duration::from_secs(1)).await > 30, "A hears B after resume");
    assert!(received_during(&mut b, &mut a, Duration::from_secs(1)).await > 30, "B hears A after resume");
    assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Connected);
    {
        let seqs = seqs.lock().unwrap_or_else(|e| e.into_inner());
        assert!(seqs.len() > 30, "A's payloader sent {} packets around the hold", seqs.len());
        let jumps: Vec<(u16, u16)> =
            seqs.windows(2).filter(|w| w[1] != w[0].wrapping_add(1)).map(|w| (w[0], w[1])).collect();
        assert!(jumps.is_empty(), "RTP sequence numbers jumped across the hold: {jumps:?}");
    }

    // 4. replaceTrack: B hears the new tone, the RTP clock has no gap longer than a packet.
    let pay = a.pc.payloader_src(&sender).expect("send branch");
    let stamps = Arc::new(Mutex::new(Vec::<u32>::new()));
    let s2 = stamps.clone();
    pay.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer()
            && let Ok(map) = buf.map_readable()
            && map.len() >= 8
        {
            s2.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(u32::from_be_bytes([map[4], map[5], map[6], map[7]]));
        }
        gst::PadProbeReturn::Ok
    });
    pump(&mut a, &mut b, Duration::from_millis(300), || false).await;
    let nn_before = nn_count(&a);
    a.pc.replace_track(&sender, Some(("trackA3".into(), tone(660.0)))).unwrap();
    assert_eq!(a.pc.state().transceivers[0].sender.track.as_deref(), Some("trackA3"));
    let (sink, meter) = metering_sink();
    b.pc.set_playout(&b.pc.state().transceivers[0].receiver.track.id, Some(sink)).unwrap();
    let m = meter.clone();
    assert!(pump(&mut a, &mut b, Duration::from_secs(5), || m.lock().unwrap().seconds() > 0.6).await);
    assert_tone(&meter.lock().unwrap().clone(), 660.0, "B after replaceTrack");
    let ts = stamps.lock().unwrap().clone();
    assert!(ts.len() > 20, "{} packets", ts.len());
    let max_step = ts.windows(2).map(|w| w[1].wrapping_sub(w[0])).max().unwrap();
    assert!(max_step <= 2 * 960, "RTP timestamp gap of {max_step} units (> one 20 ms packet missing)");
    // replaceTrack(null): nothing is sent, no renegotiation.
    a.pc.replace_track(&sender, None).unwrap();
    pump(&mut a, &mut b, Duration::from_millis(300), || false).await;
    assert!(
        received_during(&mut b, &mut a, Duration::from_secs(1)).await <= 1,
        "sent after replaceTrack(null)"
    );
    assert_eq!(nn_count(&a), nn_before, "replaceTrack must not fire negotiationneeded");
    assert_eq!(
        a.pc.set_direction(&tid, RtcRtpTransceiverDirection::Stopped).unwrap_err().code,
        ErrorCode::InvalidParams
    );
    a.pc.close();
    b.pc.close();
}

/// mids from the descriptions (JSEP §5.2.1/§5.10), addIceCandidate by sdpMid alone, and
/// negotiationneeded when a transceiver added in have-local-offer is left over at stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_mid_candidate_by_mid_and_negotiationneeded_after_answer() {
    let mut a = peer("mid-a", vec![Codec::Opus]);
    let mut b = peer("mid-b", vec![Codec::Opus]);
    a.pc.add_transceiver(
        TransceiverKindOrTrack::Kind("audio".into()),
        RtcRtpTransceiverDirection::Recvonly,
        vec![],
    )
    .unwrap();
    a.pc.add_transceiver(
        TransceiverKindOrTrack::Kind("audio".into()),
        RtcRtpTransceiverDirection::Sendrecv,
        vec![],
    )
    .unwrap();
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    let msg = sdp::parse(&offer.sdp).unwrap();
    let dirs: Vec<_> = msg.medias().map(sdp::media_direction).collect();
    assert_eq!(
        dirs,
        vec![RtcRtpTransceiverDirection::Recvonly, RtcRtpTransceiverDirection::Sendrecv],
        "{}",
        offer.sdp
    );
    let mids: Vec<_> = msg.medias().map(sdp::media_mid).collect();
    assert!(a.pc.state().transceivers.iter().all(|t| t.mid.is_none()), "no mid before sLD");
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    let got: Vec<_> = a.pc.state().transceivers.iter().map(|t| t.mid.clone()).collect();
    assert_eq!(got, mids, "mid after setLocalDescription(offer)");

    b.pc.set_remote_description(offer).await.unwrap();
    pump(&mut a, &mut b, Duration::from_millis(50), || false).await;
    let track_mids: Vec<_> = b
        .events
        .iter()
        .filter_map(|e| match e {
            PcEvent::Track { transceiver, .. } => Some(transceiver.mid.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(track_mids, vec![mids[1].clone()], "track event carries the offer's mid");
    let cand = |mid: &str| RtcIceCandidateInit {
        candidate: "candidate:1 1 UDP 2122252543 127.0.0.1 9 typ host".into(),
        sdp_mid: Some(mid.into()),
        sdp_m_line_index: None,
        username_fragment: None,
    };
    b.pc.add_ice_candidate(Some(cand(mids[1].as_deref().unwrap()))).await.expect("candidate by sdpMid");
    assert_eq!(b.pc.add_ice_candidate(Some(cand("nope"))).await.unwrap_err().code, ErrorCode::OperationError);
    let answer = b.pc.create_answer().await.unwrap();
    b.pc.set_local_description(Some(answer.clone())).await.unwrap();
    a.pc.set_remote_description(answer).await.unwrap();
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    let base = nn_count(&a);

    // Re-offer, then a transceiver added in have-local-offer: no event until stable again.
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    a.pc.add_transceiver(
        TransceiverKindOrTrack::Kind("audio".into()),
        RtcRtpTransceiverDirection::Sendrecv,
        vec![],
    )
    .unwrap();
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    assert_eq!(nn_count(&a), base, "no negotiationneeded in have-local-offer");
    b.pc.set_remote_description(offer).await.unwrap();
    let answer = b.pc.create_answer().await.unwrap();
    b.pc.set_local_description(Some(answer.clone())).await.unwrap();
    a.pc.set_remote_description(answer).await.unwrap();
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    assert_eq!(nn_count(&a), base + 1, "negotiationneeded on return to stable: {:?}", a.events);
    a.pc.close();
    b.pc.close();
}

/// setCodecPreferences (WebRTC 1.0 §5.4): the offer lists only the chosen codecs (no
/// telephone-event unless chosen); an unknown codec is refused; `[]` restores the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_set_codec_preferences() {
    let p = peer("codec-prefs", Codec::DEFAULT_ORDER.to_vec());
    let t =
        p.pc.add_transceiver(
            TransceiverKindOrTrack::Kind("audio".into()),
            RtcRtpTransceiverDirection::Sendrecv,
            vec![],
        )
        .unwrap();
    let codecs_of = |sdp: &str| {
        let msg = sdp::parse(sdp).unwrap();
        let m = msg.media(0).unwrap();
        (sdp::media_codecs(m), dtmf::media_telephone_events(m).len())
    };
    p.pc.set_codec_preferences(&t.id, &[("PCMU".into(), 8000)]).unwrap();
    let offer = p.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    assert_eq!(codecs_of(&offer.sdp), (vec![(0, Codec::Pcmu)], 0), "{}", offer.sdp);
    p.pc.set_codec_preferences(&t.id, &[("G722".into(), 8000), ("telephone-event".into(), 8000)]).unwrap();
    let offer = p.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    assert_eq!(codecs_of(&offer.sdp), (vec![(9, Codec::G722)], 1), "{}", offer.sdp);
    let e = p.pc.set_codec_preferences(&t.id, &[("bogus".into(), 1234)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert_eq!(p.pc.set_codec_preferences("nope", &[]).unwrap_err().code, ErrorCode::NotFound);
    p.pc.set_codec_preferences(&t.id, &[]).unwrap();
    let offer = p.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    assert_eq!(codecs_of(&offer.sdp).0.first(), Some(&(111, Codec::Opus)), "{}", offer.sdp);
    p.pc.close();
}

/// `packetsReceived` of each `inbound-rtp` entry, by SSRC (webrtcbin 1.22 does not always
/// say which mid a bundled stream belongs to).
async fn inbound_by_ssrc(p: &Peer) -> std::collections::HashMap<u64, u64> {
    let report = p.pc.get_stats().await.unwrap();
    report
        .iter()
        .filter(|s| s["type"] == "inbound-rtp")
        .filter_map(|s| Some((s["ssrc"].as_u64()?, s["packetsReceived"].as_u64().unwrap_or(0))))
        .collect()
}

/// Per SSRC, how many RTP packets `to` received from `from` while pumping for `d`, largest first.
async fn flows_during(to: &mut Peer, from: &mut Peer, d: Duration) -> Vec<u64> {
    let before = inbound_by_ssrc(to).await;
    pump(to, from, d, || false).await;
    let after = inbound_by_ssrc(to).await;
    let mut out: Vec<u64> =
        after.iter().map(|(ssrc, n)| n - before.get(ssrc).copied().unwrap_or(0)).collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

/// Whether m-line `idx` of an SDP is rejected: port 0 without `a=bundle-only` (RFC 8843 §6).
fn rejected(sdp: &str, idx: usize) -> bool {
    let Some(section) = sdp.split("\r\nm=").nth(idx + 1) else { panic!("no m-line {idx}:\n{sdp}") };
    section.split_whitespace().nth(1) == Some("0") && !section.contains("a=bundle-only")
}

/// `RTCRtpTransceiver.stop()` (WebRTC 1.0 §5.4, JSEP §5.2.2/§5.3.1): the stopped transceiver's
/// m-line is rejected (port 0, out of BUNDLE) in the next offer and in the far end's answer
/// (its transceiver stopped by the remote offer), `currentDirection` is "stopped" on both
/// sides, no RTP flows on it while the other m-line keeps flowing, and a later re-offer from
/// the far end keeps it rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_transceiver_stop_rejects_the_mline() {
    use RtcRtpTransceiverDirection as D;
    let (mut a, mut b, _ma, _mb) = call(vec![Codec::Opus], "opus/48000/2").await;
    let t2 = a.pc.add_track("trackA2", tone(660.0), vec!["streamA".into()]).unwrap();
    let (offer, answer) = negotiate(&a, &b).await;
    assert!(!rejected(&offer, 1) && !rejected(&answer, 1), "{offer}\n{answer}");
    let mid1 = a.pc.state().transceivers[1].mid.clone().expect("second m-line has a mid");
    let mid0 = a.pc.state().transceivers[0].mid.clone().expect("first m-line has a mid");
    assert_eq!(b.pc.state().transceivers.len(), 2);
    pump(&mut a, &mut b, Duration::from_millis(500), || false).await;
    let flows = flows_during(&mut b, &mut a, Duration::from_secs(1)).await;
    assert!(flows.len() == 2 && flows[1] > 20, "B receives both m-lines before the stop: {flows:?}");

    let nn = nn_count(&a);
    let info = a.pc.stop_transceiver(&t2.id).unwrap();
    assert_eq!(info.direction, D::Stopped);
    assert_eq!(info.current_direction, Some(D::Sendonly), "currentDirection changes only when negotiated");
    assert_eq!(a.pc.stop_transceiver(&t2.id).unwrap().direction, D::Stopped, "stop() is idempotent");
    assert_eq!(a.pc.set_direction(&t2.id, D::Sendrecv).unwrap_err().code, ErrorCode::InvalidState);
    assert_eq!(
        a.pc.replace_track(&t2.sender.id, Some(("trackA3".into(), tone(550.0)))).unwrap_err().code,
        ErrorCode::InvalidState
    );
    assert_eq!(a.pc.stop_transceiver("nope").unwrap_err().code, ErrorCode::NotFound);
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    assert_eq!(nn_count(&a), nn + 1, "stop() fires negotiationneeded: {:?}", a.events);

    let (offer, answer) = negotiate(&a, &b).await;
    assert!(rejected(&offer, 1), "stopped m-line rejected in the offer:\n{offer}");
    assert!(rejected(&answer, 1), "stopped m-line rejected in the answer:\n{answer}");
    assert!(!rejected(&offer, 0) && !rejected(&answer, 0), "{offer}\n{answer}");
    let group = |sdp: &str| sdp.lines().find(|l| l.starts_with("a=group:BUNDLE")).unwrap_or("").to_string();
    assert!(!group(&offer).split_whitespace().any(|m| m == mid1), "{offer}");
    assert!(group(&offer).split_whitespace().any(|m| m == mid0), "{offer}");
    let sa = a.pc.state();
    let sb = b.pc.state();
    assert_eq!(
        (sa.transceivers[1].direction, sa.transceivers[1].current_direction),
        (D::Stopped, Some(D::Stopped))
    );
    assert_eq!(
        (sb.transceivers[1].direction, sb.transceivers[1].current_direction),
        (D::Stopped, Some(D::Stopped))
    );
    assert_eq!(sa.transceivers[0].current_direction, Some(D::Sendrecv));
    assert_eq!(sa.signaling_state, RtcSignalingState::Stable);

    pump(&mut a, &mut b, Duration::from_millis(300), || false).await; // in flight
    let flows = flows_during(&mut b, &mut a, Duration::from_secs(1)).await;
    assert!(flows[0] > 30, "the live m-line stopped too: {flows:?}");
    assert!(flows[1..].iter().all(|n| *n <= 1), "RTP on the stopped m-line: {flows:?}");

    // The far end re-offers: still rejected both ways, the call goes on.
    let (offer, answer) = negotiate(&b, &a).await;
    assert!(rejected(&offer, 1) && rejected(&answer, 1), "{offer}\n{answer}");
    let flows = flows_during(&mut a, &mut b, Duration::from_secs(1)).await;
    assert!(flows.first().is_some_and(|n| *n > 30), "A hears B after the re-offer: {flows:?}");
    let flows = flows_during(&mut b, &mut a, Duration::from_secs(1)).await;
    assert!(flows[0] > 30 && flows[1..].iter().all(|n| *n <= 1), "B after the re-offer: {flows:?}");
    assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Connected);
    a.pc.close();
    b.pc.close();
}

// ---- early media, rollback (issue 6, WebRTC API fidelity) ----

/// Early media (JSEP §4.1.10.1 "pranswer", the SIP 183 Session Progress case): A offers, the
/// far end B answers and sends at once, A applies B's answer as a `pranswer` first:
/// `have-remote-pranswer`, B's audio is received and played before the final answer; the final
/// answer then moves A to `stable` and the call goes on both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_remote_pranswer_plays_early_media() {
    use RtcRtpTransceiverDirection as D;
    let mut a = peer("pranswer-a", vec![Codec::Opus]);
    let mut b = peer("pranswer-b", vec![Codec::Opus]);
    a.pc.add_track("trackA", tone(440.0), vec!["streamA".into()]).unwrap();
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    b.pc.set_remote_description(offer).await.unwrap();
    b.pc.add_track("trackB", tone(880.0), vec!["streamB".into()]).unwrap();
    let answer = b.pc.create_answer().await.unwrap();
    b.pc.set_local_description(Some(answer.clone())).await.unwrap();

    let pranswer = RtcSessionDescriptionInit { sdp_type: RtcSdpType::Pranswer, sdp: answer.sdp.clone() };
    let st = a.pc.set_remote_description(pranswer).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::HaveRemotePranswer);
    assert_eq!(st.remote_description.as_ref().map(|d| d.sdp_type), Some(RtcSdpType::Pranswer));
    let (sink, meter) = metering_sink();
    a.pc.set_playout(&a.pc.state().transceivers[0].receiver.track.id, Some(sink)).unwrap();
    let m = meter.clone();
    let heard = pump(&mut a, &mut b, Duration::from_secs(10), || m.lock().unwrap().seconds() > 0.5).await;
    let early = stat(&a, "inbound-rtp", "packetsReceived").await;
    assert!(
        heard,
        "no early media before the final answer: {:?}, {early} packets, events {:?}",
        meter.lock().unwrap(),
        a.events
    );
    assert_tone(&meter.lock().unwrap().clone(), 880.0, "A (early media)");
    assert!(early > 20, "inbound-rtp packetsReceived {early} before the final answer");
    assert_eq!(a.pc.state().signaling_state, RtcSignalingState::HaveRemotePranswer);
    assert!(
        a.events
            .iter()
            .any(|e| matches!(e, PcEvent::SignalingStateChange(RtcSignalingState::HaveRemotePranswer))),
        "{:?}",
        a.events
    );

    // A second pranswer (an updated 183) that only changes the direction: the model follows;
    // one that changes the transport cannot be followed by webrtcbin: invalid_sdp, unchanged.
    let sendonly = answer.sdp.replace("a=sendrecv", "a=sendonly");
    let st = a
        .pc
        .set_remote_description(RtcSessionDescriptionInit { sdp_type: RtcSdpType::Pranswer, sdp: sendonly })
        .await
        .unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::HaveRemotePranswer);
    assert_eq!(st.transceivers[0].current_direction, Some(D::Recvonly), "the far end only sends");
    let ufrag = sdp::ufrag(&sdp::parse(&answer.sdp).unwrap(), 0).unwrap();
    let forked = answer.sdp.replace(&ufrag, "forkedUfragXYZ");
    let e =
        a.pc.set_remote_description(RtcSessionDescriptionInit { sdp_type: RtcSdpType::Answer, sdp: forked })
            .await
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidSdp, "{e:?}");
    assert_eq!(a.pc.state().signaling_state, RtcSignalingState::HaveRemotePranswer);

    let st = a.pc.set_remote_description(answer).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::Stable);
    assert_eq!(st.transceivers[0].current_direction, Some(D::Sendrecv));
    assert!(received_during(&mut a, &mut b, Duration::from_secs(1)).await > 30, "A hears B after the answer");
    assert!(received_during(&mut b, &mut a, Duration::from_secs(1)).await > 30, "B hears A after the answer");
    assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Connected);
    a.pc.close();
    b.pc.close();
}

/// Rollback of a local re-offer (JSEP §4.1.10.2; the glare case of "perfect negotiation"): the
/// page re-offers hold, rolls back (explicitly, then implicitly by applying the far end's
/// offer in have-local-offer), answers the far end's offer, and the call goes on; the hold
/// re-offered afterwards works. A first offer still cannot be rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rollback_of_a_local_reoffer() {
    use RtcRtpTransceiverDirection as D;
    let first = peer("rollback-first", vec![Codec::Opus]);
    first.pc.add_track("t", tone(440.0), vec![]).unwrap();
    first.pc.set_local_description(None).await.unwrap();
    let rb = RtcSessionDescriptionInit { sdp_type: RtcSdpType::Rollback, sdp: String::new() };
    assert_eq!(
        first.pc.set_local_description(Some(rb.clone())).await.unwrap_err().code,
        ErrorCode::OperationError
    );
    assert_eq!(first.pc.state().signaling_state, RtcSignalingState::HaveLocalOffer);
    first.pc.close();

    let (mut a, mut b, _ma, _mb) = call(vec![Codec::Opus], "opus/48000/2").await;
    assert_eq!(a.pc.set_local_description(Some(rb.clone())).await.unwrap_err().code, ErrorCode::InvalidState);
    let tid = a.pc.state().transceivers[0].id.clone();
    let stable_local = a.pc.state().local_description.unwrap();
    a.pc.set_direction(&tid, D::Sendonly).unwrap();
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    let nn = nn_count(&a);
    let st = a.pc.set_local_description(None).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::HaveLocalOffer);
    assert_eq!(direction_of(&st.pending_local_description.unwrap().sdp), "sendonly");
    let st = a.pc.set_local_description(Some(rb.clone())).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::Stable);
    assert_eq!(st.pending_local_description, None);
    assert_eq!(st.local_description.as_ref().map(|d| &d.sdp), Some(&stable_local.sdp));
    assert_eq!(st.transceivers[0].current_direction, Some(D::Sendrecv));
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    assert_eq!(nn_count(&a), nn + 1, "negotiationneeded again after the rollback: {:?}", a.events);
    let sig: Vec<_> = a
        .events
        .iter()
        .rev()
        .filter_map(|e| match e {
            PcEvent::SignalingStateChange(s) => Some(*s),
            _ => None,
        })
        .take(2)
        .collect();
    assert_eq!(sig, vec![RtcSignalingState::Stable, RtcSignalingState::HaveLocalOffer], "{:?}", a.events);
    assert!(
        received_during(&mut a, &mut b, Duration::from_secs(1)).await > 30,
        "A hears B after the rollback"
    );

    // Glare: A offers again, B's offer arrives: implicit rollback, A answers B.
    a.pc.set_local_description(None).await.unwrap();
    let (offer, answer) = negotiate(&b, &a).await;
    assert_eq!(direction_of(&offer), "sendrecv");
    assert_eq!(direction_of(&answer), "sendonly", "A's answer keeps its hold direction:\n{answer}");
    assert_eq!(a.pc.state().signaling_state, RtcSignalingState::Stable);
    assert_eq!(a.pc.state().transceivers[0].current_direction, Some(D::Sendonly));
    pump(&mut a, &mut b, Duration::from_millis(300), || false).await;
    assert!(received_during(&mut b, &mut a, Duration::from_secs(1)).await > 30, "B hears A after the glare");

    // The resume re-offered after that works as any re-offer, with A's role kept (RFC 8842
    // §5.5: a subsequent offer says actpass or the current role; A is the DTLS server).
    a.pc.set_direction(&tid, D::Sendrecv).unwrap();
    let (offer, answer) = negotiate(&a, &b).await;
    assert!(
        matches!(setup_of(&offer).as_str(), "actpass" | "passive"),
        "A's re-offer changes its DTLS role:\n{offer}"
    );
    assert_eq!((direction_of(&offer), direction_of(&answer)), ("sendrecv".into(), "sendrecv".into()));
    assert_eq!(a.pc.state().transceivers[0].current_direction, Some(D::Sendrecv));
    assert!(received_during(&mut a, &mut b, Duration::from_secs(1)).await > 30, "A hears B after resume");
    assert!(received_during(&mut b, &mut a, Duration::from_secs(1)).await > 30, "B hears A after resume");
    assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Connected);

    // WebRTC 1.0 §4.4.1.6: the far end stops sending (inactive) and resumes: `track` again,
    // for the same track.
    let tracks = |p: &Peer| {
        p.events
            .iter()
            .filter_map(|e| match e {
                PcEvent::Track { track, .. } => Some(track.id.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let before = tracks(&a);
    let tb = b.pc.state().transceivers[0].id.clone();
    b.pc.set_direction(&tb, D::Inactive).unwrap();
    negotiate(&b, &a).await;
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    assert_eq!(tracks(&a), before, "no track event for a hold");
    b.pc.set_direction(&tb, D::Sendrecv).unwrap();
    negotiate(&b, &a).await;
    pump(&mut a, &mut b, Duration::from_millis(100), || false).await;
    let after = tracks(&a);
    assert_eq!(after.len(), before.len() + 1, "track fires again on resume: {:?}", a.events);
    assert_eq!(after.last(), before.last(), "the same remote track");

    // Rollback of a remote re-offer before it is answered: B offers hold, A rolls it back (and B
    // its own offer); both are stable with the last descriptions, and the call goes on.
    let stable_remote = a.pc.state().remote_description.unwrap();
    b.pc.set_direction(&tb, D::Sendonly).unwrap();
    let offer = b.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    b.pc.set_local_description(Some(offer.clone())).await.unwrap();
    let st = a.pc.set_remote_description(offer).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::HaveRemoteOffer);
    let st = a.pc.set_remote_description(rb.clone()).await.unwrap();
    assert_eq!(st.signaling_state, RtcSignalingState::Stable);
    assert_eq!(st.remote_description.map(|d| d.sdp), Some(stable_remote.sdp));
    assert_eq!(st.transceivers[0].current_direction, Some(D::Sendrecv));
    assert_eq!(
        b.pc.set_local_description(Some(rb.clone())).await.unwrap().signaling_state,
        RtcSignalingState::Stable
    );
    let (offer, answer) = negotiate(&b, &a).await;
    assert_eq!((direction_of(&offer), direction_of(&answer)), ("sendonly".into(), "recvonly".into()));
    assert!(received_during(&mut a, &mut b, Duration::from_secs(1)).await > 30, "A hears B's hold");
    a.pc.close();
    b.pc.close();
}

// ---- ICE restart (issue 6: RFC 8445 §9, JSEP §5.2.1/§5.3.1, WebRTC 1.0 §4.4.1.6) ----

fn ufrag_of(d: Option<RtcSessionDescriptionInit>) -> String {
    ice::IceCredentials::of_sdp(&d.expect("a description").sdp).expect("ice credentials").ufrag
}

/// ICE restart offered by either side: `createOffer({iceRestart: true})` gives new credentials,
/// the answer to it new ones too; libnice's streams restart; the candidates are signalled again
/// under the new ufrag; the call stays connected and audio keeps flowing both ways throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_ice_restart_from_either_side_keeps_audio() {
    let (mut a, mut b, _ma, _mb) = call(vec![Codec::Opus], "opus/48000/2").await;
    for round in 0..2 {
        let (from, to) = if round == 0 { (&a, &b) } else { (&b, &a) };
        let before = (ufrag_of(a.pc.state().local_description), ufrag_of(b.pc.state().local_description));
        let plain = from.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
        let from_before = if round == 0 { &before.0 } else { &before.1 };
        assert_eq!(&ufrag_of(Some(plain)), from_before, "an offer without iceRestart keeps the credentials");
        let offer = from
            .pc
            .create_offer(&RtcOfferOptions { ice_restart: true, ..RtcOfferOptions::default() })
            .await
            .unwrap();
        let creds = ice::IceCredentials::of_sdp(&offer.sdp).unwrap();
        assert_ne!(&creds.ufrag, from_before, "round {round}: restart offer keeps the ufrag:\n{}", offer.sdp);
        assert!(creds.ufrag.len() >= 4 && creds.pwd.len() >= 22, "RFC 8839 lengths: {creds:?}");
        from.pc.set_local_description(Some(offer.clone())).await.unwrap();
        to.pc.set_remote_description(offer).await.unwrap();
        let answer = to.pc.create_answer().await.unwrap();
        to.pc.set_local_description(Some(answer.clone())).await.unwrap();
        from.pc.set_remote_description(answer).await.unwrap();
        let after = (ufrag_of(a.pc.state().local_description), ufrag_of(b.pc.state().local_description));
        assert_ne!(after.0, before.0, "round {round}: A's ufrag unchanged");
        assert_ne!(after.1, before.1, "round {round}: B's ufrag unchanged (answer to a restart)");
        assert_eq!(ufrag_of(a.pc.state().remote_description), after.1);
        assert_eq!(ufrag_of(b.pc.state().remote_description), after.0);
        let (na, nb) = (a.events.len(), b.events.len());
        assert!(
            received_during(&mut a, &mut b, Duration::from_millis(1500)).await > 40,
            "round {round}: A stopped hearing B across the restart"
        );
        assert!(
            received_during(&mut b, &mut a, Duration::from_millis(1500)).await > 40,
            "round {round}: B stopped hearing A across the restart"
        );
        for (p, ufrag) in [(&a, &after.0), (&b, &after.1)] {
            let again = p.events[if std::ptr::eq(p, &a) { na } else { nb }..]
                .iter()
                .filter(|e| matches!(e, PcEvent::IceCandidate(Some(c)) if c.username_fragment.as_deref() == Some(ufrag.as_str())))
                .count();
            assert!(again > 0, "round {round}: no candidate signalled again under ufrag {ufrag}");
            // WebRTC 1.0 §5.6: a restart from connected/completed stays (or goes) `connected`.
            let flaps: Vec<&PcEvent> = p.events[if std::ptr::eq(p, &a) { na } else { nb }..]
                .iter()
                .filter(|e| match e {
                    PcEvent::IceConnectionStateChange(s) => {
                        !matches!(s, RtcIceConnectionState::Connected | RtcIceConnectionState::Completed)
                    }
                    PcEvent::ConnectionStateChange(s) => *s != RtcPeerConnectionState::Connected,
                    _ => false,
                })
                .collect();
            assert!(flaps.is_empty(), "round {round}: state left connected during the restart: {flaps:?}");
        }
        assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Connected);
        assert_eq!(b.pc.state().connection_state, RtcPeerConnectionState::Connected);
    }
    a.pc.close();
    b.pc.close();
}

/// Counts `GStreamer-CRITICAL` log messages raised on the threads that push datagrams into one
/// peer's `nicesink`s (the halting probe's threads), so other tests running in the same process
/// do not count. Every message still reaches GLib's default handler. Removed on drop.
struct SendPathCriticals {
    handler: Option<gst::glib::LogHandlerId>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl SendPathCriticals {
    /// Watches the pipeline that `p`'s sender belongs to. Call while it sends (the pushing
    /// threads are learnt from the traffic, through probes upstream of `nicesink`).
    fn watch(p: &Peer) -> Self {
        let pay = p.pc.payloader_src(&p.pc.state().transceivers[0].sender.id).expect("a sender");
        let mut top = pay.parent_element().expect("payloader");
        while let Some(e) = top.parent().and_then(|e| e.downcast::<gst::Element>().ok()) {
            top = e;
        }
        let threads: Arc<Mutex<std::collections::HashSet<std::thread::ThreadId>>> = Arc::default();
        let bin = top.downcast::<gst::Bin>().expect("a pipeline");
        let mut sinks = 0;
        for sink in bin.iterate_all_by_element_factory_name("nicesink").into_iter().flatten() {
            let Some(up) = sink.static_pad("sink").and_then(|s| s.peer()) else { continue };
            let t = threads.clone();
            up.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, _| {
                t.lock().unwrap().insert(std::thread::current().id());
                gst::PadProbeReturn::Ok
            });
            sinks += 1;
        }
        assert!(sinks > 0, "no nicesink in the sender's pipeline");
        Self::counting(move |_| threads.lock().unwrap().contains(&std::thread::current().id()))
    }

    /// Every `gst_mini_object_unref` of NULL in the process, whatever thread: what a probe
    /// returning `Drop` causes on GStreamer 1.22 (see `MediaGate::attach`). No test should
    /// cause one, so tests running in parallel cannot make this count wrongly.
    fn null_unrefs() -> Self {
        Self::counting(|message| message.contains("gst_mini_object_unref"))
    }

    /// Counts the GStreamer CRITICALs `count` accepts; every message still reaches GLib's
    /// default handler.
    fn counting(count: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s = seen.clone();
        let handler = gst::glib::log_set_handler(
            Some("GStreamer"),
            gst::glib::LogLevels::LEVEL_CRITICAL,
            true,
            true,
            move |domain, level, message| {
                if count(message) {
                    s.lock().unwrap().push(message.to_owned());
                }
                gst::glib::log_default_handler(domain, level, Some(message));
            },
        );
        SendPathCriticals { handler: Some(handler), seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for SendPathCriticals {
    fn drop(&mut self) {
        if let Some(h) = self.handler.take() {
            gst::glib::log_remove_handler(Some("GStreamer"), h);
        }
    }
}

/// A call whose consent expired (RFC 7675 §5.1: the far end sent nothing for 30 s, `failed`,
/// sending stopped) comes back with an ICE restart once the far end is back: the page's usual
/// `restartIce()` on `failed`. Takes about 40 s (the consent timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_ice_restart_revives_a_call_whose_consent_expired() {
    let (mut a, mut b, _ma, _mb) = call(vec![Codec::Opus], "opus/48000/2").await;
    let pay = b.pc.payloader_src(&b.pc.state().transceivers[0].sender.id).expect("B sends");
    let mut far = pay.parent_element().expect("payloader");
    while let Some(p) = far.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
        far = p;
    }
    let criticals = SendPathCriticals::watch(&a);
    // The far end goes quiet (its pipeline pauses: no RTP, no RTCP; libnice still answers).
    far.set_state(gst::State::Paused).unwrap();
    let deadline = Instant::now() + peer_connection::CONSENT_FAILED_AFTER + Duration::from_secs(10);
    while a.pc.state().connection_state != RtcPeerConnectionState::Failed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Failed, "consent never expired");
    far.set_state(gst::State::Playing).unwrap();
    pump(&mut a, &mut b, Duration::from_secs(2), || false).await;
    assert_eq!(
        a.pc.state().connection_state,
        RtcPeerConnectionState::Failed,
        "failed is terminal without a restart"
    );
    // Halted sending (2 s of packets dropped by the probe on nicesink) must be silent: one
    // CRITICAL per packet would flood the journal exactly when the far end vanishes.
    let c = criticals.seen();
    assert!(
        c.is_empty(),
        "{} GStreamer CRITICALs on A's send path while halted, e.g. {:?}",
        c.len(),
        c.first()
    );

    let offer =
        a.pc.create_offer(&RtcOfferOptions { ice_restart: true, ..RtcOfferOptions::default() })
            .await
            .unwrap();
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    b.pc.set_remote_description(offer).await.unwrap();
    let answer = b.pc.create_answer().await.unwrap();
    b.pc.set_local_description(Some(answer.clone())).await.unwrap();
    a.pc.set_remote_description(answer).await.unwrap();
    let n = a.events.len();
    let up = |p: &PeerConnection| p.state().connection_state == RtcPeerConnectionState::Connected;
    let (pa, pb) = (a.pc.clone(), b.pc.clone());
    assert!(pump(&mut a, &mut b, Duration::from_secs(10), || up(&pa) && up(&pb)).await, "no reconnection");
    assert!(
        received_during(&mut b, &mut a, Duration::from_millis(1500)).await > 40,
        "A does not send again after the restart"
    );
    assert!(received_during(&mut a, &mut b, Duration::from_millis(1500)).await > 40, "A does not hear B");
    // §5.6: from failed, the page sees checking, then connected.
    let seen: Vec<&PcEvent> = a.events[n..]
        .iter()
        .filter(|e| matches!(e, PcEvent::IceConnectionStateChange(_) | PcEvent::ConnectionStateChange(_)))
        .collect();
    assert!(
        matches!(seen.first(), Some(PcEvent::IceConnectionStateChange(RtcIceConnectionState::Checking))),
        "{seen:?}"
    );
    assert_eq!(a.pc.state().connection_state, RtcPeerConnectionState::Connected);
    a.pc.close();
    b.pc.close();
}
