//! `daemon/src/webrtc`: the SDP checks, codec table and `RTCConfiguration` mapping. No
//! pipeline is ever built here; only GStreamer's SDP parser (libgstsdp) runs.

#[path = "../../daemon/src/webrtc/codecs.rs"]
pub mod codecs;
#[path = "../../daemon/src/webrtc/ice.rs"]
pub mod ice;
#[path = "../../daemon/src/webrtc/sdp.rs"]
pub mod sdp;

/// Stands in for the daemon's `init_gstreamer` (which also registers our G.722 plugin): the
/// SDP parser needs only `gst::init`, which is idempotent and cheap after the first call.
pub fn init_gstreamer() -> Result<(), gst::glib::Error> {
    gst::init()
}
#[path = "../../daemon/src/webrtc/dtmf.rs"]
pub mod dtmf;
