//! WebRTC objects (RTCPeerConnection, transceivers) backed by GStreamer webrtcbin.
//!
//! - [`peer_connection`]: `RTCPeerConnection` (WebRTC 1.0 §4), one pipeline per connection.
//! - [`codecs`]: Opus / G.722 / PCMU / PCMA and their GStreamer elements.
//! - [`dtmf`]: `RTCDTMFSender` (WebRTC 1.0 §7): RFC 4733 telephone-event in SDP and RTP.
//! - [`ice`]: `RTCConfiguration` → STUN/TURN/policies of webrtcbin.
//! - [`sdp`]: SDP checks and per-m-line facts (RFC 8866, JSEP RFC 8829).
//! - [`stats`]: webrtcbin stats → W3C `RTCStats`.
//! - [`summary`]: the end-of-call summary line (final stats, E-model MOS, network thresholds).
//!
//! The module deals in GStreamer elements only; devices are the media module's business.

pub mod codecs;
pub mod dtmf;
pub mod ice;
pub mod peer_connection;
pub mod sdp;
pub mod stats;
pub mod summary;

pub use codecs::Codec;
pub use peer_connection::{LOOPBACK_ICE_ENV, PcEvent, PcOptions, PeerConnection, TransceiverKindOrTrack};

use crate::error::{EngineError, EngineResult};
use gst::prelude::*;
use std::sync::OnceLock;
use std::time::Instant;

static PREWARM: OnceLock<Result<(), String>> = OnceLock::new();

/// Set once [`init_gstreamer`] succeeded in this process.
static GST_READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process initialised GStreamer through [`init_gstreamer`] (its registry is
/// loaded, so asking it costs nothing more).
pub fn gstreamer_initialised() -> bool {
    GST_READY.load(std::sync::atomic::Ordering::Acquire)
}

/// Initialises GStreamer (idempotent, like `gst::init`) and makes sure our own elements
/// (`g722enc`/`g722dec` from crate `gst-plugin-vdimedia`) are in the registry: when the packaged
/// `libgstvdimedia.so` is not installed, the plugin linked into this binary is registered
/// statically. Every GStreamer entry point of the daemon calls this instead of `gst::init`.
/// A failed static registration is logged, not fatal: only G.722 is then unavailable.
pub fn init_gstreamer() -> Result<(), gst::glib::Error> {
    gst::init()?;
    static VDIMEDIA_PLUGIN: std::sync::Once = std::sync::Once::new();
    VDIMEDIA_PLUGIN.call_once(|| {
        if gst::ElementFactory::find("g722enc").is_some() {
            tracing::debug!("g722enc found in the registry (installed libgstvdimedia.so)");
        } else if let Err(e) = gstvdimedia::plugin_register_static() {
            tracing::warn!(error = %e, "cannot register the built-in vdimedia plugin: no G.722");
        } else {
            tracing::debug!("built-in vdimedia plugin registered (g722enc, g722dec)");
        }
    });
    GST_READY.store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// Process-wide warm-up; call once early (first session). Initialises GStreamer and makes the
/// DTLS certificate ahead of any call: GStreamer's dtls elements share one generated
/// certificate per process (when no `pem` is set), so instantiating a `dtlsdec` and reading its
/// `pem` moves the RSA key generation (hundreds of ms) out of createOffer. Idempotent and cheap
/// after the first call. Fails with `operation_error` when GStreamer or its dtls plugin is
/// missing.
pub fn prewarm() -> EngineResult<()> {
    PREWARM
        .get_or_init(|| {
            let t0 = Instant::now();
            init_gstreamer().map_err(|e| format!("GStreamer init failed: {e}"))?;
            let dec = gst::ElementFactory::make("dtlsdec")
                .build()
                .map_err(|e| format!("dtlsdec is not available: {e}"))?;
            let pem = dec.property::<Option<String>>("pem");
            if pem.is_none_or(|p| p.is_empty()) {
                return Err("dtlsdec produced no certificate".to_string());
            }
            // Only the certificate is made ahead: loading the call's plugins here would cost
            // the idle daemon tens of MB (gst-libav alone maps libavfilter and its speech and
            // SVG libraries), and that loading happens at pc.create, long before the answer, so
            // it never delays first audio.
            for f in ["webrtcbin", "nicesrc", "opusenc", "rtpopuspay"] {
                if gst::ElementFactory::find(f).is_none() {
                    tracing::warn!(element = f, "GStreamer element missing: calls may fail");
                }
            }
            tracing::info!(
                ms = t0.elapsed().as_millis() as u64,
                "WebRTC prewarmed (GStreamer, DTLS certificate)"
            );
            Ok(())
        })
        .clone()
        .map_err(|e| {
            tracing::error!(error = %e, "WebRTC prewarm failed");
            EngineError::operation(e)
        })
}

#[cfg(test)]
mod tests;
