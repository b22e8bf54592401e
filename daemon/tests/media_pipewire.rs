//! Integration test of the media module on a real, private PipeWire graph started by
//! tests/rig/pipewire.sh: enumeration, getUserMedia constraints, capture from the virtual mic
//! and playout into the null sink. Skips (with a printed reason) only when PipeWire is not
//! installed.
//!
//! One test function on purpose: it points this process's environment at the rig
//! (XDG_RUNTIME_DIR), which must not change under other test threads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde_json::json;
use vdimedia_protocol::api::{MediaDeviceKind, MediaStreamConstraints};
use vdimedia_protocol::message::ErrorCode;
use vdimediad::media::{AudioBackend, MediaDevices};

const SPEECH: &str = "/usr/share/sounds/alsa/Front_Center.wav";

struct Rig {
    dir: PathBuf,
    script: PathBuf,
}

impl Rig {
    fn start() -> Rig {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rig/pipewire.sh");
        let dir = std::env::temp_dir().join(format!("vdimedia-media-rig-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash").arg(&script).arg("start").arg(&dir).output().expect("run rig script");
        assert!(
            out.status.success(),
            "rig failed to start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("env")).expect("rig writes DIR/env");
        for line in env.lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                // SAFETY: set before any thread of this test binary reads the environment
                // (the only test here, and GStreamer is not initialized yet).
                unsafe { std::env::set_var(k, v) };
            }
        }
        unsafe {
            std::env::remove_var("PIPEWIRE_REMOTE");
            std::env::remove_var("PULSE_SERVER");
        }
        Rig { dir, script }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills a helper process (pw-cat, pw-record) when a test step fails midway.
struct ChildGuard(Option<Child>);
impl ChildGuard {
    fn sigint_and_wait(mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn gum(
    md: &MediaDevices,
    audio: serde_json::Value,
) -> Result<Vec<vdimediad::media::LocalTrack>, vdimediad::error::EngineError> {
    let c: MediaStreamConstraints = serde_json::from_value(json!({ "audio": audio })).unwrap();
    md.get_user_media(&c)
}

/// Runs `pipeline` for `dur`, failing on an error message.
fn run_for(pipeline: &gst::Pipeline, dur: Duration) {
    pipeline.set_state(gst::State::Playing).expect("pipeline plays");
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + dur;
    while Instant::now() < deadline {
        if let Some(msg) =
            bus.timed_pop_filtered(gst::ClockTime::from_mseconds(50), &[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            pipeline.set_state(gst::State::Null).ok();
            panic!(
                "pipeline error from {:?}: {} ({:?})",
                e.src().map(|s| s.path_string()),
                e.error(),
                e.debug()
            );
        }
    }
}

/// RMS (0..1) of interleaved little-endian samples in a WAV file (16-bit int or 32-bit float).
fn wav_rms(path: &Path) -> (f64, usize) {
    let data = std::fs::read(path).expect("read wav");
    assert!(data.len() > 44 && &data[0..4] == b"RIFF", "not a WAV file ({} bytes)", data.len());
    let mut pos = 12;
    let (mut bits, mut float) = (16, false);
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let len = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &data[pos + 8..(pos + 8 + len).min(data.len())];
        if id == b"fmt " {
            float = u16::from_le_bytes([body[0], body[1]]) == 3;
            bits = u16::from_le_bytes([body[14], body[15]]);
        } else if id == b"data" {
            return rms_of(body, bits, float);
        }
        pos += 8 + len + (len & 1);
    }
    panic!("WAV without data chunk");
}

fn rms_of(body: &[u8], bits: u16, float: bool) -> (f64, usize) {
    let samples: Vec<f64> = match (bits, float) {
        (16, false) => {
            body.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64 / 32768.0).collect()
        }
        (32, true) => {
            body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        other => panic!("unexpected sample format {other:?}"),
    };
    let n = samples.len();
    if n == 0 {
        return (0.0, 0);
    }
    ((samples.iter().map(|s| s * s).sum::<f64>() / n as f64).sqrt(), n)
}

#[test]
fn media_pipewire_rig_end_to_end() {
    if Command::new("pipewire").arg("--version").stdout(Stdio::null()).status().is_err() {
        eprintln!("SKIP media_pipewire_rig_end_to_end: pipewire is not installed");
        return;
    }
    let rig = Rig::start();

    // Backend detection sees the rig's socket.
    assert_eq!(AudioBackend::detect(), AudioBackend::PipeWire);
    let md = MediaDevices::new(AudioBackend::PipeWire);
    // Device probing needs no GStreamer (a pw-dump child), so nothing has initialised it yet;
    // the pipelines below build GStreamer objects directly.
    vdimediad::webrtc::init_gstreamer().expect("GStreamer init");

    // --- enumerateDevices
    let t0 = Instant::now();
    let devices = md.enumerate().expect("enumerate");
    let took = t0.elapsed();
    eprintln!("enumerate took {took:?}: {devices:#?}");
    assert!(took < Duration::from_millis(1000), "enumerate too slow: {took:?}");
    let inputs: Vec<_> = devices.iter().filter(|d| d.kind == MediaDeviceKind::Audioinput).collect();
    let outputs: Vec<_> = devices.iter().filter(|d| d.kind == MediaDeviceKind::Audiooutput).collect();
    assert_eq!(inputs[0].device_id, "default", "default input first");
    assert_eq!(inputs[0].label, "Default - virt_mic");
    assert_eq!(outputs[0].device_id, "default", "default output first");
    assert_eq!(outputs[0].label, "Default - spk");
    let mic = inputs.iter().find(|d| d.label == "virt_mic").expect("virt_mic enumerated");
    let spk = outputs.iter().find(|d| d.label == "spk").expect("null sink enumerated");
    assert_eq!(inputs[0].group_id, mic.group_id, "default shares the real device's groupId");
    assert_ne!(mic.device_id, spk.device_id);
    assert!(!mic.device_id.is_empty() && !mic.group_id.is_empty());
    // Stable across instances (a daemon restart builds a new MediaDevices).
    let again = MediaDevices::new(AudioBackend::PipeWire).enumerate().unwrap();
    assert_eq!(devices, again, "ids and order stable across instances");
    let (n_in, n_out) = md.capabilities();
    assert!(n_in >= 1 && n_out >= 2, "capabilities ({n_in}, {n_out})");

    // --- getUserMedia
    let t = gum(&md, json!({"deviceId": {"exact": mic.device_id}})).expect("exact deviceId of virt_mic");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].settings.device_id, mic.device_id);
    assert_eq!(t[0].label, "virt_mic");
    assert!(!t[0].settings.echo_cancellation, "no AEC applied, so not reported");
    let e = gum(&md, json!({"deviceId": {"exact": "no-such-device"}})).unwrap_err();
    assert_eq!(e.code, ErrorCode::Overconstrained);
    assert_eq!(e.constraint.as_deref(), Some("deviceId"));
    let t_ideal = gum(&md, json!({"deviceId": {"ideal": "no-such-device"}})).expect("ideal unknown id");
    assert_eq!(t_ideal[0].settings.device_id, "default");
    let e = gum(&md, json!({"sampleRate": {"exact": 192000}})).unwrap_err();
    assert_eq!(e.constraint.as_deref(), Some("sampleRate"));
    let video: MediaStreamConstraints =
        serde_json::from_value(json!({"audio": true, "video": true})).unwrap();
    assert_eq!(md.get_user_media(&video).unwrap_err().code, ErrorCode::NotFound);
    let a = gum(&md, json!(true)).unwrap();
    let b = gum(&md, json!(true)).unwrap();
    assert_ne!(a[0].id, b[0].id, "track ids are unique");

    // --- capture 1 s from virt_mic while speech plays into mic_feed
    let track = &t[0];
    let pipeline = gst::Pipeline::new();
    let src = track.make_source().expect("make_source");
    let caps = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::builder("audio/x-raw").field("format", "S16LE").build())
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink").property("sync", false).build().unwrap();
    pipeline.add_many([&src, &caps, &sink]).unwrap();
    gst::Element::link_many([&src, &caps, &sink]).unwrap();
    #[derive(Default)]
    struct Acc {
        sum_sq: f64,
        n: usize,
        buffers: usize,
        gaps: usize,
        last_end: Option<gst::ClockTime>,
    }
    let acc = Arc::new(Mutex::new(Acc::default()));
    let acc2 = acc.clone();
    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = &info.data {
            let map = buf.map_readable().unwrap();
            let mut a = acc2.lock().unwrap_or_else(|e| e.into_inner());
            for c in map.chunks_exact(2) {
                let s = i16::from_le_bytes([c[0], c[1]]) as f64 / 32768.0;
                a.sum_sq += s * s;
            }
            a.n += map.len() / 2;
            a.buffers += 1;
            let pts = buf.pts().expect("every captured buffer has a PTS");
            if let Some(end) = a.last_end
                && end != pts
                && !buf.flags().contains(gst::BufferFlags::DISCONT)
            {
                a.gaps += 1;
            }
            a.last_end = buf.duration().map(|d| pts + d);
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let player = ChildGuard(Some(
        Command::new("pw-cat")
            .args(["--playback", "--target", "mic_feed", SPEECH])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pw-cat"),
    ));
    run_for(&pipeline, Duration::from_millis(1200));
    pipeline.set_state(gst::State::Null).unwrap();
    drop(player);
    let a = acc.lock().unwrap();
    let rms = if a.n > 0 { (a.sum_sq / a.n as f64).sqrt() } else { 0.0 };
    eprintln!("capture: {} buffers, {} samples, rms {rms:.4}, {} timestamp gaps", a.buffers, a.n, a.gaps);
    assert!(a.n >= 24_000, "at least 0.5 s of 48 kHz mono captured, got {} samples", a.n);
    assert!(rms > 0.01, "captured audio is silent (rms {rms})");
    assert_eq!(a.gaps, 0, "capture timestamps are continuous");
    assert_eq!(track.settings.sample_rate, 48_000);
    drop(a);

    // --- playout: a tone into the null sink, recorded from its monitor
    assert_eq!(md.output(None).unwrap().device_id, "default");
    assert_eq!(md.output(Some("")).unwrap().device_id, "default");
    assert_eq!(md.output(Some("bogus")).unwrap_err().code, ErrorCode::NotFound);
    let out = md.output(Some(&spk.device_id)).expect("output by deviceId");
    assert_eq!(out.label, "spk");
    let wav = rig.dir.join("spk.wav");
    let recorder = ChildGuard(Some(
        Command::new("pw-record")
            .args(["-P", "{ stream.capture.sink = true }", "--target", "vdimedia_null_sink"])
            .arg(&wav)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pw-record"),
    ));
    std::thread::sleep(Duration::from_millis(300));
    let pipeline = gst::Pipeline::new();
    let tone = gst::ElementFactory::make("audiotestsrc")
        .property("is-live", true)
        .property("freq", 440.0f64)
        .property("volume", 0.5f64)
        .build()
        .unwrap();
    let sink = out.make_sink().expect("make_sink");
    pipeline.add_many([&tone, &sink]).unwrap();
    tone.link(&sink).unwrap();
    run_for(&pipeline, Duration::from_millis(1200));
    pipeline.set_state(gst::State::Null).unwrap();
    recorder.sigint_and_wait();
    let (rms, n) = wav_rms(&wav);
    eprintln!("playout recorded: {n} samples, rms {rms:.4}");
    assert!(n > 48_000, "recorded at least 0.5 s stereo, got {n} samples");
    // A 0.5-amplitude sine has rms 0.35; even half the time silent leaves > 0.1.
    assert!(rms > 0.1, "null sink got no tone (rms {rms})");
}
