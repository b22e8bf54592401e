//! `vdiaec`: acoustic echo cancellation (WebRTC AEC3), noise suppression, high-pass filter and
//! AGC2 for the capture branch, through `sonora` (a pure-Rust port of WebRTC's audio
//! processing module; see README.md for why this port).
//!
//! The far-end reference comes from the `vdiaecprobe` element named by the `probe` property,
//! placed on the playout branch of the same pipeline. Reference frames are matched to capture
//! frames by running time, one per capture frame at a constant 20 ms offset (a frame the
//! playout branch delivers too late is replaced by silence, keeping the alignment); AEC3's own
//! delay estimator then finds the acoustic delay. At 16, 32 and 48 kHz AEC3 runs in the
//! element's own stage (`aec3.rs`; 32 and 48 kHz in two bands from its own QMF bank, `qmf.rs`)
//! with a shorter modelled echo tail than WebRTC's default, which keeps near-end speech in
//! double talk; 8 kHz uses the APM's AEC3 with the default tuning.
//! Without a reference (no probe, probe stopped, or silent for more than `reference-timeout`
//! ms) capture passes through unchanged and a warning is posted; processing resumes, freshly
//! reset, when it returns.

use gst::glib;
use gst::prelude::*;

mod aec3;
mod imp;
mod qmf;

glib::wrapper! {
    /// The `vdiaec` element (GstBaseTransform, in place, 10 ms latency).
    pub struct VdiAec(ObjectSubclass<imp::VdiAec>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Noise suppression aggressiveness (WebRTC NS levels).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstVdiAecNoiseSuppressionLevel")]
pub enum NoiseSuppressionLevel {
    #[enum_value(name = "Low: about 6 dB of noise reduction", nick = "low")]
    Low = 0,
    #[default]
    #[enum_value(name = "Moderate: about 12 dB", nick = "moderate")]
    Moderate = 1,
    #[enum_value(name = "High: about 18 dB", nick = "high")]
    High = 2,
    #[enum_value(name = "Very high: about 21 dB", nick = "very-high")]
    VeryHigh = 3,
}

/// Registers `vdiaec` with rank none (placed explicitly by the engine).
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    NoiseSuppressionLevel::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "vdiaec", gst::Rank::NONE, VdiAec::static_type())
}
