//! `g722enc` implementation: a `GstAudioEncoder` subclass over `audio_codec::g722`.

use std::sync::{LazyLock, Mutex};

use audio_codec::Encoder as _;
use audio_codec::g722::{Bitrate, G722Encoder};
use gst::glib;
use gst::subclass::prelude::*;
use gst_audio::prelude::*;
use gst_audio::subclass::prelude::*;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("g722enc", gst::DebugColorFlags::empty(), Some("G.722 encoder"))
});

/// Sample rate G.722 codes at (Hz).
pub const RATE: i32 = 16000;
/// Samples per output buffer: 20 ms at 16 kHz, the packet duration softphones expect.
const FRAME_SAMPLES: i32 = 320;

#[derive(Default)]
pub struct G722Enc {
    /// Codec state; `None` while stopped.
    state: Mutex<Option<G722Encoder>>,
}

fn new_encoder() -> G722Encoder {
    // 64 kbit/s, 16 kHz input, one code per byte (the RTP/RFC 3551 byte layout).
    G722Encoder::with_options(Bitrate::Mode1_64000, false, false)
}

impl G722Enc {
    /// Back to the initial ITU-T state. Only on start, caps change and flush: a GAP upstream is
    /// NOT a reset point, because over RTP the far decoder never sees it (rtpg722pay drops it),
    /// and an encoder reset the decoder does not mirror makes their ADPCM states diverge.
    fn reset(&self, why: &str) {
        let mut state = self.state.lock().unwrap();
        if state.is_some() {
            gst::debug!(CAT, imp = self, "resetting codec state: {why}");
            *state = Some(new_encoder());
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for G722Enc {
    const NAME: &'static str = "GstVdiG722Enc";
    type Type = super::G722Enc;
    type ParentType = gst_audio::AudioEncoder;
}

impl ObjectImpl for G722Enc {}
impl GstObjectImpl for G722Enc {}

impl ElementImpl for G722Enc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "G.722 encoder",
                "Codec/Encoder/Audio",
                "ITU-T G.722 encoder, 64 kbit/s, 16 kHz mono S16 in, 20 ms per buffer (no FFmpeg)",
                "vdimedia developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .rate(RATE)
                .channels(1)
                .build();
            let src_caps =
                gst::Caps::builder("audio/G722").field("rate", RATE).field("channels", 1i32).build();
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

impl AudioEncoderImpl for G722Enc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = Some(new_encoder());
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_format(&self, info: &gst_audio::AudioInfo) -> Result<(), gst::LoggableError> {
        // The template already limits this; check anyway so a bad upstream gets a clear error.
        if info.rate() != RATE as u32
            || info.channels() != 1
            || info.format() != gst_audio::AudioFormat::S16le
        {
            gst::error!(CAT, imp = self, "unsupported input {info:?}: G.722 needs S16LE, 16000 Hz, mono");
            return Err(gst::loggable_error!(CAT, "g722enc needs S16LE 16000 Hz mono, got {:?}", info));
        }
        let obj = self.obj();
        let caps = gst::Caps::builder("audio/G722").field("rate", RATE).field("channels", 1i32).build();
        obj.set_output_format(&caps)
            .map_err(|e| gst::loggable_error!(CAT, "cannot set output format: {e}"))?;
        obj.set_frame_samples_min(FRAME_SAMPLES);
        obj.set_frame_samples_max(FRAME_SAMPLES);
        obj.set_frame_max(1);
        self.reset("new format");
        Ok(())
    }

    fn handle_frame(&self, buffer: Option<&gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(buffer) = buffer else {
            // Drain: nothing is held back (the base class keeps unfinished frames).
            return Ok(gst::FlowSuccess::Ok);
        };
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["cannot map input buffer"]);
            gst::FlowError::Error
        })?;
        let bytes = map.as_slice();
        // S16LE in native memory; copying also gives the codec an even sample count (G.722 codes
        // sample pairs; an odd tail at EOS is padded with one zero sample).
        let n = bytes.len() / 2;
        let mut pcm: Vec<i16> = Vec::with_capacity(n + 1);
        pcm.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
        if pcm.len() % 2 == 1 {
            pcm.push(0);
        }
        let mut out = vec![0u8; pcm.len() / 2 + 1];
        let written = {
            let mut state = self.state.lock().unwrap();
            let enc = state.as_mut().ok_or(gst::FlowError::Flushing)?;
            enc.encode_into(&pcm, &mut out).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Encode, ["G.722 encode failed: {e:?}"]);
                gst::FlowError::Error
            })?
        };
        out.truncate(written);
        drop(map);
        self.obj().finish_frame(Some(gst::Buffer::from_mut_slice(out)), n as i32)
    }

    fn flush(&self) {
        self.reset("flush");
    }
}
