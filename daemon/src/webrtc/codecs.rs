//! Audio codecs the engine negotiates (RFC 7587 Opus, RFC 3551 G.722/PCMU/PCMA) and the GStreamer
//! elements that encode, payload, depayload and decode them.
//!
//! Offer order is [`Codec::DEFAULT_ORDER`]: Opus, G.722, PCMU, PCMA (the order Chromium offers
//! them in, minus RED and CN).

use crate::error::{EngineError, EngineResult};
use gst::prelude::*;

/// One negotiable audio codec. Payload types are the offer's defaults; an answer uses the
/// remote offer's payload types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus at 48 kHz, 2 channels in SDP (RFC 7587), in-band FEC on.
    Opus,
    /// G.722 (RTP clock 8000 Hz by RFC 3551's historical error, audio 16 kHz), coded by our
    /// `g722enc`/`g722dec` (gst-plugin-vdimedia), so no gst-libav is needed.
    G722,
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
}

/// Packet duration for G.711/G.722 (ns): 20 ms, what every softphone expects.
const PTIME_20MS_NS: i64 = 20_000_000;
/// Expected packet loss (percent) opusenc sizes its in-band FEC for.
pub const OPUS_PACKET_LOSS_PERCENT: i32 = 10;

impl Codec {
    /// The order codecs are offered in.
    pub const DEFAULT_ORDER: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

    /// Default RTP payload type in our offers (static PTs per RFC 3551; 111 for Opus as Chromium).
    pub fn default_payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::G722 => 9,
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The `encoding-name` of RTP caps (upper case, as GStreamer writes it).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Opus => "OPUS",
            Codec::G722 => "G722",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// RTP clock rate in Hz (the SDP rtpmap value).
    pub fn clock_rate(self) -> i32 {
        match self {
            Codec::Opus => 48000,
            _ => 8000,
        }
    }

    /// Codec from an SDP rtpmap encoding name (case-insensitive) and clock rate (Hz).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        let c = match name.to_ascii_uppercase().as_str() {
            "OPUS" => Codec::Opus,
            "G722" => Codec::G722,
            "PCMU" => Codec::Pcmu,
            "PCMA" => Codec::Pcma,
            _ => return None,
        };
        (c.clock_rate() as u32 == clock_rate).then_some(c)
    }

    /// Codec from its common name as the protocol's capability list writes it
    /// (`opus`, `G722`, `PCMU`, `PCMA`; case-insensitive).
    pub fn from_name(name: &str) -> Option<Codec> {
        Self::from_rtpmap(name, if name.eq_ignore_ascii_case("opus") { 48000 } else { 8000 })
    }

    /// One structure of webrtcbin `codec-preferences` for this codec with payload type `pt`.
    /// Extra string fields become `a=fmtp` parameters.
    pub fn preference_structure(self, pt: u8) -> gst::Structure {
        let mut s = gst::Structure::builder("application/x-rtp")
            .field("media", "audio")
            .field("encoding-name", self.encoding_name())
            .field("clock-rate", self.clock_rate())
            .field("payload", pt as i32)
            .build();
        if self == Codec::Opus {
            // Without encoding-params the SDP says "OPUS/48000" instead of "opus/48000/2".
            s.set("encoding-params", "2");
            s.set("useinbandfec", "1");
        }
        s
    }

    /// Raw audio caps the encoder wants (rate Hz, channels).
    fn raw_caps(self) -> gst::Caps {
        let (rate, channels) = match self {
            Codec::Opus => (48000, 1),
            Codec::G722 => (16000, 1),
            Codec::Pcmu | Codec::Pcma => (8000, 1),
        };
        gst::Caps::builder("audio/x-raw").field("rate", rate).field("channels", channels).build()
    }

    /// Encoder and payloader for sending with payload type `pt`, plus the raw caps to feed.
    pub fn make_encoder(self, pt: u8) -> EngineResult<(gst::Caps, gst::Element, gst::Element)> {
        let pt = pt as u32;
        let (enc, pay) = match self {
            Codec::Opus => {
                let enc = make("opusenc")?;
                enc.set_property("inband-fec", true);
                enc.set_property("packet-loss-percentage", OPUS_PACKET_LOSS_PERCENT);
                (enc, make("rtpopuspay")?)
            }
            Codec::G722 => (make("g722enc")?, make("rtpg722pay")?),
            Codec::Pcmu => (make("mulawenc")?, make("rtppcmupay")?),
            Codec::Pcma => (make("alawenc")?, make("rtppcmapay")?),
        };
        pay.set_property("pt", pt);
        if self != Codec::Opus {
            // rtppcmupay otherwise sends 128 ms packets (FIELD-NOTES).
            pay.set_property("min-ptime", PTIME_20MS_NS);
            pay.set_property("max-ptime", PTIME_20MS_NS);
        }
        Ok((self.raw_caps(), enc, pay))
    }

    /// Depayloader and decoder for receiving this codec.
    pub fn make_decoder(self) -> EngineResult<(gst::Element, gst::Element)> {
        Ok(match self {
            Codec::Opus => (make("rtpopusdepay")?, make("opusdec")?),
            Codec::G722 => (make("rtpg722depay")?, make("g722dec")?),
            Codec::Pcmu => (make("rtppcmudepay")?, make("mulawdec")?),
            Codec::Pcma => (make("rtppcmadepay")?, make("alawdec")?),
        })
    }
}

/// Builds a GStreamer element by factory name, as an `operation_error` when the plugin is missing.
pub fn make(factory: &str) -> EngineResult<gst::Element> {
    gst::ElementFactory::make(factory).build().map_err(|e| {
        tracing::error!(element = factory, error = %e, "GStreamer element missing");
        EngineError::operation(format!("GStreamer element {factory} is not available: {e}"))
    })
}

/// The codecs an RTP caps structure (as found on a webrtcbin src pad) carries.
pub fn codec_of_caps(s: &gst::StructureRef) -> Option<Codec> {
    let name = s.get::<&str>("encoding-name").ok()?;
    let rate = s.get::<i32>("clock-rate").ok()?;
    Codec::from_rtpmap(name, rate as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_names_map_to_codecs() {
        assert_eq!(Codec::from_rtpmap("opus", 48000), Some(Codec::Opus));
        assert_eq!(Codec::from_rtpmap("G722", 8000), Some(Codec::G722));
        assert_eq!(Codec::from_rtpmap("PCMU", 16000), None);
        assert_eq!(Codec::from_name("pcma"), Some(Codec::Pcma));
        assert_eq!(Codec::from_rtpmap("telephone-event", 8000), None);
    }
}
