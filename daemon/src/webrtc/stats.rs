//! W3C `RTCStats` (WebRTC Statistics, <https://www.w3.org/TR/webrtc-stats/>) from webrtcbin's
//! `get-stats` reply (GStreamer 1.22), completed with what the engine measures itself, so a
//! page reads the same report shape as from a browser.
//!
//! - [`build_report`]: one `RTCStatsReport` (as JSON objects): `codec`, `inbound-rtp`,
//!   `outbound-rtp`, `remote-inbound-rtp`, `remote-outbound-rtp`, `media-source`, `transport`,
//!   `candidate-pair`, `local-candidate`, `remote-candidate`, `peer-connection`, `certificate`; the spec's
//!   camelCase names, seconds for `jitter` / `roundTripTime`, bytes for `bytes*`, every
//!   `timestamp` a DOMHighResTimeStamp in ms since the Unix epoch (the daemon's clock: the SDK
//!   shifts it onto the page's clock with the reply's `now`), and every `*Id` naming a stat of
//!   the same report.
//! - [`AudioLevelMeter`]: `audioLevel` / `totalAudioEnergy` / `totalSamplesDuration` of raw
//!   audio seen by a pad probe (media-source: the send path; inbound-rtp: the decoded audio).
//! - [`ReceiveMonitor`]: the RTP packets a receiver delivers (SSRC, CSRCs, RTP timestamp,
//!   arrival time) for `getSynchronizationSources()` / `getContributingSources()`.
//! - [`TransportCounters`]: what webrtcbin 1.22 does not count, watched inside it: packets and
//!   bytes through the ICE transport (libnice elements), time spent in each `rtpjitterbuffer`
//!   and the losses it announces, and every decrypted RTCP report (round trips, sender reports).

use gst::glib;
use gst::prelude::*;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Now as a W3C `DOMHighResTimeStamp`: ms since the Unix epoch (fractional), daemon clock.
pub fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (RFC 5905 §6).
const NTP_UNIX_OFFSET_S: f64 = 2_208_988_800.0;

/// How many bytes rtpsession adds to every RTP packet in its `bytes-received` count (IPv4 + UDP
/// headers, `UDP_IP_HEADER_OVERHEAD` in rtpsource.c), taken off to get RTP header bytes.
const RTPSESSION_UDP_IP_OVERHEAD: u64 = 28;

/// Interval over which `audioLevel` is averaged, s (webrtc-stats leaves it to the implementation;
/// Chromium updates about every 100 ms).
const LEVEL_WINDOW_S: f64 = 0.1;

/// How long a contributing or synchronization source stays listed after its last packet
/// (WebRTC 1.0 §5.3.4: "the last 10 seconds").
const SOURCE_KEEP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Audio level

/// Running audio-level figures of one audio path (webrtc-stats §`RTCAudioSourceStats` /
/// `RTCInboundRtpStreamStats` audio members).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LevelSnapshot {
    /// RMS of the last ~100 ms, linear 0..1 (1.0 = full scale, 0 dBov); None before the first
    /// complete window.
    pub audio_level: Option<f64>,
    /// Σ (sample value² × sample duration) over all samples (values normalised to -1..1;
    /// several channels: the mean over channels), s.
    pub total_audio_energy: f64,
    /// Σ sample durations, s.
    pub total_samples_duration: f64,
    /// Audio frames seen (one sample per channel each).
    pub total_samples: u64,
}

#[derive(Debug, Default)]
struct LevelState {
    snap: LevelSnapshot,
    win_energy: f64,
    win_duration: f64,
    /// Frames in the current window (counted, not summed durations, so 10 × 10 ms is exactly
    /// one window).
    win_frames: u64,
}

/// Measures `audioLevel`, `totalAudioEnergy` and `totalSamplesDuration` (webrtc-stats
/// definitions: energy is the sum of squared normalised sample values times their duration;
/// the level is the RMS over a short window) from raw audio buffers (`audio/x-raw`, interleaved
/// S16LE, S32LE, F32LE or F64LE). Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct AudioLevelMeter {
    st: Arc<Mutex<LevelState>>,
}

/// Raw audio format facts of negotiated caps: (sample format, rate Hz, channels).
fn raw_audio_format(caps: &gst::CapsRef) -> Option<(String, u32, u32)> {
    let s = caps.structure(0)?;
    if s.name() != "audio/x-raw" {
        return None;
    }
    let format = s.get::<String>("format").ok()?;
    let rate = u32::try_from(s.get::<i32>("rate").ok()?).ok()?;
    let channels = u32::try_from(s.get::<i32>("channels").unwrap_or(1)).ok()?;
    (rate > 0 && channels > 0).then_some((format, rate, channels))
}

/// Interleaved samples of `format` as values in -1..1; None for formats we do not read.
fn samples_of(format: &str, data: &[u8]) -> Option<Vec<f64>> {
    Some(match format {
        "S16LE" => data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0).collect(),
        "S32LE" => data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 / 2_147_483_648.0)
            .collect(),
        "F32LE" => {
            data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect()
        }
        "F64LE" => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect(),
        _ => return None,
    })
}

impl AudioLevelMeter {
    /// A meter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds interleaved `samples` (values -1..1) of `channels` channels at `rate` Hz.
    pub fn add_samples(&self, samples: &[f64], rate: u32, channels: u32) {
        if rate == 0 || channels == 0 {
            return;
        }
        let ch = channels as usize;
        let frames = samples.len() / ch;
        if frames == 0 {
            return;
        }
        let energy: f64 = samples[..frames * ch]
            .chunks_exact(ch)
            .map(|f| f.iter().map(|v| v * v).sum::<f64>() / ch as f64)
            .sum::<f64>()
            / rate as f64;
        let duration = frames as f64 / rate as f64;
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        st.snap.total_audio_energy += energy;
        st.snap.total_samples_duration += duration;
        st.snap.total_samples += frames as u64;
        st.win_energy += energy;
        st.win_duration += duration;
        st.win_frames += frames as u64;
        if st.win_frames as f64 >= LEVEL_WINDOW_S * rate as f64 {
            st.snap.audio_level = Some((st.win_energy / st.win_duration).sqrt().clamp(0.0, 1.0));
            st.win_energy = 0.0;
            st.win_duration = 0.0;
            st.win_frames = 0;
        }
    }

    /// Adds one raw audio buffer whose format is given by `caps`; other formats are ignored
    /// (logged once per meter at debug level).
    pub fn add_buffer(&self, caps: &gst::CapsRef, buffer: &gst::BufferRef) {
        let Some((format, rate, channels)) = raw_audio_format(caps) else { return };
        let Ok(map) = buffer.map_readable() else { return };
        match samples_of(&format, &map) {
            Some(samples) => self.add_samples(&samples, rate, channels),
            None => tracing::debug!(%format, "audio level: sample format not metered"),
        }
    }

    /// Meters every buffer that passes `pad` (a raw-audio pad) from now on.
    pub fn attach(&self, pad: &gst::Pad) {
        let meter = self.clone();
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |pad, info| {
            let Some(caps) = pad.current_caps() else {
                return gst::PadProbeReturn::Ok;
            };
            if let Some(b) = info.buffer() {
                meter.add_buffer(&caps, b);
            } else if let Some(list) = info.buffer_list() {
                for b in list.iter() {
                    meter.add_buffer(&caps, b);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// The figures so far.
    pub fn snapshot(&self) -> LevelSnapshot {
        self.st.lock().unwrap_or_else(|e| e.into_inner()).snap
    }
}

/// An RMS level (linear, 1.0 = full scale) as a receiving browser reads it from the RFC 6464
/// client-to-mixer audio level header extension: quantised to whole dBov (0..127, 127 =
/// silence) and converted back with 10^(-level/20), 127 → 0 (WebRTC 1.0 §5.3.4 `audioLevel`).
pub fn rfc6464_linear(rms: f64) -> f64 {
    // NaN and non-positive levels are silence.
    if rms.is_nan() || rms <= 0.0 {
        return 0.0;
    }
    let dbov = (-20.0 * rms.min(1.0).log10()).round().clamp(0.0, 127.0);
    if dbov >= 127.0 { 0.0 } else { 10f64.powf(-dbov / 20.0) }
}

// ---------------------------------------------------------------------------------------------
// Received RTP sources

/// One `RTCRtpSynchronizationSource` / `RTCRtpContributingSource` (WebRTC 1.0 §5.3.4).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpSourceEntry {
    /// When the last packet of this source was delivered to the receiver's track: ms since the
    /// Unix epoch (daemon clock).
    pub timestamp: f64,
    /// SSRC or CSRC.
    pub source: u32,
    /// RFC 6464 semantics, linear 0..1 (see [`rfc6464_linear`]); None before any decoded audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_level: Option<f64>,
    /// The RTP timestamp (media clock) of that packet.
    pub rtp_timestamp: u32,
}

/// The RTP-level facts of a receiver: last SSRC and CSRCs seen, packet count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveSnapshot {
    /// Synchronization sources, newest first, only those heard in the last 10 s.
    pub ssrcs: Vec<RtpSourceEntry>,
    /// Contributing sources (RFC 3550 CSRC list), newest first, last 10 s.
    pub csrcs: Vec<RtpSourceEntry>,
    /// Arrival of the last packet: ms since the Unix epoch (`lastPacketReceivedTimestamp`).
    pub last_packet_ms: Option<f64>,
    /// Decoded audio of this receiver.
    pub level: LevelSnapshot,
}

#[derive(Debug, Default)]
struct Heard {
    /// (source, last rtp timestamp, epoch ms, monotonic instant)
    ssrcs: Vec<(u32, u32, f64, std::time::Instant)>,
    csrcs: Vec<(u32, u32, f64, std::time::Instant)>,
}

/// Watches a receiver's RTP (after the jitter buffer, where packets go to the depayloader) and
/// its decoded audio. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ReceiveMonitor {
    heard: Arc<Mutex<Heard>>,
    /// Level of the decoded audio (inbound-rtp audio members, source `audioLevel`).
    pub level: AudioLevelMeter,
}

/// (SSRC, RTP timestamp, CSRCs) of an RTP packet (RFC 3550 §5.1); None for anything else.
pub fn parse_rtp_header(data: &[u8]) -> Option<(u32, u32, Vec<u32>)> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let cc = (data[0] & 0x0f) as usize;
    if data.len() < 12 + 4 * cc {
        return None;
    }
    let word = |o: usize| u32::from_be_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
    Some((word(8), word(4), (0..cc).map(|i| word(12 + 4 * i)).collect()))
}

impl ReceiveMonitor {
    /// A monitor that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one RTP packet delivered at `at_ms` (epoch ms).
    pub fn on_rtp(&self, data: &[u8], at_ms: f64) {
        let Some((ssrc, ts, csrcs)) = parse_rtp_header(data) else { return };
        let now = std::time::Instant::now();
        let mut h = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let upsert = |list: &mut Vec<(u32, u32, f64, std::time::Instant)>, src: u32| {
            list.retain(|e| e.0 != src && now.duration_since(e.3) < SOURCE_KEEP);
            list.insert(0, (src, ts, at_ms, now));
        };
        upsert(&mut h.ssrcs, ssrc);
        for c in csrcs {
            upsert(&mut h.csrcs, c);
        }
    }

    /// Watches `rtp_pad` (RTP buffers: a depayloader's sink) and `audio_pad` (the decoded raw
    /// audio of the same receiver).
    pub fn attach(&self, rtp_pad: &gst::Pad, audio_pad: &gst::Pad) {
        let mon = self.clone();
        rtp_pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
            let at = now_ms();
            let one = |b: &gst::BufferRef| {
                // The header is in the first memory of an RTP buffer (GstRTPBuffer's layout).
                if let Ok(map) = b.map_readable() {
                    mon.on_rtp(&map, at);
                }
            };
            if let Some(b) = info.buffer() {
                one(b);
            } else if let Some(list) = info.buffer_list() {
                list.iter().for_each(one);
            }
            gst::PadProbeReturn::Ok
        });
        self.level.attach(audio_pad);
    }

    /// What has been heard, sources of the last 10 s only.
    pub fn snapshot(&self) -> ReceiveSnapshot {
        let level = self.level.snapshot();
        let entry_level = level.audio_level.map(rfc6464_linear);
        let h = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let entries = |list: &Vec<(u32, u32, f64, std::time::Instant)>, with_level: bool| {
            list.iter()
                .filter(|e| now.duration_since(e.3) < SOURCE_KEEP)
                .map(|e| RtpSourceEntry {
                    timestamp: e.2,
                    source: e.0,
                    // Levels of mixed-in sources (RFC 6465) are not measurable from the mix.
                    audio_level: if with_level { entry_level } else { None },
                    rtp_timestamp: e.1,
                })
                .collect::<Vec<_>>()
        };
        let ssrcs = entries(&h.ssrcs, true);
        ReceiveSnapshot {
            last_packet_ms: h.ssrcs.first().map(|e| e.2),
            csrcs: entries(&h.csrcs, false),
            ssrcs,
            level,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transport counters

/// Packets and bytes (DTLS / SRTP / SRTCP datagrams, as handed to and from libnice) through
/// the ICE transports of one webrtcbin. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TransportCounters {
    inner: Arc<TransportInner>,
}

#[derive(Debug, Default)]
struct TransportInner {
    jitter: Mutex<HashMap<u32, JitterSnapshot>>,
    rtcp: Mutex<HashMap<u32, RtcpSnapshot>>,
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    packets_received: AtomicU64,
    bytes_received: AtomicU64,
    /// Epoch µs of the last datagram each way (0 = none).
    last_sent_us: AtomicU64,
    last_received_us: AtomicU64,
    /// Drop what webrtcbin hands its ICE transports (consent expired, RFC 7675 §5.1).
    sending_halted: std::sync::atomic::AtomicBool,
}

/// Totals of [`TransportCounters`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransportSnapshot {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    /// ms since the Unix epoch.
    pub last_packet_sent_ms: Option<f64>,
    pub last_packet_received_ms: Option<f64>,
    /// Jitter-buffer figures per received SSRC.
    pub jitter: HashMap<u32, JitterSnapshot>,
    /// RTCP figures per SSRC (sender reports by remote SSRC, RTTs by local SSRC).
    pub rtcp: HashMap<u32, RtcpSnapshot>,
}

/// What one `rtpjitterbuffer` did with one SSRC, in RTP timestamp ticks (the jitter buffer's
/// caps carry no clock rate; the report converts with the codec's `clockRate`, then to samples
/// at the decoded rate, as webrtc-stats counts them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterSnapshot {
    /// Σ (time in the jitter buffer, s × the packet's media length, ticks).
    pub delay_weighted: f64,
    /// Σ (target delay, s × media ticks): the buffer's fixed `latency` is its target.
    pub target_weighted: f64,
    /// Media that left the jitter buffer, ticks.
    pub emitted: f64,
    /// Media seconds the buffer declared lost, which the decoder conceals
    /// (`concealedSamples` / rate).
    pub concealed: f64,
    /// Runs of consecutive losses (`concealmentEvents`).
    pub concealment_events: u64,
}

/// What the far end's RTCP reports told about one SSRC (RFC 3550 §6.4).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtcpSnapshot {
    /// Sender reports received from this (remote) SSRC (`reportsSent`).
    pub sender_reports: u64,
    /// Round-trip measurements from report blocks about this (local) SSRC
    /// (`roundTripTimeMeasurements`), and their sum, s (`totalRoundTripTime`).
    pub rtt_measurements: u64,
    pub total_rtt: f64,
}

/// NTP "short format" (middle 32 bits: 16.16 s) of now (RFC 3550 §4), from the system clock,
/// which is the clock rtpsession puts in its sender reports (`ntp-time-source` = ntp).
fn ntp_short_now() -> u32 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET_S as u64;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (((secs & 0xffff) << 16) | (frac >> 16)) as u32
}

/// Feeds one (decrypted, possibly compound) RTCP packet into `map`: counts sender reports per
/// sender SSRC, and computes the round-trip time of each report block with an LSR (RFC 3550
/// §6.4.1: A − LSR − DLSR, in 1/65536 s) arriving at NTP short time `arrival`.
pub fn account_rtcp(map: &mut HashMap<u32, RtcpSnapshot>, data: &[u8], arrival: u32) {
    let mut off = 0;
    while off + 8 <= data.len() {
        let p = &data[off..];
        if p[0] >> 6 != 2 {
            return;
        }
        let count = (p[0] & 0x1f) as usize;
        let len = (u16::from_be_bytes([p[2], p[3]]) as usize + 1) * 4;
        if len > p.len() {
            return;
        }
        let word = |o: usize| u32::from_be_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
        let blocks_at = match p[1] {
            200 => {
                map.entry(word(4)).or_default().sender_reports += 1;
                Some(28)
            }
            201 => Some(8),
            _ => None,
        };
        if let Some(start) = blocks_at {
            for b in 0..count {
                let o = start + 24 * b;
                if o + 24 > len {
                    break;
                }
                let (ssrc, lsr, dlsr) = (word(o), word(o + 16), word(o + 20));
                if lsr == 0 {
                    continue; // the far end has had no SR from us yet
                }
                let rtt = arrival.wrapping_sub(lsr).wrapping_sub(dlsr);
                // A negative (wrapped) value is clock trouble, not a round trip.
                if rtt < 0x8000_0000 {
                    let e = map.entry(ssrc).or_default();
                    e.rtt_measurements += 1;
                    e.total_rtt += rtt as f64 / 65536.0;
                }
            }
        }
        off += len;
    }
}

/// Per-`rtpjitterbuffer` bookkeeping: arrival instants by sequence number.
#[derive(Debug, Default)]
struct JitterBufferState {
    arrivals: HashMap<u16, std::time::Instant>,
    ssrc: Option<u32>,
    prev_ts: Option<u32>,
    /// Media length of the last packet, ticks (taken for one that follows a gap).
    last_step: Option<f64>,
    last_was_lost: bool,
}

/// Largest timestamp step taken as one packet's length (250 ms at 48 kHz); larger steps
/// span lost packets.
const MAX_PACKET_TICKS: u32 = 12_000;

/// RTP sequence number, timestamp and SSRC of a packet.
fn rtp_seq_ts_ssrc(data: &[u8]) -> Option<(u16, u32, u32)> {
    let (ssrc, ts, _) = parse_rtp_header(data)?;
    Some((u16::from_be_bytes([data[2], data[3]]), ts, ssrc))
}

impl TransportCounters {
    /// Watches every `nicesink` / `nicesrc` (datagrams), `rtpjitterbuffer` (delay, losses) and
    /// `srtpdec` (RTCP) that webrtcbin creates from now on: call it right after making the
    /// webrtcbin, before any description is applied (webrtcbin makes its transports then).
    pub fn watch(webrtcbin: &gst::Element) -> Self {
        let counters = TransportCounters::default();
        if let Some(bin) = webrtcbin.downcast_ref::<gst::Bin>() {
            let c = counters.clone();
            bin.connect_deep_element_added(move |_, _, element| {
                let Some(factory) = element.factory() else { return };
                let (pad, sent) = match factory.name().as_str() {
                    "nicesink" => (element.static_pad("sink"), true),
                    "nicesrc" => (element.static_pad("src"), false),
                    "rtpjitterbuffer" => return c.watch_jitterbuffer(element),
                    "srtpdec" => return c.watch_rtcp(element),
                    _ => return,
                };
                if let Some(pad) = pad {
                    c.count(&pad, sent);
                }
            });
        }
        counters
    }

    /// Times every packet through one `rtpjitterbuffer` (sink → src) and counts the losses it
    /// announces (`GstRTPPacketLost` events, which make the decoder conceal).
    fn watch_jitterbuffer(&self, jb: &gst::Element) {
        let (Some(sink), Some(src)) = (jb.static_pad("sink"), jb.static_pad("src")) else { return };
        let state = Arc::new(Mutex::new(JitterBufferState::default()));
        let st = state.clone();
        sink.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
            let now = std::time::Instant::now();
            let mut st = st.lock().unwrap_or_else(|e| e.into_inner());
            let mut one = |b: &gst::BufferRef| {
                if let Ok(map) = b.map_readable()
                    && let Some((seq, _, _)) = rtp_seq_ts_ssrc(&map)
                {
                    st.arrivals.insert(seq, now);
                }
            };
            if let Some(b) = info.buffer() {
                one(b);
            } else if let Some(list) = info.buffer_list() {
                list.iter().for_each(&mut one);
            }
            // Packets the buffer dropped (late, duplicate) never come out: forget old ones.
            if st.arrivals.len() > 2048 {
                st.arrivals.retain(|_, t| now.duration_since(*t) < Duration::from_secs(5));
            }
            gst::PadProbeReturn::Ok
        });
        let inner = self.inner.clone();
        let jb_weak = jb.downgrade();
        src.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let target_s =
                    jb_weak.upgrade().map_or(0.0, |jb| jb.property::<u32>("latency") as f64 / 1000.0);
                let now = std::time::Instant::now();
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                let mut jitter = inner.jitter.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(ev) = info.event() {
                    if let Some(s) = ev.structure()
                        && s.name() == "GstRTPPacketLost"
                        && let Some(ssrc) = st.ssrc
                    {
                        let lost_s = s.get::<u64>("duration").map_or(0.02, |ns| ns as f64 / 1e9);
                        let j = jitter.entry(ssrc).or_default();
                        j.concealed += lost_s;
                        if !st.last_was_lost {
                            j.concealment_events += 1;
                        }
                        st.last_was_lost = true;
                    }
                    return gst::PadProbeReturn::Ok;
                }
                let mut one = |b: &gst::BufferRef| {
                    let Ok(map) = b.map_readable() else { return };
                    let Some((seq, ts, ssrc)) = rtp_seq_ts_ssrc(&map) else { return };
                    // A packet's media length: its timestamp step from the previous one.
                    let step = st
                        .prev_ts
                        .map(|p| ts.wrapping_sub(p))
                        .filter(|d| (1..=MAX_PACKET_TICKS).contains(d))
                        .map(f64::from)
                        .or(st.last_step);
                    st.prev_ts = Some(ts);
                    let Some(media_s) = step else { return };
                    st.last_step = Some(media_s);
                    st.ssrc = Some(ssrc);
                    st.last_was_lost = false;
                    let j = jitter.entry(ssrc).or_default();
                    if let Some(arrived) = st.arrivals.remove(&seq) {
                        j.delay_weighted += now.duration_since(arrived).as_secs_f64() * media_s;
                    }
                    j.target_weighted += target_s * media_s;
                    j.emitted += media_s;
                };
                if let Some(b) = info.buffer() {
                    one(b);
                } else if let Some(list) = info.buffer_list() {
                    list.iter().for_each(&mut one);
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    /// Reads the decrypted RTCP that reaches rtpbin.
    fn watch_rtcp(&self, srtpdec: &gst::Element) {
        let Some(pad) = srtpdec.static_pad("rtcp_src") else { return };
        let inner = self.inner.clone();
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
            let arrival = ntp_short_now();
            let mut map = inner.rtcp.lock().unwrap_or_else(|e| e.into_inner());
            let mut one = |b: &gst::BufferRef| {
                if let Ok(data) = b.map_readable() {
                    account_rtcp(&mut map, &data, arrival);
                }
            };
            if let Some(b) = info.buffer() {
                one(b);
            } else if let Some(list) = info.buffer_list() {
                list.iter().for_each(&mut one);
            }
            gst::PadProbeReturn::Ok
        });
    }

    fn count(&self, pad: &gst::Pad, sent: bool) {
        let inner = self.inner.clone();
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
            let (n, bytes) = if let Some(b) = info.buffer() {
                (1, b.size() as u64)
            } else if let Some(l) = info.buffer_list() {
                (l.len() as u64, l.iter().map(|b| b.size() as u64).sum())
            } else {
                return gst::PadProbeReturn::Ok;
            };
            if sent && inner.sending_halted.load(Ordering::Relaxed) {
                // The probe takes the datagrams (freed here) and says `Handled`: GStreamer then
                // neither unrefs nor forwards them, and the pusher sees OK. Not `Drop`: gstreamer-rs
                // hands GStreamer a NULL `info.data` either way, and on a sink pad GStreamer 1.22
                // unrefs the dropped item itself, so `Drop` means `gst_mini_object_unref: assertion
                // 'mini_object != NULL' failed` once per packet.
                drop(info.take_buffer());
                drop(info.take_buffer_list());
                return gst::PadProbeReturn::Handled;
            }
            let us = (now_ms() * 1000.0) as u64;
            if sent {
                inner.packets_sent.fetch_add(n, Ordering::Relaxed);
                inner.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                inner.last_sent_us.store(us, Ordering::Relaxed);
            } else {
                inner.packets_received.fetch_add(n, Ordering::Relaxed);
                inner.bytes_received.fetch_add(bytes, Ordering::Relaxed);
                inner.last_received_us.store(us, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Datagrams received so far through the ICE transports: SRTP, SRTCP and DTLS (libnice
    /// answers STUN itself; those never reach the pipeline). Cheap: one atomic load.
    pub fn packets_received(&self) -> u64 {
        self.inner.packets_received.load(Ordering::Relaxed)
    }

    /// Stops (`true`) or resumes sending: every datagram webrtcbin hands its ICE transports is
    /// dropped (and not counted) while halted. RFC 7675 §5.1: once consent expires an endpoint
    /// must cease transmission on that candidate pair.
    pub fn set_sending_halted(&self, halted: bool) {
        self.inner.sending_halted.store(halted, Ordering::Relaxed);
    }

    /// The totals so far.
    pub fn snapshot(&self) -> TransportSnapshot {
        let i = &self.inner;
        let ms = |a: &AtomicU64| {
            let us = a.load(Ordering::Relaxed);
            (us > 0).then(|| us as f64 / 1000.0)
        };
        TransportSnapshot {
            packets_sent: i.packets_sent.load(Ordering::Relaxed),
            bytes_sent: i.bytes_sent.load(Ordering::Relaxed),
            packets_received: i.packets_received.load(Ordering::Relaxed),
            bytes_received: i.bytes_received.load(Ordering::Relaxed),
            last_packet_sent_ms: ms(&i.last_sent_us),
            last_packet_received_ms: ms(&i.last_received_us),
            jitter: i.jitter.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            rtcp: i.rtcp.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report

/// What the peer connection knows about one transceiver that webrtcbin's stats lack.
#[derive(Debug, Clone, Default)]
pub struct TransceiverFacts {
    /// RTCRtpSender id (protocol `Transceiver.sender.id`): names the `media-source`.
    pub sender_id: String,
    /// JSEP mid.
    pub mid: Option<String>,
    /// m-line index (webrtcbin's `sink_%u` pad number).
    pub mline: Option<u32>,
    /// The sender's track id (`media-source.trackIdentifier`), None without a track.
    pub sender_track: Option<String>,
    /// The receiver's track id (`inbound-rtp.trackIdentifier`).
    pub receiver_track: String,
    /// Negotiated payload type and codec.
    pub negotiated: Option<(u8, super::Codec)>,
    /// The encoder's target bitrate, bits/s (`outbound-rtp.targetBitrate`).
    pub target_bitrate: Option<u32>,
    /// The send path's level (after mute), when a send branch exists.
    pub media_source: Option<LevelSnapshot>,
    /// The receive path, when remote RTP arrived.
    pub receive: Option<ReceiveSnapshot>,
}

/// Facts of the (bundled) DTLS/ICE transport.
#[derive(Debug, Clone, Default)]
pub struct TransportFacts {
    /// `RTCDtlsTransportState`: `new`, `connecting`, `connected`, `closed`, `failed`.
    pub dtls_state: Option<&'static str>,
    /// `RTCDtlsRole`: `client` / `server` (None = not known yet: `unknown`).
    pub dtls_role: Option<&'static str>,
    /// `RTCIceTransportState`.
    pub ice_state: Option<&'static str>,
    /// `RTCIceRole`: `controlling` / `controlled`.
    pub ice_role: Option<&'static str>,
    /// The local ICE ufrag of the transport (`iceLocalUsernameFragment`, local candidates'
    /// `usernameFragment`).
    pub ice_local_ufrag: Option<String>,
    /// The remote description's ICE ufrag (remote candidates' `usernameFragment`).
    pub ice_remote_ufrag: Option<String>,
    /// Datagram counters.
    pub counters: TransportSnapshot,
    /// The local DTLS certificate (webrtcbin's `GstWebRTCDTLSTransport::certificate`).
    pub local_certificate: Option<CertificateFacts>,
    /// The far end's DTLS certificate, once the handshake gave it (`remote-certificate`).
    pub remote_certificate: Option<CertificateFacts>,
}

/// Everything [`build_report`] needs besides webrtcbin's reply.
#[derive(Debug, Clone, Default)]
pub struct ReportContext {
    /// The report's `timestamp`, ms since the Unix epoch.
    pub now_ms: f64,
    pub transceivers: Vec<TransceiverFacts>,
    pub transport: TransportFacts,
}

/// The local and remote certificates of a webrtcbin DTLS transport (its `certificate` and
/// `remote-certificate` PEM properties). A missing or unreadable one is `None`, logged.
pub fn dtls_certificates(
    dtls: &gst_webrtc::WebRTCDTLSTransport,
) -> (Option<CertificateFacts>, Option<CertificateFacts>) {
    let read = |prop: &str| {
        let pem = dtls.property::<Option<String>>(prop).filter(|p| !p.trim().is_empty())?;
        CertificateFacts::from_pem(&pem)
            .inspect_err(
                |e| tracing::warn!(property = prop, error = %e, "DTLS certificate left out of stats"),
            )
            .ok()
    };
    (read("certificate"), read("remote-certificate"))
}

/// `RTCDtlsTransportState` string of a webrtcbin DTLS transport state.
pub fn dtls_state_name(s: gst_webrtc::WebRTCDTLSTransportState) -> &'static str {
    use gst_webrtc::WebRTCDTLSTransportState as S;
    match s {
        S::New => "new",
        S::Closed => "closed",
        S::Failed => "failed",
        S::Connecting => "connecting",
        S::Connected => "connected",
        _ => "new",
    }
}

/// `RTCIceTransportState` string of a webrtcbin ICE connection state.
pub fn ice_state_name(s: gst_webrtc::WebRTCICEConnectionState) -> &'static str {
    use gst_webrtc::WebRTCICEConnectionState as S;
    match s {
        S::New => "new",
        S::Checking => "checking",
        S::Connected => "connected",
        S::Completed => "completed",
        S::Failed => "failed",
        S::Disconnected => "disconnected",
        S::Closed => "closed",
        _ => "new",
    }
}

/// The media-source stat id of a sender.
pub fn media_source_id(sender_id: &str) -> String {
    format!("media-source_{sender_id}")
}

/// Why a PEM text does not give an X.509 certificate for `RTCCertificateStats`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// No `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----` block (RFC 7468 §5).
    #[error("no PEM CERTIFICATE block")]
    NoCertificateBlock,
    /// The block's body is not base64 (RFC 4648 §4, padded) or decodes to nothing.
    #[error("the PEM CERTIFICATE body is not base64 DER")]
    BadBase64,
}

/// An X.509 certificate as `RTCCertificateStats` (webrtc-stats §6.x) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// SHA-256 of the DER bytes: upper-case hex pairs joined by `:`, as in SDP
    /// `a=fingerprint` (RFC 8122 §5).
    pub fingerprint: String,
    /// The hash function's name from the IANA "Hash Function Textual Names" registry.
    pub fingerprint_algorithm: &'static str,
    /// The DER bytes, base64 (RFC 4648 §4, padded, no line breaks).
    pub base64_certificate: String,
}

impl CertificateFacts {
    /// The first certificate of a PEM text (RFC 7468: the leaf when a chain is given), as
    /// webrtcbin's `GstWebRTCDTLSTransport` `certificate` / `remote-certificate` hold it.
    pub fn from_pem(pem: &str) -> Result<Self, CertificateError> {
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let start = pem.find(BEGIN).ok_or(CertificateError::NoCertificateBlock)? + BEGIN.len();
        let len = pem[start..].find(END).ok_or(CertificateError::NoCertificateBlock)?;
        let body: String = pem[start..start + len].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
        let data = body.trim_end_matches('=');
        // GLib's decoder skips bad characters silently: check the RFC 4648 shape first.
        if body.is_empty()
            || !body.len().is_multiple_of(4)
            || body.len() - data.len() > 2
            || !data.chars().all(alphabet)
        {
            return Err(CertificateError::BadBase64);
        }
        let der = glib::base64_decode(&body);
        if der.is_empty() {
            return Err(CertificateError::BadBase64);
        }
        let mut sha = glib::Checksum::new(glib::ChecksumType::Sha256).ok_or(CertificateError::BadBase64)?;
        sha.update(&der);
        let fingerprint = sha.digest().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        Ok(Self { fingerprint, fingerprint_algorithm: "sha-256", base64_certificate: body })
    }

    /// The stat id (`certificate_<fingerprint>`; Chromium uses `CF<fingerprint>`).
    pub fn stat_id(&self) -> String {
        format!("certificate_{}", self.fingerprint)
    }

    /// The `certificate` stat, `timestamp` in ms since the Unix epoch. `issuerCertificateId`
    /// is absent: DTLS-SRTP certificates are self-signed (RFC 8827 §6.5).
    pub fn to_stat(&self, now_ms: f64) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::String(self.stat_id()));
        obj.insert("type".into(), Value::String("certificate".into()));
        obj.insert("timestamp".into(), Value::from(now_ms));
        obj.insert("fingerprint".into(), Value::String(self.fingerprint.clone()));
        obj.insert("fingerprintAlgorithm".into(), Value::String(self.fingerprint_algorithm.into()));
        obj.insert("base64Certificate".into(), Value::String(self.base64_certificate.clone()));
        Value::Object(obj)
    }
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn ms_or_none(v: Option<f64>) -> Option<Value> {
    v.and_then(Number::from_f64).map(Value::Number)
}

/// webrtcbin's `get-stats` reply → the page's `RTCStatsReport` entries (see the module doc).
/// Pure apart from reading `reply`: `ctx` brings the engine's own measurements. Stats whose
/// content is empty in webrtcbin 1.22 (a codec entry nobody sends or receives) are left out, as
/// the spec only lists codecs referenced by an RTP stream.
pub fn build_report(reply: &gst::StructureRef, ctx: &ReportContext) -> Vec<Value> {
    // The nested rtpsource statistics hold what the flat ones lack (inbound packetsLost,
    // RTCP-reported jitter, header bytes).
    let mut source_stats: HashMap<String, gst::Structure> = HashMap::new();
    let mut stats = Vec::new();
    for (id, v) in reply.iter() {
        let Ok(s) = v.get::<gst::Structure>() else { continue };
        if let Ok(nested) = s.get::<gst::Structure>("gst-rtpsource-stats") {
            source_stats.insert(id.to_string(), nested);
        }
        stats.push(stat_to_json(id.as_str(), &s));
    }
    let negotiated = ctx.transceivers.iter().find_map(|t| t.negotiated);
    normalize(&mut stats, negotiated);

    let transport_id = stats.iter().find(|s| s["type"] == "transport").and_then(|s| str_of(s, "id"));
    let selected_pair =
        stats.iter().find(|s| s["type"] == "transport").and_then(|s| str_of(s, "selectedCandidatePairId"));
    let ids: Vec<String> = stats.iter().filter_map(|s| str_of(s, "id")).collect();
    // Which transceiver sends an SSRC: webrtcbin names the send codec after the sink pad
    // (`codec-stats-sink_<mline>`) and puts the SSRC on it.
    let send_mline_of_ssrc: HashMap<u64, u32> = stats
        .iter()
        .filter(|s| s["type"] == "codec")
        .filter_map(|s| {
            let ssrc = s.get("ssrc")?.as_u64()?;
            let mline = str_of(s, "id")?.rsplit_once("sink_")?.1.parse().ok()?;
            Some((ssrc, mline))
        })
        .collect();
    let sender_of = |ssrc: Option<u64>| -> Option<&TransceiverFacts> {
        let by_mline = ssrc
            .and_then(|s| send_mline_of_ssrc.get(&s))
            .and_then(|m| ctx.transceivers.iter().find(|t| t.mline == Some(*m)));
        by_mline.or_else(|| {
            let senders: Vec<_> = ctx.transceivers.iter().filter(|t| t.media_source.is_some()).collect();
            (senders.len() == 1).then(|| senders[0])
        })
    };
    let receiver_of = |ssrc: Option<u64>| -> Option<&TransceiverFacts> {
        let heard = ctx.transceivers.iter().find(|t| {
            t.receive.as_ref().is_some_and(|r| r.ssrcs.iter().any(|e| Some(e.source as u64) == ssrc))
        });
        heard.or_else(|| {
            let receivers: Vec<_> = ctx.transceivers.iter().filter(|t| t.receive.is_some()).collect();
            (receivers.len() == 1).then(|| receivers[0])
        })
    };
    let clock_rate_of = |codec_id: Option<String>, stats: &[Value]| -> Option<f64> {
        let id = codec_id?;
        stats.iter().find(|s| s["id"] == id.as_str())?.get("clockRate")?.as_f64()
    };
    let snapshot = stats.clone();
    let mut referenced_codecs: Vec<String> = Vec::new();
    let mut media_sources: Vec<Value> = Vec::new();

    for st in stats.iter_mut() {
        let id = str_of(st, "id").unwrap_or_default();
        let ty = str_of(st, "type").unwrap_or_default();
        let obj = st.as_object_mut().expect("stat_to_json makes objects");
        obj.insert("timestamp".into(), Value::from(ctx.now_ms));
        let ssrc = obj.get("ssrc").and_then(Value::as_u64);
        let rtpsource = source_stats.get(&id);
        let src_u64 = |k: &str| rtpsource.and_then(|s| s.get::<u64>(k).ok());
        let src_i64 = |k: &str| rtpsource.and_then(|s| s.get::<i32>(k).ok()).map(i64::from);
        let src_u32 = |k: &str| rtpsource.and_then(|s| s.get::<u32>(k).ok());
        match ty.as_str() {
            "peer-connection" => {
                // Members dropped from webrtc-stats (browsers no longer report them).
                obj.remove("dataChannelsRequested");
                obj.remove("dataChannelsAccepted");
            }
            "codec" => {
                obj.remove("ssrc");
                // `codecType` left webrtc-stats in 2022; browsers no longer report it.
                obj.remove("codecType");
                // webrtcbin 1.22 copies the whole a=fmtp value, payload type included.
                if let Some(f) = obj.get("sdpFmtpLine").and_then(Value::as_str) {
                    let pt = obj.get("payloadType").and_then(Value::as_u64).map(|p| format!("{p} "));
                    if let Some(rest) = pt.as_deref().and_then(|p| f.strip_prefix(p)) {
                        obj.insert("sdpFmtpLine".into(), Value::String(rest.to_string()));
                    }
                }
                if let Some(t) = &transport_id {
                    obj.insert("transportId".into(), Value::String(t.clone()));
                }
            }
            "outbound-rtp" => {
                obj.insert("kind".into(), Value::String("audio".into()));
                // FIR / PLI are video-only members.
                obj.remove("firCount");
                obj.remove("pliCount");
                if let (Some(octets), Some(bytes), Some(packets)) =
                    (src_u64("octets-sent"), src_u64("bytes-received"), src_u64("packets-sent"))
                {
                    // An internal source's rtpsession counters mirror what it sent.
                    let header = bytes.saturating_sub(octets + RTPSESSION_UDP_IP_OVERHEAD * packets);
                    obj.insert("headerBytesSent".into(), Value::from(header));
                }
                if let Some(t) = sender_of(ssrc) {
                    if let Some(mid) = &t.mid {
                        obj.insert("mid".into(), Value::String(mid.clone()));
                    }
                    if t.media_source.is_some() {
                        obj.insert("mediaSourceId".into(), Value::String(media_source_id(&t.sender_id)));
                    }
                    if let Some(b) = t.target_bitrate {
                        obj.insert("targetBitrate".into(), Value::from(b));
                    }
                    obj.insert("active".into(), Value::Bool(t.sender_track.is_some()));
                }
            }
            "inbound-rtp" => {
                obj.insert("kind".into(), Value::String("audio".into()));
                obj.remove("firCount");
                obj.remove("pliCount");
                // Obsolete members of webrtc-stats that webrtcbin still fills in.
                obj.remove("packetsDuplicated");
                obj.remove("packetsRepaired");
                if let Some(lost) = src_i64("packets-lost") {
                    obj.insert("packetsLost".into(), Value::from(lost));
                }
                if let (Some(octets), Some(bytes), Some(packets)) =
                    (src_u64("octets-received"), src_u64("bytes-received"), src_u64("packets-received"))
                {
                    let header = bytes.saturating_sub(octets + RTPSESSION_UDP_IP_OVERHEAD * packets);
                    obj.insert("headerBytesReceived".into(), Value::from(header));
                }
                if let Some(t) = receiver_of(ssrc) {
                    obj.insert("trackIdentifier".into(), Value::String(t.receiver_track.clone()));
                    if let Some(mid) = &t.mid {
                        obj.insert("mid".into(), Value::String(mid.clone()));
                    }
                    if let Some(r) = &t.receive {
                        if let Some(v) = ms_or_none(r.last_packet_ms) {
                            obj.insert("lastPacketReceivedTimestamp".into(), v);
                        }
                        insert_level(obj, &r.level);
                        obj.insert("totalSamplesReceived".into(), Value::from(r.level.total_samples));
                    }
                }
                let jitter = ssrc.and_then(|s| ctx.transport.counters.jitter.get(&(s as u32)));
                let codec_rate =
                    clock_rate_of(obj.get("codecId").and_then(Value::as_str).map(str::to_string), &snapshot);
                if let (Some(j), Some(clock)) = (jitter, codec_rate.filter(|r| *r > 0.0)) {
                    // webrtc-stats counts samples at the decoded rate.
                    let decoded_rate = receiver_of(ssrc)
                        .and_then(|t| t.receive.as_ref())
                        .map(|r| r.level)
                        .filter(|l| l.total_samples_duration > 0.5)
                        .map(|l| (l.total_samples as f64 / l.total_samples_duration).round())
                        .unwrap_or(clock);
                    let samples = |s: f64| (s * decoded_rate).round() as u64;
                    let per_tick = decoded_rate / clock;
                    obj.insert("jitterBufferDelay".into(), Value::from(j.delay_weighted * per_tick));
                    obj.insert("jitterBufferTargetDelay".into(), Value::from(j.target_weighted * per_tick));
                    obj.insert("jitterBufferMinimumDelay".into(), Value::from(j.target_weighted * per_tick));
                    obj.insert(
                        "jitterBufferEmittedCount".into(),
                        Value::from((j.emitted * per_tick).round() as u64),
                    );
                    obj.insert("concealedSamples".into(), Value::from(samples(j.concealed)));
                    obj.insert("concealmentEvents".into(), Value::from(j.concealment_events));
                }
            }
            "remote-inbound-rtp" => {
                obj.insert("kind".into(), Value::String("audio".into()));
                if let Some(r) = ssrc.and_then(|s| ctx.transport.counters.rtcp.get(&(s as u32))) {
                    obj.insert("roundTripTimeMeasurements".into(), Value::from(r.rtt_measurements));
                    obj.insert("totalRoundTripTime".into(), Value::from(r.total_rtt));
                }
                // RTCP RR jitter is in RTP timestamp units (RFC 3550 §6.4.1); the spec wants s.
                let codec_id = str_of(&Value::Object(obj.clone()), "codecId");
                if let (Some(j), Some(rate)) = (src_u32("rb-jitter"), clock_rate_of(codec_id, &snapshot))
                    && rate > 0.0
                {
                    obj.insert("jitter".into(), Value::from(j as f64 / rate));
                }
            }
            "remote-outbound-rtp" => {
                obj.insert("kind".into(), Value::String("audio".into()));
                if let Some(r) = ssrc.and_then(|s| ctx.transport.counters.rtcp.get(&(s as u32))) {
                    obj.insert("reportsSent".into(), Value::from(r.sender_reports));
                }
                // No RTCP XR DLRR (RFC 3611) here: no round trip measured in this direction.
                obj.insert("roundTripTimeMeasurements".into(), Value::from(0u64));
                obj.insert("totalRoundTripTime".into(), Value::from(0.0));
                // webrtcbin 1.22 gives the RTCP SR's NTP time in seconds since 1900; the spec
                // wants ms since the Unix epoch (of the remote's clock).
                if let Some(ntp_s) = obj.get("remoteTimestamp").and_then(Value::as_f64) {
                    let ms = (ntp_s - NTP_UNIX_OFFSET_S) * 1000.0;
                    match ms_or_none(Some(ms)).filter(|_| ms > 0.0) {
                        Some(v) => obj.insert("remoteTimestamp".into(), v),
                        None => obj.remove("remoteTimestamp"),
                    };
                }
            }
            "transport" => {
                let f = &ctx.transport;
                let c = &f.counters;
                obj.insert("packetsSent".into(), Value::from(c.packets_sent));
                obj.insert("bytesSent".into(), Value::from(c.bytes_sent));
                obj.insert("packetsReceived".into(), Value::from(c.packets_received));
                obj.insert("bytesReceived".into(), Value::from(c.bytes_received));
                obj.insert("dtlsState".into(), Value::String(f.dtls_state.unwrap_or("new").into()));
                obj.insert("dtlsRole".into(), Value::String(f.dtls_role.unwrap_or("unknown").into()));
                obj.insert("iceState".into(), Value::String(f.ice_state.unwrap_or("new").into()));
                if let Some(r) = f.ice_role {
                    obj.insert("iceRole".into(), Value::String(r.into()));
                }
                if let Some(u) = &f.ice_local_ufrag {
                    obj.insert("iceLocalUsernameFragment".into(), Value::String(u.clone()));
                }
                if let Some(c) = &f.local_certificate {
                    obj.insert("localCertificateId".into(), Value::String(c.stat_id()));
                }
                if let Some(c) = &f.remote_certificate {
                    obj.insert("remoteCertificateId".into(), Value::String(c.stat_id()));
                }
            }
            "candidate-pair" => {
                let selected = selected_pair.as_deref() == Some(id.as_str());
                if let Some(t) = &transport_id {
                    obj.insert("transportId".into(), Value::String(t.clone()));
                }
                let ice_up = matches!(ctx.transport.ice_state, Some("connected" | "completed"));
                let state = if selected && ice_up { "succeeded" } else { "in-progress" };
                obj.insert("state".into(), Value::String(state.into()));
                obj.insert("nominated".into(), Value::Bool(selected && ice_up));
                if selected {
                    // All datagrams go through the selected pair (one bundled transport).
                    let c = &ctx.transport.counters;
                    obj.insert("packetsSent".into(), Value::from(c.packets_sent));
                    obj.insert("packetsReceived".into(), Value::from(c.packets_received));
                    obj.insert("bytesSent".into(), Value::from(c.bytes_sent));
                    obj.insert("bytesReceived".into(), Value::from(c.bytes_received));
                    if let Some(v) = ms_or_none(c.last_packet_sent_ms) {
                        obj.insert("lastPacketSentTimestamp".into(), v);
                    }
                    if let Some(v) = ms_or_none(c.last_packet_received_ms) {
                        obj.insert("lastPacketReceivedTimestamp".into(), v);
                    }
                }
            }
            "local-candidate" | "remote-candidate" => {
                if let Some(p) = obj.get("protocol").and_then(Value::as_str) {
                    let lower = p.to_ascii_lowercase();
                    obj.insert("protocol".into(), Value::String(lower));
                }
                // The spec has `url` only on local candidates gathered from a server.
                if obj.get("url").and_then(Value::as_str).is_some_and(str::is_empty) {
                    obj.remove("url");
                }
                let ufrag = if ty == "local-candidate" {
                    &ctx.transport.ice_local_ufrag
                } else {
                    &ctx.transport.ice_remote_ufrag
                };
                if let Some(u) = ufrag {
                    obj.insert("usernameFragment".into(), Value::String(u.clone()));
                }
            }
            _ => {}
        }
        if matches!(
            ty.as_str(),
            "outbound-rtp" | "inbound-rtp" | "remote-inbound-rtp" | "remote-outbound-rtp"
        ) {
            if let Some(c) = obj.get("codecId").and_then(Value::as_str) {
                referenced_codecs.push(c.to_string());
            }
            // Cross-references must resolve inside this report.
            for k in ["remoteId", "localId", "codecId", "transportId"] {
                if obj.get(k).and_then(Value::as_str).is_some_and(|r| !ids.iter().any(|i| i == r)) {
                    obj.remove(k);
                }
            }
        }
    }
    for t in &ctx.transceivers {
        let (Some(level), Some(track)) = (&t.media_source, &t.sender_track) else { continue };
        let mut obj = Map::new();
        obj.insert("id".into(), Value::String(media_source_id(&t.sender_id)));
        obj.insert("type".into(), Value::String("media-source".into()));
        obj.insert("timestamp".into(), Value::from(ctx.now_ms));
        obj.insert("trackIdentifier".into(), Value::String(track.clone()));
        obj.insert("kind".into(), Value::String("audio".into()));
        insert_level(&mut obj, level);
        media_sources.push(Value::Object(obj));
    }
    stats.retain(|s| {
        s["type"] != "codec"
            || (s.get("mimeType").is_some()
                && str_of(s, "id").is_some_and(|id| referenced_codecs.contains(&id)))
    });
    // A media-source without a sending stream (track on a sender whose answer is pending) is
    // still reported, as browsers do.
    stats.extend(media_sources);
    // Certificates only with the transport that references them (webrtc-stats §6.x); one stat
    // when both ends use the same certificate (same id).
    if transport_id.is_some() {
        let certs = [&ctx.transport.local_certificate, &ctx.transport.remote_certificate];
        for (i, c) in certs.iter().enumerate() {
            let Some(c) = c else { continue };
            if i == 1 && ctx.transport.local_certificate.as_ref().is_some_and(|l| l.stat_id() == c.stat_id())
            {
                continue;
            }
            stats.push(c.to_stat(ctx.now_ms));
        }
    }
    stats
}

fn insert_level(obj: &mut Map<String, Value>, l: &LevelSnapshot) {
    if let Some(v) = l.audio_level.and_then(Number::from_f64) {
        obj.insert("audioLevel".into(), Value::Number(v));
    }
    obj.insert("totalAudioEnergy".into(), Value::from(l.total_audio_energy));
    obj.insert("totalSamplesDuration".into(), Value::from(l.total_samples_duration));
}

/// The entries of `report` that the WebRTC 1.0 stats selection algorithm (§8.5) returns for a
/// sender (`outbound`: its `outbound-rtp` stats, by `mid`) or a receiver (its `inbound-rtp`),
/// plus every stat they reference, transitively (`codecId`, `transportId`, `mediaSourceId`,
/// `remoteId`, `selectedCandidatePairId`, `localCandidateId`, `remoteCandidateId`,
/// `localCertificateId`, `remoteCertificateId`).
pub fn select(report: &[Value], mid: &str, outbound: bool) -> Vec<Value> {
    let ty = if outbound { "outbound-rtp" } else { "inbound-rtp" };
    let mut wanted: Vec<String> = report
        .iter()
        .filter(|s| s["type"] == ty && s["mid"] == mid)
        .filter_map(|s| str_of(s, "id"))
        .collect();
    let mut i = 0;
    while i < wanted.len() {
        if let Some(s) = report.iter().find(|s| s["id"] == wanted[i].as_str()) {
            for k in [
                "codecId",
                "transportId",
                "mediaSourceId",
                "remoteId",
                "selectedCandidatePairId",
                "localCandidateId",
                "remoteCandidateId",
                "localCertificateId",
                "remoteCertificateId",
            ] {
                if let Some(r) = str_of(s, k)
                    && !wanted.contains(&r)
                {
                    wanted.push(r);
                }
            }
        }
        i += 1;
    }
    report.iter().filter(|s| str_of(s, "id").is_some_and(|id| wanted.contains(&id))).cloned().collect()
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

    /// A real webrtcbin 1.22 `get-stats` reply of an Opus call between two of our peer
    /// connections (captured with `STATS_DUMP` from `daemon/tests/stats.rs`, offerer side).
    const REAL_REPLY: &str = include_str!("testdata/webrtcbin-1.22-get-stats.txt");

    fn real_reply() -> gst::Structure {
        gst::init().unwrap();
        // The text names webrtcbin's enum type, which must be registered to be parsed.
        let _ = gst_webrtc::WebRTCStatsType::static_type();
        REAL_REPLY.trim().parse::<gst::Structure>().expect("fixture parses as a GstStructure")
    }

    /// The raw stat `id` of the fixture, and its nested rtpsource stats.
    fn raw(id: &str) -> (gst::Structure, Option<gst::Structure>) {
        let s = real_reply().get::<gst::Structure>(id).unwrap();
        let nested = s.get::<gst::Structure>("gst-rtpsource-stats").ok();
        (s, nested)
    }

    fn first_id(prefix: &str) -> String {
        real_reply().iter().map(|(k, _)| k.to_string()).find(|k| k.starts_with(prefix)).unwrap()
    }

    fn ctx(inbound_ssrc: u32) -> ReportContext {
        let meter = AudioLevelMeter::new();
        meter.add_samples(&[0.5; 4800], 48000, 1);
        let recv = ReceiveMonitor::new();
        let mut pkt = vec![0x80, 111, 0, 1, 0, 0, 0, 42];
        pkt.extend_from_slice(&inbound_ssrc.to_be_bytes());
        recv.on_rtp(&pkt, 1_700_000_000_000.0);
        ReportContext {
            now_ms: 1_700_000_000_123.5,
            transceivers: vec![TransceiverFacts {
                sender_id: "snd1".into(),
                mid: Some("audio0".into()),
                mline: Some(0),
                sender_track: Some("trackA".into()),
                receiver_track: "rtrack1".into(),
                negotiated: Some((111, crate::webrtc::Codec::Opus)),
                target_bitrate: Some(64000),
                media_source: Some(meter.snapshot()),
                receive: Some(recv.snapshot()),
            }],
            transport: TransportFacts {
                dtls_state: Some("connected"),
                dtls_role: Some("server"),
                ice_state: Some("connected"),
                ice_role: Some("controlling"),
                ice_local_ufrag: Some("ufrag".into()),
                ice_remote_ufrag: Some("far".into()),
                counters: TransportSnapshot {
                    packets_sent: 10,
                    bytes_sent: 1000,
                    jitter: HashMap::from([(
                        inbound_ssrc,
                        JitterSnapshot {
                            delay_weighted: 0.5 * 48000.0,
                            target_weighted: 0.25 * 48000.0,
                            emitted: 10.0 * 48000.0,
                            concealed: 0.1,
                            concealment_events: 2,
                        },
                    )]),
                    ..Default::default()
                },
                local_certificate: None,
                remote_certificate: None,
            },
        }
    }

    #[test]
    fn build_report_maps_a_real_webrtcbin_1_22_reply() {
        let inbound_id = first_id("rtp-inbound-stream-stats_");
        let ssrc: u32 = inbound_id.rsplit('_').next().unwrap().parse().unwrap();
        let r = build_report(&real_reply(), &ctx(ssrc));
        let get = |id: &str| r.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no {id}: {r:#?}"));
        let ids: Vec<&str> = r.iter().map(|s| s["id"].as_str().unwrap()).collect();
        for s in &r {
            assert_eq!(s["timestamp"], 1_700_000_000_123.5, "one epoch-ms timestamp per report: {s}");
            for (k, v) in s.as_object().unwrap() {
                assert!(!k.starts_with("gst") && !k.contains('-'), "{k} in {s}");
                if k.ends_with("Id") && k != "trackIdentifier" {
                    assert!(ids.contains(&v.as_str().unwrap()), "{k} = {v} does not resolve");
                }
            }
        }
        let types: Vec<&str> = r.iter().map(|s| s["type"].as_str().unwrap()).collect();
        for t in [
            "codec",
            "inbound-rtp",
            "outbound-rtp",
            "remote-inbound-rtp",
            "remote-outbound-rtp",
            "media-source",
            "transport",
            "candidate-pair",
            "local-candidate",
            "remote-candidate",
        ] {
            assert!(types.contains(&t), "no {t} in {types:?}");
        }

        // inbound-rtp: packetsLost and header bytes come from the nested rtpsource stats.
        let (_, nested) = raw(&inbound_id);
        let nested = nested.unwrap();
        let inb = get(&inbound_id);
        assert_eq!(inb["packetsLost"], nested.get::<i32>("packets-lost").unwrap() as i64);
        let header = nested.get::<u64>("bytes-received").unwrap()
            - nested.get::<u64>("octets-received").unwrap()
            - 28 * nested.get::<u64>("packets-received").unwrap();
        assert_eq!(inb["headerBytesReceived"], header);
        assert_eq!(inb["headerBytesReceived"], 12 * inb["packetsReceived"].as_u64().unwrap());
        assert_eq!(inb["trackIdentifier"], "rtrack1");
        assert_eq!(inb["mid"], "audio0");
        assert_eq!(inb["lastPacketReceivedTimestamp"], 1_700_000_000_000.0);
        assert!(inb.get("firCount").is_none() && inb.get("pliCount").is_none());
        // Jitter-buffer seconds become samples at the receive codec's rate (48 kHz here: no
        // decoded audio in this context).
        assert_eq!(inb["jitterBufferEmittedCount"], 480_000);
        assert_eq!(inb["jitterBufferDelay"], 24_000.0);
        assert_eq!(inb["jitterBufferTargetDelay"], 12_000.0);
        assert_eq!(inb["concealedSamples"], 4800);
        assert_eq!(inb["concealmentEvents"], 2);

        // remote-inbound-rtp: RTCP jitter from timestamp units to seconds.
        let rin_id = first_id("rtp-remote-inbound-stream-stats_");
        let (_, nested) = raw(&rin_id);
        let rb_jitter = nested.unwrap().get::<u32>("rb-jitter").unwrap();
        assert_eq!(get(&rin_id)["jitter"].as_f64().unwrap(), rb_jitter as f64 / 48000.0);

        // remote-outbound-rtp: NTP seconds → epoch ms.
        let rout_id = first_id("rtp-remote-outbound-stream-stats_");
        let (rs, _) = raw(&rout_id);
        let ntp = rs.get::<f64>("remote-timestamp").unwrap();
        let want = (ntp - 2_208_988_800.0) * 1000.0;
        assert_eq!(get(&rout_id)["remoteTimestamp"].as_f64().unwrap(), want);
        assert!(want > 1.7e12, "{want} is an epoch ms of 2023 or later");

        // outbound-rtp ↔ media-source, the encoder's codec, fmtp without the payload type.
        let out_id = first_id("rtp-outbound-stream-stats_");
        let out = get(&out_id);
        assert_eq!(out["mediaSourceId"], "media-source_snd1");
        assert_eq!(out["mid"], "audio0");
        assert_eq!(out["targetBitrate"], 64000);
        assert_eq!(out["headerBytesSent"], 12 * out["packetsSent"].as_u64().unwrap());
        let codec = get(out["codecId"].as_str().unwrap());
        assert_eq!(codec["mimeType"], "audio/opus");
        assert!(!codec["sdpFmtpLine"].as_str().unwrap().starts_with("111 "), "{codec}");
        assert!(codec.get("ssrc").is_none() && codec.get("codecType").is_none());
        let ms = get("media-source_snd1");
        assert_eq!(ms["trackIdentifier"], "trackA");
        assert_eq!(ms["audioLevel"], 0.5);
        assert!((ms["totalSamplesDuration"].as_f64().unwrap() - 0.1).abs() < 1e-9);
        assert!((ms["totalAudioEnergy"].as_f64().unwrap() - 0.025).abs() < 1e-9);

        // The candidate types webrtcbin 1.22 swaps are put right; the selected pair is whole.
        let tr = r.iter().find(|s| s["type"] == "transport").unwrap();
        assert_eq!(tr["dtlsState"], "connected");
        assert_eq!(tr["iceRole"], "controlling");
        assert_eq!(tr["bytesSent"], 1000);
        let pair = get(tr["selectedCandidatePairId"].as_str().unwrap());
        assert_eq!((pair["state"].as_str(), pair["nominated"].as_bool()), (Some("succeeded"), Some(true)));
        assert_eq!(get(pair["localCandidateId"].as_str().unwrap())["type"], "local-candidate");
        assert_eq!(get(pair["remoteCandidateId"].as_str().unwrap())["type"], "remote-candidate");
        assert!(get(pair["localCandidateId"].as_str().unwrap()).get("url").is_none(), "empty url left out");
        assert_eq!(get(pair["localCandidateId"].as_str().unwrap())["usernameFragment"], "ufrag");
        assert_eq!(get(pair["remoteCandidateId"].as_str().unwrap())["usernameFragment"], "far");
        let pcs = r.iter().find(|s| s["type"] == "peer-connection").unwrap();
        assert!(pcs.get("dataChannelsRequested").is_none() && pcs["dataChannelsOpened"] == 0, "{pcs}");

        // Selection (WebRTC 1.0 §8.5) on the same report.
        let sel = select(&r, "audio0", true);
        let t: Vec<&str> = sel.iter().map(|s| s["type"].as_str().unwrap()).collect();
        assert!(t.contains(&"outbound-rtp") && t.contains(&"media-source") && t.contains(&"local-candidate"));
        assert!(!t.contains(&"inbound-rtp") && !t.contains(&"remote-outbound-rtp"), "{t:?}");
        assert!(select(&r, "nope", true).is_empty());
    }

    #[test]
    fn codec_entries_nobody_references_are_left_out() {
        // Before an answer webrtcbin lists an empty receive codec; without negotiation facts it
        // cannot be filled and must not appear as a mimeType-less codec stat.
        let mut c = ctx(1);
        c.transceivers[0].negotiated = None;
        let r = build_report(&real_reply(), &c);
        for s in r.iter().filter(|s| s["type"] == "codec") {
            assert!(s.get("mimeType").is_some(), "{s}");
        }
    }

    #[test]
    fn audio_level_follows_webrtc_stats_definitions() {
        gst::init().unwrap();
        let m = AudioLevelMeter::new();
        assert_eq!(m.snapshot().audio_level, None);
        // 1 s of a full-scale 1 kHz sine in stereo, 10 ms buffers, S16LE through add_buffer.
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 48000)
            .field("channels", 2)
            .field("layout", "interleaved")
            .build();
        for b in 0..100 {
            let mut data = Vec::with_capacity(480 * 4);
            for i in 0..480 {
                let t = (b * 480 + i) as f64 / 48000.0;
                let v = ((2.0 * std::f64::consts::PI * 1000.0 * t).sin() * 32767.0) as i16;
                data.extend_from_slice(&v.to_le_bytes());
                data.extend_from_slice(&v.to_le_bytes());
            }
            m.add_buffer(&caps, gst::Buffer::from_mut_slice(data).as_ref());
        }
        let s = m.snapshot();
        assert!((s.total_samples_duration - 1.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.total_samples, 48000);
        // A full-scale sine's mean square is 1/2.
        assert!((s.total_audio_energy - 0.5).abs() < 1e-3, "{s:?}");
        assert!((s.audio_level.unwrap() - 0.5f64.sqrt()).abs() < 1e-3, "{s:?}");
        // The level follows the last window only: silence brings it to 0, energy stays.
        m.add_samples(&[0.0; 4800], 48000, 1);
        let s = m.snapshot();
        assert_eq!(s.audio_level, Some(0.0));
        assert!((s.total_audio_energy - 0.5).abs() < 1e-3);
        // Formats it cannot read change nothing.
        let caps = gst::Caps::builder("audio/x-raw").field("format", "U8").field("rate", 8000).build();
        m.add_buffer(&caps, gst::Buffer::from_mut_slice(vec![0u8; 80]).as_ref());
        assert_eq!(m.snapshot().total_samples, s.total_samples);
    }

    #[test]
    fn rfc6464_levels_are_whole_dbov_steps() {
        assert_eq!(rfc6464_linear(1.0), 1.0);
        assert_eq!(rfc6464_linear(0.0), 0.0);
        assert_eq!(rfc6464_linear(f64::NAN), 0.0);
        assert_eq!(rfc6464_linear(1e-9), 0.0, "-180 dBov is silence (127)");
        assert!((rfc6464_linear(0.5) - 10f64.powf(-6.0 / 20.0)).abs() < 1e-12);
        assert!((rfc6464_linear(2.0) - 1.0).abs() < 1e-12, "clipped to 0 dBov");
    }

    #[test]
    fn rtp_sources_come_from_packet_headers() {
        assert_eq!(parse_rtp_header(&[0x80, 0, 0, 0]), None);
        assert_eq!(parse_rtp_header(&[0x40; 12]), None, "RTP version 1");
        let mut pkt = vec![0x82, 111, 0, 7, 0, 0, 1, 0, 0, 0, 0, 9];
        pkt.extend_from_slice(&5u32.to_be_bytes());
        pkt.extend_from_slice(&6u32.to_be_bytes());
        assert_eq!(parse_rtp_header(&pkt), Some((9, 256, vec![5, 6])));
        assert_eq!(parse_rtp_header(&pkt[..16]), None, "truncated CSRC list");
        let m = ReceiveMonitor::new();
        m.on_rtp(&pkt, 1000.0);
        pkt[11] = 10; // a second SSRC, later
        m.on_rtp(&pkt, 2000.0);
        m.level.add_samples(&[0.5; 4800], 48000, 1);
        let s = m.snapshot();
        assert_eq!(s.ssrcs.iter().map(|e| e.source).collect::<Vec<_>>(), [10, 9], "newest first");
        assert_eq!(s.ssrcs[0].timestamp, 2000.0);
        assert_eq!(s.ssrcs[0].rtp_timestamp, 256);
        assert!((s.ssrcs[0].audio_level.unwrap() - 10f64.powf(-6.0 / 20.0)).abs() < 1e-12);
        assert_eq!(s.csrcs.iter().map(|e| e.source).collect::<Vec<_>>(), [6, 5]);
        assert_eq!(s.csrcs[0].audio_level, None);
        assert_eq!(s.last_packet_ms, Some(2000.0));
        let j = serde_json::to_value(&s.ssrcs[0]).unwrap();
        assert_eq!(
            j.as_object().unwrap().keys().map(String::as_str).collect::<Vec<_>>(),
            ["audioLevel", "rtpTimestamp", "source", "timestamp"]
        );
    }

    #[test]
    fn rtcp_reports_count_and_give_round_trips() {
        // SR from 0x0a (one block about our 0x0b: LSR 0x00010000, DLSR 0x00008000) then an
        // RR from 0x0c with a block about 0x0b without LSR (not a measurement).
        let mut sr = vec![0x81, 200, 0, 12];
        sr.extend_from_slice(&0x0au32.to_be_bytes());
        sr.extend_from_slice(&[0; 20]); // NTP, RTP timestamp, counts
        sr.extend_from_slice(&0x0bu32.to_be_bytes());
        sr.extend_from_slice(&[0; 12]); // loss, highest seq, jitter
        sr.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        sr.extend_from_slice(&0x0000_8000u32.to_be_bytes());
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend_from_slice(&0x0cu32.to_be_bytes());
        rr.extend_from_slice(&0x0bu32.to_be_bytes());
        rr.extend_from_slice(&[0; 20]);
        let compound: Vec<u8> = sr.iter().chain(rr.iter()).copied().collect();
        let mut map = HashMap::new();
        // Arrives at 1.75 s (NTP short) for an SR sent at 1.0 s, held 0.5 s: RTT 0.25 s.
        account_rtcp(&mut map, &compound, 0x0001_c000);
        assert_eq!(map[&0x0a].sender_reports, 1);
        assert_eq!(map[&0x0b].rtt_measurements, 1);
        assert!((map[&0x0b].total_rtt - 0.25).abs() < 1e-9, "{map:?}");
        assert!(!map.contains_key(&0x0c), "an RR is not a sender report");
        // Truncated or foreign data changes nothing.
        account_rtcp(&mut map, &compound[..20], 0x0001_c000);
        account_rtcp(&mut map, &[0x40; 16], 0);
        assert_eq!(map[&0x0a].sender_reports, 1);
        assert_eq!(map[&0x0b].rtt_measurements, 1);
        // An arrival "before" the LSR (clock trouble) is no measurement.
        account_rtcp(&mut map, &sr, 0x0000_1000);
        assert_eq!(map[&0x0b].rtt_measurements, 1);
        assert_eq!(map[&0x0a].sender_reports, 2);
    }

    #[test]
    fn names_follow_the_spec() {
        assert_eq!(camel_case("packets-received"), "packetsReceived");
        assert_eq!(camel_case("round-trip-time"), "roundTripTime");
        assert_eq!(camel_case("ssrc"), "ssrc");
    }

    /// A self-signed P-256 certificate made with `openssl req -x509`; its fingerprint is
    /// `openssl x509 -noout -fingerprint -sha256`'s.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBhjCCASugAwIBAgIUULWM4fOagqiKQ196ndntQYEvTXAwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNdmRpbWVkaWEtdGVzdDAeFw0yNjExMjExNDA1MjhaFw0zNjEx
MTgxNDA1MjhaMBgxFjAUBgNVBAMMDXZkaW1lZGlhLXRlc3QwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAARq2xC+AOCZx+dn2aKv7y2aaKvgUXHoCPJCfQ/gmOcE0Qsn
EeCgM0hWAGFiohhNWVd9jJKJC7iFcWZzLN7ZPWYjo1MwUTAdBgNVHQ4EFgQUmufX
zqWDqEA/9MhW7QW46PY+PaMwHwYDVR0jBBgwFoAUmufXzqWDqEA/9MhW7QW46PY+
PaMwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEA2H3sMvGPYwn9
OZFlLQ5mWE/P/ezm8kvU2QgYJ7fu3ekCIQCUpklUJWTa5zxILueJFJoAfl0FQmll
yTN02WwUWHelow==
-----END CERTIFICATE-----
";
    const PEM_SHA256: &str =
        "C9:47:54:D8:AD:11:92:19:E0:AD:D9:59:C6:24:1B:2C:8E:BD:D8:65:46:15:8D:30:66:5F:37:F6:DD:B1:D0:EA";

    #[test]
    fn certificate_from_pem_gives_fingerprint_and_base64_der() {
        let c = CertificateFacts::from_pem(PEM).unwrap();
        assert_eq!(c.fingerprint, PEM_SHA256);
        assert_eq!(c.fingerprint_algorithm, "sha-256");
        let body: String = PEM.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(c.base64_certificate, body);
        // DER: a SEQUENCE (0x30) with a two-byte long-form length (0x82), 0x186 bytes of content.
        let der = glib::base64_decode(&c.base64_certificate);
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x86]);
        assert_eq!(der.len(), 4 + 0x186);
        // A private key before the certificate and a second certificate after it: the first wins.
        let chain = format!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{PEM}{PEM}");
        assert_eq!(CertificateFacts::from_pem(&chain).unwrap(), c);
        let stat = c.to_stat(12.5);
        assert_eq!(stat["id"], format!("certificate_{PEM_SHA256}"));
        assert_eq!(stat["type"], "certificate");
        assert_eq!(stat["timestamp"], 12.5);
        assert_eq!(stat["fingerprint"], PEM_SHA256);
        assert_eq!(stat["fingerprintAlgorithm"], "sha-256");
        assert_eq!(stat["base64Certificate"], body);
        assert!(stat.get("issuerCertificateId").is_none(), "self-signed: no issuer");
    }

    #[test]
    fn certificate_from_bad_pem_is_a_typed_error() {
        use CertificateError::*;
        assert_eq!(CertificateFacts::from_pem(""), Err(NoCertificateBlock));
        assert_eq!(CertificateFacts::from_pem("-----BEGIN CERTIFICATE-----\nMIIB"), Err(NoCertificateBlock));
        let with = |body: &str| format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
        assert_eq!(CertificateFacts::from_pem(&with("")), Err(BadBase64));
        assert_eq!(CertificateFacts::from_pem(&with("MII*")), Err(BadBase64));
        assert_eq!(CertificateFacts::from_pem(&with("MIIBh")), Err(BadBase64));
        assert_eq!(CertificateFacts::from_pem(&with("M===")), Err(BadBase64));
        assert!(CertificateFacts::from_pem(&with("MIIB")).is_ok());
    }

    #[test]
    fn transport_references_its_certificates() {
        let local = CertificateFacts::from_pem(PEM).unwrap();
        let remote = CertificateFacts { fingerprint: "AB:CD".into(), ..local.clone() };
        let mut c = ctx(0);
        c.transport.local_certificate = Some(local.clone());
        c.transport.remote_certificate = Some(remote.clone());
        let r = build_report(&real_reply(), &c);
        let tr = r.iter().find(|s| s["type"] == "transport").unwrap();
        assert_eq!(tr["localCertificateId"], local.stat_id());
        assert_eq!(tr["remoteCertificateId"], remote.stat_id());
        let certs: Vec<_> = r.iter().filter(|s| s["type"] == "certificate").collect();
        assert_eq!(certs.len(), 2, "{certs:?}");
        assert_eq!(certs[1]["fingerprint"], "AB:CD");
        // Sender selection follows transport → certificates.
        let out_mid = r.iter().find(|s| s["type"] == "outbound-rtp").and_then(|s| str_of(s, "mid"));
        if let Some(mid) = out_mid {
            let sel = select(&r, &mid, true);
            assert!(sel.iter().any(|s| s["id"] == local.stat_id().as_str()), "{sel:#?}");
        }
        // The same certificate on both ends is one stat.
        c.transport.remote_certificate = Some(local);
        let r = build_report(&real_reply(), &c);
        assert_eq!(r.iter().filter(|s| s["type"] == "certificate").count(), 1);
    }

    /// The `a=fingerprint` of an SDP (RFC 8122), upper-cased hex pairs.
    fn sdp_fingerprint(sdp: &str) -> String {
        let line = sdp.lines().find_map(|l| l.strip_prefix("a=fingerprint:")).expect("a=fingerprint");
        let (algo, fp) = line.trim().split_once(' ').unwrap();
        assert_eq!(algo.to_ascii_lowercase(), "sha-256");
        fp.to_ascii_uppercase()
    }

    /// Two of our peer connections (Opus) over loopback ICE until DTLS is connected on both;
    /// A offers with `trackA`, B answers with `trackB`. `before_answer` runs on B first.
    async fn connected_pair(
        before_answer: impl FnOnce(&crate::webrtc::PeerConnection),
    ) -> (crate::webrtc::PeerConnection, crate::webrtc::PeerConnection) {
        use crate::webrtc::{Codec, PcEvent, PcOptions, PeerConnection};
        use std::time::Instant;
        use vdimedia_protocol::api::*;
        crate::webrtc::prewarm().unwrap();
        let mk = |name: &str| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let opts = PcOptions { loopback_ice: true, codecs: vec![Codec::Opus], ..PcOptions::default() };
            (PeerConnection::with_options(name, &RtcConfiguration::default(), opts, tx).unwrap(), rx)
        };
        let tone = || gst::ElementFactory::make("audiotestsrc").property("is-live", true).build().unwrap();
        let (a, mut arx) = mk("pair-a");
        let (b, mut brx) = mk("pair-b");
        a.add_track("trackA", tone(), vec!["streamA".into()]).unwrap();
        let offer = a.create_offer(&RtcOfferOptions::default()).await.unwrap();
        a.set_local_description(Some(offer.clone())).await.unwrap();
        b.set_remote_description(offer).await.unwrap();
        b.add_track("trackB", tone(), vec!["streamB".into()]).unwrap();
        before_answer(&b);
        b.set_local_description(None).await.unwrap();
        a.set_remote_description(b.state().local_description.unwrap()).await.unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(15);
        let connected = |p: &PeerConnection| p.stats_context().transport.dtls_state == Some("connected");
        while !(connected(&a) && connected(&b)) {
            assert!(Instant::now() < deadline, "DTLS did not connect");
            while let Ok(ev) = arx.try_recv() {
                if let PcEvent::IceCandidate(c) = ev {
                    b.add_ice_candidate(c).await.unwrap();
                }
            }
            while let Ok(ev) = brx.try_recv() {
                if let PcEvent::IceCandidate(c) = ev {
                    a.add_ice_candidate(c).await.unwrap();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (a, b)
    }

    /// Two real peer connections over loopback ICE: each side's `certificate` stats match the
    /// `a=fingerprint` of its local description (local) and of its remote description (remote).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webrtc_certificate_stats_match_the_sdp_fingerprints() {
        let (a, b) = connected_pair(|_| {}).await;
        for (p, name) in [(&a, "A"), (&b, "B")] {
            let st = p.state();
            let local_fp = sdp_fingerprint(&st.local_description.unwrap().sdp);
            let remote_fp = sdp_fingerprint(&st.remote_description.unwrap().sdp);
            // GStreamer's dtls elements share one certificate per process, so here both ends
            // have the same one (one stat, both ids naming it); against a browser they differ.
            let report = p.get_stats().await.unwrap();
            let tr = report.iter().find(|s| s["type"] == "transport").expect("transport stats");
            let cert =
                |id: &Value| report.iter().find(|s| s["type"] == "certificate" && s["id"] == *id).cloned();
            let local = cert(&tr["localCertificateId"]).unwrap_or_else(|| panic!("{name}: {report:#?}"));
            let remote = cert(&tr["remoteCertificateId"]).unwrap_or_else(|| panic!("{name}: {report:#?}"));
            assert_eq!(local["fingerprint"], local_fp.as_str(), "{name} local");
            assert_eq!(remote["fingerprint"], remote_fp.as_str(), "{name} remote");
            assert_eq!(local["fingerprintAlgorithm"], "sha-256");
            assert!(local["base64Certificate"].as_str().is_some_and(|b| b.starts_with("MII")), "{local}");
        }
        a.close();
        b.close();
    }

    /// `maxBitrate` (sendEncodings / setParameters) caps opusenc's bitrate, seen as
    /// `outbound-rtp.targetBitrate`: set before the send branch exists (B, before its answer)
    /// and mid-call (A); None restores the encoder's default; bad input is a typed error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webrtc_max_bitrate_caps_the_opus_encoder() {
        let sender_of = |p: &crate::webrtc::PeerConnection| p.state().transceivers[0].sender.id.clone();
        let (a, b) = connected_pair(|b| b.set_max_bitrate(&sender_of(b), Some(24_000)).unwrap()).await;
        let target = |p: &crate::webrtc::PeerConnection| {
            let r = p.stats_context();
            r.transceivers.iter().find_map(|t| t.target_bitrate)
        };
        assert_eq!(target(&b), Some(24_000), "set before the send branch");
        assert_eq!(target(&a), Some(64_000), "opusenc's default");
        a.set_max_bitrate(&sender_of(&a), Some(32_000)).unwrap();
        assert_eq!(target(&a), Some(32_000), "mid-call");
        a.set_max_bitrate(&sender_of(&a), Some(1_000_000)).unwrap();
        assert_eq!(target(&a), Some(64_000), "a cap above the default leaves the default");
        a.set_max_bitrate(&sender_of(&a), Some(1)).unwrap();
        assert_eq!(target(&a), Some(4_000), "opusenc's minimum");
        a.set_max_bitrate(&sender_of(&a), None).unwrap();
        assert_eq!(target(&a), Some(64_000));
        assert!(a.set_max_bitrate(&sender_of(&a), Some(0)).is_err());
        assert!(a.set_max_bitrate("nope", Some(10_000)).is_err());
        a.close();
        b.close();
    }
}
