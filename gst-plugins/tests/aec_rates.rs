//! vdiaec at the engine's capture rate: at 32 and 48 kHz the tuned AEC3 stage runs (two bands,
//! gst-plugins/src/vdiaec/aec3.rs), not the APM's AEC3 with WebRTC's default tuning. The APM's
//! AEC3 ignores `echo-decay`, so a fallback to it makes the double-talk outputs of two
//! `echo-decay` values identical and these tests fail.
//!
//! Deterministic: buffers pushed with gst_check harnesses, reference frame then capture frame,
//! 10 ms each, with running times in a 0-based TIME segment.

use gst_check::Harness;

mod common;

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gst::init().expect("gst init");
        gstvdimedia::plugin_register_static().expect("register plugin");
    });
}

fn buffer(samples: &[f32], idx: usize) -> gst::Buffer {
    let bytes: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
        .collect();
    let mut b = gst::Buffer::from_mut_slice(bytes);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(idx as u64 * 10));
        b.set_duration(gst::ClockTime::from_mseconds(10));
    }
    b
}

fn samples(b: &gst::Buffer) -> Vec<f32> {
    let m = b.map_readable().unwrap();
    m.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0).collect()
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() + 1e-12
}

/// 6 s at `rate` Hz, mono capture, against a stereo reference at the same rate: echo through a
/// 40 ms delay and a decaying FIR at -6 dB; near-end talk from 4 to 5 s (double talk).
/// Returns (capture, output aligned to it).
fn run(name: &str, rate: usize, echo_decay: f32) -> (Vec<f32>, Vec<f32>) {
    init();
    let caps = |ch: usize| format!("audio/x-raw,format=S16LE,layout=interleaved,rate={rate},channels={ch}");
    let probe = gst::ElementFactory::make("vdiaecprobe").name(name).build().unwrap();
    let aec = gst::ElementFactory::make("vdiaec")
        .name(format!("{name}-aec"))
        .property("probe", name)
        .property("noise-suppression", false)
        .property("echo-decay", echo_decay)
        .build()
        .unwrap();
    let mut hf = Harness::with_element(&probe, Some("sink"), Some("src"));
    hf.set_src_caps_str(&caps(2));
    let mut hn = Harness::with_element(&aec, Some("sink"), Some("src"));
    hn.set_src_caps_str(&caps(1));
    let far = common::speech(rate, rate * 6, 12345);
    let talk = common::speech(rate, rate, 999);
    let d = rate * 40 / 1000;
    let step = rate / 2000;
    let taps = [0.5f32, 0.25, -0.12, 0.06, 0.03];
    let near: Vec<f32> = (0..far.len())
        .map(|i| {
            let echo: f32 = taps
                .iter()
                .enumerate()
                .map(|(k, h)| if i >= d + k * step { h * far[i - d - k * step] } else { 0.0 })
                .sum();
            echo + if (4 * rate..5 * rate).contains(&i) { talk[i - 4 * rate] } else { 0.0 }
        })
        .collect();
    let n = rate / 100;
    let mut out = Vec::new();
    for i in 0..far.len() / n {
        let stereo: Vec<f32> = far[i * n..(i + 1) * n].iter().flat_map(|s| [*s, *s]).collect();
        hf.push_and_pull(buffer(&stereo, i)).unwrap();
        out.extend(samples(&hn.push_and_pull(buffer(&near[i * n..(i + 1) * n], i)).unwrap()));
    }
    // the element delays by one 10 ms frame
    (near[..near.len() - n].to_vec(), out[n..].to_vec())
}

fn check_rate(rate: usize) {
    let (near, tuned) = run(&format!("probe-rate-{rate}-tuned"), rate, 0.6);
    let (_, default) = run(&format!("probe-rate-{rate}-default"), rate, 0.83);
    let st = 2 * rate..4 * rate;
    let erle = 10.0 * (energy(&near[st.clone()]) / energy(&tuned[st])).log10();
    let dt = 4 * rate..5 * rate;
    let diff: Vec<f32> = tuned[dt.clone()].iter().zip(&default[dt.clone()]).map(|(a, b)| a - b).collect();
    let rel = 10.0 * (energy(&diff) / energy(&default[dt])).log10();
    eprintln!(
        "{rate} Hz: ERLE after 2 s {erle:.1} dB; echo-decay 0.6 vs 0.83 in double talk: difference at {rel:.1} dB"
    );
    assert!(erle > 20.0, "{rate} Hz: ERLE {erle:.1} dB, expected > 20 dB");
    assert!(rel > -40.0, "{rate} Hz: echo-decay has no effect ({rel:.1} dB): the untuned APM AEC3 ran");
}

#[test]
fn tuned_aec3_runs_at_48khz() {
    check_rate(48000);
}

#[test]
fn tuned_aec3_runs_at_32khz() {
    check_rate(32000);
}
