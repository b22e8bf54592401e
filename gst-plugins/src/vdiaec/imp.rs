//! Implementation of `vdiaec`: see `mod.rs` and README.md.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use sonora::config::{
    AdaptiveDigital, EchoCanceller, FixedDigital, GainController2, HighPassFilter, NoiseSuppression,
    NoiseSuppressionLevel as SonoraNsLevel,
};
use sonora::{AudioProcessing, Config, StreamConfig};
use sonora_ns::config::SuppressionLevel;

use super::NoiseSuppressionLevel;
use super::aec3::{self, Aec3};
use crate::vdiaecprobe::imp_helpers::{audio_caps, bytes_per_sample, extend_f32, write_f32};
use crate::vdiaecprobe::{self, Reference};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vdiaec",
        gst::DebugColorFlags::empty(),
        Some("vdimedia WebRTC AEC3 echo canceller"),
    )
});

const FRAME_NS: u64 = 10_000_000;

/// Reference frames are fed to AEC3 this many 10 ms frames after their running time: the
/// playout thread may run up to `(SLACK - 1) * 10 ms` behind the capture thread before a frame is
/// missed. AEC3 estimates the rest of the delay, so the acoustic + pipeline delay must be at least
/// this (20 ms; a real playout device alone adds more).
const REFERENCE_SLACK_FRAMES: u64 = 2;

/// Most slack (10 ms frames) the matching grows to when the playout runs persistently late
/// (a sink that fell behind after a stall keeps playing everything later than its timestamps).
const MAX_REFERENCE_SLACK_FRAMES: u64 = 30;

/// Late reference frames within one second of capture that make the slack grow.
const LATE_FRAMES_TO_GROW: u32 = 20;

/// Largest forward jump of capture timestamps (ns) taken as lost capture audio rather than a
/// new stream: the processor keeps its state and skips that much reference.
const MAX_SKIP_NS: u64 = 500_000_000;

#[derive(Debug, Clone)]
struct Settings {
    probe: String,
    echo_cancel: bool,
    high_pass_filter: bool,
    noise_suppression: bool,
    noise_suppression_level: NoiseSuppressionLevel,
    gain_control: bool,
    gain_control_max_gain_db: f32,
    gain_control_headroom_db: f32,
    gain_control_fixed_gain_db: f32,
    delay_hint_ms: i32,
    echo_decay: f32,
    reference_timeout_ms: u32,
    stats_interval_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            probe: "vdiaecprobe0".into(),
            echo_cancel: true,
            high_pass_filter: true,
            noise_suppression: true,
            noise_suppression_level: NoiseSuppressionLevel::Moderate,
            gain_control: false,
            gain_control_max_gain_db: 30.0,
            gain_control_headroom_db: 5.0,
            gain_control_fixed_gain_db: 0.0,
            delay_hint_ms: 0,
            echo_decay: aec3::ECHO_DECAY,
            reference_timeout_ms: 200,
            stats_interval_ms: 1000,
        }
    }
}

impl Settings {
    /// Noise suppression the tuned AEC3 stage runs (`None`: off).
    fn stage_ns(&self) -> Option<SuppressionLevel> {
        self.noise_suppression.then_some(match self.noise_suppression_level {
            NoiseSuppressionLevel::Low => SuppressionLevel::K6dB,
            NoiseSuppressionLevel::Moderate => SuppressionLevel::K12dB,
            NoiseSuppressionLevel::High => SuppressionLevel::K18dB,
            NoiseSuppressionLevel::VeryHigh => SuppressionLevel::K21dB,
        })
    }

    /// The APM's configuration. `own_aec`: AEC3 and NS run before the APM in `aec3::Aec3`
    /// (tuned, with its own capture high-pass filter), so the APM's AEC3, NS and high-pass
    /// filter are off.
    fn apm_config(&self, own_aec: bool) -> Config {
        Config {
            high_pass_filter: (self.high_pass_filter && !own_aec).then(HighPassFilter::default),
            echo_canceller: (self.echo_cancel && !own_aec).then(EchoCanceller::default),
            noise_suppression: (self.noise_suppression && !own_aec).then(|| NoiseSuppression {
                level: match self.noise_suppression_level {
                    NoiseSuppressionLevel::Low => SonoraNsLevel::Low,
                    NoiseSuppressionLevel::Moderate => SonoraNsLevel::Moderate,
                    NoiseSuppressionLevel::High => SonoraNsLevel::High,
                    NoiseSuppressionLevel::VeryHigh => SonoraNsLevel::VeryHigh,
                },
                ..Default::default()
            }),
            gain_controller2: self.gain_control.then(|| GainController2 {
                input_volume_controller: false,
                adaptive_digital: Some(AdaptiveDigital {
                    headroom_db: self.gain_control_headroom_db,
                    max_gain_db: self.gain_control_max_gain_db,
                    ..Default::default()
                }),
                fixed_digital: FixedDigital { gain_db: self.gain_control_fixed_gain_db },
            }),
            ..Default::default()
        }
    }
}

/// Latest statistics, read by the read-only properties.
#[derive(Debug, Clone, Copy)]
struct Stats {
    erle_db: f64,
    erl_db: f64,
    delay_ms: i32,
    residual_echo_likelihood: f64,
    divergent_filter_fraction: f64,
    reference_active: bool,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            erle_db: 0.0,
            erl_db: 0.0,
            delay_ms: -1,
            residual_echo_likelihood: 0.0,
            divergent_filter_fraction: 0.0,
            reference_active: false,
        }
    }
}

struct State {
    info: gst_audio::AudioInfo,
    channels: usize,
    /// Samples per channel in 10 ms.
    frame: usize,
    apm: Option<AudioProcessing>,
    /// The tuned AEC3 stage before the APM (16, 32 and 48 kHz capture); `None` at 8 kHz,
    /// where the APM's own AEC3 (default tuning) runs, or with `echo-cancel=false`.
    aec3: Option<Aec3>,
    /// Render format the APM was built for: (rate, channels, probe generation).
    render_fmt: Option<(u32, u32, u64)>,
    /// Running time (ns) of the next reference frame AEC3 should get; frames arriving after
    /// it are late (silence was fed in their place) and dropped.
    next_ref_rt: Option<u64>,
    /// Reference frames replaced by silence because they came too late, since the last log.
    late_frames: u64,
    config_dirty: bool,
    in_fifo: Vec<f32>,
    in_fifo_rt: Option<u64>,
    out_fifo: VecDeque<f32>,
    next_rt: Option<u64>,
    reference: Option<Arc<Reference>>,
    reference_active: bool,
    warned_missing_probe: bool,
    /// Running time (ns) of the first capture frame processed while no reference had ever
    /// flowed (no probe, or a probe that has not received audio yet): the warning waits until
    /// `reference-timeout` has passed since then, because a call starts sending before the
    /// far end's first packet reaches the playout branch.
    missing_since_rt: Option<u64>,
    /// Current reference slack in 10 ms frames (starts at REFERENCE_SLACK_FRAMES, grows when
    /// the playout branch delivers persistently late; see `process_frame`).
    slack_frames: u64,
    /// Late reference arrivals in the current one-second window, their largest lateness (ns),
    /// and the window's start (capture running time, ns).
    late_in_window: u32,
    max_late_ns: u64,
    late_window_rt: Option<u64>,
    last_stats_rt: Option<u64>,
    /// Deinterleaved capture frame in and out of the APM (reused every 10 ms).
    cap_bufs: Vec<Vec<f32>>,
    out_bufs: Vec<Vec<f32>>,
    /// Reference frames taken from the probe for the current capture frame; their buffers go
    /// back to the probe's free list at the next take.
    render: Vec<Vec<f32>>,
    spent: Vec<Vec<f32>>,
    /// Deinterleaved stereo reference and the APM's (unused) render output, reused.
    ref_bufs: Vec<Vec<f32>>,
    ref_out: Vec<Vec<f32>>,
}

impl State {
    fn new(info: gst_audio::AudioInfo) -> Self {
        let channels = info.channels() as usize;
        let frame = info.rate() as usize / 100;
        Self {
            info,
            channels,
            frame,
            apm: None,
            aec3: None,
            render_fmt: None,
            next_ref_rt: None,
            late_frames: 0,
            config_dirty: false,
            in_fifo: Vec::new(),
            in_fifo_rt: None,
            // 10 ms of silence: the element's latency, so any buffer size can be returned in place.
            out_fifo: std::iter::repeat_n(0.0, frame * channels).collect(),
            next_rt: None,
            reference: None,
            reference_active: false,
            warned_missing_probe: false,
            missing_since_rt: None,
            slack_frames: REFERENCE_SLACK_FRAMES,
            late_in_window: 0,
            max_late_ns: 0,
            late_window_rt: None,
            last_stats_rt: None,
            cap_bufs: vec![vec![0.0; frame]; channels],
            out_bufs: vec![vec![0.0; frame]; channels],
            render: Vec::new(),
            spent: Vec::new(),
            ref_bufs: Vec::new(),
            ref_out: Vec::new(),
        }
    }
}

#[derive(Default)]
pub struct VdiAec {
    settings: Mutex<Settings>,
    stats: Mutex<Stats>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for VdiAec {
    const NAME: &'static str = "GstVdiAec";
    type Type = super::VdiAec;
    type ParentType = gst_base::BaseTransform;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ObjectImpl for VdiAec {
    fn properties() -> &'static [glib::ParamSpec] {
        static P: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("probe")
                    .nick("Probe")
                    .blurb("Name of the vdiaecprobe element (on the playout branch of the same pipeline) whose audio is the far-end reference")
                    .default_value(Some(d.probe.as_str()))
                    .build(),
                glib::ParamSpecBoolean::builder("echo-cancel")
                    .nick("Echo cancellation")
                    .blurb("Cancel acoustic echo of the far-end reference (WebRTC AEC3, automatic delay estimation)")
                    .default_value(d.echo_cancel)
                    .build(),
                glib::ParamSpecBoolean::builder("high-pass-filter")
                    .nick("High-pass filter")
                    .blurb("Remove DC and low-frequency rumble below about 80 Hz")
                    .default_value(d.high_pass_filter)
                    .build(),
                glib::ParamSpecBoolean::builder("noise-suppression")
                    .nick("Noise suppression")
                    .blurb("Suppress stationary background noise (WebRTC NS)")
                    .default_value(d.noise_suppression)
                    .build(),
                glib::ParamSpecEnum::builder_with_default("noise-suppression-level", d.noise_suppression_level)
                    .nick("Noise suppression level")
                    .blurb("Noise suppression aggressiveness (about 6, 12, 18 or 21 dB of noise reduction)")
                    .build(),
                glib::ParamSpecBoolean::builder("gain-control")
                    .nick("Automatic gain control")
                    .blurb("Adaptive digital gain control with limiter (WebRTC AGC2)")
                    .default_value(d.gain_control)
                    .build(),
                glib::ParamSpecFloat::builder("gain-control-max-gain")
                    .nick("AGC maximum gain")
                    .blurb("Highest gain the adaptive digital AGC may apply, in dB")
                    .minimum(0.0).maximum(50.0).default_value(d.gain_control_max_gain_db)
                    .build(),
                glib::ParamSpecFloat::builder("gain-control-headroom")
                    .nick("AGC headroom")
                    .blurb("Headroom the adaptive digital AGC keeps below 0 dBFS for speech peaks, in dB")
                    .minimum(0.0).maximum(30.0).default_value(d.gain_control_headroom_db)
                    .build(),
                glib::ParamSpecFloat::builder("gain-control-fixed-gain")
                    .nick("AGC fixed gain")
                    .blurb("Fixed digital gain applied after the adaptive gain and before the limiter, in dB")
                    .minimum(0.0).maximum(50.0).default_value(d.gain_control_fixed_gain_db)
                    .build(),
                glib::ParamSpecInt::builder("delay-hint")
                    .nick("Delay hint")
                    .blurb("Expected extra delay from reference to capture beyond the running times, in ms; AEC3 estimates the real delay itself, this only seeds it")
                    .minimum(0).maximum(500).default_value(d.delay_hint_ms)
                    .build(),
                glib::ParamSpecFloat::builder("echo-decay")
                    .nick("Echo tail decay")
                    .blurb("Reverb decay per 4 ms block of the echo tail AEC3's suppressor models (EchoCanceller3Config ep_strength default_len and nearend_len; WebRTC's default 0.83). Lower keeps more near-end speech in double talk and suppresses less echo tail. 16, 32 and 48 kHz capture; 8 kHz uses 0.83")
                    .minimum(0.0).maximum(0.99).default_value(d.echo_decay)
                    .build(),
                glib::ParamSpecUInt::builder("reference-timeout")
                    .nick("Reference timeout")
                    .blurb("Pass capture through unchanged (with a warning) once the far-end reference lags the capture by more than this, in ms")
                    .minimum(20).maximum(10_000).default_value(d.reference_timeout_ms)
                    .build(),
                glib::ParamSpecUInt::builder("stats-interval")
                    .nick("Statistics interval")
                    .blurb("Period of the \"vdiaec-stats\" element message on the bus, in ms of stream time (0 = none)")
                    .minimum(0).maximum(60_000).default_value(d.stats_interval_ms)
                    .build(),
                glib::ParamSpecDouble::builder("erle")
                    .nick("ERLE")
                    .blurb("Echo return loss enhancement measured by AEC3, in dB (read-only, updated every stats-interval)")
                    .minimum(-1000.0).maximum(1000.0).default_value(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("erl")
                    .nick("ERL")
                    .blurb("Echo return loss (reference to echo in capture) measured by AEC3, in dB (read-only)")
                    .minimum(-1000.0).maximum(1000.0).default_value(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecInt::builder("delay")
                    .nick("Delay estimate")
                    .blurb("AEC3's estimate of the reference-to-capture delay, in ms; -1 while unknown (read-only)")
                    .minimum(-1).maximum(10_000).default_value(-1)
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("residual-echo-likelihood")
                    .nick("Residual echo likelihood")
                    .blurb("Likelihood, 0 to 1, that echo remains in the output (WebRTC residual echo detector, read-only)")
                    .minimum(0.0).maximum(1.0).default_value(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("divergent-filter-fraction")
                    .nick("Divergent filter fraction")
                    .blurb("Fraction, 0 to 1, of the last second in which AEC3's linear filter diverged (read-only)")
                    .minimum(0.0).maximum(1.0).default_value(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecBoolean::builder("reference-active")
                    .nick("Reference active")
                    .blurb("TRUE while the far-end reference flows and echo is cancelled; FALSE while capture passes through (read-only)")
                    .default_value(false)
                    .read_only()
                    .build(),
            ]
        });
        P.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "probe" => {
                s.probe = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
            }
            "echo-cancel" => s.echo_cancel = value.get().unwrap_or(true),
            "high-pass-filter" => s.high_pass_filter = value.get().unwrap_or(true),
            "noise-suppression" => s.noise_suppression = value.get().unwrap_or(true),
            "noise-suppression-level" => s.noise_suppression_level = value.get().unwrap_or_default(),
            "gain-control" => s.gain_control = value.get().unwrap_or(false),
            "gain-control-max-gain" => s.gain_control_max_gain_db = value.get().unwrap_or(30.0),
            "gain-control-headroom" => s.gain_control_headroom_db = value.get().unwrap_or(5.0),
            "gain-control-fixed-gain" => s.gain_control_fixed_gain_db = value.get().unwrap_or(0.0),
            "delay-hint" => s.delay_hint_ms = value.get().unwrap_or(0),
            "echo-decay" => s.echo_decay = value.get().unwrap_or(aec3::ECHO_DECAY),
            "reference-timeout" => s.reference_timeout_ms = value.get().unwrap_or(200),
            "stats-interval" => s.stats_interval_ms = value.get().unwrap_or(1000),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
        // Lock order is state, then settings (streaming thread): release settings first.
        drop(s);
        if let Some(st) = lock(&self.state).as_mut() {
            if pspec.name() == "probe" {
                st.reference = None;
                st.warned_missing_probe = false;
                st.missing_since_rt = None;
            } else {
                st.config_dirty = true;
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        let st = *lock(&self.stats);
        match pspec.name() {
            "probe" => s.probe.to_value(),
            "echo-cancel" => s.echo_cancel.to_value(),
            "high-pass-filter" => s.high_pass_filter.to_value(),
            "noise-suppression" => s.noise_suppression.to_value(),
            "noise-suppression-level" => s.noise_suppression_level.to_value(),
            "gain-control" => s.gain_control.to_value(),
            "gain-control-max-gain" => s.gain_control_max_gain_db.to_value(),
            "gain-control-headroom" => s.gain_control_headroom_db.to_value(),
            "gain-control-fixed-gain" => s.gain_control_fixed_gain_db.to_value(),
            "delay-hint" => s.delay_hint_ms.to_value(),
            "echo-decay" => s.echo_decay.to_value(),
            "reference-timeout" => s.reference_timeout_ms.to_value(),
            "stats-interval" => s.stats_interval_ms.to_value(),
            "erle" => st.erle_db.to_value(),
            "erl" => st.erl_db.to_value(),
            "delay" => st.delay_ms.to_value(),
            "residual-echo-likelihood" => st.residual_echo_likelihood.to_value(),
            "divergent-filter-fraction" => st.divergent_filter_fraction.to_value(),
            "reference-active" => st.reference_active.to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for VdiAec {}

impl ElementImpl for VdiAec {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static M: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "vdimedia echo canceller (WebRTC AEC3)",
                "Filter/Effect/Audio",
                "Cancels acoustic echo of the far-end reference tapped by vdiaecprobe (WebRTC AEC3), \
                 with noise suppression, high-pass filter and AGC2",
                "vdimedia developers",
            )
        });
        Some(&*M)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = audio_caps();
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps)
                    .expect("src template"),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps)
                    .expect("sink template"),
            ]
        });
        T.as_ref()
    }
}

impl VdiAec {
    /// Builds the tuned AEC3 stage (where the capture format allows it) and the APM after it.
    fn build_apm(&self, st: &mut State, render: Option<(u32, u32)>) {
        let s = lock(&self.settings).clone();
        let cap = StreamConfig::new(st.info.rate(), st.channels as u16);
        let (rr, rc) = render.unwrap_or((st.info.rate(), 1));
        st.aec3 = s
            .echo_cancel
            .then(|| Aec3::new(s.echo_decay, st.info.rate(), st.channels, rr, rc as usize))
            .flatten();
        if let Some(a) = st.aec3.as_mut() {
            a.set_noise_suppression(s.stage_ns());
        }
        match st.aec3.as_ref() {
            Some(a) => gst::debug!(
                CAT,
                imp = self,
                "AEC3: tuned stage, echo-decay {}, {} band(s) at {} Hz capture",
                s.echo_decay,
                a.bands(),
                st.info.rate()
            ),
            None if s.echo_cancel => {
                gst::debug!(CAT, imp = self, "AEC3: the APM's, default tuning, {} Hz capture", st.info.rate())
            }
            None => {}
        }
        let mut apm = AudioProcessing::builder()
            .config(s.apm_config(st.aec3.is_some()))
            .capture_config(cap)
            .render_config(StreamConfig::new(rr, rc as u16))
            .echo_detector(true)
            .build();
        let _ = apm.set_stream_delay_ms(s.delay_hint_ms);
        st.apm = Some(apm);
    }

    /// Forget the adaptive state (echo path, delay, noise estimate): after a gap the old state
    /// would only add noise or chop speech.
    fn reset(&self, st: &mut State, why: &str) {
        gst::debug!(CAT, imp = self, "resetting processing state: {why}");
        st.apm = None;
        st.aec3 = None;
        st.render_fmt = None;
        st.next_ref_rt = None;
        // What is left of an incomplete frame goes out unprocessed, keeping the stream length.
        st.out_fifo.extend(st.in_fifo.drain(..));
        st.in_fifo_rt = None;
        st.next_rt = None;
    }

    /// The capture lost `jump_ns` of audio: keeps the processor (echo path, delay, noise
    /// estimate) and drops the reference frames of the lost time, so each capture frame still
    /// meets the reference it echoes. The incomplete frame before the jump goes out unprocessed.
    fn skip(&self, st: &mut State, jump_ns: u64) {
        gst::debug!(
            CAT,
            imp = self,
            "capture jumped {} ms forward: skipping that much reference",
            jump_ns / 1_000_000
        );
        st.out_fifo.extend(st.in_fifo.drain(..));
        st.in_fifo_rt = None;
        st.next_rt = None;
        let frames = (jump_ns + FRAME_NS / 2) / FRAME_NS;
        if let Some(n) = st.next_ref_rt {
            st.next_ref_rt = Some(n + frames * FRAME_NS);
        }
    }

    fn set_reference_active(&self, st: &mut State, active: bool, why: &str) {
        if st.reference_active == active {
            return;
        }
        st.reference_active = active;
        lock(&self.stats).reference_active = active;
        if active {
            gst::info!(CAT, imp = self, "far-end reference flowing, echo cancellation on");
        } else {
            gst::warning!(CAT, imp = self, "{why}: passing capture through unchanged");
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("{}: passing capture through without echo cancellation", why)
            );
        }
    }

    /// Processes one 10 ms capture frame (interleaved, in `st.in_fifo[..frame*channels]`) whose
    /// first sample has running time `rt` (ns), appending the result to `out_fifo`.
    fn process_frame(&self, st: &mut State, rt: u64) {
        let (timeout_ms, stats_ms, delay_hint, echo_cancel) = {
            let s = lock(&self.settings);
            (s.reference_timeout_ms, s.stats_interval_ms, s.delay_hint_ms, s.echo_cancel)
        };
        let n = st.frame * st.channels;
        let timeout = timeout_ms as u64 * 1_000_000;
        if st.reference.is_none() {
            let probe = lock(&self.settings).probe.clone();
            st.reference = vdiaecprobe::acquire(&probe);
            if st.reference.is_none() && !st.warned_missing_probe {
                let since = *st.missing_since_rt.get_or_insert(rt);
                if rt >= since + timeout {
                    st.warned_missing_probe = true;
                    self.set_reference_active(st, true, "");
                    self.set_reference_active(
                        st,
                        false,
                        &format!("no vdiaecprobe named \"{probe}\" in this process"),
                    );
                }
            }
        }
        // AEC3 must get exactly one reference frame per capture frame, at a constant offset in
        // running time: a reference frame fed late shifts the echo path it models and, worse,
        // loses its delay estimate (ERLE fell from 35 to 15 dB with 30 ms playout stalls every
        // 2 s). So the reference frames that ended REFERENCE_SLACK_FRAMES - 1 frames before this
        // capture frame began are fed; one still missing then is replaced by silence and
        // dropped when it arrives (its echo goes uncancelled for 10 ms, the alignment stays).
        let mut render_fmt = None;
        let mut lagging = true;
        if let Some(r) = st.reference.as_ref() {
            let mut q = r.lock();
            for data in st.spent.drain(..) {
                q.recycle(data);
            }
            if st.render_fmt.is_some_and(|(_, _, g)| g != q.generation) {
                st.next_ref_rt = None;
            }
            render_fmt = Some((q.rate, q.channels, q.generation));
            if q.head_end.is_some() {
                st.missing_since_rt = None;
            } else if !st.reference_active {
                // Never flowed yet: counted like a missing probe (see below).
                st.missing_since_rt.get_or_insert(rt);
            }
            lagging = q.rate == 0 || q.head_end.is_none_or(|h| h + timeout < rt + FRAME_NS);
            let deadline = (rt + FRAME_NS).saturating_sub(st.slack_frames * FRAME_NS);
            let zero_len = (q.rate / 100 * q.channels) as usize;
            let mut fed = 0usize;
            while !lagging && fed < 100 {
                let next = st.next_ref_rt;
                let Some(front) = q.frames.front().map(|f| f.running_time) else { break };
                if front + FRAME_NS > deadline {
                    break;
                }
                match next {
                    Some(nx) if front + FRAME_NS / 2 < nx => {
                        // late: silence already stood in for it
                        st.late_in_window += 1;
                        st.max_late_ns = st.max_late_ns.max(nx - front);
                        if let Some(f) = q.frames.pop_front() {
                            q.recycle(f.data);
                        }
                    }
                    Some(nx) if front > nx + FRAME_NS / 2 => {
                        // a hole in the reference stream: silence up to the next frame
                        let mut z = q.free.pop().unwrap_or_default();
                        z.resize(zero_len, 0.0);
                        st.render.push(z);
                        st.next_ref_rt = Some(nx + FRAME_NS);
                        fed += 1;
                    }
                    _ => {
                        if let Some(f) = q.frames.pop_front() {
                            st.render.push(f.data);
                        }
                        st.next_ref_rt = Some(front + FRAME_NS);
                        fed += 1;
                    }
                }
            }
            // Due but not there: the playout thread is late.
            while !lagging
                && fed < 100
                && let Some(nx) = st.next_ref_rt
                && nx + FRAME_NS <= deadline
            {
                let mut z = q.free.pop().unwrap_or_default();
                z.resize(zero_len, 0.0);
                st.render.push(z);
                st.next_ref_rt = Some(nx + FRAME_NS);
                st.late_frames += 1;
                fed += 1;
            }
            if fed >= 100 {
                // More than a second behind without hitting the timeout: start over.
                st.next_ref_rt = None;
            }
        }
        // A playout branch that stays late (its sink fell behind after a stall and now plays
        // everything later than stamped) would get every reference frame replaced by silence:
        // match with more slack instead, and let AEC3 find the longer delay.
        let window = *st.late_window_rt.get_or_insert(rt);
        if rt >= window + 100 * FRAME_NS {
            if st.late_in_window >= LATE_FRAMES_TO_GROW && st.slack_frames < MAX_REFERENCE_SLACK_FRAMES {
                let grow = st.max_late_ns.div_ceil(FRAME_NS) + 1;
                st.slack_frames = (st.slack_frames + grow).min(MAX_REFERENCE_SLACK_FRAMES);
                st.next_ref_rt = None;
                gst::debug!(
                    CAT,
                    imp = self,
                    "reference persistently late (by up to {} ms): slack now {} ms",
                    st.max_late_ns / 1_000_000,
                    st.slack_frames * 10
                );
            }
            st.late_window_rt = Some(rt);
            st.late_in_window = 0;
            st.max_late_ns = 0;
        }
        if st.late_frames >= 100 {
            gst::debug!(CAT, imp = self, "{} late reference frames replaced by silence", st.late_frames);
            st.late_frames = 0;
        }
        let active = echo_cancel && !lagging;
        if !echo_cancel {
            // AEC off by property: no reference needed, NS/HPF/AGC still run.
        } else if !active {
            // A reference that never flowed is only reported once it has been missing for
            // `reference-timeout` (the far end's first packet is usually still on its way).
            let waiting = !st.reference_active
                && !st.warned_missing_probe
                && st.missing_since_rt.is_some_and(|since| rt < since + timeout);
            if !waiting && (st.reference_active || !st.warned_missing_probe) {
                st.warned_missing_probe = true;
                self.set_reference_active(st, true, "");
                self.set_reference_active(st, false, "far-end reference stopped or lags capture");
            }
            st.apm = None;
            st.aec3 = None;
            st.render_fmt = None;
            st.next_ref_rt = None;
            st.spent.append(&mut st.render);
            st.out_fifo.extend(st.in_fifo.drain(..n));
            return;
        } else if !st.reference_active {
            self.set_reference_active(st, true, "");
        }
        // (Re)build the processor for a new reference format, after a reset or on new settings.
        if echo_cancel
            && let Some(fmt) = render_fmt
            && st.render_fmt != Some(fmt)
        {
            st.apm = None;
            st.aec3 = None;
            st.render_fmt = Some(fmt);
        }
        if st.apm.is_none() {
            let rf = st.render_fmt.map(|(r, c, _)| (r, c));
            self.build_apm(st, rf);
            st.config_dirty = false;
        } else if st.config_dirty {
            let own_aec = st.aec3.is_some();
            let s = lock(&self.settings).clone();
            if s.echo_cancel && aec3::supported(st.info.rate(), st.channels) != own_aec
                || st.aec3.as_ref().is_some_and(|a| a.echo_decay() != s.echo_decay)
            {
                // AEC switched on or off: rebuild (the tuned stage sits outside the APM).
                let rf = st.render_fmt.map(|(r, c, _)| (r, c));
                self.build_apm(st, rf);
            } else if let Some(apm) = st.apm.as_mut() {
                if let Some(a) = st.aec3.as_mut()
                    && a.noise_suppression() != s.stage_ns()
                {
                    a.set_noise_suppression(s.stage_ns());
                }
                apm.apply_config(s.apm_config(own_aec));
            }
            st.config_dirty = false;
        }
        let channels = st.channels;
        let frame = st.frame;
        let render_ch = st.render_fmt.map(|(_, c, _)| c as usize).unwrap_or(1);
        let State {
            apm, aec3, in_fifo, out_fifo, cap_bufs, out_bufs, render, spent, ref_bufs, ref_out, ..
        } = st;
        let Some(apm) = apm.as_mut() else {
            spent.append(render);
            return;
        };
        for data in render.drain(..) {
            if let Some(aec3) = aec3.as_mut() {
                aec3.analyze_render(&data);
            }
            let rf = data.len() / render_ch.max(1);
            ref_out.resize_with(render_ch, Vec::new);
            for o in ref_out.iter_mut() {
                o.resize(rf, 0.0);
            }
            let res = if render_ch == 1 {
                apm.process_render_f32(&[&data], &mut [&mut ref_out[0]])
            } else {
                ref_bufs.resize_with(render_ch, Vec::new);
                for (c, b) in ref_bufs.iter_mut().enumerate() {
                    b.clear();
                    b.extend(data.iter().skip(c).step_by(render_ch));
                }
                let (o0, o1) = ref_out.split_at_mut(1);
                apm.process_render_f32(&[&ref_bufs[0], &ref_bufs[1]], &mut [&mut o0[0], &mut o1[0]])
            };
            if let Err(e) = res {
                gst::warning!(CAT, imp = self, "reference frame refused: {e}");
            }
            spent.push(data);
        }
        if channels == 1 {
            cap_bufs[0].copy_from_slice(&in_fifo[..n]);
        } else {
            for (i, f) in in_fifo[..n].chunks_exact(channels).enumerate() {
                for (b, s) in cap_bufs.iter_mut().zip(f) {
                    b[i] = *s;
                }
            }
        }
        let _ = apm.set_stream_delay_ms(delay_hint);
        if let Some(aec3) = aec3.as_mut() {
            aec3.process_capture(cap_bufs, delay_hint);
        }
        let res = if channels == 1 {
            apm.process_capture_f32(&[&cap_bufs[0]], &mut [&mut out_bufs[0]])
        } else {
            let (o0, o1) = out_bufs.split_at_mut(1);
            apm.process_capture_f32(&[&cap_bufs[0], &cap_bufs[1]], &mut [&mut o0[0], &mut o1[0]])
        };
        match res {
            Ok(()) if channels == 1 => out_fifo.extend(out_bufs[0].iter().copied()),
            Ok(()) => {
                for i in 0..frame {
                    out_fifo.extend(out_bufs.iter().map(|ch| ch[i]));
                }
            }
            Err(e) => {
                gst::warning!(CAT, imp = self, "capture frame not processed: {e}");
                out_fifo.extend(in_fifo[..n].iter().copied());
            }
        }
        in_fifo.drain(..n);
        if stats_ms > 0 && st.last_stats_rt.is_none_or(|t| rt >= t + stats_ms as u64 * 1_000_000) {
            st.last_stats_rt = Some(rt);
            self.update_stats(st, rt);
        }
    }

    fn update_stats(&self, st: &State, rt: u64) {
        let Some(apm) = st.apm.as_ref() else { return };
        let s = apm.statistics();
        let (erl, erle, delay) = match st.aec3.as_ref() {
            Some(a) => {
                let (erl, erle, delay) = a.metrics();
                (Some(erl), Some(erle), Some(delay))
            }
            None => (s.echo_return_loss, s.echo_return_loss_enhancement, s.delay_ms),
        };
        let stats = {
            let mut g = lock(&self.stats);
            g.erle_db = erle.unwrap_or(0.0);
            g.erl_db = erl.unwrap_or(0.0);
            // plus the slack taken when matching reference to capture
            g.delay_ms = delay.map_or(-1, |d| d + (st.slack_frames * FRAME_NS / 1_000_000) as i32);
            g.residual_echo_likelihood = s.residual_echo_likelihood.unwrap_or(0.0);
            g.divergent_filter_fraction = s.divergent_filter_fraction.unwrap_or(0.0);
            *g
        };
        gst::debug!(
            CAT,
            imp = self,
            "stats: ERLE {:.1} dB, ERL {:.1} dB, delay {} ms, residual echo {:.2}, divergent {:.2}",
            stats.erle_db,
            stats.erl_db,
            stats.delay_ms,
            stats.residual_echo_likelihood,
            stats.divergent_filter_fraction
        );
        let st_msg = gst::Structure::builder("vdiaec-stats")
            .field("running-time-ns", rt)
            .field("erle-db", stats.erle_db)
            .field("erl-db", stats.erl_db)
            .field("delay-ms", stats.delay_ms)
            .field("residual-echo-likelihood", stats.residual_echo_likelihood)
            .field("divergent-filter-fraction", stats.divergent_filter_fraction)
            .field("reference-active", stats.reference_active)
            .build();
        let _ = self.obj().post_message(gst::message::Element::builder(st_msg).src(&*self.obj()).build());
    }
}

impl BaseTransformImpl for VdiAec {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn accept_caps(&self, direction: gst::PadDirection, caps: &gst::Caps) -> bool {
        let ok = self.parent_accept_caps(direction, caps);
        if !ok {
            gst::error!(
                CAT,
                imp = self,
                "caps refused: {caps}; vdiaec takes interleaved S16LE or F32LE audio at 8000, 16000, 32000 or 48000 Hz, 1 or 2 channels"
            );
        }
        ok
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_audio::AudioInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "vdiaec: unusable caps {incaps}"))?;
        gst::info!(CAT, imp = self, "capture format {} Hz, {} channel(s)", info.rate(), info.channels());
        *lock(&self.state) = Some(State::new(info));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if matches!(
            event.type_(),
            gst::EventType::FlushStop | gst::EventType::StreamStart | gst::EventType::Gap
        ) && let Some(st) = lock(&self.state).as_mut()
        {
            self.reset(st, "flush, new stream or gap");
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        let res = BaseTransformImplExt::parent_query(self, direction, query);
        if res
            && direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            let (live, min, max) = q.result();
            let extra = gst::ClockTime::from_nseconds(FRAME_NS);
            q.set(live, min + extra, max.map(|m| m + extra));
        }
        res
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let segment = self.obj().segment();
        let mut guard = lock(&self.state);
        let Some(st) = guard.as_mut() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let rate = st.info.rate() as u64;
        let channels = st.channels;
        let format = st.info.format();
        let rt = segment
            .downcast_ref::<gst::ClockTime>()
            .and_then(|s| buf.pts().and_then(|pts| s.to_running_time(pts)))
            .map(|t| t.nseconds());
        let gap = match (rt, st.next_rt) {
            (Some(a), Some(b)) => a.abs_diff(b) > FRAME_NS / 2,
            _ => false,
        };
        // Capture that lost a little audio (a source dropping buffers on a loaded machine)
        // jumps forward: the echo path and delay are the same, only the reference frames of the
        // lost time must be skipped. Anything else starts afresh.
        let jump = match (rt, st.next_rt) {
            (Some(a), Some(b)) if gap && a > b && a - b <= MAX_SKIP_NS => Some(a - b),
            _ => None,
        };
        if let Some(jump) = jump
            && st.apm.is_some()
        {
            self.skip(st, jump);
        } else if gap || buf.flags().contains(gst::BufferFlags::DISCONT) && st.next_rt.is_some() {
            self.reset(st, if gap { "timestamp gap" } else { "discontinuity" });
        }
        let rt = rt.or(st.next_rt).unwrap_or(0);
        let gap_buffer = buf.flags().contains(gst::BufferFlags::GAP);
        let mut map = buf.map_writable().map_err(|_| gst::FlowError::Error)?;
        let n_samples = map.len() / bytes_per_sample(format);
        let frames_in = n_samples / channels;
        st.next_rt = Some(rt + frames_in as u64 * 1_000_000_000 / rate);
        if gap_buffer {
            // Silence standing in for missing audio: pass it on, and start afresh after it.
            self.reset(st, "gap buffer");
            let mut tmp = std::mem::take(&mut st.in_fifo);
            extend_f32(format, map.as_slice(), &mut tmp);
            st.out_fifo.extend(tmp.drain(..));
            st.in_fifo = tmp;
        } else {
            if st.in_fifo.is_empty() {
                st.in_fifo_rt = Some(rt);
            }
            extend_f32(format, map.as_slice(), &mut st.in_fifo);
            let n = st.frame * channels;
            while st.in_fifo.len() >= n {
                let frt = st.in_fifo_rt.unwrap_or(rt);
                self.process_frame(st, frt);
                st.in_fifo_rt = Some(frt + FRAME_NS);
            }
        }
        // out_fifo always holds at least the 10 ms of latency plus this buffer's samples.
        write_f32(format, st.out_fifo.drain(..n_samples.min(st.out_fifo.len())), map.as_mut_slice());
        Ok(gst::FlowSuccess::Ok)
    }
}
