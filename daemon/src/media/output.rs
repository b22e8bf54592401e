//! Playout outputs (`HTMLMediaElement.setSinkId`, Audio Output Devices API §2): where a remote
//! track is heard.

use gst::prelude::*;
use tracing::debug;

use super::devices::{AudioBackend, Endpoint};
use super::track::{PW_NODE_LATENCY, element_name, gst_err};
use super::{ensure_gst, make_element};
use crate::error::EngineResult;

/// An audio output chosen by `sinkId`. `device_id` is the W3C `deviceId` it was chosen by
/// (`"default"` for the default output), `label` its device label.
#[derive(Debug, Clone)]
pub struct AudioOutput {
    pub device_id: String,
    pub label: String,
    endpoint: Endpoint,
    backend: AudioBackend,
}

impl AudioOutput {
    pub(crate) fn new(device_id: String, label: String, endpoint: Endpoint, backend: AudioBackend) -> Self {
        Self { device_id, label, endpoint, backend }
    }

    /// The backend the output belongs to.
    pub fn backend(&self) -> AudioBackend {
        self.backend
    }

    /// A new playout element: a `gst::Bin` with one always "sink" ghost pad accepting any
    /// `audio/x-raw` (queue leaky=downstream max 200 ms ! audioconvert ! audioresample inside), ending in
    /// `pipewiresink target-object=<node.name>` (no target for "default": PipeWire follows its
    /// default) asking for a 20 ms graph quantum, or `alsasink device=<pcm>` with 10 ms
    /// periods and a 60 ms buffer. Syncs on the pipeline clock. Opens the device only when
    /// the caller's pipeline goes to PAUSED.
    pub fn make_sink(&self) -> EngineResult<gst::Element> {
        ensure_gst()?;
        let bin = gst::Bin::builder().name(element_name("vdimedia-playout")).build();
        let convert = make_element("audioconvert", "gstreamer1.0-plugins-base")?;
        let resample = make_element("audioresample", "gstreamer1.0-plugins-base")?;
        let sink = match &self.endpoint {
            Endpoint::PipeWire(target) => {
                let sink = make_element("pipewiresink", "gstreamer1.0-pipewire")?;
                if let Some(node) = target {
                    sink.set_property("target-object", node);
                }
                activate_pool_before_caps(&sink);
                sink.set_property("client-name", "vdimediad");
                // pipewiresink pushes one buffer per graph cycle: a 20 ms quantum matches
                // 20 ms decoded frames, so playout neither starves nor queues up.
                sink.set_property(
                    "stream-properties",
                    gst::Structure::builder("props")
                        .field("media.role", "Communication")
                        .field("node.latency", PW_NODE_LATENCY)
                        .build(),
                );
                sink
            }
            Endpoint::Alsa(pcm) => {
                let sink = make_element("alsasink", "gstreamer1.0-alsa")?;
                sink.set_property("device", pcm);
                sink.set_property("latency-time", 10_000i64);
                sink.set_property("buffer-time", 60_000i64);
                sink
            }
        };
        // The decoder's streaming thread never waits on the device: a pipewiresink whose
        // PipeWire died can block in its buffer pool for good, and the call's reception (and
        // any swap of this sink, which waits for the pad to be idle) would hang with it.
        let queue = make_element("queue", "gstreamer1.0-plugins-base")?;
        queue.set_property_from_str("leaky", "downstream");
        queue.set_property("max-size-time", 200_000_000u64);
        queue.set_property("max-size-buffers", 0u32);
        queue.set_property("max-size-bytes", 0u32);
        bin.add_many([&queue, &convert, &resample, &sink]).map_err(gst_err)?;
        gst::Element::link_many([&queue, &convert, &resample, &sink]).map_err(gst_err)?;
        let target = queue.static_pad("sink").expect("queue has a sink pad");
        let ghost = gst::GhostPad::builder_with_target(&target).map_err(gst_err)?.name("sink").build();
        bin.add_pad(&ghost).map_err(gst_err)?;
        debug!(target: "media", device = %self.label, endpoint = ?self.endpoint, bin = %bin.name(), "playout sink created");
        Ok(bin.upcast())
    }
}

/// Works around a lock-order inversion in `pipewiresink` (PipeWire 0.3.65 in Debian 12, still in
/// 1.0; `src/gst/gstpipewiresink.c`): on the first buffer, `render` activates the sink's buffer
/// pool, holding the pool lock while `pool_activated` waits for the PipeWire loop lock, and
/// when PipeWire delivers the stream's format at that moment, the loop thread holds the loop
/// lock in `on_param_changed` while `gst_buffer_pool_is_active` waits for the pool lock. The
/// loop thread is shared by every PipeWire element of the process, so a call's capture stops
/// too (seen: the far end got 5–6 packets, then nothing, and the daemon hung on the next state
/// change). Activating the pool while the CAPS event is on its way in — before `setcaps`
/// connects the stream, so no format can be delivered yet — leaves `render` nothing to
/// activate. The pool is the one the sink proposes in its ALLOCATION reply; sized for 100 ms
/// of the negotiated format at 8 bytes a sample, more than any buffer upstream sends.
fn activate_pool_before_caps(sink: &gst::Element) {
    let Some(pad) = sink.static_pad("sink") else { return };
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |pad, info| {
        let Some(gst::PadProbeData::Event(ev)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let gst::EventView::Caps(c) = ev.view() else {
            return gst::PadProbeReturn::Ok;
        };
        let caps = c.caps_owned();
        let s = caps.structure(0);
        let rate = s.and_then(|s| s.get::<i32>("rate").ok()).unwrap_or(48_000).max(1) as u32;
        let channels = s.and_then(|s| s.get::<i32>("channels").ok()).unwrap_or(2).max(1) as u32;
        let mut query = gst::query::Allocation::new(Some(&caps), true);
        let pool = if pad.query(&mut query) {
            query.allocation_pools().into_iter().find_map(|(pool, ..)| pool)
        } else {
            None
        };
        match pool {
            Some(pool) if !pool.is_active() => {
                let mut config = pool.config();
                config.set_params(Some(&caps), rate * channels * 8 / 10, 0, 0);
                let ok = pool.set_config(config).is_ok() && pool.set_active(true).is_ok();
                debug!(target: "media", ok, "pipewiresink pool activated before caps");
            }
            Some(_) => {}
            None => debug!(target: "media", "pipewiresink proposed no pool; nothing to activate"),
        }
        gst::PadProbeReturn::Remove
    });
}
