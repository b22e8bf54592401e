//! WebRTC AEC3 driven directly through `sonora-aec3`'s block processor, so that its
//! `EchoCanceller3Config` can be tuned: sonora 0.2's `AudioProcessing` always builds AEC3 from
//! `EchoCanceller3Config::default()`. This reproduces what sonora's APM does around AEC3 at
//! 16 kHz (capture high-pass filter, float-S16 scale, 80-sample sub-frames into 64-sample
//! blocks, saturation flag; bit-identical output to the APM's AEC3 with the default config,
//! checked offline by `bench/aec/candidates` `raw`), and nothing else: noise suppression, AGC2
//! and the residual echo detector stay in sonora's APM, after this stage.
//!
//! 16 kHz capture only. At 48 kHz the APM resamples to 32 kHz and splits two bands with a QMF
//! filter bank that sonora keeps private; running AEC3 on three bands from sonora's public
//! `ThreeBandFilterBank` instead lost 9 dB of ERLE in the benchmark (31.7 vs 40.5 dB, default
//! tuning), so 32 and 48 kHz (and 8 kHz) capture keep the APM's own AEC3 with WebRTC's default
//! tuning.

use sonora::high_pass_filter::HighPassFilter;
use sonora_aec3::block::Block;
use sonora_aec3::block_framer::BlockFramer;
use sonora_aec3::block_processor::BlockProcessor;
use sonora_aec3::common::SUB_FRAME_LENGTH;
use sonora_aec3::config::EchoCanceller3Config;
use sonora_aec3::frame_blocker::FrameBlocker;
use sonora_common_audio::push_resampler::PushResampler;

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

/// Capture rate of the tuned stage (one AEC3 band, 160 samples per 10 ms).
const RATE: u32 = 16000;
const FRAME: usize = RATE as usize / 100;

/// Whether `Aec3` takes this capture format (16000 Hz, 1 or 2 channels).
pub(super) fn supported(rate: u32, channels: usize) -> bool {
    rate == RATE && (1..=2).contains(&channels)
}

/// One AEC3 instance for `channels` capture channels at `rate` Hz (16000), fed a
/// reference of `render_rate` Hz and `render_channels` channels (any rate the probe takes;
/// downmixed to mono and resampled to `rate`, as the APM does before AEC3 until it detects
/// proper stereo content, which a VoIP far end never is).
pub(super) struct Aec3 {
    echo_decay: f32,
    channels: usize,
    render_channels: usize,
    bp: BlockProcessor,
    /// Capture high-pass filter on the lowest band (AEC3 needs it; the APM enforces it).
    hpf: HighPassFilter,
    render_resampler: Option<PushResampler<f32>>,
    render_blocker: FrameBlocker,
    capture_blocker: FrameBlocker,
    framer: BlockFramer,
    render_block: Block,
    capture_block: Block,
    /// Mono reference at the render rate, then at 16 kHz (float-S16).
    render_mono: Vec<f32>,
    render: Vec<f32>,
    /// Capture per channel (float-S16), processed in place.
    capture: Vec<Vec<f32>>,
    /// `[band][channel]` sub-frame out of the block framer.
    sub_frame: Vec<Vec<Vec<f32>>>,
}

impl Aec3 {
    /// `echo_decay`: see `ECHO_DECAY`. `None` for capture rates other than 16000 Hz (those keep
    /// the APM's own AEC3) or more than 2 channels.
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
        let render_frame = render_rate as usize / 100;
        Some(Self {
            echo_decay,
            channels,
            render_channels,
            bp: BlockProcessor::new(&config(echo_decay), rate as usize, 1, channels),
            hpf: HighPassFilter::new(16000, channels),
            render_resampler: (render_rate != rate).then(|| PushResampler::new(render_frame, FRAME, 1)),
            render_blocker: FrameBlocker::new(1, 1),
            capture_blocker: FrameBlocker::new(1, channels),
            framer: BlockFramer::new(1, channels),
            render_block: Block::new(1, 1),
            capture_block: Block::new(1, channels),
            render_mono: vec![0.0; render_frame],
            render: vec![0.0; FRAME],
            capture: vec![vec![0.0; FRAME]; channels],
            sub_frame: vec![vec![vec![0.0; SUB_FRAME_LENGTH]; channels]; 1],
        })
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
        for k in 0..2 {
            let sub = [vec![&self.render[k * SUB_FRAME_LENGTH..(k + 1) * SUB_FRAME_LENGTH]]];
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
        if chans.len() != self.channels || chans.iter().any(|c| c.len() != FRAME) {
            return;
        }
        let saturated = chans.iter().flatten().any(|v| v.abs() * S16 >= 32700.0);
        for (d, ch) in self.capture.iter_mut().zip(chans.iter()) {
            for (d, s) in d.iter_mut().zip(ch) {
                *d = s * S16;
            }
        }
        self.hpf.process_channels(&mut self.capture);
        self.bp.set_audio_buffer_delay(delay_hint_ms);
        for k in 0..2 {
            let range = k * SUB_FRAME_LENGTH..(k + 1) * SUB_FRAME_LENGTH;
            let sub = [self.capture.iter().map(|c| &c[range.clone()]).collect::<Vec<_>>()];
            self.capture_blocker.insert_sub_frame_and_extract_block(&sub, &mut self.capture_block);
            self.bp.process_capture(false, saturated, None, &mut self.capture_block);
            self.framer.insert_block_and_extract_sub_frame(&self.capture_block, &mut self.sub_frame);
            for (c, s) in self.sub_frame[0].iter().enumerate() {
                self.capture[c][range.clone()].copy_from_slice(s);
            }
        }
        if self.capture_blocker.is_block_available() {
            self.capture_blocker.extract_block(&mut self.capture_block);
            self.bp.process_capture(false, saturated, None, &mut self.capture_block);
            self.framer.insert_block(&self.capture_block);
        }
        for (ch, c) in chans.iter_mut().zip(&self.capture) {
            for (d, s) in ch.iter_mut().zip(c) {
                *d = s / S16;
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
