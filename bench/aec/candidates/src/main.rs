//! `aec-candidates ENGINE FAR.wav NEAR.wav OUT.wav`: echo-cancels NEAR (microphone capture)
//! against FAR (loudspeaker reference) in 10 ms frames with ENGINE (`sonora` or `aec3`: AEC
//! only; `apm`: sonora's whole APM as `vdiaec` ran it before its own AEC3 stage, knobs from
//! AEC_* variables; `raw`: AEC3 alone through sonora-aec3's block processor as `vdiaec` drives it
//! at 16 kHz, its EchoCanceller3Config tuned by AEC_CFG="key=value,...", e.g.
//! `default_len=0.3,nearend_len=0.3` = vdiaec's tuning) and
//! writes OUT (16-bit PCM, same rate as NEAR). Prints one JSON line with the CPU time spent in
//! the engine (ms per second of audio) and the engine's own statistics where it has them.
//!
//! `vdiaec`: vdiaec's own chain, its AEC3 stage compiled from gst-plugins/src/vdiaec/aec3.rs
//! (tuned, 16/32/48 kHz, bands as vdiaec splits them, NS moderate inside it) then sonora's APM
//! with the residual echo detector (AEC_NS=off|low|... as for `raw`, AEC_DECAY=echo-decay, 0.6;
//! AEC_STAGE_NS=0 runs NS in that APM instead, as vdiaec did before).
//! `apm` with AEC_MAXRATE=48000 runs the APM's AEC3 on three bands at 48 kHz (WebRTC's
//! 48 kHz mode; sonora's default maximum internal rate is 32 kHz).
//!
//! Both inputs must be mono, same sample rate (16000, 32000 or 48000 Hz).

use std::time::Instant;

// vdiaec's AEC3 stage, the very source the element runs.
#[allow(dead_code)]
#[path = "../../../../gst-plugins/src/vdiaec/qmf.rs"]
mod qmf;
#[allow(dead_code)]
#[path = "../../../../gst-plugins/src/vdiaec/aec3.rs"]
mod vdiaec_aec3;

fn ns_level() -> Option<sonora::config::NoiseSuppressionLevel> {
    use sonora::config::NoiseSuppressionLevel as L;
    match std::env::var("AEC_NS").as_deref() {
        Ok("off") => None,
        Ok("low") => Some(L::Low),
        Ok("high") => Some(L::High),
        Ok("very-high") => Some(L::VeryHigh),
        _ => Some(L::Moderate),
    }
}

fn read(path: &str) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let spec = r.spec();
    assert_eq!(spec.channels, 1, "{path}: mono only");
    let s: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => r.samples::<i32>().map(|s| s.unwrap() as f32 / 32768.0).collect(),
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap()).collect(),
    };
    (spec.sample_rate, s)
}

fn cpu_ns() -> u128 {
    // Thread CPU time, so that a noisy shared machine does not inflate the figure.
    let mut ts = std::mem::MaybeUninit::<[i64; 2]>::uninit();
    unsafe extern "C" {
        fn clock_gettime(clk: i32, ts: *mut [i64; 2]) -> i32;
    }
    // CLOCK_THREAD_CPUTIME_ID = 3
    unsafe {
        clock_gettime(3, ts.as_mut_ptr());
        let t = ts.assume_init();
        t[0] as u128 * 1_000_000_000 + t[1] as u128
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: aec-candidates sonora|apm|aec3 FAR.wav NEAR.wav OUT.wav");
        std::process::exit(2);
    }
    let (rate, far) = read(&a[2]);
    let (rate2, near) = read(&a[3]);
    assert_eq!(rate, rate2, "FAR and NEAR rates differ");
    let n = rate as usize / 100;
    let frames = near.len() / n;
    let mut out = vec![0f32; frames * n];
    let zero = vec![0f32; n];
    let wall = Instant::now();
    let c0 = cpu_ns();
    let mut stats = String::new();
    match a[1].as_str() {
        "sonora" => {
            use sonora::config::EchoCanceller;
            use sonora::{AudioProcessing, Config, StreamConfig};
            let cfg = Config { echo_canceller: Some(EchoCanceller::default()), ..Default::default() };
            let sc = StreamConfig::new(rate, 1);
            let mut apm = AudioProcessing::builder().config(cfg).capture_config(sc).render_config(sc).build();
            let mut rdst = vec![0f32; n];
            for i in 0..frames {
                let f = far.get(i * n..(i + 1) * n).unwrap_or(&zero);
                apm.process_render_f32(&[f], &mut [&mut rdst]).unwrap();
                let _ = apm.set_stream_delay_ms(0);
                let (_, o) = out.split_at_mut(i * n);
                apm.process_capture_f32(&[&near[i * n..(i + 1) * n]], &mut [&mut o[..n]]).unwrap();
            }
            let s = apm.statistics();
            stats = format!(
                ",\"erle_db\":{:?},\"delay_ms\":{:?},\"residual_echo_likelihood\":{:?}",
                s.echo_return_loss_enhancement.unwrap_or(f64::NAN),
                s.delay_ms.unwrap_or(-1),
                s.residual_echo_likelihood.unwrap_or(f64::NAN)
            )
            .replace("NaN", "null");
        }
        "apm" => {
            // The full APM as `vdiaec` configures it, with the knobs taken from the environment
            // (AEC_NS=off|low|moderate|high|very-high, AEC_HPF=0|1, AEC_TM=legacy|hmm,
            // AEC_NS_LINEAR=0|1, AEC_SLACK=frames the reference is fed late, AEC_ED=0|1 residual echo detector,
            // AEC_JITTER below): used to find
            // which setting degrades near-end speech, offline and deterministically.
            use sonora::config::{
                EchoCanceller, HighPassFilter, NoiseSuppression, NoiseSuppressionLevel as L,
                TransparentModeType,
            };
            use sonora::{AudioProcessing, Config, StreamConfig};
            let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
            let level = match env("AEC_NS", "moderate").as_str() {
                "off" => None,
                "low" => Some(L::Low),
                "high" => Some(L::High),
                "very-high" => Some(L::VeryHigh),
                _ => Some(L::Moderate),
            };
            let cfg = Config {
                echo_canceller: Some(EchoCanceller {
                    transparent_mode: if env("AEC_TM", "legacy") == "hmm" {
                        TransparentModeType::Hmm
                    } else {
                        TransparentModeType::Legacy
                    },
                    ..Default::default()
                }),
                high_pass_filter: (env("AEC_HPF", "1") == "1").then(HighPassFilter::default),
                noise_suppression: level.map(|level| NoiseSuppression {
                    level,
                    analyze_linear_aec_output_when_available: env("AEC_NS_LINEAR", "0") == "1",
                }),
                pipeline: sonora::config::Pipeline {
                    maximum_internal_processing_rate: if env("AEC_MAXRATE", "32000") == "48000" {
                        sonora::config::MaxProcessingRate::Rate48kHz
                    } else {
                        sonora::config::MaxProcessingRate::Rate32kHz
                    },
                    ..Default::default()
                },
                ..Default::default()
            };
            let slack: usize = env("AEC_SLACK", "0").parse().unwrap_or(0);
            let sc = StreamConfig::new(rate, 1);
            let mut apm = AudioProcessing::builder()
                .config(cfg)
                .capture_config(sc)
                .render_config(sc)
                .echo_detector(env("AEC_ED", "1") == "1")
                .build();
            let mut rdst = vec![0f32; n];
            // AEC_JITTER=P: each reference frame is late by one more capture frame with
            // probability P (deterministic LCG), like a playout thread scheduled late.
            let jitter: f64 = env("AEC_JITTER", "0").parse().unwrap_or(0.0);
            let mut lcg: u64 = 0x2545F4914F6CDD1D;
            let mut next_ref = 0usize;
            let fill = env("AEC_FILL", "0") == "1";
            let stall: (usize, usize) = env("AEC_STALL", "0,0")
                .split_once(',')
                .map(|(a, b)| (a.parse().unwrap_or(0), b.parse().unwrap_or(0)))
                .unwrap_or((0, 0));
            for i in 0..frames {
                while next_ref + slack <= i {
                    lcg = lcg.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    if next_ref + slack == i && ((lcg >> 11) as f64 / (1u64 << 53) as f64) < jitter {
                        break;
                    }
                    // AEC_STALL=EVERY,LEN (frames): the playout thread stalls LEN frames every EVERY.
                    if stall.0 > 0 && i % stall.0 < stall.1 && next_ref + slack + (i % stall.0) >= i {
                        if !fill {
                            break;
                        }
                        // AEC_FILL=1: what vdiaec does, silence stands in for the late frame
                        // (which is then dropped), keeping one render frame per capture frame.
                        if next_ref + slack == i {
                            apm.process_render_f32(&[&zero], &mut [&mut rdst]).unwrap();
                            next_ref += 1;
                        }
                        break;
                    }
                    let f = far.get(next_ref * n..(next_ref + 1) * n).unwrap_or(&zero);
                    apm.process_render_f32(&[f], &mut [&mut rdst]).unwrap();
                    next_ref += 1;
                }
                let _ = apm.set_stream_delay_ms(0);
                let (_, o) = out.split_at_mut(i * n);
                apm.process_capture_f32(&[&near[i * n..(i + 1) * n]], &mut [&mut o[..n]]).unwrap();
            }
            let s = apm.statistics();
            stats = format!(
                ",\"erle_db\":{:?},\"delay_ms\":{:?}",
                s.echo_return_loss_enhancement.unwrap_or(f64::NAN),
                s.delay_ms.unwrap_or(-1)
            )
            .replace("NaN", "null");
        }
        "vdiaec" => {
            let decay: f32 = std::env::var("AEC_DECAY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(vdiaec_aec3::ECHO_DECAY);
            let mut a =
                vdiaec_aec3::Aec3::new(decay, rate, 1, rate, 1).expect("vdiaec: 16000, 32000 or 48000 Hz");
            // AEC_STAGE_NS=0: NS in the APM after the stage (vdiaec before NS moved into it)
            let stage_ns = std::env::var("AEC_STAGE_NS").map_or(true, |v| v != "0");
            let sc = sonora::StreamConfig::new(rate, 1);
            let cfg = if stage_ns {
                use sonora::config::NoiseSuppressionLevel as L;
                use sonora_ns::config::SuppressionLevel as S;
                a.set_noise_suppression(ns_level().map(|l| match l {
                    L::Low => S::K6dB,
                    L::Moderate => S::K12dB,
                    L::High => S::K18dB,
                    L::VeryHigh => S::K21dB,
                }));
                sonora::Config::default()
            } else {
                sonora::Config {
                    noise_suppression: ns_level()
                        .map(|level| sonora::config::NoiseSuppression { level, ..Default::default() }),
                    ..Default::default()
                }
            };
            let mut post = sonora::AudioProcessing::builder()
                .config(cfg)
                .capture_config(sc)
                .render_config(sc)
                .echo_detector(true)
                .build();
            let mut rdst = vec![0f32; n];
            let mut cap = vec![vec![0f32; n]];
            for i in 0..frames {
                let f = far.get(i * n..(i + 1) * n).unwrap_or(&zero);
                a.analyze_render(f);
                post.process_render_f32(&[f], &mut [&mut rdst]).unwrap();
                cap[0].copy_from_slice(&near[i * n..(i + 1) * n]);
                a.process_capture(&mut cap, 0);
                let _ = post.set_stream_delay_ms(0);
                post.process_capture_f32(&[&cap[0]], &mut [&mut out[i * n..(i + 1) * n]]).unwrap();
            }
            let (_, erle, delay) = a.metrics();
            stats = format!(",\"erle_db\":{erle:.1},\"delay_ms\":{delay},\"bands\":{}", a.bands());
        }
        "raw" => {
            // AEC3's block processor driven directly (16 kHz mono, one band), as sonora's APM
            // drives it (capture HPF, int16 scale, 80-sample sub-frames into 64-sample blocks),
            // but with an EchoCanceller3Config tuned from AEC_CFG="key=value,...": used to find
            // which AEC3 tuning keeps near-end speech in double talk. AEC only (no NS).
            use sonora_aec3::block::Block;
            use sonora_aec3::block_framer::BlockFramer;
            use sonora_aec3::block_processor::BlockProcessor;
            use sonora_aec3::frame_blocker::FrameBlocker;
            assert_eq!(rate, 16000, "raw: 16 kHz only");
            let mut cfg = sonora_aec3::config::EchoCanceller3Config::default();
            let spec = std::env::var("AEC_CFG").unwrap_or_default();
            for kv in spec.split(',').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').expect("AEC_CFG: key=value");
                let f: f32 = v.parse().unwrap_or(0.0);
                let b = v == "1" || v == "true";
                let s = &mut cfg.suppressor;
                match k {
                    "default_len" => cfg.ep_strength.default_len = f,
                    "nearend_len" => cfg.ep_strength.nearend_len = f,
                    "default_gain" => cfg.ep_strength.default_gain = f,
                    "bounded_erl" => cfg.ep_strength.bounded_erl = b,
                    "erle_max_l" => cfg.erle.max_l = f,
                    "erle_max_h" => cfg.erle.max_h = f,
                    "erle_onset" => cfg.erle.onset_detection = b,
                    "dne_enr" => s.dominant_nearend_detection.enr_threshold = f,
                    "dne_exit" => s.dominant_nearend_detection.enr_exit_threshold = f,
                    "dne_snr" => s.dominant_nearend_detection.snr_threshold = f,
                    "dne_hold" => s.dominant_nearend_detection.hold_duration = f as i32,
                    "dne_trigger" => s.dominant_nearend_detection.trigger_threshold = f as i32,
                    "subband" => s.use_subband_nearend_detection = b,
                    "nt_lf_tr" => s.nearend_tuning.mask_lf.enr_transparent = f,
                    "nt_lf_sup" => s.nearend_tuning.mask_lf.enr_suppress = f,
                    "nt_hf_tr" => s.nearend_tuning.mask_hf.enr_transparent = f,
                    "nt_hf_sup" => s.nearend_tuning.mask_hf.enr_suppress = f,
                    "nt_dec" => s.nearend_tuning.max_dec_factor_lf = f,
                    "nt_inc" => s.nearend_tuning.max_inc_factor = f,
                    "n_lf_tr" => s.normal_tuning.mask_lf.enr_transparent = f,
                    "n_lf_sup" => s.normal_tuning.mask_lf.enr_suppress = f,
                    "n_hf_tr" => s.normal_tuning.mask_hf.enr_transparent = f,
                    "n_hf_sup" => s.normal_tuning.mask_hf.enr_suppress = f,
                    "n_dec" => s.normal_tuning.max_dec_factor_lf = f,
                    "cons_hf" => s.conservative_hf_suppression = b,
                    "stationarity" => cfg.echo_audibility.use_stationarity_properties = b,
                    "stationarity_init" => cfg.echo_audibility.use_stationarity_properties_at_init = b,
                    "num_filters" => cfg.delay.num_filters = f as usize,
                    "dsf" => cfg.delay.down_sampling_factor = f as usize,
                    "refined_len" => cfg.filter.refined.length_blocks = f as usize,
                    "tail" => cfg.ep_strength.use_conservative_tail_frequency_response = b,
                    _ => panic!("AEC_CFG: unknown key {k}"),
                }
            }
            if !cfg.validate() {
                eprintln!("raw: config clamped by validate()");
            }
            let mut bp = BlockProcessor::new(&cfg, 16000, 1, 1);
            let mut hpf = sonora::high_pass_filter::HighPassFilter::new(16000, 1);
            let (mut rblk, mut cblk, mut framer) =
                (FrameBlocker::new(1, 1), FrameBlocker::new(1, 1), BlockFramer::new(1, 1));
            let (mut rb, mut cb) = (Block::new(1, 1), Block::new(1, 1));
            let mut sub = vec![vec![vec![0f32; 80]; 1]; 1];
            let mut r = vec![0f32; n];
            let mut c = vec![vec![0f32; n]; 1];
            // AEC_NS=moderate|...: sonora's APM (no AEC3; NS, and the high-pass filter NS
            // requires) after AEC3, with the residual echo detector: vdiaec's chain at 16 kHz.
            let ns = std::env::var("AEC_NS").ok().and_then(|v| match v.as_str() {
                "low" => Some(sonora::config::NoiseSuppressionLevel::Low),
                "moderate" => Some(sonora::config::NoiseSuppressionLevel::Moderate),
                "high" => Some(sonora::config::NoiseSuppressionLevel::High),
                "very-high" => Some(sonora::config::NoiseSuppressionLevel::VeryHigh),
                _ => None,
            });
            let mut post = ns.map(|level| {
                let sc = sonora::StreamConfig::new(rate, 1);
                let cfg = sonora::Config {
                    noise_suppression: Some(sonora::config::NoiseSuppression { level, ..Default::default() }),
                    ..Default::default()
                };
                sonora::AudioProcessing::builder()
                    .config(cfg)
                    .capture_config(sc)
                    .render_config(sc)
                    .echo_detector(true)
                    .build()
            });
            let mut rdst = vec![0f32; n];
            let mut post_in = vec![0f32; n];
            for i in 0..frames {
                let f = far.get(i * n..(i + 1) * n).unwrap_or(&zero);
                if let Some(p) = post.as_mut() {
                    p.process_render_f32(&[f], &mut [&mut rdst]).unwrap();
                }
                for (d, s) in r.iter_mut().zip(f) {
                    *d = s * 32768.0;
                }
                for k in 0..2 {
                    rblk.insert_sub_frame_and_extract_block(&[vec![&r[k * 80..k * 80 + 80]]], &mut rb);
                    bp.buffer_render(&rb);
                }
                if rblk.is_block_available() {
                    rblk.extract_block(&mut rb);
                    bp.buffer_render(&rb);
                }
                for (d, s) in c[0].iter_mut().zip(&near[i * n..(i + 1) * n]) {
                    *d = s * 32768.0;
                }
                hpf.process_channels(&mut c);
                let sat = c[0].iter().any(|v| v.abs() >= 32700.0);
                bp.set_audio_buffer_delay(0);
                for k in 0..2 {
                    cblk.insert_sub_frame_and_extract_block(&[vec![&c[0][k * 80..k * 80 + 80]]], &mut cb);
                    bp.process_capture(false, sat, None, &mut cb);
                    framer.insert_block_and_extract_sub_frame(&cb, &mut sub);
                    for (j, v) in sub[0][0].iter().enumerate() {
                        out[i * n + k * 80 + j] = v / 32768.0;
                    }
                }
                if cblk.is_block_available() {
                    cblk.extract_block(&mut cb);
                    bp.process_capture(false, sat, None, &mut cb);
                    framer.insert_block(&cb);
                }
                if let Some(p) = post.as_mut() {
                    post_in.copy_from_slice(&out[i * n..(i + 1) * n]);
                    p.process_capture_f32(&[&post_in], &mut [&mut out[i * n..(i + 1) * n]]).unwrap();
                }
            }
            let m = bp.get_metrics();
            stats = format!(",\"erle_db\":{:.1},\"delay_ms\":{}", m.echo_return_loss_enhancement, m.delay_ms);
        }
        "aec3" => {
            use aec3::nodes::audio::AudioFormat;
            use aec3::pipelines::linear;
            let fmt = AudioFormat::ten_ms(rate, 1);
            // AEC_CFG keys default_len, nearend_len (ep_strength) tune its EchoCanceller3Config;
            // AEC_NS=1 adds its noise suppression (default level) like vdiaec's chain.
            let mut cfg = aec3::api::EchoCanceller3Config::default();
            for kv in std::env::var("AEC_CFG").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').expect("AEC_CFG: key=value");
                let f: f32 = v.parse().unwrap_or(0.0);
                match k {
                    "default_len" => cfg.ep_strength.default_len = f,
                    "nearend_len" => cfg.ep_strength.nearend_len = f,
                    _ => panic!("AEC_CFG (aec3): unknown key {k}"),
                }
            }
            let mut p = linear::builder(fmt, fmt)
                .aec3_config(cfg)
                .enable_noise_suppression(std::env::var("AEC_NS").is_ok_and(|v| v == "1"))
                .enable_gain_controller2(false)
                .build()
                .expect("aec3 pipeline");
            for i in 0..frames {
                let f = far.get(i * n..(i + 1) * n).unwrap_or(&zero);
                p.handle_render_frame(f).unwrap();
                let (_, o) = out.split_at_mut(i * n);
                p.process_capture_frame(&near[i * n..(i + 1) * n], &mut o[..n]).unwrap();
            }
        }
        e => panic!("unknown engine {e}"),
    }
    let cpu = (cpu_ns() - c0) as f64 / 1e6;
    let secs = (frames * n) as f64 / rate as f64;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&a[4], spec).unwrap();
    for s in out {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    println!(
        "{{\"engine\":\"{}\",\"cpu_ms_per_s\":{:.2},\"wall_ms\":{:.0}{}}}",
        a[1],
        cpu / secs,
        wall.elapsed().as_secs_f64() * 1e3,
        stats
    );
}
