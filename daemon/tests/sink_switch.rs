//! `setSinkId` mid-call (issue 4): how long the remote audio is heard nowhere when
//! `playout.setSinkId` moves it from one endpoint output to another, on a real, private
//! PipeWire graph (tests/rig/pipewire.sh) through the real `vdimediad`.
//!
//! The call: the page's peer connection "a" sends the rig's virtual mic, into which a
//! continuous 440 Hz tone plays; "b" receives it (the far end's tone, as a page hears it) and
//! plays it on the null sink "spk", then `playout.setSinkId` moves it to a second null sink
//! "spk2" and back, four switches. Both sinks' monitors are recorded by one GStreamer pipeline
//! in this process (two `pipewiresrc` with `stream.capture.sink=true`), so both are on one
//! clock: each buffer is cut into 10 ms blocks stamped with the pipeline's running time at
//! arrival. The gap of a switch is the time from the end of the last block with the tone on
//! the old sink to the start of the first block with it on the new one (negative = overlap).
//! Six switches; asserts the median gap < 100 ms and at most two switches over it (a capture
//! drop under load next to a switch counts as its gap); prints each gap, median and maximum.
//!
//! One test function: it points this process's environment at the rig. Skips (printing why)
//! when PipeWire is not installed.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde_json::{Value, json};
use vdimedia_protocol::SessionId;

mod common;
use common::{Page, Rig, tempdir};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
const RATE: usize = 48_000;
/// 10 ms blocks.
const BLOCK: usize = RATE / 100;
/// A block "has the tone" above this RMS (the tone is sent at 0.5 peak, RMS 0.35).
const TONE_RMS: f64 = 0.05;
/// The switch gap the issue allows, ms.
const MAX_GAP_MS: f64 = 100.0;
const SPK2: &str = "vdimedia_spk2";

/// Kills and reaps a helper process at the end of the test.
struct Helper(Child);
impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (end of block in running time ns, RMS) per 10 ms block of one sink's monitor.
type Blocks = Arc<Mutex<Vec<(u64, f64)>>>;

/// A 16-bit mono 48 kHz WAV of a 440 Hz tone at 0.5 peak, `secs` long.
fn write_tone(path: &std::path::Path, secs: usize) {
    std::fs::write(path, common::wav_mono16(RATE as u32, common::sine(440.0, 0.5, RATE as u32, secs * RATE)))
        .unwrap();
}

/// Adds `pipewiresrc` recording the monitor of sink node `node` to `pipeline`; returns its
/// 10 ms blocks.
fn monitor(pipeline: &gst::Pipeline, node: &str) -> Blocks {
    let src = gst::ElementFactory::make("pipewiresrc")
        .property("target-object", node)
        .property("always-copy", true)
        .property("client-name", format!("sink-switch-monitor-{node}"))
        .property(
            "stream-properties",
            gst::Structure::builder("props")
                .field("stream.capture.sink", "true")
                .field("node.latency", "480/48000")
                .build(),
        )
        .build()
        .expect("pipewiresrc (gstreamer1.0-pipewire)");
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("layout", "interleaved")
                .field("rate", RATE as i32)
                .field("channels", 1i32)
                .build(),
        )
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .unwrap();
    pipeline.add_many([&src, &caps, &sink]).unwrap();
    gst::Element::link_many([&src, &caps, &sink]).unwrap();
    let blocks: Blocks = Default::default();
    let b = blocks.clone();
    let p = pipeline.clone();
    caps.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buf)) = &info.data else { return gst::PadProbeReturn::Ok };
        let Some(now) = p.current_running_time() else { return gst::PadProbeReturn::Ok };
        let map = buf.map_readable().unwrap();
        let x: Vec<f32> = map.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let n = x.len();
        let mut out = b.lock().unwrap();
        for (k, block) in x.chunks(BLOCK).enumerate() {
            let rms = (block.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / block.len() as f64).sqrt();
            // The buffer's last sample arrived now; earlier blocks ended earlier.
            let after = n.saturating_sub((k * BLOCK + block.len()).min(n));
            let end = now.nseconds().saturating_sub((after as u64) * 1_000_000_000 / RATE as u64);
            out.push((end, rms));
        }
        gst::PadProbeReturn::Ok
    });
    blocks
}

/// deviceId of the audio output labelled `label`.
fn output_id(devices: &Value, label: &str) -> String {
    devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == label && d["kind"] == "audiooutput")
        .unwrap_or_else(|| panic!("no output {label}: {devices:#}"))["deviceId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn packets_received(page: &mut Page, sid: SessionId) -> u64 {
    let s = page.request(sid, "pc.getStats", json!({"pc": "b"})).await;
    s["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "inbound-rtp")
        .and_then(|s| s["packetsReceived"].as_u64())
        .unwrap_or(0)
}

/// Whether `blocks` has the tone somewhere in `[from, to)` ns.
fn has_tone(blocks: &[(u64, f64)], from: u64, to: u64) -> bool {
    blocks.iter().any(|(end, rms)| *end >= from && *end < to && *rms > TONE_RMS)
}

/// The gap (ms) of a switch at running time `at` ns from `old` to `new`: start of the first
/// tone block on `new` after `at - 300 ms` minus the end of the last tone block on `old`
/// before `at + 1.5 s`.
fn gap_ms(old: &[(u64, f64)], new: &[(u64, f64)], at: u64) -> Option<f64> {
    let from = at.saturating_sub(300_000_000);
    let to = at + 1_500_000_000;
    let last_old =
        old.iter().filter(|(e, r)| *e >= from && *e < to && *r > TONE_RMS).map(|(e, _)| *e).max()?;
    let block_ns = (BLOCK * 1_000_000_000 / RATE) as u64;
    let first_new = new
        .iter()
        .filter(|(e, r)| *e >= from && *e < to && *r > TONE_RMS)
        .map(|(e, _)| e.saturating_sub(block_ns))
        .min()?;
    Some((first_new as f64 - last_old as f64) / 1e6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_sink_id_mid_call_gap_under_100_ms() {
    let dir = tempdir("sink-switch");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    for (k, v) in &rig.env {
        // SAFETY: the only test of this binary; set before GStreamer or PipeWire start threads.
        unsafe { std::env::set_var(k, v) };
    }
    unsafe {
        std::env::remove_var("PIPEWIRE_REMOTE");
        std::env::remove_var("PULSE_SERVER");
    }
    rig.pw(&[
        "pw-cli",
        "create-node",
        "adapter",
        &format!(
            "{{ factory.name=support.null-audio-sink node.name={SPK2} node.description=spk2 \
               media.class=Audio/Sink object.linger=true audio.position=[FL FR] }}"
        ),
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.node_id(SPK2).is_none() {
        assert!(Instant::now() < deadline, "the second null sink never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tone = dir.join("tone.wav");
    write_tone(&tone, 60);
    let _tone = Helper(
        Command::new("pw-cat")
            .envs(&rig.env)
            .args(["--playback", "--target", "mic_feed"])
            .arg(&tone)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pw-cat"),
    );

    gst::init().unwrap();
    let rec = gst::Pipeline::new();
    let spk1 = monitor(&rec, "vdimedia_null_sink");
    let spk2 = monitor(&rec, SPK2);
    rec.set_state(gst::State::Playing).expect("the monitor pipeline plays");
    struct Stop(gst::Pipeline);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.set_state(gst::State::Null);
        }
    }
    let _rec = Stop(rec.clone());

    let _daemon = rig.start_daemon(DAEMON, &dir, "vc");
    let log = || std::fs::read_to_string(dir.join("vc.log")).unwrap_or_default();
    let mut page = Page::connect(&dir.join("vc.sock"), "sink-switch-test/1").await;
    let sid = page.open().await;
    let devices = page.request(sid, "devices.enumerate", json!({})).await;
    let (id1, id2) = (output_id(&devices, "spk"), output_id(&devices, "spk2"));
    let track = page.raw_microphone(sid).await;
    page.negotiate_loopback(sid, &track).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while packets_received(&mut page, sid).await < 25 {
        assert!(Instant::now() < deadline, "the call never carried media\n{}", log());
        page.trickle(sid).await;
        page.pump(Duration::from_millis(200)).await;
    }
    page.request(
        sid,
        "playout.attach",
        json!({"element": "el", "stream": "s", "tracks": [page.remote_track("b")], "sinkId": id1}),
    )
    .await;
    let now = || rec.current_running_time().map_or(0, |t| t.nseconds());
    let t0 = now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_tone(&spk1.lock().unwrap(), t0, u64::MAX) {
        assert!(Instant::now() < deadline, "the tone never reached spk\n{}", log());
        page.pump(Duration::from_millis(100)).await;
    }
    page.pump(Duration::from_millis(1000)).await;

    let mut gaps = Vec::new();
    let plan = [(&id2, true), (&id1, false), (&id2, true), (&id1, false), (&id2, true), (&id1, false)];
    for (i, (target, to_spk2)) in plan.into_iter().enumerate() {
        let at = now();
        let t = Instant::now();
        page.request(sid, "playout.setSinkId", json!({"element": "el", "sinkId": target})).await;
        let answered = t.elapsed();
        let until = Instant::now() + Duration::from_millis(1600);
        while Instant::now() < until {
            page.pump(Duration::from_millis(100)).await;
        }
        let (a, b) = (spk1.lock().unwrap().clone(), spk2.lock().unwrap().clone());
        let (old, new) = if to_spk2 { (&a, &b) } else { (&b, &a) };
        let gap = gap_ms(old, new, at).unwrap_or_else(|| {
            panic!(
                "switch {}: the tone is missing on the old or the new sink (old: {}, new: {})\n{}",
                i + 1,
                has_tone(old, at.saturating_sub(300_000_000), at + 1_500_000_000),
                has_tone(new, at.saturating_sub(300_000_000), at + 1_500_000_000),
                log()
            )
        });
        // After the switch only the new sink plays.
        let settled = at + 1_000_000_000;
        assert!(!has_tone(old, settled, u64::MAX), "switch {}: the old sink still plays", i + 1);
        println!(
            "sink_switch: switch {} ({}): gap {gap:.0} ms, setSinkId answered in {} ms",
            i + 1,
            if to_spk2 { "spk → spk2" } else { "spk2 → spk" },
            answered.as_millis()
        );
        gaps.push(gap);
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = (sorted[2] + sorted[3]) / 2.0;
    let max = sorted[5];
    println!("sink_switch: gaps {gaps:.0?} ms; median {median:.0} ms, max {max:.0} ms (negative = overlap)");
    // The median, not every switch: on a loaded machine the daemon's capture of the tone (and
    // this process's monitor capture) drop 150–350 ms at a time (pipewiresrc under load,
    // FIELD-NOTES), and a drop next to a switch counts as its gap. Most switches must pass.
    let over = gaps.iter().filter(|g| **g >= MAX_GAP_MS).count();
    assert!(
        median < MAX_GAP_MS && over <= 2,
        "setSinkId switches left the audio nowhere for too long: median {median:.0} ms, {over} of 6 \
         over {MAX_GAP_MS} ms (gaps {gaps:.0?} ms)\n{}",
        log()
    );
}
