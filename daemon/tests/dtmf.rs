//! DTMF end to end inside the daemon: two real peer connections call each other over loopback
//! ICE; one sends DTMF (`insert_dtmf`, WebRTC 1.0 §7) and the other must receive RFC 4733
//! `telephone-event` packets (through DTLS-SRTP and its webrtcbin) with the right event codes,
//! end bits and durations, while the call's audio keeps flowing.

use gst::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vdimedia_protocol::api::*;
use vdimedia_protocol::message::ErrorCode;
use vdimediad::webrtc::{Codec, dtmf};

mod common;
use common::loopback::{Peer, peer, pump_until as pump};

/// audiotestsrc's default level (0.8 peak).
fn tone(freq: f64) -> gst::Element {
    common::loopback::tone(freq, 0.8)
}

/// A offers, B answers, both send a tone; returns once both are connected.
async fn call(codecs: Vec<Codec>, name: &str) -> (Peer, Peer) {
    vdimediad::webrtc::prewarm().unwrap();
    let mut a = peer(&format!("a-{name}"), codecs.clone());
    let mut b = peer(&format!("b-{name}"), codecs);
    a.pc.add_track("trackA", tone(440.0), vec!["sA".into()]).unwrap();
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    b.pc.set_remote_description(offer).await.unwrap();
    b.pc.add_track("trackB", tone(880.0), vec!["sB".into()]).unwrap();
    let answer = b.pc.create_answer().await.unwrap();
    b.pc.set_local_description(Some(answer.clone())).await.unwrap();
    a.pc.set_remote_description(answer).await.unwrap();
    let (pa, pb) = (a.pc.clone(), b.pc.clone());
    let up = pump(&mut a, &mut b, Duration::from_secs(15), || {
        pa.state().connection_state == RtcPeerConnectionState::Connected
            && pb.state().connection_state == RtcPeerConnectionState::Connected
    })
    .await;
    assert!(up, "call did not connect");
    (a, b)
}

/// A playout sink counting decoded audio buffers (proves the audio stream survives DTMF).
fn counting_sink() -> (gst::Element, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let sink = gst::ElementFactory::make("fakesink").property("sync", false).build().unwrap();
    let c = n.clone();
    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        c.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    (sink, n)
}

/// Waits until `rx` has the end packets of `events` tones, returns all packets received.
async fn receive_events(a: &mut Peer, b: &mut Peer, rx_on_b: bool, events: usize) -> Vec<dtmf::EventPacket> {
    let receiver = if rx_on_b { b.pc.clone() } else { a.pc.clone() };
    let ends = |p: &[dtmf::EventPacket]| {
        let mut starts: Vec<u32> = p.iter().filter(|p| p.end).map(|p| p.timestamp).collect();
        starts.dedup();
        starts.len()
    };
    let r = receiver.clone();
    let ok = pump(a, b, Duration::from_secs(10), || ends(&r.dtmf_received_packets()) >= events).await;
    let got = receiver.dtmf_received_packets();
    assert!(ok, "the far end did not receive {events} DTMF events: {got:#?}");
    // The 2nd and 3rd retransmission of the last end packet may still be on their way.
    pump(a, b, Duration::from_millis(200), || false).await;
    receiver.dtmf_received_packets()
}

/// Checks one received event: marker on its first packet, durations growing, three end
/// packets with the whole tone's duration (clock units), all with one timestamp.
fn check_event(packets: &[dtmf::EventPacket], code: u8, end_duration: u16) -> u32 {
    let p: Vec<_> = packets.iter().filter(|p| p.code == code).collect();
    assert!(!p.is_empty(), "no packets of event {code}: {packets:#?}");
    let ts = p[0].timestamp;
    assert!(p.iter().all(|x| x.timestamp == ts), "one timestamp per event: {p:#?}");
    assert!(p[0].marker && p.iter().skip(1).all(|x| !x.marker), "marker on the first packet only: {p:#?}");
    let ends: Vec<_> = p.iter().filter(|x| x.end).collect();
    assert_eq!(ends.len(), 3, "three end packets (RFC 4733 §2.5.1.4): {p:#?}");
    assert!(ends.iter().all(|x| x.duration == end_duration), "end duration {end_duration}: {p:#?}");
    let growing: Vec<u16> = p.iter().filter(|x| !x.end).map(|x| x.duration).collect();
    assert!(growing.windows(2).all(|w| w[0] < w[1]), "durations grow: {growing:?}");
    assert!(growing.iter().all(|d| *d < end_duration), "{growing:?}");
    ts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_opus_offerer_to_answerer() {
    let (mut a, mut b) = call(Codec::DEFAULT_ORDER.to_vec(), "opus").await;
    let offer = a.pc.state().local_description.unwrap().sdp;
    assert!(offer.to_lowercase().contains("telephone-event/48000"), "offer:\n{offer}");
    assert!(offer.to_lowercase().contains("telephone-event/8000"), "offer (G.722/PCMU/PCMA rate):\n{offer}");
    let answer = b.pc.state().local_description.unwrap().sdp;
    assert!(
        answer.contains("a=rtpmap:110 telephone-event/48000")
            || answer.contains("a=rtpmap:110 TELEPHONE-EVENT/48000"),
        "answer must take the offer's 48 kHz telephone-event:\n{answer}"
    );
    assert!(!answer.to_lowercase().contains("telephone-event/8000"), "no 8 kHz events with Opus:\n{answer}");

    let (sink, decoded) = counting_sink();
    b.pc.set_playout(&b.pc.state().transceivers[0].receiver.track.id, Some(sink)).unwrap();
    let sender = a.pc.state().transceivers[0].sender.id.clone();
    assert!(a.pc.can_insert_dtmf(&sender));
    let d = decoded.clone();
    assert!(
        pump(&mut a, &mut b, Duration::from_secs(5), || d.load(Ordering::Relaxed) > 10).await,
        "no audio"
    );

    // Bad input: typed errors, nothing queued.
    let e = a.pc.insert_dtmf(&sender, "12x", 100, 70).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("'x'"), "{e:?}");
    assert_eq!(a.pc.insert_dtmf("nosuchsender", "1", 100, 70).unwrap_err().code, ErrorCode::NotFound);

    a.pc.insert_dtmf(&sender, "1#", 100, 70).unwrap();
    let got = receive_events(&mut a, &mut b, true, 2).await;
    let t1 = check_event(&got, 1, 4800); // 100 ms at 48 kHz
    let t2 = check_event(&got, 11, 4800);
    let apart = t2.wrapping_sub(t1);
    assert!((8160..8160 + 2 * 960 + 960).contains(&apart), "tone + gap = 170 ms = 8160 units, got {apart}");
    // Every packet sent arrived, in order. Sequence numbers are not compared: the receiving
    // webrtcbin renumbers what its telephone-event pad outputs. On the sender they are the
    // audio packets' own (the event packets took their places), consecutive within an event.
    let strip = |v: Vec<dtmf::EventPacket>| {
        v.into_iter().map(|p| dtmf::EventPacket { seq: 0, ..p }).collect::<Vec<_>>()
    };
    let sent = a.pc.dtmf_sent_packets(&sender);
    assert_eq!(strip(sent.clone()), strip(got), "every packet sent arrived, in order");
    for ev in sent.chunk_by(|x, y| x.timestamp == y.timestamp) {
        let seqs: Vec<u16> = ev.iter().map(|x| x.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "consecutive: {seqs:?}");
    }
    let between = sent[7].seq.wrapping_sub(sent[6].seq);
    assert!((2..=4).contains(&between), "the gap's audio packets sit between the tones: {sent:#?}");

    // The audio goes on after the tones.
    let before = decoded.load(Ordering::Relaxed);
    let d = decoded.clone();
    assert!(
        pump(&mut a, &mut b, Duration::from_secs(3), || d.load(Ordering::Relaxed) > before + 20).await,
        "audio stopped after DTMF"
    );

    // A re-offer once the payloader is linked: webrtcbin 1.22 intersects codec-preferences with
    // the caps the payloader produced and drops telephone-event; the engine puts it back.
    let reoffer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap().sdp;
    assert!(reoffer.to_lowercase().contains("telephone-event/48000"), "re-offer:\n{reoffer}");

    a.pc.close();
    let e = a.pc.insert_dtmf(&sender, "1", 100, 70).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert!(!a.pc.can_insert_dtmf(&sender));
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_pcmu_answerer_to_offerer_clamped() {
    let (mut a, mut b) = call(vec![Codec::Pcmu], "pcmu").await;
    let answer = b.pc.state().local_description.unwrap().sdp;
    assert!(answer.to_lowercase().contains("telephone-event/8000"), "answer:\n{answer}");
    let sender = b.pc.state().transceivers[0].sender.id.clone();
    assert!(b.pc.can_insert_dtmf(&sender));
    pump(&mut a, &mut b, Duration::from_millis(300), || false).await;
    // 10 ms is clamped to 40 ms (W3C §7.2), 8 kHz clock: 320 units.
    b.pc.insert_dtmf(&sender, "*d", 10, 5).unwrap();
    let got = receive_events(&mut a, &mut b, false, 2).await;
    let t1 = check_event(&got, 10, 320);
    let t2 = check_event(&got, 15, 320);
    let apart = t2.wrapping_sub(t1);
    assert!(apart >= (40 + 30) * 8, "gap clamped to at least 30 ms: {apart} units");
    a.pc.close();
    b.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_on_a_recvonly_sender_is_invalid_state() {
    vdimediad::webrtc::prewarm().unwrap();
    let a = peer("a-recvonly", Codec::DEFAULT_ORDER.to_vec());
    let b = peer("b-recvonly", Codec::DEFAULT_ORDER.to_vec());
    a.pc.add_track("trackA", tone(440.0), vec![]).unwrap();
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    b.pc.set_remote_description(offer).await.unwrap();
    // B answers without a track: recvonly, so its sender cannot send DTMF.
    b.pc.set_local_description(None).await.unwrap();
    let sender = b.pc.state().transceivers[0].sender.id.clone();
    assert!(!b.pc.can_insert_dtmf(&sender));
    let e = b.pc.insert_dtmf(&sender, "1", 100, 70).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState, "{e:?}");
    // Before an answer A's sender has no currentDirection either.
    let sa = a.pc.state().transceivers[0].sender.id.clone();
    assert_eq!(a.pc.insert_dtmf(&sa, "1", 100, 70).unwrap_err().code, ErrorCode::InvalidState);
    a.pc.close();
    b.pc.close();
}
