//! `g722dec`: ITU-T G.722 decoder at 64 kbit/s (mode 1), without gst-libav.
//!
//! Sink: `audio/G722, rate=16000, channels=1` (what `rtpg722depay` and `avenc_g722` produce).
//! Src: `audio/x-raw, format=S16LE, layout=interleaved, rate=16000, channels=1`; each input byte
//! gives two output samples (1 byte = 125 µs).
//!
//! The codec state is reset to its ITU-T initial state on a DISCONT buffer (packet loss seen by
//! the depayloader), a GAP event (loss reported by rtpjitterbuffer), a flush and a caps change,
//! so that the ADPCM predictors restart cleanly instead of extrapolating from stale state.
//!
//! Rank `primary` (256): above `avdec_g722` (`marginal`, 64), so decodebin/webrtcbin auto-plugging
//! picks this element; its output is sample-identical to `avdec_g722` (see `docs/benchmarks.md`).

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `g722dec` element (a `GstAudioDecoder`).
    pub struct G722Dec(ObjectSubclass<imp::G722Dec>)
        @extends gst_audio::AudioDecoder, gst::Element, gst::Object;
}

/// Registers `g722dec` with `plugin` at rank `primary`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "g722dec", gst::Rank::PRIMARY, G722Dec::static_type())
}
