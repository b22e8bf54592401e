//! Implementation of `vdiaecprobe`: see `mod.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vdiaecprobe",
        gst::DebugColorFlags::empty(),
        Some("vdimedia far-end reference tap for vdiaec"),
    )
});

/// Longest reference kept waiting for `vdiaec` (ms). Beyond it the oldest frames are dropped,
/// so a capture branch that stopped or runs slower never makes the playout branch wait.
const MAX_QUEUE_MS: u64 = 1000;

/// Registry of live probes, found by object name (like `webrtcechoprobe`).
static PROBES: LazyLock<Mutex<Vec<glib::WeakRef<super::VdiAecProbe>>>> =
    LazyLock::new(|| Mutex::new(Vec::new()));

pub(crate) fn acquire(name: &str) -> Option<Arc<Reference>> {
    let mut probes = PROBES.lock().unwrap_or_else(|e| e.into_inner());
    probes.retain(|w| w.upgrade().is_some());
    probes.iter().filter_map(|w| w.upgrade()).find(|p| p.name() == name).map(|p| p.imp().reference.clone())
}

/// One 10 ms far-end frame.
#[derive(Debug)]
pub(crate) struct RefFrame {
    /// Running time of the first sample, ns.
    pub running_time: u64,
    /// Interleaved samples in [-1, 1]: `rate / 100 * channels` of them.
    pub data: Vec<f32>,
}

/// The queue shared between a probe and the `vdiaec` reading it.
#[derive(Debug, Default)]
pub(crate) struct RefQueue {
    /// Sample rate of `frames`, Hz (0 before caps).
    pub rate: u32,
    /// Channels of `frames`.
    pub channels: u32,
    /// Bumped whenever the format changes or the stream is flushed or discontinuous.
    pub generation: u64,
    pub frames: VecDeque<RefFrame>,
    /// Running time (ns) just after the newest frame ever queued.
    pub head_end: Option<u64>,
    /// Frames dropped because no `vdiaec` consumed them in time.
    pub dropped: u64,
    /// Spent frame buffers handed back by `vdiaec` (and by dropping), reused for new frames so
    /// that steady streaming allocates nothing per 10 ms.
    pub free: Vec<Vec<f32>>,
}

/// Most spare frame buffers kept in [`RefQueue::free`].
pub(crate) const MAX_FREE_FRAMES: usize = 16;

impl RefQueue {
    /// Hands a spent frame buffer back for reuse (dropped once enough are spare).
    pub(crate) fn recycle(&mut self, mut data: Vec<f32>) {
        if self.free.len() < MAX_FREE_FRAMES {
            data.clear();
            self.free.push(data);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Reference {
    pub queue: Mutex<RefQueue>,
}

impl Reference {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, RefQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    info: Option<gst_audio::AudioInfo>,
    /// Samples of an incomplete 10 ms frame and the running time of its first sample.
    pending: Vec<f32>,
    pending_rt: Option<u64>,
    /// Running time expected for the next buffer, ns (to detect gaps).
    next_rt: Option<u64>,
    /// The pipeline latency (ns) from the LATENCY event: a live sink plays a buffer at its
    /// running time plus this, so frames are stamped with that playout time (as
    /// webrtcechoprobe does), the time the capture branch hears them.
    latency_ns: u64,
}

#[derive(Default)]
pub struct VdiAecProbe {
    pub(super) reference: Arc<Reference>,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for VdiAecProbe {
    const NAME: &'static str = "GstVdiAecProbe";
    type Type = super::VdiAecProbe;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for VdiAecProbe {
    fn constructed(&self) {
        self.parent_constructed();
        PROBES.lock().unwrap_or_else(|e| e.into_inner()).push(self.obj().downgrade());
    }
}

impl GstObjectImpl for VdiAecProbe {}

pub(crate) fn audio_caps() -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format_list([gst_audio::AudioFormat::S16le, gst_audio::AudioFormat::F32le])
        .rate_list([8000, 16000, 32000, 48000])
        .channels_range(1..=2)
        .build()
}

impl ElementImpl for VdiAecProbe {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static M: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "vdimedia AEC far-end probe",
                "Generic/Audio",
                "Taps playout audio (unchanged) as the far-end reference of the vdiaec element \
                 whose probe property names this element",
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

impl VdiAecProbe {
    fn reset(&self, state: &mut State) {
        state.pending.clear();
        state.pending_rt = None;
        state.next_rt = None;
        let mut q = self.reference.lock();
        q.frames.clear();
        q.head_end = None;
        q.generation += 1;
    }
}

impl BaseTransformImpl for VdiAecProbe {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_audio::AudioInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "unusable caps {incaps}"))?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut q = self.reference.lock();
            q.rate = info.rate();
            q.channels = info.channels();
        }
        state.info = Some(info);
        self.reset(&mut state);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.reset(&mut state);
        Ok(())
    }

    fn src_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Latency(l) = event.view() {
            let latency = l.latency().nseconds();
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.latency_ns != latency {
                gst::info!(CAT, imp = self, "playout latency {} ms", latency / 1_000_000);
                state.latency_ns = latency;
                // Frames before and after would overlap or leave a hole: start a new
                // generation, but keep `head_end` so vdiaec does not see a stopped reference.
                state.pending.clear();
                state.pending_rt = None;
                let mut q = self.reference.lock();
                q.frames.clear();
                q.generation += 1;
            }
        }
        self.parent_src_event(event)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if matches!(event.type_(), gst::EventType::FlushStop | gst::EventType::StreamStart) {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.reset(&mut state);
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(&self, buf: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(info) = state.info.clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let rate = info.rate() as u64;
        let channels = info.channels() as usize;
        let frame_len = info.rate() as usize / 100 * channels;
        let segment = self.obj().segment();
        let rt = segment
            .downcast_ref::<gst::ClockTime>()
            .and_then(|s| buf.pts().and_then(|pts| s.to_running_time(pts)))
            .map(|t| t.nseconds())
            .or(state.next_rt);
        let Some(rt) = rt else {
            gst::warning!(CAT, imp = self, "buffer without timestamp, not used as reference");
            return Ok(gst::FlowSuccess::Ok);
        };
        // A gap or discontinuity: drop the partial frame so it is not glued to unrelated audio.
        let gap = state.next_rt.is_some_and(|n| n.abs_diff(rt) > 1_000_000_000 / rate * 2);
        if buf.flags().contains(gst::BufferFlags::DISCONT) || gap {
            state.pending.clear();
            state.pending_rt = None;
        }
        let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
        let bytes = map.as_slice();
        let bps = bytes_per_sample(info.format());
        let n_samples = bytes.len() / bps;
        state.next_rt = Some(rt + (n_samples / channels) as u64 * 1_000_000_000 / rate);
        // Lock order as in reset(): state, then queue. Samples go straight from the buffer into
        // recycled frame buffers (no per-buffer allocation).
        let mut q = self.reference.lock();
        let mut pushed = false;
        let mut idx = 0;
        while idx < n_samples {
            if state.pending.is_empty() {
                let offset = (idx / channels) as u64 * 1_000_000_000 / rate;
                state.pending_rt = Some(rt + offset);
            }
            let take = (frame_len - state.pending.len()).min(n_samples - idx);
            extend_f32(info.format(), &bytes[idx * bps..(idx + take) * bps], &mut state.pending);
            idx += take;
            if state.pending.len() == frame_len {
                let fresh = q.free.pop().unwrap_or_else(|| Vec::with_capacity(frame_len));
                let f = RefFrame {
                    running_time: state.pending_rt.take().unwrap_or(rt) + state.latency_ns,
                    data: std::mem::replace(&mut state.pending, fresh),
                };
                q.head_end = Some(f.running_time + 10_000_000);
                q.frames.push_back(f);
                pushed = true;
            }
        }
        let max = MAX_QUEUE_MS as usize / 10;
        if pushed && q.frames.len() > max {
            let n = q.frames.len() - max;
            for _ in 0..n {
                if let Some(f) = q.frames.pop_front() {
                    q.recycle(f.data);
                }
            }
            q.dropped += n as u64;
            gst::debug!(CAT, imp = self, "no vdiaec consumed the reference: dropped {n} frames");
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// Bytes per sample of the negotiated format: 4 for F32LE, 2 for S16LE.
pub(crate) fn bytes_per_sample(format: gst_audio::AudioFormat) -> usize {
    if format == gst_audio::AudioFormat::F32le { 4 } else { 2 }
}

/// Appends interleaved S16LE or F32LE bytes to `out` as f32 samples in [-1, 1] (reusing its
/// capacity, so a warmed-up buffer allocates nothing).
pub(crate) fn extend_f32(format: gst_audio::AudioFormat, bytes: &[u8], out: &mut Vec<f32>) {
    match format {
        gst_audio::AudioFormat::F32le => {
            out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }
        _ => out.extend(bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)),
    }
}

/// `s` ([-1, 1]) as S16, rounded half to even, saturated. Rounds by adding and taking away
/// 1.5 · 2²³ (exact for |x| < 2²²) rather than with `f32::round`, which baseline x86-64 (no
/// SSE4.1) compiles to a `roundf` call per sample.
#[inline]
pub(crate) fn to_s16(s: f32) -> i16 {
    const MAGIC: f32 = 12_582_912.0;
    let x = (s * 32768.0).clamp(-32768.0, 32767.0);
    ((x + MAGIC) - MAGIC) as i16
}

/// Writes f32 samples (taken from `samples`, 0 once it runs dry) into interleaved S16LE or
/// F32LE `bytes`, filling all of `bytes`.
pub(crate) fn write_f32(
    format: gst_audio::AudioFormat,
    mut samples: impl Iterator<Item = f32>,
    bytes: &mut [u8],
) {
    match format {
        gst_audio::AudioFormat::F32le => {
            for c in bytes.chunks_exact_mut(4) {
                c.copy_from_slice(&samples.next().unwrap_or(0.0).to_le_bytes());
            }
        }
        _ => {
            for c in bytes.chunks_exact_mut(2) {
                let s = samples.next().unwrap_or(0.0);
                c.copy_from_slice(&to_s16(s).to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::to_s16;

    #[test]
    fn s16_conversion_rounds_to_nearest_and_saturates() {
        let lsb = 1.0 / 32768.0;
        assert_eq!(to_s16(0.0), 0);
        assert_eq!(to_s16(0.3 * lsb), 0);
        assert_eq!(to_s16(0.7 * lsb), 1);
        assert_eq!(to_s16(-0.7 * lsb), -1);
        assert_eq!(to_s16(1.5 * lsb), 2);
        assert_eq!(to_s16(2.5 * lsb), 2, "ties go to even");
        assert_eq!(to_s16(1234.4 * lsb), 1234);
        assert_eq!(to_s16(-1234.6 * lsb), -1235);
        assert_eq!(to_s16(1.0), 32767);
        assert_eq!(to_s16(-1.0), -32768);
        assert_eq!(to_s16(7.0), 32767);
        assert_eq!(to_s16(-7.0), -32768);
        assert_eq!(to_s16(f32::NAN), 0);
        // every S16 value survives the round trip
        for v in i16::MIN..=i16::MAX {
            assert_eq!(to_s16(v as f32 / 32768.0), v);
        }
    }
}
