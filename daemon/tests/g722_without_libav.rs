//! A G.722 call with gst-libav hidden from GStreamer: proof that the daemon's G.722 path runs on
//! our `g722enc`/`g722dec` (crate `gst-plugin-vdimedia`, registered statically by
//! `webrtc::init_gstreamer`) on thin clients without FFmpeg.
//!
//! The test re-runs this test binary with a private `GST_REGISTRY` and a `GST_PLUGIN_SYSTEM_PATH`
//! of symlinks to every system plugin except `libgstlibav.so`; the child checks that
//! `avdec_g722`/`avenc_g722` are really absent, then makes a two-peer-connection G.722 call over
//! loopback ICE (tones 440 Hz / 880 Hz) and checks that each side decodes the other's tone.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use vdimedia_protocol::api::*;
use vdimediad::webrtc::{Codec, PcEvent, PcOptions, PeerConnection};

const CHILD_ENV: &str = "VDIMEDIA_G722_NOLIBAV_CHILD";
const SYSTEM_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/gstreamer-1.0";

#[test]
fn g722_call_without_gst_libav() {
    let sys = std::env::var("GST_PLUGIN_SYSTEM_PATH").unwrap_or_else(|_| SYSTEM_PLUGINS.into());
    if !Path::new(&sys).join("libgstwebrtc.so").exists() {
        println!("SKIP: no GStreamer plugins in {sys}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("vdimedia-g722-nolibav-{}", std::process::id()));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut hidden = false;
    for e in std::fs::read_dir(&sys).unwrap().flatten() {
        if e.file_name() == "libgstlibav.so" {
            hidden = true;
            continue;
        }
        std::os::unix::fs::symlink(e.path(), plugins.join(e.file_name())).unwrap();
    }
    println!("libgstlibav.so {}", if hidden { "hidden" } else { "not installed anyway" });
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_g722_call", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .env("GST_PLUGIN_SYSTEM_PATH", &plugins)
        .env("GST_PLUGIN_PATH", "")
        .env_remove("GST_PLUGIN_SYSTEM_PATH_1_0")
        .env_remove("GST_PLUGIN_PATH_1_0")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "G.722 call without gst-libav failed");
    assert!(stdout.contains("1 passed"), "the child test did not run");
}

/// Decoded audio seen by a playout sink: voiced S16 samples, zero crossings and energy.
#[derive(Default, Debug)]
struct Meter {
    rate: u32,
    voiced: u64,
    crossings: u64,
    sum_sq: f64,
}

impl Meter {
    fn secs(&self) -> f64 {
        if self.rate == 0 { 0.0 } else { self.voiced as f64 / self.rate as f64 }
    }
    fn hz(&self) -> f64 {
        self.crossings as f64 / 2.0 / self.secs().max(1e-9)
    }
    fn rms(&self) -> f64 {
        (self.sum_sq / self.voiced.max(1) as f64).sqrt()
    }
}

fn metering_sink() -> (gst::Element, Arc<Mutex<Meter>>) {
    let meter = Arc::new(Mutex::new(Meter::default()));
    let sink = gst::parse::bin_from_description(
        "capsfilter caps=audio/x-raw,format=S16LE,channels=1 ! fakesink name=sink sync=true async=false",
        true,
    )
    .unwrap();
    let m = meter.clone();
    let fakesink = sink.by_name("sink").unwrap();
    fakesink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
        let rate = pad
            .current_caps()
            .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("rate").ok()))
            .unwrap_or(0) as u32;
        let Ok(map) = buf.map_readable() else { return gst::PadProbeReturn::Ok };
        let s: Vec<f64> =
            map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0).collect();
        let energy: f64 = s.iter().map(|x| x * x).sum();
        if s.is_empty() || (energy / s.len() as f64).sqrt() < 0.01 {
            return gst::PadProbeReturn::Ok;
        }
        let mut m = m.lock().unwrap_or_else(|e| e.into_inner()); // no panic on a streaming thread
        m.rate = rate;
        m.voiced += s.len() as u64;
        m.crossings += s.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count() as u64;
        m.sum_sq += energy;
        gst::PadProbeReturn::Ok
    });
    (sink.upcast(), meter)
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
}

fn peer(name: &str) -> Peer {
    let (tx, rx) = unbounded_channel();
    let opts = PcOptions { loopback_ice: true, codecs: vec![Codec::G722], ..PcOptions::default() };
    let pc = PeerConnection::with_options(name, &RtcConfiguration::default(), opts, tx).unwrap();
    Peer { pc, rx }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by g722_call_without_gst_libav in a registry without gst-libav"]
async fn child_g722_call() {
    assert_eq!(std::env::var(CHILD_ENV).as_deref(), Ok("1"), "run through g722_call_without_gst_libav");
    vdimediad::webrtc::init_gstreamer().unwrap();
    for f in ["avdec_g722", "avenc_g722"] {
        assert!(gst::ElementFactory::find(f).is_none(), "{f} must be hidden in this run");
    }
    assert!(gst::Registry::get().find_plugin("libav").is_none());
    for f in ["g722enc", "g722dec"] {
        assert!(gst::ElementFactory::find(f).is_some(), "{f} not registered by init_gstreamer");
    }

    let mut a = peer("a-g722");
    let mut b = peer("b-g722");
    a.pc.add_track("trackA", tone(440.0), vec!["streamA".into()]).unwrap();
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    assert!(offer.sdp.contains("G722/8000"), "offer lacks G722:\n{}", offer.sdp);
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    b.pc.set_remote_description(offer).await.unwrap();
    b.pc.add_track("trackB", tone(880.0), vec!["streamB".into()]).unwrap();
    let answer = b.pc.create_answer().await.unwrap();
    assert!(answer.sdp.contains("G722/8000"), "answer lacks G722:\n{}", answer.sdp);
    b.pc.set_local_description(None).await.unwrap();
    a.pc.set_remote_description(b.pc.state().local_description.unwrap()).await.unwrap();

    let (sink_a, ma) = metering_sink();
    let (sink_b, mb) = metering_sink();
    a.pc.set_playout(&a.pc.state().transceivers[0].receiver.track.id, Some(sink_a)).unwrap();
    b.pc.set_playout(&b.pc.state().transceivers[0].receiver.track.id, Some(sink_b)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while !(ma.lock().unwrap().secs() > 1.0 && mb.lock().unwrap().secs() > 1.0) {
        assert!(
            Instant::now() < deadline,
            "audio did not flow: A {:?}, B {:?}",
            ma.lock().unwrap(),
            mb.lock().unwrap()
        );
        while let Ok(ev) = a.rx.try_recv() {
            if let PcEvent::IceCandidate(c) = ev {
                b.pc.add_ice_candidate(c).await.unwrap();
            }
        }
        while let Ok(ev) = b.rx.try_recv() {
            if let PcEvent::IceCandidate(c) = ev {
                a.pc.add_ice_candidate(c).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (m, want, who) in [(&ma, 880.0, "A"), (&mb, 440.0, "B")] {
        let m = m.lock().unwrap();
        println!("{who} heard {:.1} Hz, rms {:.3}, {:.2} s at {} Hz", m.hz(), m.rms(), m.secs(), m.rate);
        assert!((m.hz() - want).abs() < want * 0.1, "{who} heard {:.0} Hz, want {want}", m.hz());
        assert!(m.rms() > 0.1, "{who} heard too little energy: {m:?}");
        assert_eq!(m.rate, 16000, "G.722 decodes at 16 kHz");
    }
    a.pc.close();
    b.pc.close();
}
