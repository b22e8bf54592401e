//! W3C `RTCStats` (WebRTC Statistics, <https://www.w3.org/TR/webrtc-stats/>) from webrtcbin's
//! `get-stats` reply: one JSON object per stat, `type` as the W3C `RTCStatsType` string, field
//! names in the spec's camelCase (`packets-received` → `packetsReceived`), `timestamp` in ms.
//! GStreamer-private nested structures (`gst-rtpsource-stats`, …) are left out.

use gst::glib;
use serde_json::{Map, Number, Value};

/// The W3C `RTCStatsType` string of a webrtcbin stats type.
pub fn stats_type_name(t: gst_webrtc::WebRTCStatsType) -> &'static str {
    use gst_webrtc::WebRTCStatsType as T;
    match t {
        T::Codec => "codec",
        T::InboundRtp => "inbound-rtp",
        T::OutboundRtp => "outbound-rtp",
        T::RemoteInboundRtp => "remote-inbound-rtp",
        T::RemoteOutboundRtp => "remote-outbound-rtp",
        T::Csrc => "csrc",
        T::PeerConnection => "peer-connection",
        T::DataChannel => "data-channel",
        T::Stream => "stream",
        T::Transport => "transport",
        T::CandidatePair => "candidate-pair",
        T::LocalCandidate => "local-candidate",
        T::RemoteCandidate => "remote-candidate",
        T::Certificate => "certificate",
        _ => "unknown",
    }
}

/// `packets-received` → `packetsReceived`.
pub fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '-' || c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A GValue as JSON, or None for types that have no W3C meaning (nested structures, objects).
fn value_to_json(v: &glib::Value) -> Option<Value> {
    if let Ok(x) = v.get::<String>() {
        return Some(Value::String(x));
    }
    if let Ok(x) = v.get::<bool>() {
        return Some(Value::Bool(x));
    }
    macro_rules! num {
        ($t:ty) => {
            if let Ok(x) = v.get::<$t>() {
                return Some(Value::Number(Number::from(x)));
            }
        };
    }
    num!(i32);
    num!(u32);
    num!(i64);
    num!(u64);
    if let Ok(x) = v.get::<f64>() {
        return Number::from_f64(x).map(Value::Number);
    }
    if let Ok(x) = v.get::<f32>() {
        return Number::from_f64(x as f64).map(Value::Number);
    }
    if let Some((_, ev)) = glib::EnumValue::from_value(v) {
        return Some(Value::String(ev.nick().to_string()));
    }
    None
}

/// One webrtcbin stat structure as a W3C RTCStats JSON object.
pub fn stat_to_json(id: &str, s: &gst::StructureRef) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), Value::String(id.to_string()));
    for (name, value) in s.iter() {
        let name = name.as_str();
        if name.starts_with("gst-") {
            continue;
        }
        if name == "type" {
            if let Ok(t) = value.get::<gst_webrtc::WebRTCStatsType>() {
                obj.insert("type".into(), Value::String(stats_type_name(t).into()));
            }
            continue;
        }
        if let Some(j) = value_to_json(value) {
            obj.insert(camel_case(name), j);
        }
    }
    Value::Object(obj)
}

/// All stats of a webrtcbin `get-stats` reply.
pub fn reply_to_json(reply: &gst::StructureRef) -> Vec<Value> {
    reply
        .iter()
        .filter_map(|(id, v)| {
            v.get::<gst::Structure>()
                .ok()
                .map(|s| stat_to_json(id.as_str(), &s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        assert_eq!(camel_case("packets-received"), "packetsReceived");
        assert_eq!(camel_case("round-trip-time"), "roundTripTime");
        assert_eq!(camel_case("ssrc"), "ssrc");
    }
}
