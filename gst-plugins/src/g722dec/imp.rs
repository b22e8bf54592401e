//! `g722dec` implementation: a `GstAudioDecoder` subclass over `audio_codec::g722`.

use std::sync::{LazyLock, Mutex};

use audio_codec::g722::{Bitrate, G722Decoder};
use gst::glib;
use gst::subclass::prelude::*;
use gst_audio::prelude::*;
use gst_audio::subclass::prelude::*;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("g722dec", gst::DebugColorFlags::empty(), Some("G.722 decoder"))
});

/// Sample rate G.722 decodes to (Hz).
const RATE: i32 = 16000;

#[derive(Default)]
pub struct G722Dec {
    /// Codec state; `None` while stopped.
    state: Mutex<Option<G722Decoder>>,
}

fn new_decoder() -> G722Decoder {
    // 64 kbit/s, unpacked bytes, 16 kHz output. (This constructor takes `packed` before `eight_k`.)
    G722Decoder::with_options(Bitrate::Mode1_64000, false, false)
}

impl G722Dec {
    fn reset(&self, why: &str) {
        let mut state = self.state.lock().unwrap();
        if state.is_some() {
            gst::debug!(CAT, imp = self, "resetting codec state: {why}");
            *state = Some(new_decoder());
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for G722Dec {
    const NAME: &'static str = "GstVdiG722Dec";
    type Type = super::G722Dec;
    type ParentType = gst_audio::AudioDecoder;
}

impl ObjectImpl for G722Dec {}
impl GstObjectImpl for G722Dec {}

impl ElementImpl for G722Dec {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "G.722 decoder",
                "Codec/Decoder/Audio",
                "ITU-T G.722 decoder, 64 kbit/s, to 16 kHz mono S16; resets on DISCONT/GAP (no FFmpeg)",
                "vdimedia developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps =
                gst::Caps::builder("audio/G722").field("rate", RATE).field("channels", 1i32).build();
            let src_caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .rate(RATE)
                .channels(1)
                .build();
            vec![
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &sink_caps)
                    .unwrap(),
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &src_caps)
                    .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl AudioDecoderImpl for G722Dec {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = Some(new_decoder());
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_format(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let s = caps.structure(0).ok_or_else(|| gst::loggable_error!(CAT, "empty caps"))?;
        let rate = s.get::<i32>("rate").unwrap_or(RATE);
        let channels = s.get::<i32>("channels").unwrap_or(1);
        if s.name() != "audio/G722" || rate != RATE || channels != 1 {
            gst::error!(CAT, imp = self, "unsupported input caps {caps}: need audio/G722, 16000 Hz, mono");
            return Err(gst::loggable_error!(
                CAT,
                "g722dec needs audio/G722 rate=16000 channels=1, got {}",
                caps
            ));
        }
        let info = gst_audio::AudioInfo::builder(gst_audio::AudioFormat::S16le, RATE as u32, 1)
            .build()
            .map_err(|e| gst::loggable_error!(CAT, "output info: {e}"))?;
        self.obj()
            .set_output_format(&info)
            .map_err(|e| gst::loggable_error!(CAT, "cannot set output format: {e}"))?;
        self.reset("new caps");
        Ok(())
    }

    fn handle_frame(&self, buffer: Option<&gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(buffer) = buffer else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["cannot map input buffer"]);
            gst::FlowError::Error
        })?;
        let codes = map.as_slice();
        let mut pcm = vec![0i16; codes.len() * 2];
        let n = {
            let mut state = self.state.lock().unwrap();
            let dec = state.as_mut().ok_or(gst::FlowError::Flushing)?;
            dec.decode_frame_into(codes, &mut pcm).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Decode, ["G.722 decode failed: {e:?}"]);
                gst::FlowError::Error
            })?
        };
        drop(map);
        let mut out = Vec::with_capacity(n * 2);
        out.extend(pcm[..n].iter().flat_map(|s| s.to_le_bytes()));
        self.obj().finish_frame(Some(gst::Buffer::from_mut_slice(out)), 1)
    }

    /// Called by the base class on flush and, with `hard == false`, on a DISCONT input buffer.
    fn flush(&self, hard: bool) {
        self.reset(if hard { "flush" } else { "discontinuity" });
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Gap(_) = event.view() {
            // rtpjitterbuffer reports lost packets as GAP: restart from the initial state.
            self.reset("gap");
        }
        self.parent_sink_event(event)
    }
}
