//! `g722enc` / `g722dec` against gst-libav's `avenc_g722` / `avdec_g722` (FFmpeg), on real
//! speech (`/usr/share/sounds/alsa/*.wav`, resampled to 16 kHz), plus the bad-input behaviour.
//!
//! Tests that need gst-libav print why and return when `avdec_g722` is missing.
//! `g722_report` (ignored; `bench/g722/report.sh` runs it) writes WAV files and a JSON summary
//! for the benchmark report.

use std::path::{Path, PathBuf};
use std::sync::Once;

use gst::prelude::*;
use gst_check::Harness;

/// 16 kHz mono S16LE raw caps.
const RAW_CAPS: &str = "audio/x-raw,format=S16LE,layout=interleaved,rate=16000,channels=1";
/// G.722 elementary stream caps, as avenc_g722 and rtpg722depay produce.
const G722_CAPS: &str = "audio/G722,rate=16000,channels=1";
/// Samples of end-to-end codec delay searched when aligning decoded audio with the input
/// (G.722's QMF pair delays by 22 samples; FFmpeg and spandsp agree on it).
const MAX_LAG: usize = 64;

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().unwrap();
        gstvdimedia::plugin_register_static().expect("register vdimedia plugin");
    });
}

fn have(factory: &str) -> bool {
    gst::ElementFactory::find(factory).is_some()
}

fn libav_or_skip(test: &str) -> bool {
    if have("avdec_g722") && have("avenc_g722") {
        true
    } else {
        println!("SKIP {test}: avenc_g722/avdec_g722 (gstreamer1.0-libav) not installed");
        false
    }
}

/// Speech files: every `/usr/share/sounds/alsa/*.wav` but Noise.wav, sorted.
fn speech_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/share/sounds/alsa")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "wav") && !p.ends_with("Noise.wav"));
    v.sort();
    v
}

/// Runs `bytes` (with caps `in_caps`, pushed as `chunk`-byte buffers, timestamped by
/// `bytes_per_ms`) through the bin `desc` in a Harness and returns everything it output.
/// Panics with the flow error if the bin refuses the data.
fn run(desc: &str, in_caps: &str, bytes: &[u8], chunk: usize) -> Vec<u8> {
    // Raw S16 at 16 kHz is 32 bytes/ms, 48 kHz 96 bytes/ms; G.722 at 64 kbit/s is 8 bytes/ms.
    let bytes_per_ms: u64 = if in_caps.starts_with("audio/G722") {
        8
    } else if in_caps.contains("rate=48000") {
        96
    } else {
        32
    };
    let mut h = Harness::new_parse(desc);
    h.set_src_caps_str(in_caps);
    let mut out = Vec::new();
    for (i, c) in bytes.chunks(chunk).enumerate() {
        let mut b = gst::Buffer::from_slice(c.to_vec());
        {
            let b = b.get_mut().unwrap();
            let off = (i * chunk) as u64;
            b.set_pts(gst::ClockTime::from_nseconds(off * 1_000_000 / bytes_per_ms));
            b.set_duration(gst::ClockTime::from_nseconds(c.len() as u64 * 1_000_000 / bytes_per_ms));
        }
        if let Err(e) = h.push(b) {
            panic!("`{desc}` refused buffer {i}: {e:?}");
        }
        while let Some(o) = h.try_pull() {
            out.extend_from_slice(&o.map_readable().unwrap());
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    while let Some(o) = h.try_pull() {
        out.extend_from_slice(&o.map_readable().unwrap());
    }
    out
}

/// A 16-bit PCM mono WAV file (as alsa-utils ships, 48 kHz) as 16 kHz mono S16 samples,
/// resampled by audioresample at its best quality.
fn load_16k(path: &Path) -> Vec<i16> {
    let wav = std::fs::read(path).unwrap();
    assert_eq!(&wav[0..4], b"RIFF");
    let mut i = 12;
    let (mut rate, mut channels, mut data) = (0u32, 0u16, &wav[0..0]);
    while i + 8 <= wav.len() {
        let id = &wav[i..i + 4];
        let len = u32::from_le_bytes(wav[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = &wav[i + 8..(i + 8 + len).min(wav.len())];
        if id == b"fmt " {
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit PCM");
        } else if id == b"data" {
            data = body;
        }
        i += 8 + len + (len & 1);
    }
    assert_eq!(channels, 1, "{}: mono speech expected", path.display());
    let caps = format!("audio/x-raw,format=S16LE,layout=interleaved,rate={rate},channels=1");
    to_i16(&run(&format!("audioresample quality=10 ! capsfilter caps=\"{RAW_CAPS}\""), &caps, data, 1920))
}

fn to_i16(b: &[u8]) -> Vec<i16> {
    b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()
}

fn to_bytes(s: &[i16]) -> Vec<u8> {
    s.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn encode(enc: &str, pcm: &[i16]) -> Vec<u8> {
    run(enc, RAW_CAPS, &to_bytes(pcm), 640)
}

fn decode(dec: &str, g722: &[u8]) -> Vec<i16> {
    to_i16(&run(&format!("{dec} ! capsfilter caps=\"{RAW_CAPS}\""), G722_CAPS, g722, 160))
}

/// SNR (dB) of `out` against `reference`, at the lag in 0..MAX_LAG that maximises it.
/// Returns (snr_db, lag_samples).
fn snr_db(reference: &[i16], out: &[i16]) -> (f64, usize) {
    let mut best = (f64::NEG_INFINITY, 0);
    for lag in 0..MAX_LAG {
        let n = reference.len().min(out.len().saturating_sub(lag));
        let (mut sig, mut err) = (0f64, 0f64);
        for i in 0..n {
            let r = reference[i] as f64;
            let d = out[i + lag] as f64 - r;
            sig += r * r;
            err += d * d;
        }
        let snr = 10.0 * (sig / err.max(1e-9)).log10();
        if snr > best.0 {
            best = (snr, lag);
        }
    }
    best
}

fn max_abs_diff(a: &[i16], b: &[i16]) -> (i32, usize) {
    let n = a.len().min(b.len());
    let m = (0..n).map(|i| (a[i] as i32 - b[i] as i32).abs()).max().unwrap_or(0);
    (m, a.len().abs_diff(b.len()))
}

fn first_speech() -> Option<Vec<i16>> {
    let f = speech_files().into_iter().next()?;
    Some(load_16k(&f))
}

#[test]
fn ranks_beat_libav_and_caps_fit_rtp_g722() {
    init();
    let enc = gst::ElementFactory::find("g722enc").unwrap();
    let dec = gst::ElementFactory::find("g722dec").unwrap();
    assert_eq!(enc.rank(), gst::Rank::PRIMARY);
    assert_eq!(dec.rank(), gst::Rank::PRIMARY);
    if let Some(av) = gst::ElementFactory::find("avdec_g722") {
        assert!(dec.rank() > av.rank());
    }
    if let Some(av) = gst::ElementFactory::find("avenc_g722") {
        assert!(enc.rank() > av.rank());
    }
    // Through the real RTP payloader/depayloader: 1 s of a 440 Hz tone must come back loud.
    let tone: Vec<i16> = (0..16000)
        .map(|i| ((i as f64 * 440.0 * std::f64::consts::TAU / 16000.0).sin() * 8000.0) as i16)
        .collect();
    let out = to_i16(&run(
        &format!("g722enc ! rtpg722pay ! rtpg722depay ! g722dec ! capsfilter caps=\"{RAW_CAPS}\""),
        RAW_CAPS,
        &to_bytes(&tone),
        640,
    ));
    assert!(out.len() >= 15000, "only {} samples came back", out.len());
    let (snr, _) = snr_db(&tone[..15000], &out);
    assert!(snr > 20.0, "tone SNR through rtpg722pay/depay {snr:.1} dB");
}

#[test]
fn decoders_agree_sample_by_sample_and_cross_snr() {
    init();
    if !libav_or_skip("decoders_agree_sample_by_sample_and_cross_snr") {
        return;
    }
    let Some(pcm) = first_speech() else {
        println!("SKIP: no /usr/share/sounds/alsa speech (alsa-utils)");
        return;
    };
    let ours = encode("g722enc", &pcm);
    let lav = encode("avenc_g722", &pcm);
    assert_eq!(ours.len(), pcm.len().div_ceil(2), "g722enc: 1 byte per 2 samples (odd tail padded)");
    for (name, stream) in [("g722enc", &ours), ("avenc_g722", &lav)] {
        let a = decode("avdec_g722", stream);
        let b = decode("g722dec", stream);
        let (diff, len_diff) = max_abs_diff(&a, &b);
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        let (sa, _) = snr_db(&pcm, &a);
        let (sb, _) = snr_db(&pcm, &b);
        println!(
            "{name} stream: avdec_g722 vs g722dec max |diff| = {diff}, {differing}/{} samples differ, \
             length diff {len_diff}; SNR avdec {sa:.2} dB, g722dec {sb:.2} dB",
            a.len()
        );
        assert_eq!(len_diff, 0);
        if name == "g722enc" {
            assert_eq!(diff, 0, "on g722enc's stream g722dec must equal avdec_g722 sample by sample");
        }
        // FFmpeg's encoder emits some codes on which the two decoders round differently (see
        // docs/benchmarks.md); they must still be equally faithful.
        assert!((sa - sb).abs() < 0.5, "decoders differ in fidelity: {sa:.2} vs {sb:.2} dB");
    }
    let (s1, lag1) = snr_db(&pcm, &decode("avdec_g722", &ours));
    let (s2, lag2) = snr_db(&pcm, &decode("g722dec", &lav));
    let (s3, _) = snr_db(&pcm, &decode("avdec_g722", &lav));
    println!(
        "SNR g722enc→avdec_g722 {s1:.2} dB (lag {lag1}), avenc_g722→g722dec {s2:.2} dB (lag {lag2}), libav↔libav {s3:.2} dB"
    );
    // Our encoder must be as good as FFmpeg's within 1 dB.
    assert!(s1 > s3 - 1.0 && s1 > 15.0, "g722enc SNR {s1:.2} dB vs FFmpeg {s3:.2} dB");
    assert!(s2 > 15.0);
}

#[test]
fn wrong_caps_are_refused_at_negotiation() {
    init();
    let mut h = Harness::new("g722enc");
    h.set_src_caps_str("audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1");
    let r = h.push(gst::Buffer::from_slice(vec![0u8; 960]));
    assert_eq!(r, Err(gst::FlowError::NotNegotiated));

    let mut h = Harness::new("g722dec");
    h.set_src_caps_str("audio/G722,rate=16000,channels=2");
    let r = h.push(gst::Buffer::from_slice(vec![0u8; 160]));
    assert_eq!(r, Err(gst::FlowError::NotNegotiated));

    // And the error a user sees when building such a pipeline.
    let err = gst::parse::launch("audiotestsrc num-buffers=1 ! audio/x-raw,rate=8000 ! g722enc ! fakesink")
        .expect_err("8 kHz into g722enc must be refused");
    assert!(err.to_string().contains("can't handle caps"), "{err}");
}

/// Decodes `g722` with a discontinuity (DISCONT flag, or a GAP event) before byte `at`, and
/// checks that what follows equals a fresh decoder's output for the same bytes: the state was
/// reset, so nothing stale from before the loss leaks into the audio.
fn check_reset(use_gap: bool) {
    init();
    let tone: Vec<i16> = (0..16000)
        .map(|i| ((i as f64 * 700.0 * std::f64::consts::TAU / 16000.0).sin() * 9000.0) as i16)
        .collect();
    let g722 = encode("g722enc", &tone);
    let at = 4000; // 0.5 s
    let mut h = Harness::new("g722dec");
    h.set_src_caps_str(G722_CAPS);
    let mut pts = 0u64;
    let push = |h: &mut Harness, pts: &mut u64, c: &[u8], discont: bool| {
        let mut b = gst::Buffer::from_slice(c.to_vec());
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(*pts));
            b.set_duration(gst::ClockTime::from_nseconds(c.len() as u64 * 125_000));
            if discont {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
        }
        *pts += c.len() as u64 * 125_000;
        h.push(b).unwrap();
    };
    for c in g722[..at].chunks(160) {
        push(&mut h, &mut pts, c, false);
    }
    let mut before = Vec::new();
    while let Some(b) = h.try_pull() {
        before.extend_from_slice(&b.map_readable().unwrap());
    }
    if use_gap {
        // 20 ms lost: rtpjitterbuffer → depayloader reports it as GAP.
        let gap_ns = 20_000_000u64;
        assert!(
            h.push_event(
                gst::event::Gap::builder(gst::ClockTime::from_nseconds(pts))
                    .duration(gst::ClockTime::from_nseconds(gap_ns))
                    .build()
            )
        );
        pts += gap_ns;
    }
    for (i, c) in g722[at..].chunks(160).enumerate() {
        push(&mut h, &mut pts, c, i == 0 && !use_gap);
    }
    h.push_event(gst::event::Eos::new());
    let mut after = Vec::new();
    while let Some(b) = h.try_pull() {
        after.extend_from_slice(&b.map_readable().unwrap());
    }
    let after = to_i16(&after);
    let fresh = decode("g722dec", &g722[at..]);
    assert_eq!(before.len() / 2, at * 2);
    assert_eq!(after.len(), fresh.len(), "samples after the discontinuity");
    let (diff, _) = max_abs_diff(&after, &fresh);
    assert_eq!(diff, 0, "decoder state was not reset at the {}", if use_gap { "GAP" } else { "DISCONT" });
    // Without a reset the output differs: proves this test can fail.
    let continuous = decode("g722dec", &g722);
    let (diff_cont, _) = max_abs_diff(&continuous[at * 2..], &fresh);
    assert!(diff_cont > 0);
}

#[test]
fn discont_buffer_resets_decoder() {
    check_reset(false);
}

#[test]
fn gap_event_resets_decoder() {
    check_reset(true);
}

/// Writes the correctness report's inputs: per speech file the 16 kHz reference and the three
/// decoded paths as WAV, and `summary.json` with max |diff| and SNR. Run by bench/g722/report.sh
/// with `G722_REPORT_DIR` set.
#[test]
#[ignore]
fn g722_report() {
    init();
    let dir = PathBuf::from(std::env::var("G722_REPORT_DIR").expect("G722_REPORT_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(libav_or_skip("g722_report"), "the report needs gst-libav");
    let mut rows = Vec::new();
    for f in speech_files() {
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let pcm = load_16k(&f);
        let ours = encode("g722enc", &pcm);
        let lav = encode("avenc_g722", &pcm);
        let paths = [
            ("ours_avdec", decode("avdec_g722", &ours)),
            ("lav_ours", decode("g722dec", &lav)),
            ("lav_lav", decode("avdec_g722", &lav)),
            ("ours_ours", decode("g722dec", &ours)),
        ];
        let (dec_diff, _) = max_abs_diff(&decode("avdec_g722", &lav), &paths[1].1);
        let (dec_diff2, _) = max_abs_diff(&paths[0].1, &paths[3].1);
        let stream_bytes_differ = ours.iter().zip(&lav).filter(|(a, b)| a != b).count();
        write_wav(&dir.join(format!("{name}.ref.wav")), &pcm);
        let mut row = format!(
            "{{\"file\":\"{name}\",\"samples\":{},\"dec_max_abs_diff\":{},\"enc_bytes_differing\":{},\"enc_bytes\":{}",
            pcm.len(),
            dec_diff.max(dec_diff2),
            stream_bytes_differ,
            ours.len()
        );
        for (p, out) in &paths {
            let (snr, lag) = snr_db(&pcm, out);
            // Align for PESQ: drop the codec delay.
            write_wav(&dir.join(format!("{name}.{p}.wav")), &out[lag.min(out.len())..]);
            row.push_str(&format!(",\"snr_{p}\":{snr:.3},\"lag_{p}\":{lag}"));
        }
        row.push('}');
        println!("{row}");
        rows.push(row);
    }
    std::fs::write(dir.join("summary.json"), format!("[{}]\n", rows.join(",\n"))).unwrap();
}

fn write_wav(path: &Path, s: &[i16]) {
    let data = to_bytes(s);
    let mut w = Vec::with_capacity(44 + data.len());
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&32000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    std::fs::write(path, w).unwrap();
}
