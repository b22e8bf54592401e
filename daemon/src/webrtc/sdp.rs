//! SDP (RFC 8866) reading helpers for JSEP (RFC 8829): syntax checks before webrtcbin sees a
//! description, and the per-m-line facts the engine needs (codecs in order, direction, mid,
//! ice-ufrag, msid streams).

use super::codecs::Codec;
use crate::error::{EngineError, EngineResult};
use gst_sdp::{SDPMediaRef, SDPMessage, SDPMessageRef};
use vdimedia_protocol::api::RtcRtpTransceiverDirection;
use vdimedia_protocol::message::ErrorCode;

/// Largest SDP accepted (bytes). Real audio SDPs are 1–6 KB.
pub const MAX_SDP_BYTES: usize = 256 * 1024;

/// Parses SDP text after a strict line-syntax check (`<letter>=<value>` lines, `v=0` first),
/// because `gst_sdp_message_parse_buffer` accepts almost any text.
pub fn parse(text: &str) -> EngineResult<SDPMessage> {
    super::init_gstreamer().map_err(|e| EngineError::operation(format!("GStreamer init failed: {e}")))?;
    if text.len() > MAX_SDP_BYTES {
        return Err(EngineError::new(
            ErrorCode::LimitExceeded,
            format!("SDP of {} bytes is larger than {MAX_SDP_BYTES}", text.len()),
        ));
    }
    // libgstsdp reads C strings: text after a NUL would never reach it, so what it parsed
    // and what this check saw would differ (RFC 8866 §9 allows NUL in no field).
    if let Some(at) = text.find('\0') {
        return Err(invalid(format!("SDP contains a NUL byte at offset {at}")));
    }
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err(invalid("SDP must start with the line v=0"));
    }
    let mut has_o = false;
    let mut has_s = false;
    for (n, line) in lines.enumerate() {
        let b = line.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
            return Err(invalid(format!("SDP line {} is not <type>=<value>: {:.60}", n + 2, line)));
        }
        has_o |= b[0] == b'o';
        has_s |= b[0] == b's';
        if b[0] == b'm' {
            let f: Vec<&str> = line[2..].split_whitespace().collect();
            // RFC 8866 §5.14 / §9: <media> <port>[/<n>] <proto> <fmt> ...; proto is tokens
            // joined by "/" (token-char: visible ASCII but a few separators).
            let proto_ok = f.get(2).is_some_and(|p| {
                p.bytes().all(|c| c == b'/' || (c.is_ascii_graphic() && !b"\"(),:;<=>?@[]{}".contains(&c)))
            });
            if f.len() < 4
                || !proto_ok
                || f[1].split('/').next().and_then(|p| p.parse::<u16>().ok()).is_none()
            {
                return Err(invalid(format!("SDP line {} is a malformed m= line: {:.60}", n + 2, line)));
            }
        }
    }
    if !has_o || !has_s {
        return Err(invalid("SDP lacks the o= or s= line"));
    }
    SDPMessage::parse_buffer(text.as_bytes()).map_err(|e| invalid(format!("SDP does not parse: {e}")))
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::new(ErrorCode::InvalidSdp, msg)
}

/// The supported codecs of an m-line with their payload types, in the m-line's format order.
pub fn media_codecs(media: &SDPMediaRef) -> Vec<(u8, Codec)> {
    let mut out = Vec::new();
    for fmt in media.formats() {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        let codec = rtpmap(media, pt)
            .and_then(|(name, rate)| Codec::from_rtpmap(&name, rate))
            // Static payload types may omit a=rtpmap (RFC 3551).
            .or(match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                9 => Some(Codec::G722),
                _ => None,
            });
        if let Some(c) = codec {
            out.push((pt, c));
        }
    }
    out
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]` of a payload type.
fn rtpmap(media: &SDPMediaRef, pt: u8) -> Option<(String, u32)> {
    let prefix = format!("{pt} ");
    media.attributes().filter(|a| a.key() == "rtpmap").find_map(|a| {
        let v = a.value()?.strip_prefix(&prefix)?;
        let mut it = v.trim().split('/');
        let name = it.next()?.to_string();
        let rate = it.next()?.parse().ok()?;
        Some((name, rate))
    })
}

/// The `a=fmtp:<pt>` parameters of a payload type as key/value pairs.
pub fn fmtp(media: &SDPMediaRef, pt: u8) -> Vec<(String, String)> {
    let prefix = format!("{pt} ");
    media
        .attributes()
        .filter(|a| a.key() == "fmtp")
        .filter_map(|a| a.value()?.strip_prefix(&prefix).map(str::to_string))
        .flat_map(|v| {
            v.split(';')
                .filter_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    Some((k.trim().to_string(), v.trim().to_string()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether an m-line is rejected or disabled: port 0 (RFC 3264 §6) unless it is a
/// `a=bundle-only` m-line (RFC 8843 §6: port 0 there means "only in the BUNDLE group").
pub fn is_rejected(media: &SDPMediaRef) -> bool {
    media.port() == 0 && media.attribute_val("bundle-only").is_none()
}

/// The direction attribute of an m-line (RFC 8866 §6.7; default sendrecv). A rejected m-line
/// ([`is_rejected`]) is inactive.
pub fn media_direction(media: &SDPMediaRef) -> RtcRtpTransceiverDirection {
    if is_rejected(media) {
        return RtcRtpTransceiverDirection::Inactive;
    }
    for a in media.attributes() {
        match a.key() {
            "sendrecv" => return RtcRtpTransceiverDirection::Sendrecv,
            "sendonly" => return RtcRtpTransceiverDirection::Sendonly,
            "recvonly" => return RtcRtpTransceiverDirection::Recvonly,
            "inactive" => return RtcRtpTransceiverDirection::Inactive,
            _ => {}
        }
    }
    RtcRtpTransceiverDirection::Sendrecv
}

/// `a=mid` of an m-line.
pub fn media_mid(media: &SDPMediaRef) -> Option<String> {
    media.attribute_val("mid").map(str::to_string)
}

/// `a=ice-ufrag` of m-line `idx`, falling back to the session level.
pub fn ufrag(msg: &SDPMessageRef, idx: u32) -> Option<String> {
    msg.media(idx)
        .and_then(|m| m.attribute_val("ice-ufrag"))
        .or_else(|| msg.attribute_val("ice-ufrag"))
        .map(str::to_string)
}

/// Stream ids of `a=msid:<stream-id> <track-id>` lines (RFC 8830) of an m-line; `-` means none.
/// Without any `a=msid`, the stream ids of `a=ssrc:<ssrc> msid:<stream-id> <track-id>` (RFC
/// 5576 source attributes, the older form Chromium writes in an answer to an offer that has no
/// `a=msid`, as webrtcbin 1.22's offers).
pub fn media_msid_streams(media: &SDPMediaRef) -> Vec<String> {
    let streams = |values: Vec<&str>| {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            if let Some(id) = v.split_whitespace().next()
                && id != "-"
                && !out.iter().any(|o| o == id)
            {
                out.push(id.to_string());
            }
        }
        out
    };
    let msid: Vec<&str> =
        media.attributes().filter(|a| a.key() == "msid").filter_map(|a| a.value()).collect();
    if !msid.is_empty() {
        return streams(msid);
    }
    streams(
        media
            .attributes()
            .filter(|a| a.key() == "ssrc")
            .filter_map(|a| a.value()?.split_once(' ')?.1.strip_prefix("msid:"))
            .collect(),
    )
}

/// RFC 8830 §2 `msid-id` / `msid-appdata`: 1 to 64 `token-char`s (RFC 8866 §9).
pub fn is_msid_token(id: &str) -> bool {
    let token_char = |c: char| matches!(c, '\x21' | '\x23'..='\x27' | '\x2A'..='\x2B' | '\x2D'..='\x2E' | '0'..='9' | 'A'..='Z' | '\x5E'..='\x7E');
    (1..=64).contains(&id.len()) && id.chars().all(token_char)
}

/// Writes the `a=msid:<stream-id> <track-id>` lines (RFC 8830 §2, JSEP §5.2.1/§5.3.1) of a local
/// m-line, replacing any: one per stream of the sender, or `a=msid:- <track-id>` when it has
/// none, as Chromium writes; none at all when the m-line does not send (`sends` false:
/// recvonly/inactive). `track_id` is the sender's track id (or the sender's own id when it has
/// no track). Ids that are not RFC 8830 tokens would corrupt the SDP: they are left out, logged.
pub fn set_media_msid(media: &mut SDPMediaRef, sends: bool, streams: &[String], track_id: &str) {
    remove_media_attributes(media, |k| k == "msid");
    if !sends {
        return;
    }
    let track = if is_msid_token(track_id) {
        Some(track_id)
    } else {
        tracing::warn!(track_id, "track id is not an msid token: a=msid without it");
        None
    };
    let mut ids: Vec<&str> = streams
        .iter()
        .map(String::as_str)
        .filter(|id| {
            let ok = is_msid_token(id) && *id != "-";
            if !ok {
                tracing::warn!(stream_id = id, "stream id is not an msid token: left out of a=msid");
            }
            ok
        })
        .collect();
    let mut seen = Vec::new();
    ids.retain(|id| {
        if seen.contains(id) {
            false
        } else {
            seen.push(*id);
            true
        }
    });
    if ids.is_empty() {
        ids.push("-");
    }
    for id in ids {
        let value = match track {
            Some(t) => format!("{id} {t}"),
            None => id.to_string(),
        };
        media.add_attribute("msid", Some(value.as_str()));
    }
}

/// The W3C name of a direction as an SDP attribute key (RFC 8866 §6.7; `stopped` has none and
/// is written `inactive`, as on a rejected m-line).
pub fn direction_attribute(d: RtcRtpTransceiverDirection) -> &'static str {
    use RtcRtpTransceiverDirection::*;
    match d {
        Sendrecv => "sendrecv",
        Sendonly => "sendonly",
        Recvonly => "recvonly",
        Inactive | Stopped => "inactive",
    }
}

/// Replaces the direction attribute(s) of an m-line with `d` (RFC 3264 §6.1: one per m-line).
pub fn set_media_direction(media: &mut SDPMediaRef, d: RtcRtpTransceiverDirection) {
    remove_media_attributes(media, |k| matches!(k, "sendrecv" | "sendonly" | "recvonly" | "inactive"));
    // An empty value, not None: gst_sdp_media_attributes_to_caps (webrtcbin) reads the value
    // of every attribute and crashes on a NULL one; as_text writes `a=<key>` for both.
    media.add_attribute(direction_attribute(d), Some(""));
}

/// `a=setup` of an m-line (RFC 4145 §4, RFC 8842 §5): `actpass`, `active`, `passive`.
pub fn media_setup(media: &SDPMediaRef) -> Option<String> {
    media.attribute_val("setup").map(|v| v.trim().to_ascii_lowercase())
}

/// Replaces `a=setup` of an m-line with `value`.
pub fn set_media_setup(media: &mut SDPMediaRef, value: &str) {
    remove_media_attributes(media, |k| k == "setup");
    media.add_attribute("setup", Some(value));
}

/// Takes payload type `pt` out of an m-line: its format and its `a=rtpmap`/`a=fmtp` lines.
pub fn remove_payload_type(media: &mut SDPMediaRef, pt: u8) {
    let text = pt.to_string();
    if let Some(idx) = media.formats().position(|f| f == text) {
        let _ = media.remove_format(idx as u32);
    }
    let prefix = format!("{pt} ");
    let mut idx = 0;
    while idx < media.attributes_len() {
        let drop = media.attribute(idx).is_some_and(|a| {
            matches!(a.key(), "rtpmap" | "fmtp") && a.value().is_some_and(|v| v.starts_with(&prefix))
        });
        if drop && media.remove_attribute(idx).is_ok() {
            continue;
        }
        idx += 1;
    }
}

fn remove_media_attributes(media: &mut SDPMediaRef, drop: impl Fn(&str) -> bool) {
    let mut idx = 0;
    while idx < media.attributes_len() {
        if media.attribute(idx).is_some_and(|a| drop(a.key())) {
            if media.remove_attribute(idx).is_err() {
                break;
            }
        } else {
            idx += 1;
        }
    }
}

/// The mids of the session-level `a=group:BUNDLE` (RFC 8843 §7), in order; None without one.
pub fn bundle_mids(msg: &SDPMessageRef) -> Option<Vec<String>> {
    msg.attributes().filter(|a| a.key() == "group").find_map(|a| {
        let v = a.value()?;
        let mut it = v.split_whitespace();
        (it.next()? == "BUNDLE").then(|| it.map(str::to_string).collect())
    })
}

/// Rejects m-line `idx` as a stopped transceiver's (JSEP §5.2.2/§5.3.1, RFC 3264 §6/§8.2):
/// port 0, `a=inactive`, its mid out of the BUNDLE group (RFC 8843 §7.3.3: a rejected m-line
/// is not bundled; an emptied group is removed). Other attributes stay.
pub fn reject_media(msg: &mut SDPMessage, idx: u32) {
    let Some(m) = msg.media_mut(idx) else { return };
    let num_ports = m.num_ports();
    m.set_port_info(0, num_ports);
    // webrtcbin's max-bundle offers mark later m-lines bundle-only (port 0 there is not a
    // rejection, RFC 8843 §6): the mark goes.
    remove_media_attributes(m, |k| k == "bundle-only");
    set_media_direction(m, RtcRtpTransceiverDirection::Inactive);
    let Some(mid) = msg.media(idx).and_then(media_mid) else { return };
    let Some(pos) = (0..msg.attributes_len()).find(|&i| {
        msg.attribute(i)
            .is_some_and(|a| a.key() == "group" && a.value().is_some_and(|v| v.starts_with("BUNDLE")))
    }) else {
        return;
    };
    let mids: Vec<String> = bundle_mids(msg).unwrap_or_default().into_iter().filter(|m| *m != mid).collect();
    if mids.is_empty() {
        let _ = msg.remove_attribute(pos);
    } else {
        let value = format!("BUNDLE {}", mids.join(" "));
        let _ = msg.replace_attribute(pos, gst_sdp::SDPAttribute::new("group", Some(&value)));
    }
}

/// Attribute lines that belong to one sender's RTP stream, not to the m-line's transport.
fn is_stream_line(line: &str) -> bool {
    ["a=ssrc:", "a=ssrc-group:", "a=msid:", "a=rid:", "a=simulcast:"].iter().any(|p| line.starts_with(p))
}

/// The copy of a description webrtcbin gets when some of its m-lines are rejected because
/// their transceiver is stopped (`revive(index, mid)` says which): webrtcbin 1.22 cannot
/// remove a transceiver, and a port-0 m-line without ICE credentials fails its checks, so it
/// keeps seeing those m-lines alive (the engine gates their RTP itself). A revived m-line is:
/// with `from_sibling` (remote descriptions, whose rejected m-lines may carry nothing but
/// `a=mid`) a copy of the first live audio m-line (same bundled transport and codecs, without
/// its `a=ssrc`/`a=msid` lines) under its own mid, else the same m-line at that port or 9 (or
/// `fallback`'s m-line of that mid, when live); the mid goes back into the BUNDLE group in
/// m-line order. Text in, text out (CRLF).
pub fn revive_for_webrtcbin(
    text: &str,
    revive: impl Fn(u32, Option<&str>) -> bool,
    from_sibling: bool,
    fallback: Option<&str>,
) -> String {
    fn sections(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let mut head = Vec::new();
        let mut secs: Vec<Vec<String>> = Vec::new();
        for line in text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()) {
            if line.starts_with("m=") {
                secs.push(vec![line.to_string()]);
            } else if let Some(s) = secs.last_mut() {
                s.push(line.to_string());
            } else {
                head.push(line.to_string());
            }
        }
        (head, secs)
    }
    let port =
        |s: &[String]| s[0].split_whitespace().nth(1).map(|p| p.split('/').next().unwrap_or(p).to_string());
    let kind = |s: &[String]| s[0][2..].split_whitespace().next().map(str::to_string);
    let mid = |s: &[String]| s.iter().find_map(|l| l.strip_prefix("a=mid:")).map(|m| m.trim().to_string());
    let dead = |s: &[String]| port(s).as_deref() == Some("0") && !s.iter().any(|l| l == "a=bundle-only");
    let (mut head, mut secs) = sections(text);
    let sibling = secs.iter().find(|s| kind(s).as_deref() == Some("audio") && !dead(s)).cloned();
    let fallback_secs = fallback.map(|f| sections(f).1).unwrap_or_default();
    let mut revived = Vec::new();
    for (idx, sec) in secs.iter_mut().enumerate() {
        let own_mid = mid(sec);
        if kind(sec).as_deref() != Some("audio") || !dead(sec) || !revive(idx as u32, own_mid.as_deref()) {
            continue;
        }
        let earlier = fallback_secs.iter().find(|f| own_mid.is_some() && mid(f) == own_mid && !dead(f));
        let donor = match (&sibling, earlier) {
            (Some(s), _) if from_sibling => Some(s),
            (_, Some(e)) => Some(e),
            _ => None,
        };
        match donor {
            Some(d) => {
                let mut copy: Vec<String> = d.iter().filter(|l| !is_stream_line(l)).cloned().collect();
                if let Some(m) = &own_mid {
                    copy.retain(|l| !l.starts_with("a=mid:"));
                    copy.push(format!("a=mid:{m}"));
                }
                *sec = copy;
            }
            None => {
                let live =
                    sibling.as_ref().and_then(|s| port(s)).filter(|p| p != "0").unwrap_or_else(|| "9".into());
                let mut f: Vec<String> = sec[0].split(' ').map(str::to_string).collect();
                if f.len() > 1 {
                    f[1] = live;
                }
                sec[0] = f.join(" ");
            }
        }
        if let Some(m) = own_mid {
            revived.push(m);
        }
    }
    if !revived.is_empty()
        && let Some(line) = head.iter_mut().find(|l| l.starts_with("a=group:BUNDLE"))
    {
        let mut group: Vec<String> = line.split_whitespace().skip(1).map(str::to_string).collect();
        let missing: Vec<String> = revived.iter().filter(|m| !group.contains(m)).cloned().collect();
        group.extend(missing);
        let order: Vec<String> = secs.iter().filter_map(|s| mid(s)).collect();
        group.sort_by_key(|m| order.iter().position(|o| o == m).unwrap_or(usize::MAX));
        *line = format!("a=group:BUNDLE {}", group.join(" "));
    }
    let mut out = String::new();
    for line in head.iter().chain(secs.iter().flatten()) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// What webrtcbin's transport and RTP session take from each m-line of a description: kind,
/// rejected or not, payload types with their `a=rtpmap`/`a=fmtp`, ICE credentials, DTLS
/// fingerprint and role (media level, else session level), bundle group. Directions, `o=`,
/// candidates and msid are left out: the engine applies directions itself. One string per
/// m-line, plus one for the session.
pub fn negotiated_essentials(msg: &SDPMessageRef) -> Vec<String> {
    let session = |key: &str| msg.attribute_val(key).unwrap_or("").to_string();
    let mut out = vec![format!("bundle {:?}", bundle_mids(msg))];
    for m in msg.medias() {
        let attr = |key: &str| m.attribute_val(key).map(str::to_string).unwrap_or_else(|| session(key));
        let formats: Vec<String> =
            (0..m.formats_len()).filter_map(|i| m.format(i).map(str::to_string)).collect();
        let mut maps: Vec<String> = m
            .attributes()
            .filter(|a| matches!(a.key(), "rtpmap" | "fmtp"))
            .map(|a| format!("{}:{}", a.key(), a.value().unwrap_or("")))
            .collect();
        maps.sort();
        out.push(format!(
            "{} rejected={} mid={:?} pts={formats:?} {maps:?} ufrag={} pwd={} fingerprint={} setup={}",
            m.media().unwrap_or(""),
            is_rejected(m),
            media_mid(m),
            attr("ice-ufrag"),
            attr("ice-pwd"),
            attr("fingerprint").to_ascii_lowercase(),
            attr("setup"),
        ));
    }
    out
}

/// The first m-line (or the session, `None`) where two descriptions differ in
/// [`negotiated_essentials`], with both values; `Ok` when they agree.
pub fn same_essentials(a: &SDPMessageRef, b: &SDPMessageRef) -> Result<(), String> {
    let (ea, eb) = (negotiated_essentials(a), negotiated_essentials(b));
    if ea.len() != eb.len() {
        return Err(format!("{} m-lines instead of {}", eb.len() - 1, ea.len() - 1));
    }
    match ea.iter().zip(&eb).position(|(x, y)| x != y) {
        None => Ok(()),
        Some(0) => Err(format!("session: {} → {}", ea[0], eb[0])),
        Some(n) => Err(format!("m-line {}: {} → {}", n - 1, ea[n], eb[n])),
    }
}

/// The direction seen from the other side (what the remote's `sendonly` means for us).
pub fn reverse(d: RtcRtpTransceiverDirection) -> RtcRtpTransceiverDirection {
    use RtcRtpTransceiverDirection::*;
    match d {
        Sendonly => Recvonly,
        Recvonly => Sendonly,
        other => other,
    }
}

/// The direction both sides allow: sending if both send, receiving if both receive.
pub fn intersect(a: RtcRtpTransceiverDirection, b: RtcRtpTransceiverDirection) -> RtcRtpTransceiverDirection {
    use RtcRtpTransceiverDirection::*;
    let s = |d| matches!(d, Sendrecv | Sendonly);
    let r = |d| matches!(d, Sendrecv | Recvonly);
    match (s(a) && s(b), r(a) && r(b)) {
        (true, true) => Sendrecv,
        (true, false) => Sendonly,
        (false, true) => Recvonly,
        (false, false) => Inactive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
        a=ice-ufrag:abcd\r\na=msid:s1 t1\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:9 G722/8000\r\na=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn reads_codecs_direction_and_ids() {
        let msg = parse(OFFER).unwrap();
        let m = msg.media(0).unwrap();
        assert_eq!(
            media_codecs(m),
            vec![(111, Codec::Opus), (9, Codec::G722), (0, Codec::Pcmu), (8, Codec::Pcma)]
        );
        assert_eq!(media_direction(m), RtcRtpTransceiverDirection::Sendonly);
        assert_eq!(media_mid(m).as_deref(), Some("0"));
        assert_eq!(ufrag(&msg, 0).as_deref(), Some("abcd"));
        assert_eq!(media_msid_streams(m), vec!["s1".to_string()]);
        let legacy =
            parse(&OFFER.replace("a=msid:s1 t1\r\n", "a=ssrc:7 cname:c\r\na=ssrc:7 msid:s2 t2\r\n")).unwrap();
        assert_eq!(media_msid_streams(legacy.media(0).unwrap()), vec!["s2".to_string()]);
        assert!(fmtp(m, 111).contains(&("useinbandfec".into(), "1".into())));
    }

    #[test]
    fn writes_msid_as_chromium_does() {
        let msg_of = || parse(OFFER).unwrap();
        let msids = |msg: &SDPMessage| -> Vec<String> {
            msg.media(0)
                .unwrap()
                .attributes()
                .filter(|a| a.key() == "msid")
                .filter_map(|a| a.value().map(str::to_string))
                .collect()
        };
        let mut msg = msg_of();
        set_media_msid(msg.media_mut(0).unwrap(), true, &["sA".into(), "sB".into()], "tA");
        assert_eq!(
            msids(&msg),
            vec!["sA tA".to_string(), "sB tA".to_string()],
            "the offer's own a=msid:s1 t1 is replaced"
        );
        assert_eq!(media_msid_streams(msg.media(0).unwrap()), vec!["sA".to_string(), "sB".to_string()]);
        let mut msg = msg_of();
        set_media_msid(msg.media_mut(0).unwrap(), true, &[], "tA");
        assert_eq!(msids(&msg), vec!["- tA".to_string()]);
        assert!(media_msid_streams(msg.media(0).unwrap()).is_empty());
        let mut msg = msg_of();
        set_media_msid(msg.media_mut(0).unwrap(), false, &["sA".into()], "tA");
        assert!(msids(&msg).is_empty(), "recvonly/inactive: no a=msid");
        let mut msg = msg_of();
        set_media_msid(
            msg.media_mut(0).unwrap(),
            true,
            &["bad id".into(), "ok".into(), "-".into()],
            "t\r\nA",
        );
        assert_eq!(msids(&msg), vec!["ok".to_string()]);
        assert!(msg.as_text().unwrap().contains("a=msid:ok\r\n"));
        assert!(is_msid_token(&"x".repeat(64)) && !is_msid_token(&"x".repeat(65)) && !is_msid_token(""));
    }

    #[test]
    fn rewrites_direction_and_setup() {
        let mut msg = parse(OFFER).unwrap();
        let m = msg.media_mut(0).unwrap();
        set_media_direction(m, RtcRtpTransceiverDirection::Inactive);
        set_media_setup(m, "passive");
        let text = msg.as_text().unwrap();
        assert!(text.contains("a=inactive\r\n") && !text.contains("a=sendonly"), "{text}");
        let msg = parse(&text).unwrap();
        assert_eq!(media_direction(msg.media(0).unwrap()), RtcRtpTransceiverDirection::Inactive);
        assert_eq!(media_setup(msg.media(0).unwrap()).as_deref(), Some("passive"));
        assert_eq!(media_mid(msg.media(0).unwrap()).as_deref(), Some("0"), "other attributes stay");
    }

    #[test]
    fn stopped_mline_rejected_for_the_page_and_revived_for_webrtcbin() {
        let two = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=sendrecv\r\na=ssrc:1 cname:x\r\n\
            a=rtpmap:111 opus/48000/2\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=ice-ufrag:abcd\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n";
        let mut msg = parse(two).unwrap();
        reject_media(&mut msg, 1);
        let text = msg.as_text().unwrap();
        assert!(text.contains("m=audio 0 "), "{text}");
        assert_eq!(bundle_mids(&msg), Some(vec!["0".to_string()]));
        assert_eq!(media_direction(msg.media(1).unwrap()), RtcRtpTransceiverDirection::Inactive);
        assert!(is_rejected(msg.media(1).unwrap()));
        // Local: the same m-line at the live port, back in the group.
        let local = parse(&revive_for_webrtcbin(&text, |_, m| m == Some("1"), false, None)).unwrap();
        assert_eq!(local.media(1).unwrap().port(), 9);
        assert_eq!(bundle_mids(&local), Some(vec!["0".to_string(), "1".to_string()]));
        // Remote, a bare rejected m-line: a copy of the live one under its own mid, no ssrc.
        let bare = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=sendrecv\r\na=ssrc:1 cname:x\r\n\
            a=rtpmap:111 opus/48000/2\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=inactive\r\n";
        let remote = revive_for_webrtcbin(bare, |_, m| m == Some("1"), true, None);
        let msg = parse(&remote).unwrap();
        let m = msg.media(1).unwrap();
        assert_eq!((m.port(), media_mid(m).as_deref()), (9, Some("1")), "{remote}");
        assert_eq!(m.attribute_val("ice-ufrag"), Some("abcd"));
        assert!(m.attribute_val("ssrc").is_none(), "{remote}");
        assert_eq!(bundle_mids(&msg), Some(vec!["0".to_string(), "1".to_string()]));
        // Not named: left alone.
        assert_eq!(
            parse(&revive_for_webrtcbin(bare, |_, _| false, true, None)).unwrap().media(1).unwrap().port(),
            0
        );
    }

    /// Fuzz find (daemon_sdp): a NUL inside an m= line let this check see one more field than
    /// libgstsdp, which stopped at the NUL and kept a control-character protocol; the
    /// telephone-event munging then printed an m= line our own parser refused.
    #[test]
    fn nul_bytes_and_control_characters_in_proto_are_invalid_sdp() {
        let nul = OFFER.replace("UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/\u{1}\u{11}\0\0F");
        let e = parse(&nul).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSdp);
        assert!(e.message.contains("NUL"), "{}", e.message);
        let ctl = OFFER.replace("UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/\u{1}\u{11}F");
        assert!(parse(&ctl).unwrap_err().message.contains("malformed m= line"));
        assert!(parse(OFFER).is_ok());
    }

    #[test]
    fn essentials_ignore_direction_and_origin_but_not_codecs_or_transport() {
        let a = parse(OFFER).unwrap();
        let b = parse(&OFFER.replace("a=sendonly", "a=sendrecv").replace("o=- 1 0", "o=- 1 1")).unwrap();
        assert_eq!(same_essentials(&a, &b), Ok(()));
        let c = parse(&OFFER.replace("111 9 0 8 126", "9 0 8 126")).unwrap();
        assert!(same_essentials(&a, &c).unwrap_err().starts_with("m-line 0"));
        let d = parse(&OFFER.replace("ice-ufrag:abcd", "ice-ufrag:efgh")).unwrap();
        assert!(same_essentials(&a, &d).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse("hello").unwrap_err().code, ErrorCode::InvalidSdp);
        assert_eq!(parse("v=0\r\nthis is not sdp\r\n").unwrap_err().code, ErrorCode::InvalidSdp);
        assert_eq!(
            parse("v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nm=audio x\r\n").unwrap_err().code,
            ErrorCode::InvalidSdp
        );
    }
}
