//! Endpoint audio devices and capture tracks (Media Capture and Streams) on PipeWire or ALSA.
//!
//! - [`devices`]: [`MediaDevices`] (`enumerateDevices`, `getUserMedia`, outputs) and
//!   [`AudioBackend`];
//! - [`track`]: [`LocalTrack`], whose `make_source()` gives a capture element per pipeline;
//! - [`output`]: [`AudioOutput`], whose `make_sink()` gives a playout element;
//! - [`ringtone`]: [`ringtone::Ringtone`], a page-supplied sound played on an output;
//! - [`constraints`]: `MediaTrackConstraints` parsing and SelectSettings;
//! - [`aec`]: the echo-cancellation policy (hardware AEC detection, software `vdiaec`);
//! - [`monitor`]: [`DeviceWatch`], hot-plug watching behind `devicechange`.
//!
//! Elements are plain `gst::Element` bins (ghost pads "src"/"sink") so the WebRTC module can
//! put them in its pipelines without knowing the backend.

pub mod aec;
pub mod constraints;
pub mod devices;
pub mod monitor;
pub mod output;
pub mod ringtone;
pub mod track;

mod backend_alsa;
mod backend_pipewire;

pub use aec::{AecConfig, AecDecision, AecMode};
pub use devices::{AudioBackend, DEFAULT_DEVICE_ID, MediaDevices};
pub use monitor::DeviceWatch;
pub use output::AudioOutput;
pub use track::{LocalTrack, ProcessingPolicy};

use crate::error::{EngineError, EngineResult};

/// Initializes GStreamer once (idempotent, cheap after the first call).
pub(crate) fn ensure_gst() -> EngineResult<()> {
    crate::webrtc::init_gstreamer().map_err(|e| {
        let e = EngineError::operation(format!("GStreamer initialization failed: {e}"));
        tracing::error!(target: "media", error = %e.message, "GStreamer unavailable");
        e
    })
}

/// A `capsfilter` fixing raw audio to the engine's internal format: `audio/x-raw`, F32LE
/// interleaved, `rate` Hz, `channels` channels (what capture bins, the AEC input and the
/// silence source produce, so PipeWire or `audioconvert`/`audioresample` convert to it).
pub(crate) fn f32_capsfilter(rate: i32, channels: i32) -> EngineResult<gst::Element> {
    use gst::prelude::ObjectExt;
    let caps = make_element("capsfilter", "gstreamer1.0-plugins-base")?;
    caps.set_property(
        "caps",
        gst::Caps::builder("audio/x-raw")
            .field("format", "F32LE")
            .field("layout", "interleaved")
            .field("rate", rate)
            .field("channels", channels)
            .build(),
    );
    Ok(caps)
}

/// Creates a GStreamer element, with an error naming the package that provides it.
pub(crate) fn make_element(factory: &str, package: &str) -> EngineResult<gst::Element> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        let e = EngineError::operation(format!("GStreamer element {factory} is missing (install {package})"));
        tracing::error!(target: "media", factory, package, "missing GStreamer element");
        e
    })
}
