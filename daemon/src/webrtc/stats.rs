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
        .filter_map(|(id, v)| v.get::<gst::Structure>().ok().map(|s| stat_to_json(id.as_str(), &s)))
        .collect()
}

/// Corrects what webrtcbin 1.22's `get-stats` reply gets wrong against the W3C spec, so pages
/// read the same report shape as from a browser:
///
/// - local and remote candidate stats carry each other's `type` (their ids, and the `url` only
///   a local candidate has, are right): the type is taken from the id;
/// - every RTP stream's `codecId` names the receive pad's codec entry, which is empty: sending
///   streams (`outbound-rtp`, `remote-inbound-rtp`) point to the `codec` entry with their
///   `ssrc`, receiving streams keep theirs and it is filled from the negotiated codec
///   (`negotiated`: payload type, codec), which is what was really received;
/// - `candidate-pair` has no `currentRoundTripTime` (s): it gets the RTCP round-trip time of the
///   `remote-inbound-rtp` on the same transport (RFC 3550 §6.4.1), the closest measurement
///   webrtcbin has.
pub fn normalize(stats: &mut [Value], negotiated: Option<(u8, super::Codec)>) {
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    for st in stats.iter_mut() {
        if let Some(id) = str_of(st, "id") {
            if id.starts_with("ice-candidate-local") {
                st["type"] = Value::String("local-candidate".into());
            } else if id.starts_with("ice-candidate-remote") {
                st["type"] = Value::String("remote-candidate".into());
            }
        }
    }
    let send_codec_by_ssrc: Vec<(u64, String)> = stats
        .iter()
        .filter(|s| s["type"] == "codec" && s.get("mimeType").is_some())
        .filter_map(|s| Some((s.get("ssrc")?.as_u64()?, str_of(s, "id")?)))
        .collect();
    let mut receive_codec_ids = Vec::new();
    for st in stats.iter_mut() {
        let ty = str_of(st, "type").unwrap_or_default();
        match ty.as_str() {
            "outbound-rtp" | "remote-inbound-rtp" => {
                let ssrc = st.get("ssrc").and_then(Value::as_u64);
                if let Some((_, id)) = send_codec_by_ssrc.iter().find(|(s, _)| Some(*s) == ssrc) {
                    st["codecId"] = Value::String(id.clone());
                }
            }
            "inbound-rtp" | "remote-outbound-rtp" => {
                if let Some(id) = str_of(st, "codecId") {
                    receive_codec_ids.push(id);
                }
            }
            _ => {}
        }
    }
    if let Some((pt, codec)) = negotiated {
        for st in stats.iter_mut() {
            let is_empty_receive_codec = st["type"] == "codec"
                && st.get("mimeType").is_none()
                && str_of(st, "id").is_some_and(|id| receive_codec_ids.contains(&id));
            if is_empty_receive_codec {
                st["mimeType"] = Value::String(format!("audio/{}", codec.encoding_name()));
                st["clockRate"] = Value::from(codec.clock_rate());
                st["payloadType"] = Value::from(pt);
                st["codecType"] = Value::String("decode".into());
                if codec == super::Codec::Opus {
                    st["channels"] = Value::from(2);
                }
            }
        }
    }
    // Browsers spell Opus in lower case (its IANA media subtype, RFC 7587 §7).
    for st in stats.iter_mut().filter(|s| s["type"] == "codec") {
        if st.get("mimeType").and_then(Value::as_str).is_some_and(|m| m.eq_ignore_ascii_case("audio/opus")) {
            st["mimeType"] = Value::String("audio/opus".into());
        }
    }
    let rtt = stats
        .iter()
        .find(|s| s["type"] == "remote-inbound-rtp")
        .and_then(|s| s.get("roundTripTime").cloned());
    if let Some(rtt) = rtt {
        for st in stats.iter_mut().filter(|s| s["type"] == "candidate-pair") {
            st["currentRoundTripTime"] = rtt.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_fixes_webrtcbin_1_22_quirks() {
        let mut stats: Vec<Value> = serde_json::from_str(
            r#"[
            {"id":"codec-stats-sink_0","type":"codec","mimeType":"audio/OPUS","payloadType":111,"ssrc":7,"clockRate":48000},
            {"id":"codec-stats-src_0","type":"codec"},
            {"id":"ice-candidate-local_1_127.0.0.1_1","type":"remote-candidate","url":""},
            {"id":"ice-candidate-remote_1_127.0.0.1_2","type":"local-candidate"},
            {"id":"pair","type":"candidate-pair"},
            {"id":"out","type":"outbound-rtp","ssrc":7,"codecId":"codec-stats-src_0"},
            {"id":"rin","type":"remote-inbound-rtp","ssrc":7,"codecId":"codec-stats-src_0","roundTripTime":0.02},
            {"id":"in","type":"inbound-rtp","ssrc":9,"codecId":"codec-stats-src_0"}
            ]"#,
        )
        .unwrap();
        normalize(&mut stats, Some((9, crate::webrtc::Codec::G722)));
        let by_id = |id: &str| stats.iter().find(|s| s["id"] == id).unwrap().clone();
        assert_eq!(by_id("ice-candidate-local_1_127.0.0.1_1")["type"], "local-candidate");
        assert_eq!(by_id("ice-candidate-remote_1_127.0.0.1_2")["type"], "remote-candidate");
        assert_eq!(by_id("out")["codecId"], "codec-stats-sink_0");
        assert_eq!(by_id("rin")["codecId"], "codec-stats-sink_0");
        assert_eq!(by_id("in")["codecId"], "codec-stats-src_0");
        assert_eq!(by_id("codec-stats-src_0")["mimeType"], "audio/G722");
        assert_eq!(by_id("codec-stats-src_0")["clockRate"], 8000);
        assert_eq!(by_id("codec-stats-src_0")["payloadType"], 9);
        assert_eq!(by_id("pair")["currentRoundTripTime"], 0.02);
        assert_eq!(by_id("codec-stats-sink_0")["mimeType"], "audio/opus");
    }

    #[test]
    fn names_follow_the_spec() {
        assert_eq!(camel_case("packets-received"), "packetsReceived");
        assert_eq!(camel_case("round-trip-time"), "roundTripTime");
        assert_eq!(camel_case("ssrc"), "ssrc");
    }
}
