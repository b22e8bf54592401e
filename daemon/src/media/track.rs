//! Local capture tracks (`MediaStreamTrack` of kind "audio", Media Capture and Streams §4.3)
//! and the capture element each peer connection pulls audio from.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use gst::prelude::*;
use tracing::{debug, warn};
use uuid::Uuid;
use vdimedia_protocol::api::{MediaTrackSettings, TrackInfo};

use super::aec::{AecDecision, AecMode};
use super::devices::{AudioBackend, Endpoint};
use super::{ensure_gst, make_element};
use crate::error::EngineResult;

/// Which capture processing the engine can apply (`MediaTrackCapabilities`): all `false`
/// until [`super::MediaDevices::with_aec`] turns the echo-cancellation policy on
/// ([`super::aec`]); a track's settings report a processing as on only when it was requested
/// (the default) AND really runs for its device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessingPolicy {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain_control: bool,
}

/// PipeWire graph latency the capture and playout streams ask for: 960 frames at 48 kHz
/// (20 ms, one Opus/RTP packet). PipeWire runs the graph at the smallest quantum its nodes
/// request, and pipewiresink pushes one buffer per cycle (FIELD-NOTES).
pub(crate) const PW_NODE_LATENCY: &str = "960/48000";

static ELEMENT_SERIAL: AtomicU64 = AtomicU64::new(0);

/// A unique element name with a readable prefix (bins of several calls share one process).
pub(crate) fn element_name(prefix: &str) -> String {
    format!("{prefix}-{}", ELEMENT_SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// An audio capture track from `getUserMedia`. `id` is a UUID (unique per track); `label` the
/// device label; `settings` the applied `MediaTrackSettings` (`sampleRate` Hz,
/// `channelCount`). Cloning shares nothing: each [`make_source`](Self::make_source) call opens
/// the device anew.
#[derive(Debug, Clone)]
pub struct LocalTrack {
    pub id: String,
    pub label: String,
    pub settings: MediaTrackSettings,
    endpoint: Endpoint,
    backend: AudioBackend,
    aec: AecDecision,
    /// `vdiaec` runs in the capture path (software AEC, or noise suppression / AGC alone).
    processing: bool,
}

/// Element-name prefix of the `vdiaec` in a capture bin (the engine looks it up by factory).
pub const AEC_ELEMENT_PREFIX: &str = "vdimedia-aec";

impl LocalTrack {
    pub(crate) fn new(
        label: String,
        settings: MediaTrackSettings,
        endpoint: Endpoint,
        backend: AudioBackend,
    ) -> Self {
        Self {
            id: Uuid::new_v4().to_string(),
            label,
            settings,
            endpoint,
            backend,
            aec: AecDecision { mode: AecMode::None, reason: "no AEC policy in this engine".into() },
            processing: false,
        }
    }

    /// Sets the AEC policy's decision and whether `vdiaec` runs (see `get_user_media`).
    pub(crate) fn with_aec(mut self, aec: AecDecision, processing: bool) -> Self {
        self.aec = aec;
        self.processing = processing;
        self
    }

    /// Which echo canceller the track runs and why (also in the `getUserMedia` journal line).
    /// Not part of the W3C settings, which say only `echoCancellation: true|false`.
    pub fn aec(&self) -> &AecDecision {
        &self.aec
    }

    /// The wire form (`Track` of docs/protocol.md): id, kind "audio", label, settings.
    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id.clone(),
            kind: "audio".to_string(),
            label: self.label.clone(),
            settings: self.settings.clone(),
        }
    }

    /// The backend the track's device belongs to.
    pub fn backend(&self) -> AudioBackend {
        self.backend
    }

    /// Moves the track to the backend's default input (its device was unplugged): later
    /// [`make_source`](Self::make_source) calls open the default, `settings.deviceId` becomes
    /// `"default"` and the label `default_label`. The id, and so the page's track, stay.
    pub fn fall_back_to_default(&mut self, default_label: &str) {
        self.endpoint = match self.backend {
            AudioBackend::PipeWire => Endpoint::PipeWire(None),
            AudioBackend::Alsa => Endpoint::Alsa("default".into()),
        };
        self.settings.device_id = super::DEFAULT_DEVICE_ID.to_string();
        self.label = default_label.to_string();
        // The default device's own AEC is unknown here: cancelling twice beats echo.
        if self.aec.mode == AecMode::Hardware && self.settings.echo_cancellation {
            self.aec =
                AecDecision { mode: AecMode::Software, reason: "fell back to the default device".into() };
            self.processing = true;
            warn!(target: "media", track = %self.id, "aec=software reason=fell back to the default device");
        }
    }

    /// A new capture element for one pipeline: a `gst::Bin` with one always "src" ghost pad
    /// producing `audio/x-raw` at the track's `sampleRate` and `channelCount` (format left to
    /// downstream). Inside: `pipewiresrc target-object=<node.name> always-copy=true` with
    /// explicit F32LE caps and 20 ms node latency (or `alsasrc device=<pcm>` with 10 ms
    /// periods), then, when the track runs processing (software AEC, or noise suppression /
    /// AGC), `audioconvert ! audioresample ! capsfilter(F32LE, 8/16/32/48 kHz) ! vdiaec`
    /// (named `vdimedia-aec-N`; its `probe` is set by the peer connection the bin joins), then
    /// audioconvert ! audioresample ! capsfilter. The device opens only when the bin goes to
    /// PAUSED/PLAYING in the caller's pipeline; it is live.
    pub fn make_source(&self) -> EngineResult<gst::Element> {
        ensure_gst()?;
        let rate = self.settings.sample_rate as i32;
        let channels = self.settings.channel_count as i32;
        let bin = gst::Bin::builder().name(element_name("vdimedia-capture")).build();

        let src = match &self.endpoint {
            Endpoint::PipeWire(target) => {
                let src = make_element("pipewiresrc", "gstreamer1.0-pipewire")?;
                if let Some(node) = target {
                    src.set_property("target-object", node);
                }
                // pipewiresrc has few buffers and stalls when downstream holds them.
                src.set_property("always-copy", true);
                src.set_property("client-name", "vdimediad");
                src.set_property(
                    "stream-properties",
                    gst::Structure::builder("props")
                        .field("media.role", "Communication")
                        .field("node.latency", PW_NODE_LATENCY)
                        .build(),
                );
                // Explicit caps: PipeWire converts (channel mix, resample) to exactly this.
                let caps = super::f32_capsfilter(rate, channels)?;
                bin.add_many([&src, &caps]).map_err(gst_err)?;
                src.link(&caps).map_err(gst_err)?;
                let pad = caps.static_pad("src").expect("capsfilter has a src pad");
                restamp_by_sample_count(&pad, rate as u64, 4 * channels as usize);
                caps
            }
            Endpoint::Alsa(pcm) => {
                let src = make_element("alsasrc", "gstreamer1.0-alsa")?;
                src.set_property("device", pcm);
                // 10 ms periods, 60 ms ring buffer: low latency without underruns on a
                // loaded thin client.
                src.set_property("latency-time", 10_000i64);
                src.set_property("buffer-time", 60_000i64);
                bin.add(&src).map_err(gst_err)?;
                src
            }
        };
        let src = if self.processing { self.add_processing(&bin, &src, channels)? } else { src };
        let convert = make_element("audioconvert", "gstreamer1.0-plugins-base")?;
        let resample = make_element("audioresample", "gstreamer1.0-plugins-base")?;
        let out_caps = make_element("capsfilter", "gstreamer1.0-plugins-base")?;
        out_caps.set_property(
            "caps",
            gst::Caps::builder("audio/x-raw").field("rate", rate).field("channels", channels).build(),
        );
        bin.add_many([&convert, &resample, &out_caps]).map_err(gst_err)?;
        gst::Element::link_many([&src, &convert, &resample, &out_caps]).map_err(gst_err)?;
        let target = out_caps.static_pad("src").expect("capsfilter has a src pad");
        let ghost = gst::GhostPad::builder_with_target(&target).map_err(gst_err)?.name("src").build();
        bin.add_pad(&ghost).map_err(gst_err)?;
        debug!(target: "media", track = %self.id, endpoint = ?self.endpoint, rate, channels, bin = %bin.name(),
               aec = self.aec.mode.as_str(), processing = self.processing, "capture source created");
        Ok(bin.upcast())
    }

    /// Adds `audioconvert ! audioresample ! capsfilter ! vdiaec` after `upstream` in `bin` and
    /// returns the `vdiaec`. It takes 8/16/32/48 kHz only: the track's rate, else 48 kHz.
    fn add_processing(
        &self,
        bin: &gst::Bin,
        upstream: &gst::Element,
        channels: i32,
    ) -> EngineResult<gst::Element> {
        let rate = self.settings.sample_rate as i32;
        let aec_rate = if [8_000, 16_000, 32_000, 48_000].contains(&rate) { rate } else { 48_000 };
        let convert = make_element("audioconvert", "gstreamer1.0-plugins-base")?;
        let resample = make_element("audioresample", "gstreamer1.0-plugins-base")?;
        let caps = super::f32_capsfilter(aec_rate, channels.clamp(1, 2))?;
        let aec = gst::ElementFactory::make("vdiaec").name(element_name(AEC_ELEMENT_PREFIX)).build().map_err(|_| {
            let e = crate::error::EngineError::operation(
                "GStreamer element vdiaec is missing (the daemon's built-in vdimedia plugin did not register)",
            );
            warn!(target: "media", "vdiaec missing: capture without echo cancellation");
            e
        })?;
        aec.set_property("echo-cancel", self.aec.mode == AecMode::Software);
        aec.set_property("noise-suppression", self.settings.noise_suppression);
        aec.set_property("gain-control", self.settings.auto_gain_control);
        // No probe until the peer connection names its playout reference (attach_source).
        aec.set_property("probe", "");
        // The first far-end packet may take a few seconds (ICE, the remote's getUserMedia):
        // warn only when the reference is missing that long.
        aec.set_property("reference-timeout", AEC_REFERENCE_TIMEOUT_MS);
        bin.add_many([&convert, &resample, &caps, &aec]).map_err(gst_err)?;
        gst::Element::link_many([upstream, &convert, &resample, &caps, &aec]).map_err(gst_err)?;
        Ok(aec)
    }
}

/// `reference-timeout` of the capture's `vdiaec`, ms: how long the far-end reference may be
/// missing or lag before capture passes through unprocessed with a warning.
pub const AEC_REFERENCE_TIMEOUT_MS: u32 = 1000;

pub(crate) fn gst_err(e: impl std::fmt::Display) -> crate::error::EngineError {
    let e = crate::error::EngineError::operation(format!("GStreamer: {e}"));
    warn!(target: "media", error = %e.message, "building a media element failed");
    e
}

/// How far (ns) the sample count may fall behind the clock, at the least, over a window before
/// it is counted as lost samples and timestamps jump forward.
const LOSS_THRESHOLD_NS: i64 = 30_000_000;
/// Window (ns) over which the smallest lag is taken: scheduling delays make single arrivals
/// late, only a lag that persists for a whole window means samples were dropped.
const LOSS_WINDOW_NS: u64 = 1_000_000_000;

/// pipewiresrc 0.3.65 timestamps only its first buffer (FIELD-NOTES). Gives every buffer a
/// PTS from the running sample count (`pts = start + frames/rate`), like GstAudioBaseSrc does,
/// so encoders and RTP get continuous time. Arrival times only start the count and detect
/// dropped buffers (pipewiresrc drops whole buffers when the machine stalls): when the count
/// lags the clock by > 30 ms for a whole second, it jumps forward and marks DISCONT.
/// Never moves backwards (`do-timestamp=true`, arrival stamps, made far ends conceal 23–35 %).
fn restamp_by_sample_count(pad: &gst::Pad, rate: u64, bytes_per_frame: usize) {
    #[derive(Default)]
    struct State {
        next: Option<gst::ClockTime>,
        window_start: Option<gst::ClockTime>,
        min_lag_ns: i64,
    }
    let state = Mutex::new(State { min_lag_ns: i64::MAX, ..Default::default() });
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        if rate == 0 || bytes_per_frame == 0 {
            return gst::PadProbeReturn::Ok;
        }
        let frames = (buffer.size() / bytes_per_frame) as u64;
        let duration = gst::ClockTime::from_nseconds(frames * 1_000_000_000 / rate);
        let now = pad.parent_element().and_then(|e| e.current_running_time());
        let arrival_start = now.map(|n| n.saturating_sub(duration));
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let mut discont = false;
        let pts = match (st.next, arrival_start) {
            (Some(next), Some(arrival)) => {
                let lag = arrival.nseconds() as i64 - next.nseconds() as i64;
                st.min_lag_ns = st.min_lag_ns.min(lag);
                let window_start = *st.window_start.get_or_insert(arrival);
                if arrival.nseconds().saturating_sub(window_start.nseconds()) >= LOSS_WINDOW_NS {
                    let min_lag = st.min_lag_ns;
                    st.window_start = Some(arrival);
                    st.min_lag_ns = i64::MAX;
                    if min_lag > LOSS_THRESHOLD_NS {
                        debug!(target: "media", lost_ms = min_lag / 1_000_000, "capture lost samples; timestamps jump");
                        discont = true;
                        next + gst::ClockTime::from_nseconds(min_lag as u64)
                    } else {
                        next
                    }
                } else {
                    next
                }
            }
            (Some(next), None) => next,
            (None, Some(arrival)) => arrival,
            (None, None) => buffer.pts().unwrap_or(gst::ClockTime::ZERO),
        };
        st.next = Some(pts + duration);
        drop(st);
        let b = buffer.make_mut();
        b.set_pts(pts);
        b.set_dts(gst::ClockTime::NONE);
        b.set_duration(duration);
        if discont {
            b.set_flags(gst::BufferFlags::DISCONT);
        }
        gst::PadProbeReturn::Ok
    });
}
