//! WebRTC AEC3 driven directly through `sonora-aec3`'s block processor, so that its
//! `EchoCanceller3Config` can be tuned: sonora 0.2's `AudioProcessing` always builds AEC3 from
//! `EchoCanceller3Config::default()`. This reproduces what sonora's APM does around AEC3
//! (capture high-pass filter on the lowest band, float-S16 scale, 80-sample sub-frames into
//! 64-sample blocks, saturation flag) and its noise suppression (`sonora-ns`, per channel on the
//! lowest band, analysed before AEC3 and applied after it, the upper band scaled by its gain, as
//! the APM's capture path orders them). AGC2 and the residual echo detector stay in sonora's
//! APM, after this stage, at the capture rate: with neither needing split bands, the APM then
//! neither resamples nor splits, and does not run a second high-pass filter (it forces one on
//! whenever its own NS runs).
//!
//! Rates, as the APM processes them (its default maximum internal rate, 32 kHz):
//! - 16 kHz: one band; output bit-identical to the APM's AEC3 with the default config
//!   (unit test `matches_the_apms_aec3_at_16_khz`; offline, `bench/aec/candidates` `raw`).
//! - 32 kHz: two 16 kHz bands from a two-band QMF bank (`qmf.rs`; sonora's is private),
//!   capture and reference alike; AEC3 cancels linearly in the low band and applies its
//!   suppression gain to the high band.
//! - 48 kHz: resampled to 32 kHz (sonora's public `PushResampler`, as the APM does), processed
//!   as above and resampled back; like the APM's output, it keeps no content above 16 kHz.
//!
//! Why two bands at 32 kHz rather than three at 48 kHz (WebRTC's 48 kHz mode, sonora's public
//! `ThreeBandFilterBank`): it is what the APM does by default, so this stage's ERLE and echo
//! scores can be held against the APM's path at the same rate. An earlier three-band attempt
//! lost 9 dB of ERLE (31.7 vs 40.5 dB, one real-time run); its code is not in the history, and
//! the APM's own three-band mode does not show such a loss offline (35.4 / 39.3 dB vs 38.5 /
//! 38.9 dB with two bands, two input resamplers; docs/benchmarks.md, "AEC3 at 48 kHz"), so the
//! loss came with how those bands were driven. Single runs differ by ±3 dB anyway: ERLE over a
//! few seconds is dominated by one or two echo transients, which depend chaotically on the input.

use sonora::high_pass_filter::HighPassFilter;
use sonora_aec3::block::Block;
use sonora_aec3::block_framer::BlockFramer;
use sonora_aec3::block_processor::BlockProcessor;
use sonora_aec3::common::SUB_FRAME_LENGTH;
use sonora_aec3::config::EchoCanceller3Config;
use sonora_aec3::frame_blocker::FrameBlocker;
use sonora_common_audio::push_resampler::PushResampler;
use sonora_ns::config::{NsConfig, SuppressionLevel};
use sonora_ns::noise_suppressor::NoiseSuppressor;

use super::qmf::TwoBandQmf;

/// Float-S16 scale AEC3 works in (the APM's internal format).
const S16: f32 = 32768.0;

/// Echo-path reverb decay per 4 ms block that AEC3's suppressor assumes (`ep_strength.default_len`
/// and `nearend_len`; WebRTC default 0.83). A shorter modelled echo tail keeps the suppressor from
/// gating near-end speech after each far-end word. Offline, AEC3 + moderate NS as vdiaec runs
/// them (bench/aec/candidates `raw`, docs/benchmarks.md "AEC3"), AECMOS degradation in double
/// talk 3.10 → 3.81 (RT60 0.3 s room; 3.03 → 3.46 at 0.6 s), echo st 4.19 → 4.25 (3.82 → 3.80),
/// ERLE 36.8 → 34.7 dB. 0.3 gave 3.95 in double talk but echo st 4.15, too close to 4.0 in
/// real-time runs on a loaded machine.
pub(super) const ECHO_DECAY: f32 = 0.6;

/// The AEC3 tuning `vdiaec` runs: WebRTC's default but for the modelled echo tail decay
/// (`echo_decay`, 0..1 per 4 ms block).
pub(super) fn config(echo_decay: f32) -> EchoCanceller3Config {
    let mut cfg = EchoCanceller3Config::default();
    cfg.ep_strength.default_len = echo_decay;
    cfg.ep_strength.nearend_len = echo_decay;
    cfg.validate();
    cfg
}

/// AEC3's (and NS's) band width: each band holds 160 samples per 10 ms (16 kHz).
const BAND_FRAME: usize = 160;

/// Whether `Aec3` takes this capture format (16000, 32000 or 48000 Hz; 1 or 2 channels).
pub(super) fn supported(rate: u32, channels: usize) -> bool {
    matches!(rate, 16000 | 32000 | 48000) && (1..=2).contains(&channels)
}

/// Rate AEC3 runs at for a capture rate (the APM's choice: 48 kHz is processed at 32 kHz).
fn processing_rate(rate: u32) -> u32 {
    rate.min(32000)
}

/// One AEC3 instance for `channels` capture channels at `rate` Hz (16000, 32000 or 48000),
/// fed a reference of `render_rate` Hz and `render_channels` channels (any rate the probe
/// takes; downmixed to mono and resampled to the processing rate, as the APM does before AEC3
/// until it detects proper stereo content, which a VoIP far end never is).
pub(super) struct Aec3 {
    echo_decay: f32,
    channels: usize,
    render_channels: usize,
    /// Number of 16 kHz bands AEC3 runs on (1 at 16 kHz, 2 at 32 and 48 kHz).
    bands: usize,
    bp: BlockProcessor,
    /// Capture high-pass filter on the lowest band (AEC3 needs it; the APM enforces it).
    hpf: HighPassFilter,
    render_resampler: Option<PushResampler<f32>>,
    /// 48 kHz capture: per channel, to and from the 32 kHz processing rate.
    capture_down: Vec<PushResampler<f32>>,
    capture_up: Vec<PushResampler<f32>>,
    /// Two-band split: the reference's and each capture channel's.
    render_qmf: Option<TwoBandQmf>,
    capture_qmf: Vec<TwoBandQmf>,
    render_blocker: FrameBlocker,
    capture_blocker: FrameBlocker,
    framer: BlockFramer,
    render_block: Block,
    capture_block: Block,
    /// Mono reference at the render rate, then at the processing rate (float-S16).
    render_mono: Vec<f32>,
    render: Vec<f32>,
    /// Reference bands `[band]`, `BAND_FRAME` samples each.
    render_bands: Vec<Vec<f32>>,
    /// Capture per channel at the processing rate (float-S16).
    capture: Vec<Vec<f32>>,
    /// Capture per channel at the input rate (float-S16; 48 kHz only).
    capture_in: Vec<Vec<f32>>,
    /// Capture bands `[band][channel]`, `BAND_FRAME` samples each, processed in place.
    capture_bands: Vec<Vec<Vec<f32>>>,
    /// `[band][channel]` sub-frame out of the block framer.
    sub_frame: Vec<Vec<Vec<f32>>>,
    /// Noise suppression per capture channel (empty: off), and its level.
    ns: Vec<NoiseSuppressor>,
    ns_level: Option<SuppressionLevel>,
}

impl Aec3 {
    /// `echo_decay`: see `ECHO_DECAY`. `None` for capture rates `supported` refuses (those
    /// keep the APM's own AEC3) or a reference that is not 1–2 channels at ≥ 8000 Hz.
    pub(super) fn new(
        echo_decay: f32,
        rate: u32,
        channels: usize,
        render_rate: u32,
        render_channels: usize,
    ) -> Option<Self> {
        if !supported(rate, channels) || !(1..=2).contains(&render_channels) || render_rate < 8000 {
            return None;
        }
        let proc_rate = processing_rate(rate);
        let proc_frame = proc_rate as usize / 100;
        let frame = rate as usize / 100;
        let bands = proc_frame / BAND_FRAME;
        let render_frame = render_rate as usize / 100;
        let resample = rate != proc_rate;
        Some(Self {
            echo_decay,
            channels,
            render_channels,
            bands,
            bp: BlockProcessor::new(&config(echo_decay), proc_rate as usize, 1, channels),
            hpf: HighPassFilter::new(16000, channels),
            render_resampler: (render_rate != proc_rate)
                .then(|| PushResampler::new(render_frame, proc_frame, 1)),
            capture_down: (0..channels)
                .filter(|_| resample)
                .map(|_| PushResampler::new(frame, proc_frame, 1))
                .collect(),
            capture_up: (0..channels)
                .filter(|_| resample)
                .map(|_| PushResampler::new(proc_frame, frame, 1))
                .collect(),
            render_qmf: (bands == 2).then(TwoBandQmf::new),
            capture_qmf: (0..channels).filter(|_| bands == 2).map(|_| TwoBandQmf::new()).collect(),
            render_blocker: FrameBlocker::new(bands, 1),
            capture_blocker: FrameBlocker::new(bands, channels),
            framer: BlockFramer::new(bands, channels),
            render_block: Block::new(bands, 1),
            capture_block: Block::new(bands, channels),
            render_mono: vec![0.0; render_frame],
            render: vec![0.0; proc_frame],
            render_bands: vec![vec![0.0; BAND_FRAME]; bands],
            capture: vec![vec![0.0; proc_frame]; channels],
            capture_in: vec![vec![0.0; frame]; channels],
            capture_bands: vec![vec![vec![0.0; BAND_FRAME]; channels]; bands],
            sub_frame: vec![vec![vec![0.0; SUB_FRAME_LENGTH]; channels]; bands],
            ns: Vec::new(),
            ns_level: None,
        })
    }

    /// Noise suppression on the capture (WebRTC's NS, `sonora-ns`; 6/12/18/21 dB target
    /// suppression for `K6dB`..`K21dB`), or `None` for none. A change restarts the noise
    /// estimate (a few hundred ms to converge again), as the APM does on a level change.
    pub(super) fn set_noise_suppression(&mut self, level: Option<SuppressionLevel>) {
        self.ns_level = level;
        self.ns = match level {
            Some(l) => (0..self.channels)
                .map(|_| NoiseSuppressor::new_with_bands(NsConfig { target_level: l }, self.bands))
                .collect(),
            None => Vec::new(),
        };
    }

    /// Number of 16 kHz bands AEC3 runs on (1 at 16 kHz capture, 2 at 32 and 48 kHz).
    pub(super) fn bands(&self) -> usize {
        self.bands
    }

    /// Buffers one 10 ms reference frame (interleaved, [-1, 1], the render format given to
    /// `new`). Frames of another length are ignored.
    pub(super) fn analyze_render(&mut self, data: &[f32]) {
        let rc = self.render_channels;
        if data.len() != self.render_mono.len() * rc {
            return;
        }
        for (m, f) in self.render_mono.iter_mut().zip(data.chunks_exact(rc)) {
            *m = f.iter().sum::<f32>() / rc as f32 * S16;
        }
        match self.render_resampler.as_mut() {
            Some(r) => r.resample(&self.render_mono, &mut self.render),
            None => self.render.copy_from_slice(&self.render_mono),
        }
        match self.render_qmf.as_mut() {
            Some(q) => {
                let (lo, hi) = self.render_bands.split_at_mut(1);
                q.analysis(&self.render, &mut lo[0], &mut hi[0]);
            }
            None => self.render_bands[0].copy_from_slice(&self.render),
        }
        for k in 0..2 {
            let range = k * SUB_FRAME_LENGTH..(k + 1) * SUB_FRAME_LENGTH;
            let sub: Vec<Vec<&[f32]>> = self.render_bands.iter().map(|b| vec![&b[range.clone()]]).collect();
            self.render_blocker.insert_sub_frame_and_extract_block(&sub, &mut self.render_block);
            self.bp.buffer_render(&self.render_block);
        }
        if self.render_blocker.is_block_available() {
            self.render_blocker.extract_block(&mut self.render_block);
            self.bp.buffer_render(&self.render_block);
        }
    }

    /// Cancels echo in one 10 ms capture frame in place: `chans[channel]`, `rate / 100` samples
    /// each, [-1, 1]. `delay_hint_ms` seeds AEC3's delay (the `delay-hint` property).
    pub(super) fn process_capture(&mut self, chans: &mut [Vec<f32>], delay_hint_ms: i32) {
        let frame = self.capture_in[0].len();
        if chans.len() != self.channels || chans.iter().any(|c| c.len() != frame) {
            return;
        }
        let saturated = chans.iter().flatten().any(|v| v.abs() * S16 >= 32700.0);
        let resample = !self.capture_down.is_empty();
        for (c, ch) in chans.iter().enumerate() {
            let dst = if resample { &mut self.capture_in[c] } else { &mut self.capture[c] };
            for (d, s) in dst.iter_mut().zip(ch) {
                *d = s * S16;
            }
            if resample {
                self.capture_down[c].resample(&self.capture_in[c], &mut self.capture[c]);
            }
        }
        // split: capture_bands[band][channel]
        for c in 0..self.channels {
            match self.capture_qmf.get_mut(c) {
                Some(q) => {
                    let (lo, hi) = self.capture_bands.split_at_mut(1);
                    q.analysis(&self.capture[c], &mut lo[0][c], &mut hi[0][c]);
                }
                None => self.capture_bands[0][c].copy_from_slice(&self.capture[c]),
            }
        }
        self.hpf.process_channels(&mut self.capture_bands[0]);
        // NS estimates noise on the signal before AEC3 (the APM's order: AEC3's comfort noise
        // must not enter the estimate).
        for (ns, band0) in self.ns.iter_mut().zip(&self.capture_bands[0]) {
            if let Ok(f) = <&[f32; BAND_FRAME]>::try_from(band0.as_slice()) {
                ns.analyze(f);
            }
        }
        self.bp.set_audio_buffer_delay(delay_hint_ms);
        for k in 0..2 {
            let range = k * SUB_FRAME_LENGTH..(k + 1) * SUB_FRAME_LENGTH;
            let sub: Vec<Vec<&[f32]>> =
                self.capture_bands.iter().map(|b| b.iter().map(|c| &c[range.clone()]).collect()).collect();
            self.capture_blocker.insert_sub_frame_and_extract_block(&sub, &mut self.capture_block);
            self.bp.process_capture(false, saturated, None, &mut self.capture_block);
            self.framer.insert_block_and_extract_sub_frame(&self.capture_block, &mut self.sub_frame);
            for (band, sb) in self.sub_frame.iter().enumerate() {
                for (c, s) in sb.iter().enumerate() {
                    self.capture_bands[band][c][range.clone()].copy_from_slice(s);
                }
            }
        }
        if self.capture_blocker.is_block_available() {
            self.capture_blocker.extract_block(&mut self.capture_block);
            self.bp.process_capture(false, saturated, None, &mut self.capture_block);
            self.framer.insert_block(&self.capture_block);
        }
        self.suppress_noise();
        for (c, ch) in chans.iter_mut().enumerate() {
            match self.capture_qmf.get_mut(c) {
                Some(q) => {
                    q.synthesis(&self.capture_bands[0][c], &self.capture_bands[1][c], &mut self.capture[c])
                }
                None => self.capture[c].copy_from_slice(&self.capture_bands[0][c]),
            }
            let out = if resample {
                self.capture_up[c].resample(&self.capture[c], &mut self.capture_in[c]);
                &self.capture_in[c]
            } else {
                &self.capture[c]
            };
            for (d, s) in ch.iter_mut().zip(out) {
                *d = s / S16;
            }
        }
    }

    /// The noise suppression level set last (`None`: off).
    pub(super) fn noise_suppression(&self) -> Option<SuppressionLevel> {
        self.ns_level
    }

    /// NS on the echo-cancelled bands: band 0 filtered, the upper band delayed to match and
    /// scaled by the lowest of the channels' upper-band gains, every band clamped to S16.
    fn suppress_noise(&mut self) {
        if self.ns.is_empty() {
            return;
        }
        for (ns, band0) in self.ns.iter_mut().zip(self.capture_bands[0].iter_mut()) {
            if let Ok(f) = <&mut [f32; BAND_FRAME]>::try_from(band0.as_mut_slice()) {
                ns.process(f);
            }
        }
        if self.bands < 2 {
            return;
        }
        let gain = self.ns.iter().map(|ns| ns.upper_band_gain()).fold(f32::MAX, f32::min);
        for (c, ns) in self.ns.iter_mut().enumerate() {
            for band in 1..self.bands {
                if let Ok(f) = <&mut [f32; BAND_FRAME]>::try_from(self.capture_bands[band][c].as_mut_slice())
                {
                    ns.process_upper_band(f, band - 1, gain);
                    NoiseSuppressor::clamp_frame(f);
                }
            }
        }
    }

    /// The echo tail decay this instance was built with.
    pub(super) fn echo_decay(&self) -> f32 {
        self.echo_decay
    }

    /// (ERL dB, ERLE dB, delay ms) as AEC3 last estimated them.
    pub(super) fn metrics(&self) -> (f64, f64, i32) {
        let m = self.bp.get_metrics();
        (m.echo_return_loss, m.echo_return_loss_enhancement, m.delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::{speech as far_signal, white_noise as noise};

    /// Fixed echo path: 40 ms delay, a short decaying FIR, -6 dB.
    fn echo_of(rate: usize, far: &[f32]) -> Vec<f32> {
        let d = rate * 40 / 1000;
        let step = rate / 2000;
        let taps = [0.5f32, 0.25, -0.12, 0.06, 0.03];
        (0..far.len())
            .map(|i| {
                taps.iter()
                    .enumerate()
                    .map(|(k, h)| if i >= d + k * step { h * far[i - d - k * step] } else { 0.0 })
                    .sum()
            })
            .collect()
    }

    /// Runs `near` (capture) against `far` (reference) through a mono `Aec3` at `rate`.
    fn run(rate: u32, decay: f32, far: &[f32], near: &[f32]) -> Vec<f32> {
        run_ns(rate, decay, None, far, near)
    }

    fn run_ns(rate: u32, decay: f32, ns: Option<SuppressionLevel>, far: &[f32], near: &[f32]) -> Vec<f32> {
        let n = rate as usize / 100;
        let mut a = Aec3::new(decay, rate, 1, rate, 1).expect("supported rate");
        a.set_noise_suppression(ns);
        let mut out = Vec::with_capacity(near.len());
        let mut cap = vec![vec![0.0; n]];
        for (f, c) in far.chunks_exact(n).zip(near.chunks_exact(n)) {
            a.analyze_render(f);
            cap[0].copy_from_slice(c);
            a.process_capture(&mut cap, 0);
            out.extend_from_slice(&cap[0]);
        }
        out
    }

    fn energy(x: &[f32]) -> f64 {
        x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() + 1e-12
    }

    #[test]
    fn tuned_stage_takes_16_32_48_khz() {
        assert_eq!(Aec3::new(ECHO_DECAY, 16000, 1, 48000, 2).map(|a| a.bands()), Some(1));
        assert_eq!(Aec3::new(ECHO_DECAY, 32000, 2, 48000, 1).map(|a| a.bands()), Some(2));
        assert_eq!(Aec3::new(ECHO_DECAY, 48000, 1, 48000, 2).map(|a| a.bands()), Some(2));
        assert!(Aec3::new(ECHO_DECAY, 8000, 1, 48000, 1).is_none());
        assert!(Aec3::new(ECHO_DECAY, 44100, 1, 48000, 1).is_none());
        assert!(Aec3::new(ECHO_DECAY, 48000, 3, 48000, 1).is_none());
    }

    /// At 32 and 48 kHz the stage cancels echo, and `echo-decay` changes what it does (the
    /// APM's AEC3, which vdiaec used at these rates before, ignores it).
    #[test]
    fn cancels_at_32_and_48_khz_and_echo_decay_acts() {
        for rate in [32000u32, 48000] {
            let r = rate as usize;
            let far = far_signal(r, r * 5, 12345);
            let echo = echo_of(r, &far);
            // 1 s of near-end talk from 3 s on: double talk, where the echo tail model matters
            let talk = far_signal(r, r, 999);
            let near: Vec<f32> = echo
                .iter()
                .enumerate()
                .map(|(i, e)| e + if i >= 3 * r && i < 4 * r { talk[i - 3 * r] } else { 0.0 })
                .collect();
            let tuned = run(rate, ECHO_DECAY, &far, &near);
            let default = run(rate, 0.83, &far, &near);
            let erle = 10.0 * (energy(&near[2 * r..3 * r]) / energy(&tuned[2 * r..3 * r])).log10();
            assert!(erle > 20.0, "{rate} Hz: ERLE {erle:.1} dB in far-end single talk");
            let dt = 3 * r..4 * r;
            let diff: Vec<f32> =
                tuned[dt.clone()].iter().zip(&default[dt.clone()]).map(|(a, b)| a - b).collect();
            let rel = 10.0 * (energy(&diff) / energy(&default[dt])).log10();
            assert!(
                rel > -40.0,
                "{rate} Hz: echo-decay 0.6 and 0.83 give the same double talk ({rel:.1} dB)"
            );
        }
    }

    /// `near` against `far` through sonora's APM at 16 kHz mono with AEC3 and the high-pass
    /// filter, and NS at `ns` if given; returns the largest difference from `ours`.
    fn worst_difference_from_apm(
        ns: Option<sonora::config::NoiseSuppressionLevel>,
        far: &[f32],
        near: &[f32],
        ours: &[f32],
    ) -> f32 {
        use sonora::config::{EchoCanceller, HighPassFilter as Hpf, NoiseSuppression};
        use sonora::{AudioProcessing, Config, StreamConfig};
        let sc = StreamConfig::new(16000, 1);
        let cfg = Config {
            echo_canceller: Some(EchoCanceller::default()),
            high_pass_filter: Some(Hpf::default()),
            noise_suppression: ns.map(|level| NoiseSuppression { level, ..Default::default() }),
            ..Default::default()
        };
        let mut apm = AudioProcessing::builder().config(cfg).capture_config(sc).render_config(sc).build();
        let mut theirs = vec![0.0f32; near.len()];
        let mut rdst = vec![0.0f32; 160];
        for (i, (f, c)) in far.chunks_exact(160).zip(near.chunks_exact(160)).enumerate() {
            apm.process_render_f32(&[f], &mut [&mut rdst]).unwrap();
            let _ = apm.set_stream_delay_ms(0);
            apm.process_capture_f32(&[c], &mut [&mut theirs[i * 160..(i + 1) * 160]]).unwrap();
        }
        ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)
    }

    /// At 16 kHz with WebRTC's tuning the stage is the APM's AEC3 (high-pass filter + AEC3),
    /// sample for sample.
    #[test]
    fn matches_the_apms_aec3_at_16_khz() {
        let r = 16000;
        let far = far_signal(r, r * 3, 12345);
        let near = echo_of(r, &far);
        let ours = run(16000, 0.83, &far, &near);
        let worst = worst_difference_from_apm(None, &far, &near, &ours);
        assert!(worst < 1e-6, "16 kHz stage differs from the APM's AEC3 by up to {worst}");
    }

    /// With NS, the 16 kHz stage is the APM's AEC3 + NS, sample for sample.
    #[test]
    fn stage_noise_suppression_is_the_apms_at_16_khz() {
        let r = 16000;
        let far = far_signal(r, r * 3, 777);
        let hiss = noise(r * 3, 0.01, 99);
        let near: Vec<f32> = echo_of(r, &far).iter().zip(&hiss).map(|(e, n)| e + n).collect();
        let ours = run_ns(16000, 0.83, Some(SuppressionLevel::K12dB), &far, &near);
        let moderate = Some(sonora::config::NoiseSuppressionLevel::Moderate);
        let worst = worst_difference_from_apm(moderate, &far, &near, &ours);
        assert!(worst < 1e-6, "16 kHz stage with NS differs from the APM's AEC3 + NS by up to {worst}");
    }

    #[test]
    fn noise_suppression_covers_the_upper_band_at_32_and_48_khz() {
        for rate in [32000u32, 48000] {
            let r = rate as usize;
            let far = vec![0.0f32; r * 3];
            // white noise: half its power lies above 8 kHz, in AEC3's upper band
            let near = noise(r * 3, 0.01, 5);
            let last = r * 2..r * 3;
            let plain = energy(&run_ns(rate, ECHO_DECAY, None, &far, &near)[last.clone()]);
            let ns = energy(&run_ns(rate, ECHO_DECAY, Some(SuppressionLevel::K12dB), &far, &near)[last]);
            let db = 10.0 * (plain / ns).log10();
            // band 0 alone suppressed would cap the reduction near 3 dB
            assert!(db > 6.0, "{rate} Hz: NS took {db:.1} dB off white noise");
        }
    }
}
