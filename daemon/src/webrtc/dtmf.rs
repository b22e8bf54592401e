//! DTMF: `RTCDTMFSender` (WebRTC 1.0 §7) sending RFC 4733 `telephone-event` packets.
//!
//! Two parts:
//! - SDP (RFC 4733 §7, JSEP RFC 8829 §5.2.1): `telephone-event` is offered at the clock rate of
//!   each offered audio codec (48000 Hz for Opus, 8000 Hz for G.722/PCMU/PCMA) through webrtcbin's
//!   codec-preferences; [`ensure_telephone_event`] re-adds it to a created offer or answer when
//!   webrtcbin 1.22 dropped it (it intersects codec-preferences with the caps a linked payloader
//!   produced, so re-offers after the first answer lose it), taking payload types from the
//!   remote offer in an answer.
//! - Sending ([`DtmfSender`]): a buffer probe on the audio payloader's src pad *replaces* the
//!   audio packets that fall inside a tone with RFC 4733 event packets (what libwebrtc does too).
//!   Replacing rather than muxing in a second stream (`rtpdtmfsrc ! rtpdtmfmux`) keeps the
//!   payloader's SSRC, sequence numbers and timestamps continuous without touching the caps
//!   webrtcbin's sink pad sees (a caps change there breaks the next offer in 1.22).
//!
//! Packet rules (RFC 4733 §2.5): all packets of one event carry the RTP timestamp of the
//! packet the event started in, the marker bit on the first; `duration` (clock units) grows by
//! one packet time per packet; the end is sent three times with the E bit; durations over
//! 0xFFFF units start a new segment (§2.5.2.1), which matters at 48 kHz (1.365 s).

use gst::prelude::*;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// `encoding-name` of RFC 4733 events in RTP caps (GStreamer writes encoding names upper case).
pub const TELEPHONE_EVENT: &str = "TELEPHONE-EVENT";
/// W3C §7.2 insertDTMF: default tone duration, ms.
pub const DEFAULT_DURATION_MS: u32 = 100;
/// W3C §7.2: shortest and longest tone, ms (values outside are clamped).
pub const MIN_DURATION_MS: u32 = 40;
pub const MAX_DURATION_MS: u32 = 6000;
/// W3C §7.2: default, shortest and longest inter-tone gap, ms.
pub const DEFAULT_GAP_MS: u32 = 70;
pub const MIN_GAP_MS: u32 = 30;
pub const MAX_GAP_MS: u32 = 6000;
/// W3C §7.2: a `,` in the tone buffer pauses for 2 s.
pub const COMMA_PAUSE_MS: u32 = 2000;
/// RFC 4733 §2.5.1.4: the end packet is sent three times.
const END_PACKETS: u8 = 3;
/// Volume field: −10 dBm0, what libwebrtc sends.
const VOLUME: u8 = 10;
/// Longest tone buffer accepted from a page (characters).
pub const MAX_TONES: usize = 1024;

/// Default payload type offered for `telephone-event` at `clock_rate` Hz (Chromium's numbers:
/// 110 at 48 kHz, 126 at 8 kHz; 101 otherwise).
pub fn default_payload_type(clock_rate: u32) -> u8 {
    match clock_rate {
        48000 => 110,
        8000 => 126,
        _ => 101,
    }
}

/// One webrtcbin `codec-preferences` structure for `telephone-event` with payload type `pt` at
/// `clock_rate` Hz.
pub fn preference_structure(pt: u8, clock_rate: u32) -> gst::Structure {
    gst::Structure::builder("application/x-rtp")
        .field("media", "audio")
        .field("encoding-name", TELEPHONE_EVENT)
        .field("clock-rate", clock_rate as i32)
        .field("payload", pt as i32)
        .build()
}

/// The `telephone-event` payload types of an m-line as (pt, clock rate Hz), in format order.
pub fn media_telephone_events(media: &gst_sdp::SDPMediaRef) -> Vec<(u8, u32)> {
    let mut out = Vec::new();
    for fmt in media.formats() {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        let prefix = format!("{pt} ");
        let rate = media.attributes().filter(|a| a.key() == "rtpmap").find_map(|a| {
            let v = a.value()?.strip_prefix(&prefix)?;
            let mut it = v.trim().split('/');
            let name = it.next()?;
            if !name.eq_ignore_ascii_case("telephone-event") {
                return None;
            }
            it.next()?.parse::<u32>().ok()
        });
        if let Some(rate) = rate {
            out.push((pt, rate));
        }
    }
    out
}

/// The `telephone-event` payload type to send with an audio codec of `clock_rate` Hz, from the
/// negotiated m-line (RFC 4733 §2.1: the event clock is the audio clock).
pub fn negotiated_payload_type(media: &gst_sdp::SDPMediaRef, clock_rate: u32) -> Option<u8> {
    media_telephone_events(media).into_iter().find(|(_, r)| *r == clock_rate).map(|(pt, _)| pt)
}

/// Adds `telephone-event` to every active audio m-line of a description we created that lacks
/// it, at the clock rates of the m-line's codecs. In an answer (`remote_offer` given) only the
/// remote offer's own telephone-event payload types are used (an answer may not add formats).
/// Returns whether anything was added.
pub fn ensure_telephone_event(
    msg: &mut gst_sdp::SDPMessage,
    remote_offer: Option<&gst_sdp::SDPMessageRef>,
) -> bool {
    let mut changed = false;
    for idx in 0..msg.medias_len() {
        let Some(media) = msg.media(idx) else { continue };
        if media.media() != Some("audio") || media.port() == 0 {
            continue;
        }
        if !media_telephone_events(media).is_empty() {
            continue;
        }
        let mut rates: Vec<u32> = Vec::new();
        for (_, codec) in super::sdp::media_codecs(media) {
            let r = codec.clock_rate() as u32;
            if !rates.contains(&r) {
                rates.push(r);
            }
        }
        let used: Vec<String> = media.formats().map(str::to_string).collect();
        let mut add = Vec::new();
        for rate in rates {
            let pt = match remote_offer {
                Some(offer) => {
                    let Some(pt) = offer.media(idx).and_then(|m| negotiated_payload_type(m, rate)) else {
                        continue;
                    };
                    pt
                }
                None => default_payload_type(rate),
            };
            if used.contains(&pt.to_string()) {
                tracing::warn!(mline = idx, pt, "telephone-event payload type already in use; not added");
                continue;
            }
            add.push((pt, rate));
        }
        if add.is_empty() {
            continue;
        }
        let Some(media) = msg.media_mut(idx) else { continue };
        for (pt, rate) in add {
            media.add_format(&pt.to_string());
            media.add_attribute("rtpmap", Some(&format!("{pt} telephone-event/{rate}")));
            media.add_attribute("fmtp", Some(&format!("{pt} 0-15")));
            tracing::debug!(mline = idx, pt, rate, "telephone-event added to the local description");
            changed = true;
        }
    }
    changed
}

/// The RFC 4733 §3.2 event code of a W3C tone character (`0-9`, `*`, `#`, `A-D`, any case).
pub fn event_code(tone: char) -> Option<u8> {
    Some(match tone.to_ascii_uppercase() {
        c @ '0'..='9' => c as u8 - b'0',
        '*' => 10,
        '#' => 11,
        c @ 'A'..='D' => 12 + (c as u8 - b'A'),
        _ => return None,
    })
}

/// One step of a tone buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A tone: RFC 4733 event code, duration and the gap after it (ms, already clamped).
    Tone { tone: char, code: u8, duration_ms: u32, gap_ms: u32 },
    /// `,`: nothing is sent for this long (ms).
    Pause { ms: u32 },
}

/// Parses a W3C tone buffer with the §7.2 rules: characters `0-9 A-D # * ,` (any case),
/// duration clamped to 40..=6000 ms, gap to 30..=6000 ms. An invalid character → `Err` naming
/// it (the SDK throws `InvalidCharacterError` for it before asking the engine).
pub fn parse_tones(tones: &str, duration_ms: u32, gap_ms: u32) -> Result<Vec<Step>, String> {
    if tones.chars().count() > MAX_TONES {
        return Err(format!("tone buffer longer than {MAX_TONES} characters"));
    }
    let duration_ms = duration_ms.clamp(MIN_DURATION_MS, MAX_DURATION_MS);
    let gap_ms = gap_ms.clamp(MIN_GAP_MS, MAX_GAP_MS);
    tones
        .chars()
        .map(|c| match c {
            ',' => Ok(Step::Pause { ms: COMMA_PAUSE_MS }),
            c => event_code(c)
                .map(|code| Step::Tone { tone: c.to_ascii_uppercase(), code, duration_ms, gap_ms })
                .ok_or_else(|| format!("invalid DTMF character {c:?} (allowed: 0-9 A-D # * ,)")),
        })
        .collect()
}

/// An RFC 4733 event packet as sent (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub code: u8,
    pub end: bool,
    /// Clock units.
    pub duration: u16,
}

/// The tone in progress.
#[derive(Debug)]
struct Active {
    tone: char,
    code: u8,
    /// Whole tone, clock units.
    total: u32,
    /// RTP timestamp the tone started at (start of the first segment).
    start_ts: u32,
    /// RTP timestamp of the current segment (RFC 4733 §2.5.2.1).
    segment_ts: u32,
    /// End packets sent so far.
    ends_sent: u8,
    /// Duration reported in end packets, clock units.
    end_duration: u16,
    gap: u32,
    first: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Negotiated `telephone-event` payload type and the audio clock rate (Hz).
    payload: Option<(u8, u32)>,
    queue: VecDeque<Step>,
    active: Option<Active>,
    /// No tone may start before this RTP timestamp (gap or `,` pause running).
    not_before: Option<u32>,
    /// Event packets sent so far, newest last (bounded).
    sent: VecDeque<EventPacket>,
}

/// Bound of [`DtmfSender::sent_packets`]' history.
const SENT_HISTORY: usize = 512;

/// The DTMF sender of one `RTCRtpSender`: a tone queue and the probe on the payloader's src pad
/// that turns audio packets into RFC 4733 event packets while a tone plays. Cheap to clone.
#[derive(Clone, Default)]
pub struct DtmfSender {
    st: Arc<Mutex<State>>,
}

impl std::fmt::Debug for DtmfSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtmfSender").field("payload", &self.lock().payload).finish()
    }
}

impl DtmfSender {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the negotiated `telephone-event` payload type and audio clock rate (Hz); `None` =
    /// not negotiated (pending tones are dropped).
    pub fn set_payload(&self, payload: Option<(u8, u32)>) {
        let mut st = self.lock();
        if st.payload != payload {
            tracing::debug!(?payload, "telephone-event payload");
        }
        st.payload = payload;
        if payload.is_none() {
            st.queue.clear();
            st.active = None;
        }
    }

    /// The negotiated (payload type, clock rate Hz), if any.
    pub fn payload(&self) -> Option<(u8, u32)> {
        self.lock().payload
    }

    /// W3C §7.2 insertDTMF: replaces the tones not yet started with `steps` (a tone already
    /// playing finishes, then its gap runs). Tones start with the next audio packet.
    pub fn insert(&self, steps: Vec<Step>) {
        let mut st = self.lock();
        st.queue = steps.into();
    }

    /// Tones waiting to start (the engine's view of `toneBuffer`).
    pub fn pending(&self) -> String {
        self.lock()
            .queue
            .iter()
            .map(|s| match s {
                Step::Tone { tone, .. } => *tone,
                Step::Pause { .. } => ',',
            })
            .collect()
    }

    /// Whether a tone is being sent now.
    pub fn is_playing(&self) -> bool {
        self.lock().active.is_some()
    }

    /// The last event packets sent (at most 512), oldest first.
    pub fn sent_packets(&self) -> Vec<EventPacket> {
        self.lock().sent.iter().copied().collect()
    }

    /// Installs the probe on a payloader's src pad (call again for a new send branch).
    pub fn attach(&self, pay_src: &gst::Pad) {
        let this = self.clone();
        let span = tracing::Span::current();
        pay_src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(gst::PadProbeData::Buffer(buf)) = info.data.as_ref() else {
                return gst::PadProbeReturn::Ok;
            };
            if let Some(new) = span.in_scope(|| this.process(buf)) {
                info.data = Some(gst::PadProbeData::Buffer(new));
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// One outgoing audio packet: `Some(event packet)` to send in its place, `None` = send it.
    fn process(&self, buf: &gst::BufferRef) -> Option<gst::Buffer> {
        let mut st = self.lock();
        let (pt, rate) = st.payload?;
        if st.active.is_none() && st.queue.is_empty() {
            return None;
        }
        let map = buf.map_readable().ok()?;
        let header = RtpHeader::parse(&map)?;
        let units = packet_units(buf, rate);
        let ts = header.timestamp;
        let ready = |nb: Option<u32>| nb.is_none_or(|nb| (ts.wrapping_sub(nb) as i32) >= 0);
        if st.active.is_none() {
            if !ready(st.not_before) {
                return None;
            }
            match st.queue.pop_front()? {
                Step::Pause { ms } => {
                    st.not_before = Some(ts.wrapping_add(ms_to_units(ms, rate)));
                    tracing::debug!(ms, "DTMF pause");
                    return None;
                }
                Step::Tone { tone, code, duration_ms, gap_ms } => {
                    tracing::info!(event = "dtmf", tone = %tone, duration_ms, gap_ms, pt, "sending DTMF tone");
                    st.active = Some(Active {
                        tone,
                        code,
                        total: ms_to_units(duration_ms, rate),
                        start_ts: ts,
                        segment_ts: ts,
                        ends_sent: 0,
                        end_duration: 0,
                        gap: ms_to_units(gap_ms, rate),
                        first: true,
                    });
                }
            }
        }
        let a = st.active.as_mut().expect("set above");
        let elapsed = ts.wrapping_sub(a.start_ts).wrapping_add(units);
        let (end, duration, marker, seg_ts) = if a.ends_sent > 0 || elapsed >= a.total {
            if a.ends_sent == 0 {
                let in_segment = a.total.saturating_sub(a.segment_ts.wrapping_sub(a.start_ts));
                a.end_duration = in_segment.min(0xFFFF) as u16;
            }
            a.ends_sent += 1;
            (true, a.end_duration, a.first, a.segment_ts)
        } else {
            let mut in_segment = ts.wrapping_sub(a.segment_ts).wrapping_add(units);
            if in_segment > 0xFFFF {
                // RFC 4733 §2.5.2.1: a long event goes on as a new segment at this packet.
                a.segment_ts = ts;
                in_segment = units;
            }
            (false, in_segment as u16, a.first, a.segment_ts)
        };
        a.first = false;
        let payload = [a.code, if end { 0x80 } else { 0 } | VOLUME, (duration >> 8) as u8, duration as u8];
        let packet = EventPacket { seq: header.seq, timestamp: seg_ts, marker, code: a.code, end, duration };
        let out = header.rewrite(&map, pt, marker, seg_ts, &payload);
        drop(map);
        if end && a.ends_sent >= END_PACKETS {
            let (tone, start, total, gap) = (a.tone, a.start_ts, a.total, a.gap);
            tracing::debug!(tone = %tone, "DTMF tone ended");
            st.active = None;
            let gap_end = start.wrapping_add(total).wrapping_add(gap);
            // The three end packets may outlast the gap: the next tone then starts after them.
            st.not_before =
                Some(if (gap_end.wrapping_sub(ts) as i32) > 0 { gap_end } else { ts.wrapping_add(units) });
        }
        if st.sent.len() >= SENT_HISTORY {
            st.sent.pop_front();
        }
        st.sent.push_back(packet);
        let mut out = out?;
        {
            let o = out.get_mut().expect("new buffer is writable");
            o.set_pts(buf.pts());
            o.set_dts(buf.dts());
            o.set_duration(buf.duration());
            o.set_flags(buf.flags() & !gst::BufferFlags::GAP);
        }
        Some(out)
    }
}

fn ms_to_units(ms: u32, rate: u32) -> u32 {
    (ms as u64 * rate as u64 / 1000) as u32
}

/// The packet time of an audio packet in clock units (its buffer duration; 20 ms when unset).
fn packet_units(buf: &gst::BufferRef, rate: u32) -> u32 {
    let ns = buf.duration().map(|d| d.nseconds()).filter(|n| *n > 0).unwrap_or(20_000_000);
    (ns as u128 * rate as u128 / 1_000_000_000) as u32
}

/// The fields of an RTP fixed header (RFC 3550 §5.1) the sender needs, and its length with
/// CSRCs and header extension (kept as they are in the event packet).
struct RtpHeader {
    len: usize,
    seq: u16,
    timestamp: u32,
}

impl RtpHeader {
    fn parse(b: &[u8]) -> Option<RtpHeader> {
        if b.len() < 12 || b[0] >> 6 != 2 {
            return None;
        }
        let mut len = 12 + 4 * (b[0] & 0x0f) as usize;
        if b[0] & 0x10 != 0 {
            let ext = b.get(len + 2..len + 4)?;
            len += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
        }
        if len > b.len() {
            return None;
        }
        Some(RtpHeader {
            len,
            seq: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    /// The same header (SSRC, sequence number, CSRCs, extensions) with payload type `pt`, the
    /// marker bit, timestamp `ts`, no padding, followed by `payload`.
    fn rewrite(&self, b: &[u8], pt: u8, marker: bool, ts: u32, payload: &[u8]) -> Option<gst::Buffer> {
        let mut v = Vec::with_capacity(self.len + payload.len());
        v.extend_from_slice(b.get(..self.len)?);
        v[0] &= !0x20;
        v[1] = (pt & 0x7f) | if marker { 0x80 } else { 0 };
        v[4..8].copy_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(payload);
        Some(gst::Buffer::from_mut_slice(v))
    }
}

/// Receives the remote peer's RFC 4733 events: a probe on the webrtcbin src pad that carries
/// `telephone-event` (webrtcbin gives a payload type of its own a pad of its own) records
/// every packet and logs each event once, when its end arrives. No W3C API exposes received
/// DTMF; this is for the call's log and for tests. Cheap to clone.
#[derive(Clone, Default)]
pub struct DtmfReceiver {
    packets: Arc<Mutex<VecDeque<EventPacket>>>,
}

impl DtmfReceiver {
    /// Installs the probe on a webrtcbin src pad with `telephone-event` caps at `clock_rate` Hz.
    pub fn attach(&self, pad: &gst::Pad, clock_rate: u32) {
        let packets = self.packets.clone();
        let span = tracing::Span::current();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let Ok(map) = buf.map_readable() else { return gst::PadProbeReturn::Ok };
            let Some(h) = RtpHeader::parse(&map) else { return gst::PadProbeReturn::Ok };
            let Some((code, end, duration)) = parse_event_payload(&map[h.len..]) else {
                return gst::PadProbeReturn::Ok;
            };
            let p = EventPacket {
                seq: h.seq,
                timestamp: h.timestamp,
                marker: map[1] & 0x80 != 0,
                code,
                end,
                duration,
            };
            let mut q = packets.lock().unwrap_or_else(|e| e.into_inner());
            let first_end = end && !q.iter().any(|o| o.end && o.timestamp == p.timestamp && o.code == code);
            if first_end {
                let ms = duration as u64 * 1000 / clock_rate.max(1) as u64;
                let _g = span.enter();
                tracing::info!(event = "remote-dtmf", code, duration_ms = ms, "remote DTMF event received");
            }
            if q.len() >= SENT_HISTORY {
                q.pop_front();
            }
            q.push_back(p);
            gst::PadProbeReturn::Ok
        });
    }

    /// The last RFC 4733 packets received (at most 512), oldest first.
    pub fn packets(&self) -> Vec<EventPacket> {
        self.packets.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
    }
}

/// Reads an RFC 4733 event payload (event code, end bit, duration in clock units).
pub fn parse_event_payload(p: &[u8]) -> Option<(u8, bool, u16)> {
    if p.len() < 4 {
        return None;
    }
    Some((p[0], p[1] & 0x80 != 0, u16::from_be_bytes([p[2], p[3]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_rules_follow_w3c() {
        let s = parse_tones("1a#,*", 10, 5).unwrap();
        assert_eq!(s[0], Step::Tone { tone: '1', code: 1, duration_ms: 40, gap_ms: 30 });
        assert_eq!(s[1], Step::Tone { tone: 'A', code: 12, duration_ms: 40, gap_ms: 30 });
        assert_eq!(s[2], Step::Tone { tone: '#', code: 11, duration_ms: 40, gap_ms: 30 });
        assert_eq!(s[3], Step::Pause { ms: 2000 });
        assert_eq!(s[4], Step::Tone { tone: '*', code: 10, duration_ms: 40, gap_ms: 30 });
        assert_eq!(
            parse_tones("9", 9000, 70_000).unwrap()[0],
            Step::Tone { tone: '9', code: 9, duration_ms: 6000, gap_ms: 6000 }
        );
        assert!(parse_tones("12x", 100, 70).unwrap_err().contains("'x'"));
        assert_eq!(event_code('d'), Some(15));
        assert_eq!(event_code('E'), None);
    }

    fn rtp(seq: u16, ts: u32) -> gst::Buffer {
        let mut v = vec![0x80, 111, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        v[2..4].copy_from_slice(&seq.to_be_bytes());
        v[4..8].copy_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&[0xaa; 40]);
        let mut b = gst::Buffer::from_mut_slice(v);
        b.get_mut().unwrap().set_duration(gst::ClockTime::from_mseconds(20));
        b
    }

    #[test]
    fn packets_follow_rfc4733() {
        gst::init().unwrap();
        let s = DtmfSender::default();
        s.set_payload(Some((110, 48000)));
        s.insert(parse_tones("5,", 70, 30).unwrap());
        let mut out = Vec::new();
        for n in 0..12u16 {
            let b = rtp(1000 + n, 96000 + n as u32 * 960);
            out.push(s.process(&b).map(|o| o.map_readable().unwrap().to_vec()));
        }
        // 70 ms at 20 ms packets: 3 growing packets, then the end 3 times with 70 ms exactly.
        let ev: Vec<_> = out.iter().take(6).map(|p| p.clone().expect("event packet")).collect();
        for (i, p) in ev.iter().enumerate() {
            assert_eq!(p[1] & 0x7f, 110);
            assert_eq!(p[1] & 0x80 != 0, i == 0, "marker only on the first");
            assert_eq!(&p[4..8], &96000u32.to_be_bytes(), "event timestamp = start");
            assert_eq!(&p[8..12], &[0xde, 0xad, 0xbe, 0xef], "same SSRC");
            assert_eq!(u16::from_be_bytes([p[2], p[3]]), 1000 + i as u16, "same sequence space");
            let (code, end, dur) = parse_event_payload(&p[12..]).unwrap();
            assert_eq!(code, 5);
            assert_eq!(end, i >= 3);
            assert_eq!(dur as usize, if i < 3 { 960 * (i + 1) } else { 3360 });
        }
        assert!(out[6..].iter().all(Option::is_none), "audio again after the tone (',' sends nothing)");
        assert_eq!(s.sent_packets().len(), 6);
        assert_eq!(s.pending(), "");
    }

    #[test]
    fn insert_replaces_pending_tones_and_gaps_hold() {
        gst::init().unwrap();
        let s = DtmfSender::default();
        s.set_payload(Some((126, 8000)));
        s.insert(parse_tones("12", 40, 100).unwrap());
        let mut codes = Vec::new();
        for n in 0..40u32 {
            if n == 1 {
                // '1' is playing: the new buffer replaces the pending '2' (W3C §7.2 insertDTMF).
                assert!(s.is_playing());
                assert_eq!(s.pending(), "2");
                s.insert(parse_tones("9", 40, 100).unwrap());
            }
            if let Some(b) = s.process(&rtp(n as u16, n * 160)) {
                let m = b.map_readable().unwrap();
                codes.push((n, m[12]));
            }
        }
        let starts: Vec<_> = codes.iter().filter(|(_, c)| *c == 9).map(|(n, _)| *n).collect();
        assert!(codes.iter().all(|(_, c)| *c == 1 || *c == 9), "{codes:?}");
        // '1': 40 ms = 2 packets + 1 more end packet; the 100 ms gap runs from the tone's end.
        assert_eq!(starts.first(), Some(&7), "next tone after 40 ms + 100 ms: {codes:?}");
        assert!(s.pending().is_empty() && !s.is_playing());
        s.set_payload(None);
        assert!(s.process(&rtp(100, 16000)).is_none(), "not negotiated: audio passes");
    }

    #[test]
    fn long_tone_at_48k_is_segmented() {
        gst::init().unwrap();
        let s = DtmfSender::default();
        s.set_payload(Some((110, 48000)));
        s.insert(parse_tones("1", 2000, 70).unwrap());
        for n in 0..110u32 {
            let _ = s.process(&rtp(n as u16, n * 960));
        }
        let p = s.sent_packets();
        assert_eq!(p.iter().filter(|p| p.marker).count(), 1);
        let segments: std::collections::BTreeSet<u32> = p.iter().map(|p| p.timestamp).collect();
        assert_eq!(segments.len(), 2, "2 s at 48 kHz needs two segments: {segments:?}");
        assert!(p.iter().all(|p| p.duration > 0));
        let ends: Vec<_> = p.iter().filter(|p| p.end).collect();
        assert_eq!(ends.len(), 3);
        let first_seg = *segments.iter().next().unwrap();
        let second = *segments.iter().nth(1).unwrap();
        assert_eq!(ends[0].duration as u32, 96000 - (second - first_seg), "end covers the rest of 2 s");
    }

    #[test]
    fn sdp_gets_telephone_event_at_codec_rates() {
        gst::init().unwrap();
        let offer = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
            a=rtpmap:111 opus/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n";
        let mut msg = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()).unwrap();
        assert!(ensure_telephone_event(&mut msg, None));
        let m = msg.media(0).unwrap();
        assert_eq!(media_telephone_events(m), vec![(110, 48000), (126, 8000)]);
        assert!(!ensure_telephone_event(&mut msg, None), "idempotent");

        // An answer takes the remote offer's payload types, only those offered.
        let remote = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
            a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let remote = gst_sdp::SDPMessage::parse_buffer(remote.as_bytes()).unwrap();
        let answer = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\n";
        let mut msg = gst_sdp::SDPMessage::parse_buffer(answer.as_bytes()).unwrap();
        assert!(ensure_telephone_event(&mut msg, Some(&remote)));
        assert_eq!(negotiated_payload_type(msg.media(0).unwrap(), 8000), Some(101));
        assert!(msg.as_text().unwrap().contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\n"));
    }
}
