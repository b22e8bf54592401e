//! Two real peer connections of the daemon in one test process, calling each other over
//! loopback ICE (no VC, no devices): the peers, live test tones, and the candidate pump.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use vdimedia_protocol::api::RtcConfiguration;
use vdimediad::webrtc::{Codec, PcEvent, PcOptions, PeerConnection};

/// One peer connection and the events it fired (candidates are forwarded by [`pump_until`]).
pub struct Peer {
    pub pc: PeerConnection,
    pub rx: UnboundedReceiver<PcEvent>,
    pub events: Vec<PcEvent>,
}

/// A peer connection named `name` offering `codecs`, with loopback ICE candidates.
pub fn peer(name: &str, codecs: Vec<Codec>) -> Peer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (tx, rx) = unbounded_channel();
    let opts = PcOptions { loopback_ice: true, codecs, ..PcOptions::default() };
    let pc = PeerConnection::with_options(name, &RtcConfiguration::default(), opts, tx).unwrap();
    Peer { pc, rx, events: Vec::new() }
}

/// A live sine tone of `freq` Hz at `volume` (0..1 peak) in 10 ms buffers (480 samples).
pub fn tone(freq: f64, volume: f64) -> gst::Element {
    gst::ElementFactory::make("audiotestsrc")
        .property("is-live", true)
        .property("freq", freq)
        .property("volume", volume)
        .property("samplesperbuffer", 480i32)
        .build()
        .unwrap()
}

/// Moves trickled candidates both ways and records every event, until `done` (true) or
/// `timeout` (false).
pub async fn pump_until(
    a: &mut Peer,
    b: &mut Peer,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        forward(a, b).await;
        forward(b, a).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Hands `from`'s new candidates to `to`, keeping every event in `from.events`.
async fn forward(from: &mut Peer, to: &Peer) {
    while let Ok(ev) = from.rx.try_recv() {
        if let PcEvent::IceCandidate(c) = &ev {
            to.pc.add_ice_candidate(c.clone()).await.unwrap();
        }
        from.events.push(ev);
    }
}

/// [`pump_until`] for all of `d`.
pub async fn pump(a: &mut Peer, b: &mut Peer, d: Duration) {
    pump_until(a, b, d, || false).await;
}
