//! `g722enc`: ITU-T G.722 encoder at 64 kbit/s (mode 1), without gst-libav.
//!
//! Sink: `audio/x-raw, format=S16LE, layout=interleaved, rate=16000, channels=1`.
//! Src: `audio/G722, rate=16000, channels=1` (what `rtpg722pay` accepts). Each output buffer
//! holds 20 ms (320 samples in, 160 bytes out) except possibly the last one at EOS.
//!
//! Rank `primary` (256): above `avenc_g722` (`secondary`, 128), so encodebin and other
//! auto-plugging pick this element whether or not gst-libav is installed. The codec core is the
//! `audio-codec` crate's G.722 (a port of the spandsp reference), bit-exact with `avenc_g722`
//! (see `docs/benchmarks.md`).

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `g722enc` element (a `GstAudioEncoder`).
    pub struct G722Enc(ObjectSubclass<imp::G722Enc>)
        @extends gst_audio::AudioEncoder, gst::Element, gst::Object;
}

/// Registers `g722enc` with `plugin` at rank `primary`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "g722enc", gst::Rank::PRIMARY, G722Enc::static_type())
}
