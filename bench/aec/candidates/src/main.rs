//! `aec-candidates ENGINE FAR.wav NEAR.wav OUT.wav`: echo-cancels NEAR (microphone capture)
//! against FAR (loudspeaker reference) in 10 ms frames with ENGINE (`sonora` or `aec3`: AEC
//! only; `apm`: sonora's whole APM as `vdiaec` runs it, knobs from AEC_* variables) and
//! writes OUT (16-bit PCM, same rate as NEAR). Prints one JSON line with the CPU time spent in
//! the engine (ms per second of audio) and the engine's own statistics where it has them.
//!
//! Both inputs must be mono, same sample rate (16000 or 48000 Hz).

use std::time::Instant;

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
            let mut apm = AudioProcessing::builder()
                .config(cfg)
                .capture_config(sc)
                .render_config(sc)
                .build();
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
            use sonora::config::{EchoCanceller, HighPassFilter, NoiseSuppression, NoiseSuppressionLevel as L, TransparentModeType};
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
                    transparent_mode: if env("AEC_TM", "legacy") == "hmm" { TransparentModeType::Hmm } else { TransparentModeType::Legacy },
                    ..Default::default()
                }),
                high_pass_filter: (env("AEC_HPF", "1") == "1").then(HighPassFilter::default),
                noise_suppression: level.map(|level| NoiseSuppression {
                    level,
                    analyze_linear_aec_output_when_available: env("AEC_NS_LINEAR", "0") == "1",
                }),
                ..Default::default()
            };
            let slack: usize = env("AEC_SLACK", "0").parse().unwrap_or(0);
            let sc = StreamConfig::new(rate, 1);
            let mut apm = AudioProcessing::builder().config(cfg).capture_config(sc).render_config(sc).echo_detector(env("AEC_ED", "1") == "1").build();
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
            stats = format!(",\"erle_db\":{:?},\"delay_ms\":{:?}", s.echo_return_loss_enhancement.unwrap_or(f64::NAN), s.delay_ms.unwrap_or(-1)).replace("NaN", "null");
        }
        "aec3" => {
            use aec3::nodes::audio::AudioFormat;
            use aec3::pipelines::linear;
            let fmt = AudioFormat::ten_ms(rate, 1);
            let mut p = linear::builder(fmt, fmt)
                .enable_noise_suppression(false)
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
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
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
