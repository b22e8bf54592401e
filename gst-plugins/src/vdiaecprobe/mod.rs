//! `vdiaecprobe`: the far-end reference tap for `vdiaec`.
//!
//! Placed on the playout branch just before the audio sink, it passes audio through unchanged
//! (always in place, zero latency) and copies it, cut into 10 ms frames stamped with their
//! running time, into a bounded queue that the `vdiaec` element naming it through its `probe`
//! property reads. Both must be in the same pipeline (same clock and base time), as with
//! GStreamer's `webrtcechoprobe` + `webrtcdsp`.

use gst::glib;
use gst::prelude::*;

mod imp;

pub(crate) use imp::Reference;

/// Caps and sample conversion shared with `vdiaec`.
pub(crate) mod imp_helpers {
    pub(crate) use super::imp::{audio_caps, bytes_per_sample, extend_f32, write_f32};
}

glib::wrapper! {
    /// The `vdiaecprobe` element (GstBaseTransform, always pass-through).
    pub struct VdiAecProbe(ObjectSubclass<imp::VdiAecProbe>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers `vdiaecprobe` with rank none (it is placed explicitly, never autoplugged).
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "vdiaecprobe", gst::Rank::NONE, VdiAecProbe::static_type())
}

/// Finds the live `vdiaecprobe` named `name` and returns its reference queue.
pub(crate) fn acquire(name: &str) -> Option<std::sync::Arc<Reference>> {
    imp::acquire(name)
}
