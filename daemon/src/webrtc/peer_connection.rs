//! `RTCPeerConnection` (WebRTC 1.0 §4) backed by one GStreamer pipeline with a webrtcbin.
//!
//! Sending: a transceiver's raw-audio source element is linked through
//! `queue ! volume ! audioconvert ! audioresample ! capsfilter ! <encoder> ! <payloader>` into
//! its webrtcbin `sink_%u` pad once an answer has fixed the codec (RFC 8829 §5.10).
//! Receiving: each webrtcbin `src_%u` pad is linked through `<depayloader> ! <decoder> !
//! audioconvert ! audioresample` into the playout sink (or a `fakesink`, so RTCP and jitter
//! statistics keep working while nothing is played).
//!
//! Events ([`PcEvent`]) are sent in the order the spec fires them, deduplicated: all state is
//! cached under one lock and an event is sent only when the cached value changes.
//!
//! Directions (hold/resume): webrtcbin's transceivers stay `sendrecv` and see `sendrecv` SDP;
//! the real directions live in `Trans::direction`, the SDP the page sees and [`MediaGate`]
//! (see `for_webrtcbin`), because webrtcbin 1.22 cannot change a direction in renegotiation.

use super::codecs::{self, Codec};
use super::{dtmf, ice, sdp, stats};
use crate::error::{EngineError, EngineResult};
use gst::glib;
use gst::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use vdimedia_protocol::api::*;
use vdimedia_protocol::message::ErrorCode;

/// How long a webrtcbin promise may take before the operation fails (`timeout`).
const PROMISE_TIMEOUT: Duration = Duration::from_secs(15);

/// Remote ICE candidates one connection accepts through `addIceCandidate` (issue 7,
/// "Limits"). Browsers trickle fewer than 30 per m-line; every candidate becomes libnice
/// candidate pairs and connectivity checks, so a page must not add them without bound. Over it:
/// `limit_exceeded`, and the connection goes on with the candidates it has. An ICE restart
/// (libnice drops the far end's candidates) starts the count again.
pub const MAX_REMOTE_CANDIDATES: usize = 100;

/// Consent freshness (RFC 7675, WebRTC 1.0 §4.3.3 / §5.6): after this long with nothing received
/// from the far end on a connected transport, `iceConnectionState` and `connectionState` go
/// `disconnected`. Longer than the worst RTCP interval of a far end that only receives
/// (RFC 3550 §6.2, Chromium: 5 s × 0.5..1.5), so such a call does not flap.
pub const CONSENT_DISCONNECTED_AFTER: Duration = Duration::from_secs(8);

/// RFC 7675 §5.1: consent expires 30 s after the far end was last heard from; the connection
/// goes `failed` and stops sending.
pub const CONSENT_FAILED_AFTER: Duration = Duration::from_secs(30);

/// How often the consent watch looks at the receive counter.
const CONSENT_TICK: Duration = Duration::from_millis(500);

/// Environment variable turning on loopback ICE for every peer connection (`1`/`true`).
pub const LOOPBACK_ICE_ENV: &str = "VDIMEDIAD_LOOPBACK_ICE";

/// An event of one peer connection, in W3C firing order.
#[allow(clippy::large_enum_variant)] // rare (once per remote track); boxing would burden callers The session dispatcher turns each into
/// the `pc.*` event of docs/protocol.md.
#[derive(Debug, Clone, PartialEq)]
pub enum PcEvent {
    SignalingStateChange(RtcSignalingState),
    IceGatheringStateChange(RtcIceGatheringState),
    IceConnectionStateChange(RtcIceConnectionState),
    ConnectionStateChange(RtcPeerConnectionState),
    /// A local candidate to signal; `None` = gathering complete (the spec's null candidate).
    IceCandidate(Option<RtcIceCandidateInit>),
    NegotiationNeeded,
    /// A remote track (fired while `setRemoteDescription` runs, before it resolves).
    Track {
        transceiver: TransceiverInfo,
        track: TrackRef,
        streams: Vec<String>,
    },
}

/// Engine options of one peer connection (not part of `RTCConfiguration`).
#[derive(Debug, Clone, PartialEq)]
pub struct PcOptions {
    /// Gather ICE candidates on 127.0.0.1 only (libnice `add-local-ip-address`): for test rigs in
    /// loopback-only network namespaces, where libnice otherwise gathers nothing. Default: the
    /// environment variable `VDIMEDIAD_LOOPBACK_ICE` is `1` or `true`.
    pub loopback_ice: bool,
    /// Codecs offered and accepted, in preference order. Default [`Codec::DEFAULT_ORDER`].
    pub codecs: Vec<Codec>,
    /// Receive jitter buffer, ms (webrtcbin `latency`, which sets rtpjitterbuffer's). Its
    /// default of 200 ms adds that much to every call's mouth-to-ear delay; browsers adapt
    /// from a few tens of ms. Default [`DEFAULT_JITTER_BUFFER_MS`].
    pub jitter_buffer_ms: u32,
}

/// Default receive jitter buffer, ms: two to three 20 ms packets of headroom.
pub const DEFAULT_JITTER_BUFFER_MS: u32 = 50;

impl Default for PcOptions {
    fn default() -> Self {
        let loopback_ice = std::env::var(LOOPBACK_ICE_ENV)
            .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        Self {
            loopback_ice,
            codecs: Codec::DEFAULT_ORDER.to_vec(),
            jitter_buffer_ms: DEFAULT_JITTER_BUFFER_MS,
        }
    }
}

/// What `addTransceiver` is given: a kind (`"audio"`) or a track with its raw-audio source.
#[derive(Debug, Clone)]
pub enum TransceiverKindOrTrack {
    Kind(String),
    Track { id: String, source: gst::Element },
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
fn next_id(prefix: &str) -> String {
    format!("{prefix}{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The linked send path of a transceiver.
struct SendBranch {
    codec: Codec,
    pt: u8,
    elements: Vec<gst::Element>,
    volume: gst::Element,
    /// `media-source` audio level of what is encoded (after the track's mute).
    level: stats::AudioLevelMeter,
}

/// The linked receive path of a transceiver.
struct RecvBranch {
    /// Kept so the branch's elements live as long as the record (they are in the pipeline).
    _elements: Vec<gst::Element>,
    /// The pad the playout sink hangs off (audioresample's src).
    tail: gst::Pad,
    sink: gst::Element,
    /// RTP sources and decoded level (getSynchronizationSources, inbound-rtp audio members).
    monitor: stats::ReceiveMonitor,
}

/// One `RTCRtpTransceiver` with its sender and receiver.
struct Trans {
    id: String,
    trans: gst_webrtc::WebRTCRTPTransceiver,
    kind_audio: bool,
    sender_id: String,
    sender_track: Option<String>,
    /// The sender has had a track at some point (JSEP: such a transceiver is not reused).
    ever_sent: bool,
    source: Option<gst::Element>,
    enabled: bool,
    local_streams: Vec<String>,
    sink_pad: Option<gst::Pad>,
    send: Option<SendBranch>,
    receiver_id: String,
    receiver_track: String,
    remote_streams: Vec<String>,
    track_fired: bool,
    current_direction: Option<RtcRtpTransceiverDirection>,
    recv: Option<RecvBranch>,
    /// Requested playout sink; None = discard.
    playout: Option<gst::Element>,
    /// The remote offer's m-line this transceiver was associated with before webrtcbin 1.22
    /// assigns it (webrtcbin only does so while creating the answer).
    pending_mline: Option<u32>,
    /// Payload type and codec of the last applied answer (what the send branch encodes).
    negotiated: Option<(u8, Codec)>,
    /// `sender.dtmf` (RFC 4733 events replace audio packets at the payloader's output).
    dtmf: dtmf::DtmfSender,
    /// WebRTC 1.0 §5.4 [[Direction]] (what the page set). webrtcbin's own transceiver stays
    /// `sendrecv` for its whole life (webrtcbin 1.22 refuses direction changes in
    /// renegotiation); the engine writes this direction into the SDP the page and the far end
    /// see and enforces the negotiated one with [`MediaGate`].
    direction: RtcRtpTransceiverDirection,
    /// `a=mid` of this transceiver's m-line once a description associated it (JSEP §5.2.1,
    /// §5.10: at setLocalDescription(offer) / setRemoteDescription(offer)); webrtcbin 1.22 sets
    /// its own mid only when the answer is applied.
    mid: Option<String>,
    /// Drops RTP the negotiated direction does not allow (hold, RFC 3264 §6.1).
    gate: Arc<MediaGate>,
    /// `setCodecPreferences` (WebRTC 1.0 §5.4): the codecs to offer and accept, in order, and
    /// whether `telephone-event` is among them; None = the engine's order.
    codec_prefs: Option<(Vec<Codec>, bool)>,
    /// `sendEncodings[0].maxBitrate` (WebRTC 1.0 §5.2 RTCRtpEncodingParameters), bit/s: caps
    /// the Opus encoder's `bitrate`; None = the encoder's default.
    max_bitrate: Option<u32>,
}

/// Enforces a transceiver's negotiated (current) direction on the media webrtcbin sends and
/// receives, because webrtcbin itself always runs `sendrecv` (see `Trans::direction`). `true`
/// = blocked. Both open until an answer says otherwise (early media flows).
#[derive(Debug, Default)]
struct MediaGate {
    /// No encoded frame reaches the payloader, so no RTP is sent (RTCP keeps flowing, RFC 3264
    /// §5.1: a sendonly or inactive stream still sends RTCP).
    hold_send: AtomicBool,
    /// No RTP reaches the depayloader (nothing is played).
    hold_recv: AtomicBool,
}

impl MediaGate {
    fn set(&self, current: Option<RtcRtpTransceiverDirection>) {
        use RtcRtpTransceiverDirection as D;
        let Some(d) = current else { return };
        self.hold_send.store(!matches!(d, D::Sendrecv | D::Sendonly), Ordering::Relaxed);
        self.hold_recv.store(!matches!(d, D::Sendrecv | D::Recvonly), Ordering::Relaxed);
    }

    /// A buffer probe dropping RTP while `held` says so. The probe takes the data itself and
    /// returns `Handled`: with `Drop`, gstreamer-rs 0.25 hands GStreamer 1.22 a NULL it then
    /// unrefs, a GStreamer-CRITICAL in the journal for every packet held (one per 20 ms).
    fn attach(self: &Arc<Self>, pad: &gst::Pad, send: bool) {
        let gate = Arc::clone(self);
        pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
            let held = if send { &gate.hold_send } else { &gate.hold_recv };
            if !held.load(Ordering::Relaxed) {
                return gst::PadProbeReturn::Ok;
            }
            drop(info.take_buffer());
            drop(info.take_buffer_list());
            gst::PadProbeReturn::Handled
        });
    }
}

/// The session descriptions as the page and the far end see them (real directions, the
/// engine's a=setup); webrtcbin holds copies with every audio m-line `sendrecv`
/// ([`for_webrtcbin`]). JSEP §4.1.9–§4.1.12 pending/current rules.
#[derive(Debug, Default, Clone)]
struct Descriptions {
    current_local: Option<RtcSessionDescriptionInit>,
    current_remote: Option<RtcSessionDescriptionInit>,
    pending_local: Option<RtcSessionDescriptionInit>,
    pending_remote: Option<RtcSessionDescriptionInit>,
}

impl Descriptions {
    fn record(&mut self, local: bool, d: RtcSessionDescriptionInit) {
        match (d.sdp_type, local) {
            (RtcSdpType::Answer, true) => {
                self.current_local = Some(d);
                self.current_remote = self.pending_remote.take();
                self.pending_local = None;
            }
            (RtcSdpType::Answer, false) => {
                self.current_remote = Some(d);
                self.current_local = self.pending_local.take();
                self.pending_remote = None;
            }
            (_, true) => self.pending_local = Some(d),
            (_, false) => self.pending_remote = Some(d),
        }
    }

    /// The DTLS role this end has on the established transport (RFC 8842 §5.5: a subsequent
    /// answer keeps it): `"active"` (client) or `"passive"` (server); None before the first
    /// answer.
    fn dtls_role(&self) -> Option<&'static str> {
        let setup = |d: &RtcSessionDescriptionInit| {
            let msg = sdp::parse(&d.sdp).ok()?;
            msg.medias().find_map(sdp::media_setup)
        };
        let local = self.current_local.as_ref()?;
        if local.sdp_type == RtcSdpType::Answer {
            return match setup(local)?.as_str() {
                "active" => Some("active"),
                "passive" => Some("passive"),
                _ => None,
            };
        }
        match setup(self.current_remote.as_ref()?)?.as_str() {
            "active" => Some("passive"),
            "passive" => Some("active"),
            _ => None,
        }
    }
}

/// The copy of a description webrtcbin gets: every audio m-line that is not rejected says
/// `sendrecv`, so webrtcbin never sees a direction change (1.22: "transceiver direction
/// changes are not implemented") and keeps its send and receive paths; the engine applies the
/// real directions itself ([`MediaGate`]).
fn for_webrtcbin(msg: &gst_sdp::SDPMessage) -> gst_sdp::SDPMessage {
    let mut out = msg.clone();
    for idx in 0..out.medias_len() {
        if let Some(m) = out.media_mut(idx)
            && m.media() == Some("audio")
            && !sdp::is_rejected(m)
        {
            sdp::set_media_direction(m, RtcRtpTransceiverDirection::Sendrecv);
        }
    }
    out
}

struct State {
    closed: bool,
    signaling: RtcSignalingState,
    gathering: RtcIceGatheringState,
    ice: RtcIceConnectionState,
    conn: RtcPeerConnectionState,
    transceivers: Vec<Trans>,
    last_offer: Option<String>,
    last_answer: Option<String>,
    /// (mid, ice-ufrag) per m-line of the local description, for icecandidate events.
    local_mlines: Vec<(Option<String>, Option<String>)>,
    remote_mlines: u32,
    pair_logged: bool,
    /// WebRTC 1.0 [[NegotiationNeeded]] flag.
    negotiation_needed: bool,
    /// Remote candidates accepted by `addIceCandidate` (≤ [`MAX_REMOTE_CANDIDATES`]).
    remote_candidates: usize,
    /// webrtcbin's own ICE connection state, before the consent overlay.
    transport_ice: RtcIceConnectionState,
    /// An ICE restart is running ([`ice::states_during_restart`]).
    ice_restarting: ice::Restarting,
    /// Consent freshness as the watch sees it; overlays `ice` and `conn`.
    consent: Consent,
    /// The descriptions the page sees (webrtcbin's copies differ in directions).
    descs: Descriptions,
    /// Early media (JSEP §4.1.10.1): the remote pranswer webrtcbin was given as its *answer*
    /// (webrtcbin 1.22 starts ICE, DTLS and its RTP session only in `stable`, so a pranswer it
    /// holds as a pranswer carries no media). While set, webrtcbin is `stable` but the page
    /// sees `have-remote-pranswer`; the final answer (or another pranswer) must keep what
    /// webrtcbin took from this one ([`sdp::same_essentials`]) and only updates the engine's
    /// model (directions, codecs in use, the page's descriptions).
    early_pranswer: Option<String>,
    /// A local re-offer the page set that webrtcbin has not been given yet (see
    /// [`DeferredOffer`]); while set, webrtcbin is `stable` and the page sees
    /// `have-local-offer`.
    deferred_offer: Option<DeferredOffer>,
    /// A remote re-offer the page set that webrtcbin has not been given yet (see
    /// [`DeferredRemoteOffer`]); while set, the page sees `have-remote-offer`.
    deferred_remote_offer: Option<DeferredRemoteOffer>,
}

/// Rollback of a remote re-offer, as [`DeferredOffer`] for local ones: a far-end re-offer that
/// neither adds nor rejects an m-line goes to webrtcbin only when the page answers it
/// (createAnswer or setLocalDescription(answer)); a rollback before that restores the
/// transceivers' fired-track state kept here.
struct DeferredRemoteOffer {
    desc: RtcSessionDescriptionInit,
    /// Per transceiver id: (`track_fired`, `remote_streams`) before the offer.
    fired: Vec<(String, bool, Vec<String>)>,
    remote_mlines: u32,
}

/// Rollback support (JSEP §4.1.10.2, WebRTC 1.0 §4.4.1.5 "rollback"): webrtcbin 1.22 cannot roll
/// a description back, so a local *re*-offer (a call that has completed an offer/answer) goes
/// to webrtcbin only when its answer arrives; until then it lives in the engine's model (the
/// page's descriptions, signaling state, mids) and a rollback restores what is kept here. A
/// re-offer needs nothing from webrtcbin before its answer (no candidates are gathered for
/// it), except one that restarts ICE: that one goes to webrtcbin at once (ice.rs).
struct DeferredOffer {
    desc: RtcSessionDescriptionInit,
    /// Per transceiver id: (`pending_mline`, `mid`) before the offer associated them.
    associations: Vec<(String, Option<u32>, Option<String>)>,
    /// `State::local_mlines` before the offer.
    local_mlines: Vec<(Option<String>, Option<String>)>,
}

/// Consent freshness of a connected transport (RFC 7675). webrtcbin 1.22 creates its libnice
/// agent without `NICE_AGENT_OPTION_CONSENT_FRESHNESS` (options 9: trickle + regular
/// nomination) and sends keepalives as STUN indications, so a vanished far end leaves it
/// `connected` forever. The daemon watches what the far end sends instead (SRTP, SRTCP, DTLS
/// through the ICE transport: a live far end sends RTCP at least every few seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consent {
    /// Heard from recently, or not watched (not connected, or no media negotiated).
    Fresh,
    /// Nothing for [`CONSENT_DISCONNECTED_AFTER`].
    Disconnected,
    /// Nothing for [`CONSENT_FAILED_AFTER`]: terminal until an ICE restart.
    Failed,
}

/// The consent watch's memory: the receive counter and when it last moved.
struct ConsentWatch {
    packets: u64,
    heard_at: std::time::Instant,
}

/// The states the page sees: webrtcbin's, unless consent says otherwise (WebRTC 1.0 §4.3.3:
/// `connectionState` is `failed`/`disconnected` when an ICE transport is).
fn with_consent(
    consent: Consent,
    ice: RtcIceConnectionState,
    conn: RtcPeerConnectionState,
) -> (RtcIceConnectionState, RtcPeerConnectionState) {
    let connected = matches!(ice, RtcIceConnectionState::Connected | RtcIceConnectionState::Completed);
    match consent {
        Consent::Failed => (RtcIceConnectionState::Failed, RtcPeerConnectionState::Failed),
        Consent::Disconnected if connected => {
            (RtcIceConnectionState::Disconnected, RtcPeerConnectionState::Disconnected)
        }
        _ => (ice, conn),
    }
}

struct Inner {
    id: String,
    /// `pc{pc}`, a child of the span current at construction (the page's session): every log
    /// line of this connection, from requests or webrtcbin's threads, runs inside it.
    span: tracing::Span,
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    events: UnboundedSender<PcEvent>,
    options: PcOptions,
    st: Mutex<State>,
    /// The W3C "operations chain": one SDP operation at a time.
    chain: tokio::sync::Mutex<()>,
    /// RFC 4733 events the remote peer sent (any transceiver).
    dtmf_received: dtmf::DtmfReceiver,
    /// Datagrams through webrtcbin's ICE transports (`transport` / `candidate-pair` stats).
    counters: stats::TransportCounters,
    /// Name of this connection's `vdiaecprobe` (unique in the process): the echo reference that
    /// the `vdiaec` of a capture track sent here cancels (media::aec).
    aec_ref: String,
}

/// A handle to one `RTCPeerConnection`. Cheap to clone (`Arc` inside), `Send + Sync`. The
/// pipeline is stopped on [`PeerConnection::close`] or when the last handle is dropped.
#[derive(Clone)]
pub struct PeerConnection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection").field("id", &self.inner.id).finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- W3C ↔ GStreamer enum mapping ----

fn signaling_from_gst(s: gst_webrtc::WebRTCSignalingState) -> RtcSignalingState {
    use gst_webrtc::WebRTCSignalingState as G;
    match s {
        G::HaveLocalOffer => RtcSignalingState::HaveLocalOffer,
        G::HaveRemoteOffer => RtcSignalingState::HaveRemoteOffer,
        G::HaveLocalPranswer => RtcSignalingState::HaveLocalPranswer,
        G::HaveRemotePranswer => RtcSignalingState::HaveRemotePranswer,
        G::Closed => RtcSignalingState::Closed,
        _ => RtcSignalingState::Stable,
    }
}

fn gathering_from_gst(s: gst_webrtc::WebRTCICEGatheringState) -> RtcIceGatheringState {
    use gst_webrtc::WebRTCICEGatheringState as G;
    match s {
        G::Gathering => RtcIceGatheringState::Gathering,
        G::Complete => RtcIceGatheringState::Complete,
        _ => RtcIceGatheringState::New,
    }
}

fn ice_from_gst(s: gst_webrtc::WebRTCICEConnectionState) -> RtcIceConnectionState {
    use gst_webrtc::WebRTCICEConnectionState as G;
    match s {
        G::Checking => RtcIceConnectionState::Checking,
        G::Connected => RtcIceConnectionState::Connected,
        G::Completed => RtcIceConnectionState::Completed,
        G::Failed => RtcIceConnectionState::Failed,
        G::Disconnected => RtcIceConnectionState::Disconnected,
        G::Closed => RtcIceConnectionState::Closed,
        _ => RtcIceConnectionState::New,
    }
}

fn conn_from_gst(s: gst_webrtc::WebRTCPeerConnectionState) -> RtcPeerConnectionState {
    use gst_webrtc::WebRTCPeerConnectionState as G;
    match s {
        G::Connecting => RtcPeerConnectionState::Connecting,
        G::Connected => RtcPeerConnectionState::Connected,
        G::Disconnected => RtcPeerConnectionState::Disconnected,
        G::Failed => RtcPeerConnectionState::Failed,
        G::Closed => RtcPeerConnectionState::Closed,
        _ => RtcPeerConnectionState::New,
    }
}

fn sends(d: Option<RtcRtpTransceiverDirection>) -> bool {
    matches!(d, Some(RtcRtpTransceiverDirection::Sendrecv | RtcRtpTransceiverDirection::Sendonly))
}

/// The text of a description webrtcbin created, with `telephone-event` re-added where webrtcbin
/// 1.22 dropped it ([`dtmf::ensure_telephone_event`]); `remote_offer` when it is an answer.
fn with_telephone_event(
    desc: &gst_webrtc::WebRTCSessionDescription,
    remote_offer: Option<&gst_sdp::SDPMessageRef>,
) -> EngineResult<String> {
    let mut msg = desc.sdp().to_owned();
    if dtmf::ensure_telephone_event(&mut msg, remote_offer) {
        tracing::debug!("telephone-event re-added to the created description");
    }
    msg.as_text().map_err(|e| op_err(e.to_string()))
}

fn op_err(msg: impl Into<String>) -> EngineError {
    EngineError::operation(msg)
}

impl Trans {
    fn new(trans: gst_webrtc::WebRTCRTPTransceiver) -> Self {
        let kind_audio = trans.kind() != gst_webrtc::WebRTCKind::Video;
        Trans {
            id: next_id("tr"),
            trans,
            kind_audio,
            sender_id: next_id("snd"),
            sender_track: None,
            ever_sent: false,
            source: None,
            enabled: true,
            local_streams: Vec::new(),
            sink_pad: None,
            send: None,
            receiver_id: next_id("rcv"),
            receiver_track: next_id("rtrack"),
            remote_streams: Vec::new(),
            track_fired: false,
            current_direction: None,
            recv: None,
            playout: None,
            pending_mline: None,
            negotiated: None,
            dtmf: dtmf::DtmfSender::default(),
            direction: RtcRtpTransceiverDirection::Sendrecv,
            mid: None,
            gate: Arc::new(MediaGate::default()),
            codec_prefs: None,
            max_bitrate: None,
        }
    }

    fn mid(&self) -> Option<String> {
        self.mid.clone().or_else(|| self.trans.mid().map(|m| m.to_string()))
    }

    fn track_ref(&self) -> TrackRef {
        TrackRef { id: self.receiver_track.clone(), kind: "audio".into(), label: "remote audio".into() }
    }

    fn info(&self) -> TransceiverInfo {
        TransceiverInfo {
            id: self.id.clone(),
            // JSEP §5.10: a rejected m-line disassociates its (stopped) transceiver.
            mid: if self.current_direction == Some(RtcRtpTransceiverDirection::Stopped) {
                None
            } else {
                self.mid()
            },
            direction: self.direction,
            current_direction: self.current_direction,
            sender: SenderInfo { id: self.sender_id.clone(), track: self.sender_track.clone() },
            receiver: ReceiverInfo { id: self.receiver_id.clone(), track: self.track_ref() },
        }
    }

    fn mline(&self) -> Option<u32> {
        let m = self.trans.mlineindex();
        if m != u32::MAX { Some(m) } else { self.pending_mline }
    }

    /// WebRTC 1.0 §5.4 [[Stopping]]: `stop()` was called or a description rejected its m-line.
    fn is_stopping(&self) -> bool {
        self.direction == RtcRtpTransceiverDirection::Stopped
    }
}

impl PeerConnection {
    /// `new RTCPeerConnection(configuration)`: builds and starts the pipeline (webrtcbin in
    /// PLAYING, no media yet). Options come from [`PcOptions::default`] (environment).
    pub fn new(id: &str, config: &RtcConfiguration, events: UnboundedSender<PcEvent>) -> EngineResult<Self> {
        Self::with_options(id, config, PcOptions::default(), events)
    }

    /// As [`PeerConnection::new`] with explicit engine options.
    pub fn with_options(
        id: &str,
        config: &RtcConfiguration,
        options: PcOptions,
        events: UnboundedSender<PcEvent>,
    ) -> EngineResult<Self> {
        let span = tracing::info_span!("pc", pc = id);
        let _entered = span.clone().entered();
        super::init_gstreamer().map_err(|e| op_err(format!("GStreamer init failed: {e}")))?;
        if options.codecs.is_empty() {
            return Err(EngineError::invalid_params("no codecs enabled"));
        }
        let ice_settings = ice::settings(config)?;
        let pipeline = gst::Pipeline::with_name(&format!("pc-{id}"));
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .name("webrtcbin")
            .build()
            .map_err(|e| op_err(format!("webrtcbin is not available: {e}")))?;
        webrtc.set_property("bundle-policy", ice_settings.bundle_policy);
        webrtc.set_property("latency", options.jitter_buffer_ms);
        if let Err(e) = ice::disable_upnp(&webrtc) {
            tracing::warn!("could not switch off UPnP in the ICE agent: {e}");
        }
        if ice_settings.relay_only {
            webrtc.set_property("ice-transport-policy", gst_webrtc::WebRTCICETransportPolicy::Relay);
        }
        if let Some(stun) = &ice_settings.stun_server {
            webrtc.set_property("stun-server", stun);
        }
        for turn in &ice_settings.turn_servers {
            let ok = webrtc.emit_by_name::<bool>("add-turn-server", &[turn]);
            if !ok {
                tracing::warn!("webrtcbin refused a TURN server URL");
                return Err(EngineError::invalid_params("TURN server URL refused by webrtcbin"));
            }
        }
        pipeline.add(&webrtc).map_err(|e| op_err(e.to_string()))?;
        if options.loopback_ice {
            let agent = webrtc.property::<gst_webrtc::WebRTCICE>("ice-agent");
            let ok = agent.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
            tracing::debug!(ok, "loopback ICE: gathering on 127.0.0.1 only");
        }

        let inner = Arc::new(Inner {
            aec_ref: next_id("vdimedia-aecref-"),
            id: id.to_string(),
            span: span.clone(),
            pipeline: pipeline.clone(),
            webrtc: webrtc.clone(),
            events,
            options,
            st: Mutex::new(State {
                closed: false,
                signaling: RtcSignalingState::Stable,
                gathering: RtcIceGatheringState::New,
                ice: RtcIceConnectionState::New,
                conn: RtcPeerConnectionState::New,
                transceivers: Vec::new(),
                last_offer: None,
                last_answer: None,
                local_mlines: Vec::new(),
                remote_mlines: 0,
                pair_logged: false,
                negotiation_needed: false,
                remote_candidates: 0,
                transport_ice: RtcIceConnectionState::New,
                ice_restarting: ice::Restarting::No,
                consent: Consent::Fresh,
                descs: Descriptions::default(),
                early_pranswer: None,
                deferred_offer: None,
                deferred_remote_offer: None,
            }),
            chain: tokio::sync::Mutex::new(()),
            dtmf_received: dtmf::DtmfReceiver::default(),
            counters: stats::TransportCounters::watch(&webrtc),
        });
        Self::connect_signals(&inner);

        let bus_span = span.clone();
        if let Some(bus) = pipeline.bus() {
            // No main loop here: log from the posting thread and drop, so nothing piles up.
            bus.set_sync_handler(move |_, msg| {
                let _g = bus_span.enter();
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        tracing::error!(
                            src = ?msg.src().map(|s| s.path_string()), error = %e.error(),
                            debug = %crate::logging::redact(&format!("{:?}", e.debug())), "pipeline error");
                        // A PipeWire stream failing may be PipeWire restarting: the device
                        // watcher checks, and the session reopens the devices if so.
                        let from_pipewire = msg.src().and_then(|s| s.downcast_ref::<gst::Element>()?.factory())
                            .is_some_and(|f| matches!(f.name().as_str(), "pipewiresrc" | "pipewiresink"));
                        if from_pipewire {
                            crate::media::monitor::pipewire_element_failed();
                        }
                    }
                    gst::MessageView::Warning(w) => tracing::warn!(
                        src = ?msg.src().map(|s| s.path_string()), warning = %w.error(),
                        "pipeline warning"),
                    // A PLAYING pipeline that falls back to PAUSED (a sink waiting for preroll)
                    // stops its live capture: the far end hears nothing until it recovers.
                    gst::MessageView::StateChanged(sc)
                        if msg.src().is_some_and(|s| s.type_().is_a(gst::Pipeline::static_type())) =>
                    {
                        let closing = matches!(sc.pending(), gst::State::Null | gst::State::Ready);
                        if sc.old() == gst::State::Playing && sc.current() == gst::State::Paused && !closing {
                            tracing::warn!(pending = ?sc.pending(), "call pipeline lost its PLAYING state");
                        } else {
                            tracing::debug!(old = ?sc.old(), current = ?sc.current(), pending = ?sc.pending(), "call pipeline state");
                        }
                    }
                    _ => {}
                }
                gst::BusSyncReply::Drop
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| op_err(format!("pipeline did not start: {e}")))?;
        tracing::info!(?config.bundle_policy, relay = ice_settings.relay_only, "peer connection created");
        Self::start_consent_watch(&inner);
        Ok(PeerConnection { inner })
    }

    /// Runs [`Inner::check_consent`] every [`CONSENT_TICK`] until the connection is closed,
    /// dropped or its consent has expired: a tokio task when a runtime is at hand (the daemon),
    /// else a thread of its own.
    fn start_consent_watch(inner: &Arc<Inner>) {
        let weak = Arc::downgrade(inner);
        let mut watch = ConsentWatch { packets: 0, heard_at: std::time::Instant::now() };
        let mut tick =
            move || weak.upgrade().is_some_and(|i| i.check_consent(&mut watch, std::time::Instant::now()));
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let mut every = tokio::time::interval(CONSENT_TICK);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        if !tick() {
                            break;
                        }
                    }
                });
            }
            Err(_) => {
                let spawned = std::thread::Builder::new().name("pc-consent".into()).spawn(move || {
                    loop {
                        std::thread::sleep(CONSENT_TICK);
                        if !tick() {
                            break;
                        }
                    }
                });
                if let Err(e) = spawned {
                    let _g = inner.span.enter();
                    tracing::warn!(error = %e, "no consent watch: a vanished far end will not be noticed");
                }
            }
        }
    }

    fn connect_signals(inner: &Arc<Inner>) {
        let w = &inner.webrtc;
        let weak = Arc::downgrade(inner);
        let get = move |weak: &Weak<Inner>| weak.upgrade();

        let wk = weak.clone();
        w.connect_notify(Some("signaling-state"), move |_, _| {
            if let Some(i) = get(&wk) {
                i.sync_states();
            }
        });
        let wk = weak.clone();
        w.connect_notify(Some("ice-connection-state"), move |_, _| {
            if let Some(i) = get(&wk) {
                i.sync_states();
            }
        });
        let wk = weak.clone();
        w.connect_notify(Some("connection-state"), move |_, _| {
            if let Some(i) = get(&wk) {
                i.sync_states();
            }
        });
        let wk = weak.clone();
        w.connect_notify(Some("ice-gathering-state"), move |el, _| {
            if let Some(i) = get(&wk) {
                let g = gathering_from_gst(el.property("ice-gathering-state"));
                let mut st = lock(&i.st);
                i.set_gathering(&mut st, g);
            }
        });
        let wk = weak.clone();
        w.connect("on-ice-candidate", false, move |values| {
            let i = get(&wk)?;
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok())?;
            let cand = values.get(2).and_then(|v| v.get::<String>().ok())?;
            i.on_local_candidate(mline, cand);
            None
        });
        let wk = weak.clone();
        // webrtcbin 1.22 fires this when it starts (nothing to negotiate yet) and not again
        // after addTrack while its flag is set; the spec's flag is kept here instead
        // (`update_negotiation_needed`).
        w.connect("on-negotiation-needed", false, move |_| {
            let i = get(&wk)?;
            tracing::trace!(pc = %i.id, "webrtcbin on-negotiation-needed (ignored)");
            None
        });
        let wk = weak.clone();
        w.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            if let Some(i) = get(&wk)
                && let Err(e) = i.span.in_scope(|| i.on_src_pad(pad))
            {
                let _g = i.span.enter();
                tracing::error!(pad = %pad.name(), error = %e, "cannot link received audio");
            }
        });
    }

    fn closed_err(&self) -> EngineError {
        EngineError::invalid_state(format!("peer connection {} is closed", self.inner.id))
    }

    fn check_open(&self) -> EngineResult<()> {
        if lock(&self.inner.st).closed { Err(self.closed_err()) } else { Ok(()) }
    }

    /// `createOffer(options)` (WebRTC 1.0 §4.4.3.2 createOffer). Only in `stable` or
    /// `have-local-offer`, else `invalid_state`. `offerToReceiveAudio` adds a recvonly audio
    /// transceiver when there is none, as Chromium does. `iceRestart` gives the offer new ICE
    /// credentials (JSEP §5.2.1); libnice restarts when webrtcbin takes it ([`ice::before_description`]).
    pub async fn create_offer(&self, options: &RtcOfferOptions) -> EngineResult<RtcSessionDescriptionInit> {
        let _chain = self.inner.chain.lock().await;
        self.create_offer_locked(options).await
    }

    async fn create_offer_locked(
        &self,
        options: &RtcOfferOptions,
    ) -> EngineResult<RtcSessionDescriptionInit> {
        let i = &self.inner;
        {
            let st = lock(&i.st);
            if st.closed {
                return Err(self.closed_err());
            }
            if !matches!(st.signaling, RtcSignalingState::Stable | RtcSignalingState::HaveLocalOffer) {
                return Err(EngineError::invalid_state(format!(
                    "createOffer in signaling state {:?}",
                    st.signaling
                )));
            }
        }
        let wants_audio = match &options.offer_to_receive_audio {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(0.0) > 0.0,
            _ => false,
        };
        if wants_audio && !lock(&i.st).transceivers.iter().any(|t| t.kind_audio) {
            self.add_transceiver(
                TransceiverKindOrTrack::Kind("audio".into()),
                RtcRtpTransceiverDirection::Recvonly,
                Vec::new(),
            )?;
        }
        let reply = i
            .promise("create-offer", |p| {
                i.webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, p]);
            })
            .await?;
        let desc = reply
            .as_ref()
            .and_then(|s| s.get::<gst_webrtc::WebRTCSessionDescription>("offer").ok())
            .ok_or_else(|| op_err("webrtcbin returned no offer"))?;
        let sdp = with_telephone_event(&desc, None)?;
        let sdp = i.with_offer_directions(&sdp)?;
        // webrtcbin 1.22 copies its last credentials into every re-offer (ice.rs, "ICE restart").
        let sdp = if options.ice_restart {
            ice::with_new_credentials(&sdp, "iceRestart")?
        } else {
            ice::with_current_credentials(&i.webrtc, &sdp)
        };
        lock(&i.st).last_offer = Some(sdp.clone());
        tracing::debug!("offer created");
        Ok(RtcSessionDescriptionInit { sdp_type: RtcSdpType::Offer, sdp })
    }

    /// `createAnswer()` (WebRTC 1.0 §4.4.3.2). Only in `have-remote-offer` or
    /// `have-local-pranswer`, else `invalid_state`.
    pub async fn create_answer(&self) -> EngineResult<RtcSessionDescriptionInit> {
        let _chain = self.inner.chain.lock().await;
        self.create_answer_locked().await
    }

    async fn create_answer_locked(&self) -> EngineResult<RtcSessionDescriptionInit> {
        let i = &self.inner;
        {
            let st = lock(&i.st);
            if st.closed {
                return Err(self.closed_err());
            }
            if !matches!(
                st.signaling,
                RtcSignalingState::HaveRemoteOffer | RtcSignalingState::HaveLocalPranswer
            ) {
                return Err(EngineError::invalid_state(format!(
                    "createAnswer in signaling state {:?}",
                    st.signaling
                )));
            }
        }
        self.commit_deferred_remote_offer().await?;
        let reply = i
            .promise("create-answer", |p| {
                i.webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, p]);
            })
            .await?;
        let desc = reply
            .as_ref()
            .and_then(|s| s.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok())
            .ok_or_else(|| op_err("webrtcbin returned no answer"))?;
        let remote = i.webrtc.property::<Option<gst_webrtc::WebRTCSessionDescription>>("remote-description");
        let sdp = with_telephone_event(&desc, remote.as_ref().map(|r| r.sdp()))?;
        let sdp = i.with_answer_directions(&sdp)?;
        let sdp = if ice::remote_offer_restarts(&i.webrtc) {
            ice::with_new_credentials(&sdp, "the remote offer restarts ICE")?
        } else {
            ice::with_current_credentials(&i.webrtc, &sdp)
        };
        lock(&i.st).last_answer = Some(sdp.clone());
        tracing::debug!("answer created");
        Ok(RtcSessionDescriptionInit { sdp_type: RtcSdpType::Answer, sdp })
    }

    /// `setLocalDescription(description)` (WebRTC 1.0 §4.4.1.5). `None` (or an empty `sdp`) is
    /// the implicit form: an offer in `stable`/`have-local-offer`/`have-remote-pranswer`, else an
    /// answer. A type not allowed in the current state → `invalid_state`; SDP webrtcbin rejects →
    /// `invalid_sdp` with its reason. `rollback` of a local re-offer returns to `stable` (see
    /// `rollback_locked`); of a first offer → `operation_error`.
    pub async fn set_local_description(
        &self,
        desc: Option<RtcSessionDescriptionInit>,
    ) -> EngineResult<PcState> {
        let _chain = self.inner.chain.lock().await;
        let i = &self.inner;
        let signaling = {
            let st = lock(&i.st);
            if st.closed {
                return Err(self.closed_err());
            }
            st.signaling
        };
        let implicit_offer = matches!(
            signaling,
            RtcSignalingState::Stable
                | RtcSignalingState::HaveLocalOffer
                | RtcSignalingState::HaveRemotePranswer
        );
        let desc = match desc {
            None => {
                if implicit_offer {
                    self.create_offer_locked(&RtcOfferOptions::default()).await?
                } else {
                    self.create_answer_locked().await?
                }
            }
            Some(d) if d.sdp.trim().is_empty() && d.sdp_type != RtcSdpType::Rollback => {
                let last = {
                    let st = lock(&i.st);
                    match d.sdp_type {
                        RtcSdpType::Offer => st.last_offer.clone(),
                        _ => st.last_answer.clone(),
                    }
                };
                match (last, d.sdp_type) {
                    (Some(sdp), t) => RtcSessionDescriptionInit { sdp_type: t, sdp },
                    (None, RtcSdpType::Offer) => {
                        self.create_offer_locked(&RtcOfferOptions::default()).await?
                    }
                    (None, _) => self.create_answer_locked().await?,
                }
            }
            Some(d) => d,
        };
        if desc.sdp_type == RtcSdpType::Rollback {
            return self.rollback_locked(true, false);
        }
        check_description_state(&i.id, true, desc.sdp_type, signaling)?;
        self.apply_description(true, desc).await
    }

    /// `setRemoteDescription(description)` (WebRTC 1.0 §4.4.1.6). Fires `track` for every
    /// transceiver that starts receiving, before it resolves. Wrong state → `invalid_state`;
    /// malformed SDP or SDP webrtcbin rejects → `invalid_sdp`. A `pranswer` after our offer
    /// starts media at once (early media, `State::early_pranswer`); an offer in
    /// `have-local-offer` rolls back a local re-offer first (implicit rollback); `rollback` of
    /// a remote re-offer returns to `stable` (see `rollback_locked`), of a first remote offer →
    /// `operation_error`.
    pub async fn set_remote_description(&self, desc: RtcSessionDescriptionInit) -> EngineResult<PcState> {
        let _chain = self.inner.chain.lock().await;
        let i = &self.inner;
        let signaling = {
            let st = lock(&i.st);
            if st.closed {
                return Err(self.closed_err());
            }
            st.signaling
        };
        if desc.sdp_type == RtcSdpType::Rollback {
            return self.rollback_locked(false, false);
        }
        if desc.sdp_type == RtcSdpType::Offer
            && signaling == RtcSignalingState::HaveLocalOffer
            && lock(&i.st).deferred_offer.is_some()
        {
            // WebRTC 1.0 §4.4.1.6: a remote offer in have-local-offer rolls the local offer
            // back first (the "perfect negotiation" glare case).
            tracing::info!("remote offer in have-local-offer: implicit rollback");
            self.rollback_locked(true, true)?;
            return self.apply_description(false, desc).await;
        }
        check_description_state(&i.id, false, desc.sdp_type, signaling)?;
        self.apply_description(false, desc).await
    }

    async fn apply_description(&self, local: bool, desc: RtcSessionDescriptionInit) -> EngineResult<PcState> {
        let i = &self.inner;
        let msg = sdp::parse(&desc.sdp).inspect_err(|e| {
            tracing::warn!(local, reason = %e.message, "bad SDP");
        })?;
        let remote_pranswer = !local && desc.sdp_type == RtcSdpType::Pranswer;
        let gst_type = match desc.sdp_type {
            RtcSdpType::Offer => gst_webrtc::WebRTCSDPType::Offer,
            // Early media: webrtcbin 1.22 starts no transport for a pranswer (see
            // `State::early_pranswer`); its copy is an answer, the page's stays a pranswer.
            RtcSdpType::Pranswer if local => gst_webrtc::WebRTCSDPType::Pranswer,
            _ => gst_webrtc::WebRTCSDPType::Answer,
        };
        let early = if local { None } else { lock(&i.st).early_pranswer.clone() };
        if let Some(early) = early {
            // webrtcbin already has this offer's answer (the earlier pranswer): this answer or
            // pranswer only updates the engine's model, if webrtcbin would take the same.
            return self.apply_after_pranswer(desc, msg, &early);
        }
        if !local && matches!(desc.sdp_type, RtcSdpType::Answer | RtcSdpType::Pranswer) {
            self.commit_deferred_offer().await?;
        }
        if local && matches!(desc.sdp_type, RtcSdpType::Answer | RtcSdpType::Pranswer) {
            self.commit_deferred_remote_offer().await?;
        }
        let defer_remote_offer = !local && desc.sdp_type == RtcSdpType::Offer && {
            let st = lock(&i.st);
            st.descs.current_local.is_some()
                && st.descs.current_remote.is_some()
                && st.early_pranswer.is_none()
                && st.deferred_offer.is_none()
                && signaling_from_gst(i.webrtc.property("signaling-state")) == RtcSignalingState::Stable
                && msg.medias_len() == st.remote_mlines
                && msg.medias().enumerate().all(|(idx, m)| {
                    !sdp::is_rejected(m)
                        && st.transceivers.iter().any(|t| t.mline() == Some(idx as u32) && !t.is_stopping())
                })
                // An ICE restart goes to webrtcbin at once (ice.rs).
                && !ice::changes_credentials(&i.webrtc, false, &msg)
        };
        let defer_offer = local && desc.sdp_type == RtcSdpType::Offer && {
            let st = lock(&i.st);
            st.descs.current_local.is_some()
                && st.descs.current_remote.is_some()
                && st.early_pranswer.is_none()
                && signaling_from_gst(i.webrtc.property("signaling-state")) == RtcSignalingState::Stable
                && !ice::changes_credentials(&i.webrtc, true, &msg)
        };
        if !local {
            i.stop_rejected(&msg);
        }
        let gdesc = gst_webrtc::WebRTCSessionDescription::new(
            gst_type,
            for_webrtcbin(&i.webrtcbin_view(local, &desc, &msg)?),
        );
        let previous_mlines = if local {
            // Candidates start to flow while set-local-description runs; they need the mids.
            let mlines = msg
                .medias()
                .enumerate()
                .map(|(n, m)| (sdp::media_mid(m), sdp::ufrag(&msg, n as u32)))
                .collect();
            Some(std::mem::replace(&mut lock(&i.st).local_mlines, mlines))
        } else {
            None
        };
        if remote_pranswer {
            // Before webrtcbin's signaling-state notify: the page never sees its `stable`.
            lock(&i.st).early_pranswer = Some(desc.sdp.clone());
        }
        let signal = if local { "set-local-description" } else { "set-remote-description" };
        let result = if defer_remote_offer {
            let mut st = lock(&i.st);
            let fired = st
                .transceivers
                .iter()
                .map(|t| (t.id.clone(), t.track_fired, t.remote_streams.clone()))
                .collect();
            let remote_mlines = st.remote_mlines;
            st.deferred_remote_offer = Some(DeferredRemoteOffer { desc: desc.clone(), fired, remote_mlines });
            tracing::debug!("remote re-offer kept until the page answers it (rollback stays possible)");
            Ok(None)
        } else if defer_offer {
            let mut st = lock(&i.st);
            let associations =
                st.transceivers.iter().map(|t| (t.id.clone(), t.pending_mline, t.mid.clone())).collect();
            st.deferred_offer = Some(DeferredOffer {
                desc: desc.clone(),
                associations,
                local_mlines: previous_mlines.clone().unwrap_or_default(),
            });
            tracing::debug!("local re-offer kept until its answer (rollback stays possible)");
            Ok(None)
        } else {
            let offer = desc.sdp_type == RtcSdpType::Offer;
            let restart = offer && ice::changes_credentials(&i.webrtc, local, gdesc.sdp());
            if restart {
                // Before the restart: libnice reports its component's new state at once.
                let mut st = lock(&i.st);
                st.ice_restarting = match st.ice {
                    RtcIceConnectionState::Connected | RtcIceConnectionState::Completed => {
                        ice::Restarting::FromConnected
                    }
                    _ => ice::Restarting::FromElsewhere,
                };
            }
            let step = ice::before_description(&i.webrtc, local, offer, gdesc.sdp());
            if restart && !step.restarted {
                lock(&i.st).ice_restarting = ice::Restarting::No;
            }
            if step.restarted {
                let mut st = lock(&i.st);
                // libnice dropped the far end's candidates: it signals them again.
                st.remote_candidates = 0;
                if st.consent == Consent::Failed {
                    // The restart's checks are new consent (RFC 7675 §5.1, RFC 8445 §9): watch
                    // again; sending resumes once the far end is heard (`check_consent`).
                    st.consent = Consent::Fresh;
                    drop(st);
                    Self::start_consent_watch(&self.inner);
                }
            }
            let result = i
                .promise(signal, |p| {
                    i.webrtc.emit_by_name::<()>(signal, &[&gdesc, p]);
                })
                .await;
            if result.is_ok() && !step.candidates.is_empty() {
                i.signal_candidates_again(step.candidates);
            }
            result
        };
        if let Err(e) = result {
            if let Some(prev) = previous_mlines {
                lock(&i.st).local_mlines = prev;
            }
            if remote_pranswer {
                lock(&i.st).early_pranswer = None;
            }
            let e = if e.code == ErrorCode::OperationError {
                EngineError::new(ErrorCode::InvalidSdp, e.message)
            } else {
                e
            };
            tracing::warn!(local, reason = %e.message, "description rejected by webrtcbin");
            return Err(e);
        }
        tracing::info!(local, sdp_type = ?desc.sdp_type, "description applied");
        {
            let mut st = lock(&i.st);
            st.descs.record(local, desc.clone());
        }
        i.sync_states();

        let transceivers = i.webrtc_transceivers();
        tracing::debug!(n = transceivers.len(), kinds = ?transceivers.iter().map(|t| t.kind()).collect::<Vec<_>>(), "webrtcbin transceivers");
        {
            let mut st = lock(&i.st);
            // Adopt transceivers webrtcbin created for the remote offer's m-lines.
            for t in transceivers {
                if !st.transceivers.iter().any(|r| r.trans == t) {
                    st.transceivers.push(Trans::new(t));
                }
            }
            if !local {
                st.remote_mlines = msg.medias_len();
            }
        }
        if local && desc.sdp_type == RtcSdpType::Offer {
            i.associate_local_offer(&msg);
        }
        if !local && desc.sdp_type == RtcSdpType::Offer {
            i.associate_remote_offer(&msg);
            if !defer_remote_offer {
                // Deferred: at commit (it changes webrtcbin's codec-preferences).
                i.prepare_answer(&msg);
            }
        }
        i.note_mids(&msg);
        if !local {
            i.fire_tracks(&msg);
        }
        if desc.sdp_type == RtcSdpType::Answer || remote_pranswer {
            // A pranswer sets currentDirection too (WebRTC 1.0 §4.4.1.6, "answer" or
            // "pranswer"), and media flows as it says (early media).
            i.on_negotiated(&msg, local);
            i.update_negotiation_needed();
        }
        Ok(self.state())
    }

    /// Gives webrtcbin the local re-offer kept back for rollback (`State::deferred_offer`), just
    /// before the answer to it. Failure → `invalid_sdp`, the offer stays pending.
    async fn commit_deferred_offer(&self) -> EngineResult<()> {
        self.commit_deferred(true).await
    }

    /// Gives webrtcbin the remote re-offer kept back for rollback
    /// (`State::deferred_remote_offer`), before the answer to it is created or applied.
    async fn commit_deferred_remote_offer(&self) -> EngineResult<()> {
        self.commit_deferred(false).await
    }

    /// The two above: the kept offer (local or remote) into webrtcbin's copy of the session.
    async fn commit_deferred(&self, local: bool) -> EngineResult<()> {
        let i = &self.inner;
        let kept = {
            let st = lock(&i.st);
            if local {
                st.deferred_offer.as_ref().map(|d| d.desc.clone())
            } else {
                st.deferred_remote_offer.as_ref().map(|d| d.desc.clone())
            }
        };
        let Some(desc) = kept else { return Ok(()) };
        let (side, signal) =
            if local { ("local", "set-local-description") } else { ("remote", "set-remote-description") };
        let msg = sdp::parse(&desc.sdp)?;
        let gdesc = gst_webrtc::WebRTCSessionDescription::new(
            gst_webrtc::WebRTCSDPType::Offer,
            for_webrtcbin(&i.webrtcbin_view(local, &desc, &msg)?),
        );
        let result = i
            .promise(signal, |p| {
                i.webrtc.emit_by_name::<()>(signal, &[&gdesc, p]);
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(reason = %e.message, "the kept {side} re-offer was rejected by webrtcbin");
            return Err(EngineError::new(ErrorCode::InvalidSdp, e.message));
        }
        {
            let mut st = lock(&i.st);
            if local {
                st.deferred_offer = None;
            } else {
                st.deferred_remote_offer = None;
            }
        }
        if !local {
            i.prepare_answer(&msg);
        }
        tracing::debug!("{side} re-offer given to webrtcbin");
        Ok(())
    }

    /// `setLocalDescription({type: 'rollback'})` / `setRemoteDescription({type: 'rollback'})`
    /// (JSEP §4.1.10.2, WebRTC 1.0 §4.4.1.5): back to `stable` with the last stable
    /// descriptions. Supported for a local re-offer (kept from webrtcbin until its answer,
    /// [`DeferredOffer`]): the pending local description is dropped, mids the offer set are
    /// null again, and `negotiationneeded` fires again if something is still to negotiate; and
    /// for a remote re-offer not answered yet ([`DeferredRemoteOffer`]). In `stable` or a
    /// pranswer state → `invalid_state`. A first offer (webrtcbin has it and is gathering for
    /// it), a first remote offer, or a remote re-offer that adds or rejects m-lines →
    /// `operation_error` (webrtcbin 1.22 cannot roll back).
    /// `implicit`: the rollback a remote offer in `have-local-offer` does; it leaves the
    /// negotiation-needed flag alone (the state does not end in `stable`).
    fn rollback_locked(&self, local: bool, implicit: bool) -> EngineResult<PcState> {
        use RtcSignalingState as S;
        let i = &self.inner;
        let mut st = lock(&i.st);
        let want = if local { S::HaveLocalOffer } else { S::HaveRemoteOffer };
        if st.signaling != want {
            let method = if local { "setLocalDescription" } else { "setRemoteDescription" };
            tracing::warn!(signaling = ?st.signaling, "{method}(rollback) in wrong state");
            return Err(EngineError::invalid_state(format!(
                "{method}(rollback) in signaling state {:?}",
                st.signaling
            )));
        }
        if !local && let Some(deferred) = st.deferred_remote_offer.take() {
            for t in st.transceivers.iter_mut() {
                if let Some((_, fired, streams)) = deferred.fired.iter().find(|(id, _, _)| *id == t.id) {
                    t.track_fired = *fired;
                    t.remote_streams = streams.clone();
                }
            }
            st.remote_mlines = deferred.remote_mlines;
            st.descs.pending_remote = None;
            tracing::info!(local, "rollback: remote re-offer withdrawn");
            st.negotiation_needed = false;
            st.signaling = RtcSignalingState::Stable;
            drop(st);
            i.update_negotiation_needed();
            {
                let _g = i.span.enter();
                tracing::info!(
                    event = "signalingstatechange",
                    state = "stable",
                    "signalingstatechange: stable"
                );
            }
            let _ = i.events.send(PcEvent::SignalingStateChange(RtcSignalingState::Stable));
            i.sync_states();
            return Ok(self.state());
        }
        let Some(deferred) = st.deferred_offer.take().filter(|_| local) else {
            tracing::warn!(local, "rollback requested: webrtcbin 1.22 cannot roll back this description");
            return Err(op_err(if local {
                "rollback of a first offer is not supported by this engine"
            } else {
                "rollback of a first remote offer (or one that adds or rejects m-lines) is not supported by this engine"
            }));
        };
        for t in st.transceivers.iter_mut() {
            if let Some((_, pending, mid)) = deferred.associations.iter().find(|(id, _, _)| *id == t.id) {
                t.pending_mline = *pending;
                t.mid = mid.clone();
            }
        }
        st.local_mlines = deferred.local_mlines;
        st.descs.pending_local = None;
        tracing::info!(local, implicit, "rollback: local re-offer withdrawn");
        if implicit {
            drop(st);
            i.sync_states();
            return Ok(self.state());
        }
        // §4.4.1.5: back in stable, the flag is updated and `negotiationneeded` fires again if
        // something is still to negotiate — before `signalingstatechange`, as Chromium fires them.
        st.negotiation_needed = false;
        st.signaling = RtcSignalingState::Stable;
        drop(st);
        i.update_negotiation_needed();
        {
            let _g = i.span.enter();
            tracing::info!(event = "signalingstatechange", state = "stable", "signalingstatechange: stable");
        }
        let _ = i.events.send(PcEvent::SignalingStateChange(RtcSignalingState::Stable));
        i.sync_states();
        Ok(self.state())
    }

    /// A remote answer or pranswer after a remote pranswer that webrtcbin holds as its answer
    /// (`State::early_pranswer`): webrtcbin is not asked again (it is `stable` and would
    /// refuse). It must agree with the earlier pranswer in everything webrtcbin took from it
    /// (ICE credentials, DTLS fingerprint and role, payload types, m-lines:
    /// [`sdp::same_essentials`]) — as a SIP 200 OK repeats the SDP of a reliable 183 (RFC 3262
    /// §5) — else `invalid_sdp`, nothing changed (a far end that forks to a different transport
    /// would need new ICE credentials without a new offer). Directions may differ (a 183
    /// that only sends ringback, then a sendrecv 200 OK): the engine applies them itself.
    fn apply_after_pranswer(
        &self,
        desc: RtcSessionDescriptionInit,
        msg: gst_sdp::SDPMessage,
        early: &str,
    ) -> EngineResult<PcState> {
        let i = &self.inner;
        let before = sdp::parse(early)?;
        if let Err(diff) = sdp::same_essentials(&for_webrtcbin(&before), &for_webrtcbin(&msg)) {
            tracing::warn!(sdp_type = ?desc.sdp_type, %diff, "description after a pranswer changes its transport or codecs");
            return Err(EngineError::new(
                ErrorCode::InvalidSdp,
                format!(
                    "this {:?} differs from the pranswer where webrtcbin 1.22 cannot follow ({diff})",
                    desc.sdp_type
                ),
            ));
        }
        i.stop_rejected(&msg);
        let final_answer = desc.sdp_type == RtcSdpType::Answer;
        {
            let mut st = lock(&i.st);
            st.descs.record(false, desc.clone());
            if final_answer {
                st.early_pranswer = None;
            } else {
                st.early_pranswer = Some(desc.sdp.clone());
            }
        }
        tracing::info!(local = false, sdp_type = ?desc.sdp_type, "description applied (webrtcbin keeps the pranswer's)");
        i.sync_states();
        i.note_mids(&msg);
        i.fire_tracks(&msg);
        i.on_negotiated(&msg, false);
        i.update_negotiation_needed();
        Ok(self.state())
    }

    /// `addIceCandidate(candidate)` (WebRTC 1.0 §4.4.1.7). `None` or an empty `candidate` is
    /// end-of-candidates (accepted, nothing to do for webrtcbin). Without a remote description →
    /// `invalid_state`; neither `sdpMid` nor `sdpMLineIndex` → `invalid_params` (TypeError); an
    /// m-line that does not exist or a malformed candidate → `operation_error`.
    pub async fn add_ice_candidate(&self, candidate: Option<RtcIceCandidateInit>) -> EngineResult<()> {
        let _chain = self.inner.chain.lock().await;
        let i = &self.inner;
        let remote_mlines = {
            let st = lock(&i.st);
            if st.closed {
                return Err(self.closed_err());
            }
            st.remote_mlines
        };
        let Some(remote) =
            i.webrtc.property::<Option<gst_webrtc::WebRTCSessionDescription>>("remote-description")
        else {
            return Err(EngineError::invalid_state("addIceCandidate before setRemoteDescription"));
        };
        let Some(c) = candidate else {
            tracing::debug!("remote end-of-candidates");
            return Ok(());
        };
        let text = c.candidate.trim().trim_start_matches("a=");
        if text.is_empty() {
            tracing::debug!("remote end-of-candidates");
            return Ok(());
        }
        let mline = match (c.sdp_m_line_index, &c.sdp_mid) {
            (Some(m), _) => m,
            // WebRTC 1.0 §4.4.1.7: the m-line of the remote description with that a=mid.
            (None, Some(mid)) => remote
                .sdp()
                .medias()
                .position(|m| sdp::media_mid(m).as_deref() == Some(mid.as_str()))
                .map(|p| p as u32)
                .ok_or_else(|| op_err(format!("no m-line with mid {mid:?}")))?,
            (None, None) => {
                return Err(EngineError::invalid_params("candidate needs sdpMid or sdpMLineIndex"));
            }
        };
        if mline >= remote_mlines {
            return Err(op_err(format!("sdpMLineIndex {mline} out of range ({remote_mlines} m-lines)")));
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if !fields.first().is_some_and(|f| f.starts_with("candidate:"))
            || fields.len() < 8
            || fields[6] != "typ"
        {
            tracing::warn!("malformed remote candidate");
            tracing::debug!(candidate = %text, "malformed remote candidate text");
            return Err(op_err(format!("malformed ICE candidate {text:.80}")));
        }
        {
            let mut st = lock(&i.st);
            if st.remote_candidates >= MAX_REMOTE_CANDIDATES {
                tracing::warn!(
                    event = "limit",
                    limit = "remote-candidates",
                    max = MAX_REMOTE_CANDIDATES,
                    "remote ICE candidate refused: limit of {MAX_REMOTE_CANDIDATES} per connection reached"
                );
                return Err(EngineError::new(
                    ErrorCode::LimitExceeded,
                    format!("at most {MAX_REMOTE_CANDIDATES} remote ICE candidates per peer connection"),
                ));
            }
            st.remote_candidates += 1;
        }
        let kind = crate::logging::CandidateKind::parse(text);
        tracing::info!(event = "remote-icecandidate", candidate_type = %kind.typ, protocol = %kind.protocol, mline,
            "remote ICE candidate added: {kind}");
        tracing::debug!(mline, candidate = %text, "remote candidate");
        i.webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, &text]);
        Ok(())
    }

    /// `addTrack(track, ...streams)` (WebRTC 1.0 §5.1). `source` produces raw audio of any
    /// format; it is linked through an encoder for the negotiated codec once an answer is
    /// applied. Reuses a transceiver that never sent and has no track (JSEP §5.10), e.g. one
    /// created by a remote offer, so the answer becomes sendrecv.
    pub fn add_track(
        &self,
        track_id: &str,
        source: gst::Element,
        streams: Vec<String>,
    ) -> EngineResult<TransceiverInfo> {
        self.check_open()?;
        let i = &self.inner;
        {
            let st = lock(&i.st);
            if st.transceivers.iter().any(|t| t.sender_track.as_deref() == Some(track_id)) {
                return Err(EngineError::new(
                    ErrorCode::InvalidAccess,
                    format!("track {track_id} is already added"),
                ));
            }
        }
        // JSEP reuse: a transceiver of the right kind whose sender never had a track.
        let reuse = {
            let st = lock(&i.st);
            st.transceivers
                .iter()
                .position(|t| t.kind_audio && !t.ever_sent && t.sender_track.is_none() && !t.is_stopping())
                // A sender emptied by removeTrack is reused too: webrtcbin 1.22 cannot renegotiate
                // a direction change, so removeTrack keeps the m-line sending and a later
                // addTrack fills it again without renegotiation (what replaceTrack would do).
                .or_else(|| {
                    st.transceivers.iter().position(|t| {
                        t.kind_audio
                            && t.sender_track.is_none()
                            && sends(t.current_direction)
                            && !t.is_stopping()
                    })
                })
        };
        let info = if let Some(idx) = reuse {
            let mut st = lock(&i.st);
            let t = &mut st.transceivers[idx];
            // WebRTC 1.0 §5.1 addTrack step 10: the direction gains "send".
            t.direction = match t.direction {
                RtcRtpTransceiverDirection::Recvonly => RtcRtpTransceiverDirection::Sendrecv,
                RtcRtpTransceiverDirection::Inactive => RtcRtpTransceiverDirection::Sendonly,
                d => d,
            };
            t.sender_track = Some(track_id.to_string());
            t.ever_sent = true;
            t.source = Some(source);
            t.local_streams = streams;
            if let (true, Some((pt, codec))) = (sends(t.current_direction), t.negotiated) {
                // Already negotiated to send: start at once.
                if let Err(e) = i.link_send(t, pt, codec) {
                    tracing::error!(error = %e, "cannot link send branch");
                }
            }
            t.info()
        } else {
            let pad =
                i.webrtc.request_pad_simple("sink_%u").ok_or_else(|| op_err("webrtcbin gave no sink pad"))?;
            let trans = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
            trans.set_direction(gst_webrtc::WebRTCRTPTransceiverDirection::Sendrecv);
            trans.set_codec_preferences(Some(&i.offer_caps()));
            set_msid(&pad, &streams);
            let mut t = Trans::new(trans);
            t.kind_audio = true;
            t.sender_track = Some(track_id.to_string());
            t.ever_sent = true;
            t.source = Some(source);
            t.local_streams = streams;
            t.sink_pad = Some(pad);
            let info = t.info();
            lock(&i.st).transceivers.push(t);
            info
        };
        tracing::info!(track = track_id, transceiver = %info.id, "track added");
        i.update_negotiation_needed();
        Ok(info)
    }

    /// `addTransceiver(trackOrKind, init)` (WebRTC 1.0 §5.1). Only `"audio"` kind is supported
    /// (`video` → `invalid_params`, the spec's TypeError for an unknown kind; the engine is
    /// audio-only).
    pub fn add_transceiver(
        &self,
        kind_or_track: TransceiverKindOrTrack,
        direction: RtcRtpTransceiverDirection,
        streams: Vec<String>,
    ) -> EngineResult<TransceiverInfo> {
        self.check_open()?;
        let i = &self.inner;
        if direction == RtcRtpTransceiverDirection::Stopped {
            return Err(EngineError::invalid_params(
                "direction \"stopped\" is not allowed in addTransceiver",
            ));
        }
        let (track, pad, trans) = match kind_or_track {
            TransceiverKindOrTrack::Kind(kind) => {
                if kind != "audio" {
                    return Err(EngineError::invalid_params(format!(
                        "kind {kind:?} is not supported (audio only)"
                    )));
                }
                // webrtcbin runs every transceiver sendrecv (see `Trans::direction`).
                let trans = i
                    .webrtc
                    .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>(
                        "add-transceiver",
                        &[&gst_webrtc::WebRTCRTPTransceiverDirection::Sendrecv, &i.offer_caps()],
                    )
                    .ok_or_else(|| op_err("webrtcbin refused add-transceiver"))?;
                (None, None, trans)
            }
            TransceiverKindOrTrack::Track { id, source } => {
                if lock(&i.st).transceivers.iter().any(|t| t.sender_track.as_deref() == Some(id.as_str())) {
                    return Err(EngineError::new(
                        ErrorCode::InvalidAccess,
                        format!("track {id} is already added"),
                    ));
                }
                let pad = i
                    .webrtc
                    .request_pad_simple("sink_%u")
                    .ok_or_else(|| op_err("webrtcbin gave no sink pad"))?;
                let trans = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
                trans.set_direction(gst_webrtc::WebRTCRTPTransceiverDirection::Sendrecv);
                trans.set_codec_preferences(Some(&i.offer_caps()));
                set_msid(&pad, &streams);
                (Some((id, source)), Some(pad), trans)
            }
        };
        let mut t = Trans::new(trans);
        t.kind_audio = true;
        t.direction = direction;
        t.local_streams = streams;
        t.sink_pad = pad;
        if let Some((id, source)) = track {
            t.sender_track = Some(id);
            t.ever_sent = true;
            t.source = Some(source);
        }
        let info = t.info();
        lock(&i.st).transceivers.push(t);
        tracing::info!(transceiver = %info.id, ?direction, "transceiver added");
        i.update_negotiation_needed();
        Ok(info)
    }

    /// `removeTrack(sender)` (WebRTC 1.0 §5.1): the sender stops sending RTP (its source is
    /// unlinked and stopped, releasing the device) and `sender.track` becomes null.
    /// The direction loses "send" (sendrecv → recvonly, sendonly → inactive) and
    /// negotiationneeded fires. Deviation: until that is negotiated, a later `addTrack` reuses
    /// this sender (its m-line still sends) without renegotiation. Unknown sender → `not_found`.
    pub fn remove_track(&self, sender_id: &str) -> EngineResult<()> {
        self.check_open()?;
        let i = &self.inner;
        let source = {
            let mut st = lock(&i.st);
            let t = st
                .transceivers
                .iter_mut()
                .find(|t| t.sender_id == sender_id)
                .ok_or_else(|| EngineError::not_found(format!("no sender {sender_id}")))?;
            if t.sender_track.is_none() {
                return Ok(());
            }
            t.sender_track = None;
            // WebRTC 1.0 §5.1 removeTrack step 11: the direction loses "send"; the page
            // renegotiates to put that in the SDP (negotiationneeded below).
            t.direction = match t.direction {
                RtcRtpTransceiverDirection::Sendrecv => RtcRtpTransceiverDirection::Recvonly,
                RtcRtpTransceiverDirection::Sendonly => RtcRtpTransceiverDirection::Inactive,
                d => d,
            };
            t.source.take()
        };
        // The encoder branch stays linked (same SSRC and sequence numbers when a track is
        // added again); only the source goes, which releases its device.
        if let Some(source) = source {
            i.detach_source(&source);
        }
        tracing::info!(sender = sender_id, "track removed");
        i.update_negotiation_needed();
        Ok(())
    }

    /// Setting `RTCRtpTransceiver.direction` (WebRTC 1.0 §5.4): records the new [[Direction]]
    /// and updates the negotiation-needed flag (fires `negotiationneeded` when it becomes set
    /// in `stable`). Nothing changes on the wire until a new offer/answer exchange; then the
    /// SDP carries the direction (JSEP §5.2.2/§5.3.1) and the media follows the negotiated one
    /// (hold: RFC 3264 §8.4). `stopped` → `invalid_params` (TypeError); closed →
    /// `invalid_state`; unknown transceiver → `not_found`.
    pub fn set_direction(
        &self,
        transceiver_id: &str,
        direction: RtcRtpTransceiverDirection,
    ) -> EngineResult<TransceiverInfo> {
        self.check_open()?;
        if direction == RtcRtpTransceiverDirection::Stopped {
            return Err(EngineError::invalid_params("direction \"stopped\" cannot be set (use stop())"));
        }
        let i = &self.inner;
        let info = {
            let mut st = lock(&i.st);
            let t = st
                .transceivers
                .iter_mut()
                .find(|t| t.id == transceiver_id)
                .ok_or_else(|| EngineError::not_found(format!("no transceiver {transceiver_id}")))?;
            if t.is_stopping() {
                return Err(EngineError::invalid_state(format!("transceiver {transceiver_id} is stopped")));
            }
            if t.direction == direction {
                return Ok(t.info());
            }
            t.direction = direction;
            t.info()
        };
        tracing::info!(transceiver = transceiver_id, ?direction, "direction set");
        i.update_negotiation_needed();
        Ok(info)
    }

    /// `RTCRtpTransceiver.stop()` (WebRTC 1.0 §5.4, "stop the RTCRtpTransceiver"): at once the
    /// sender stops sending (its source is stopped, releasing the device; RTP is gated both
    /// ways), the receiver stops receiving, and `direction` becomes `stopped`;
    /// `negotiationneeded` fires. The next offer or answer rejects the m-line (port 0,
    /// `a=inactive`, out of the BUNDLE group: JSEP §5.2.2/§5.3.1); once an answer has done so,
    /// `currentDirection` is `stopped`. webrtcbin 1.22 cannot remove a transceiver: its own copy
    /// of the descriptions keeps the m-line alive ([`sdp::revive_for_webrtcbin`]). Idempotent;
    /// closed → `invalid_state`; unknown transceiver → `not_found`.
    pub fn stop_transceiver(&self, transceiver_id: &str) -> EngineResult<TransceiverInfo> {
        self.check_open()?;
        let i = &self.inner;
        let info = {
            let mut st = lock(&i.st);
            let t = st
                .transceivers
                .iter_mut()
                .find(|t| t.id == transceiver_id)
                .ok_or_else(|| EngineError::not_found(format!("no transceiver {transceiver_id}")))?;
            if !t.is_stopping() {
                i.stop_trans(t, "stop() called by the page");
            }
            t.info()
        };
        i.update_negotiation_needed();
        Ok(info)
    }

    /// `RTCRtpTransceiver.setCodecPreferences(codecs)` (WebRTC 1.0 §5.4): `codecs` as
    /// (encoding name, clock rate Hz) pairs in preference order (`telephone-event` allowed);
    /// the next offer lists only those, and an answer keeps only those the remote offer has.
    /// Empty = back to the engine's order. A codec the engine does not have enabled →
    /// `invalid_params` (the SDK throws InvalidModificationError first); unknown transceiver →
    /// `not_found`; closed → `invalid_state`.
    pub fn set_codec_preferences(&self, transceiver_id: &str, codecs: &[(String, u32)]) -> EngineResult<()> {
        self.check_open()?;
        let i = &self.inner;
        let mut list = Vec::new();
        let mut te = false;
        for (name, rate) in codecs {
            if name.eq_ignore_ascii_case(dtmf::TELEPHONE_EVENT) {
                te = true;
                continue;
            }
            match Codec::from_rtpmap(name, *rate).filter(|c| i.options.codecs.contains(c)) {
                Some(c) if !list.contains(&c) => list.push(c),
                Some(_) => {}
                None => {
                    tracing::warn!(codec = %name, rate, "setCodecPreferences with a codec the engine does not offer");
                    return Err(EngineError::invalid_params(format!("codec {name}/{rate} is not supported")));
                }
            }
        }
        if list.is_empty() && !codecs.is_empty() {
            return Err(EngineError::invalid_params("setCodecPreferences needs at least one media codec"));
        }
        let mut st = lock(&i.st);
        let t = st
            .transceivers
            .iter_mut()
            .find(|t| t.id == transceiver_id)
            .ok_or_else(|| EngineError::not_found(format!("no transceiver {transceiver_id}")))?;
        t.codec_prefs = if list.is_empty() { None } else { Some((list, te)) };
        let caps = i.offer_caps_for(t.codec_prefs.as_ref());
        t.trans.set_codec_preferences(Some(&caps));
        tracing::info!(transceiver = transceiver_id, codecs = ?t.codec_prefs, "codec preferences set");
        Ok(())
    }

    /// `RTCRtpSender.replaceTrack(withTrack)` (WebRTC 1.0 §5.2): the sender sends `track`
    /// (its id and a new raw-audio source) from its next packet, or nothing (`None`), without
    /// renegotiation: the encoder branch, SSRC and sequence numbers stay, only the source is
    /// swapped (the old one is stopped, its device released). Closed → `invalid_state`;
    /// unknown sender → `not_found`.
    pub fn replace_track(&self, sender_id: &str, track: Option<(String, gst::Element)>) -> EngineResult<()> {
        self.check_open()?;
        let i = &self.inner;
        let mut st = lock(&i.st);
        let t = st
            .transceivers
            .iter_mut()
            .find(|t| t.sender_id == sender_id)
            .ok_or_else(|| EngineError::not_found(format!("no sender {sender_id}")))?;
        if t.is_stopping() {
            return Err(EngineError::invalid_state(format!(
                "the transceiver of sender {sender_id} is stopped"
            )));
        }
        if let Some(old) = t.source.take() {
            i.detach_source(&old);
        }
        let Some((track_id, source)) = track else {
            t.sender_track = None;
            tracing::info!(sender = sender_id, "replaceTrack(null): sending nothing");
            return Ok(());
        };
        t.sender_track = Some(track_id.clone());
        t.ever_sent = true;
        t.source = Some(source);
        match (t.send.is_some(), t.negotiated) {
            (true, _) => i.attach_source(t)?,
            (false, Some((pt, codec))) if sends(t.current_direction) => i.link_send(t, pt, codec)?,
            _ => {} // linked when an answer makes it send
        }
        tracing::info!(sender = sender_id, track = %track_id, "replaceTrack");
        Ok(())
    }

    /// The payloader's src pad of `sender_id`'s send branch (what leaves as RTP), for tests
    /// that count or time the packets sent.
    #[cfg(test)]
    pub(crate) fn payloader_src(&self, sender_id: &str) -> Option<gst::Pad> {
        let st = lock(&self.inner.st);
        let t = st.transceivers.iter().find(|t| t.sender_id == sender_id)?;
        t.send.as_ref()?.elements.last()?.static_pad("src")
    }

    /// `RTCDTMFSender.insertDTMF(tones, duration, interToneGap)` (WebRTC 1.0 §7.2) on the DTMF
    /// sender of `sender_id`: replaces the tones not yet started with `tones` (`0-9 A-D # * ,`,
    /// any case; `,` = 2 s pause), `duration_ms` clamped to 40..=6000, `gap_ms` to 30..=6000.
    /// Each tone goes out as RFC 4733 `telephone-event` packets in place of the audio packets it
    /// covers, starting with the next packet. Errors: closed connection, a sender that does not
    /// send (currentDirection not sendrecv/sendonly) or without a negotiated telephone-event →
    /// `invalid_state`; a bad character → `invalid_params` (the SDK throws InvalidCharacterError
    /// before asking); unknown sender → `not_found`.
    pub fn insert_dtmf(
        &self,
        sender_id: &str,
        tones: &str,
        duration_ms: u32,
        gap_ms: u32,
    ) -> EngineResult<()> {
        self.check_open()?;
        let steps = dtmf::parse_tones(tones, duration_ms, gap_ms).map_err(|e| {
            tracing::warn!(error = %e, "insertDTMF rejected");
            EngineError::invalid_params(e)
        })?;
        let st = lock(&self.inner.st);
        let t = st
            .transceivers
            .iter()
            .find(|t| t.sender_id == sender_id)
            .ok_or_else(|| EngineError::not_found(format!("no sender {sender_id}")))?;
        if !sends(t.current_direction) || t.is_stopping() {
            tracing::warn!(sender = sender_id, current_direction = ?t.current_direction, "insertDTMF on a sender that does not send");
            return Err(EngineError::invalid_state(format!(
                "sender {sender_id} is not sending (currentDirection {:?})",
                t.current_direction
            )));
        }
        if t.dtmf.payload().is_none() {
            tracing::warn!(sender = sender_id, "insertDTMF without negotiated telephone-event");
            return Err(EngineError::invalid_state(
                "telephone-event was not negotiated with the remote peer",
            ));
        }
        tracing::info!(sender = sender_id, tones = tones.len(), duration_ms, gap_ms, "insertDTMF");
        t.dtmf.insert(steps);
        Ok(())
    }

    /// `RTCDTMFSender.canInsertDTMF` (WebRTC 1.0 §7.2) of `sender_id`: the sender sends and
    /// telephone-event is negotiated. Unknown sender → false.
    pub fn can_insert_dtmf(&self, sender_id: &str) -> bool {
        let st = lock(&self.inner.st);
        !st.closed
            && st
                .transceivers
                .iter()
                .find(|t| t.sender_id == sender_id)
                .is_some_and(|t| sends(t.current_direction) && !t.is_stopping() && t.dtmf.payload().is_some())
    }

    /// The RFC 4733 packets the DTMF sender of `sender_id` sent (at most the last 512), for
    /// diagnostics and tests. Unknown sender → empty.
    pub fn dtmf_sent_packets(&self, sender_id: &str) -> Vec<dtmf::EventPacket> {
        let st = lock(&self.inner.st);
        st.transceivers
            .iter()
            .find(|t| t.sender_id == sender_id)
            .map(|t| t.dtmf.sent_packets())
            .unwrap_or_default()
    }

    /// The RFC 4733 packets received from the remote peer (at most the last 512), oldest
    /// first: for diagnostics and tests (no W3C API exposes received DTMF).
    pub fn dtmf_received_packets(&self) -> Vec<dtmf::EventPacket> {
        self.inner.dtmf_received.packets()
    }

    /// Gives every sender of `track_id` a new capture element (the track's device is gone and
    /// it moved to another; `make` opens the new device, once per sender). The old element is
    /// stopped and dropped, its device released; the send branch, SSRC and sequence numbers
    /// stay, so the far end sees a continuous stream. Returns how many senders were moved.
    pub fn replace_track_source(
        &self,
        track_id: &str,
        make: impl Fn() -> EngineResult<gst::Element>,
    ) -> EngineResult<usize> {
        let i = &self.inner;
        let _g = self.inner.span.enter();
        let mut st = lock(&i.st);
        if st.closed {
            return Ok(0);
        }
        let mut moved = 0;
        for t in st.transceivers.iter_mut().filter(|t| t.sender_track.as_deref() == Some(track_id)) {
            let Some(old) = t.source.take() else { continue };
            i.detach_source(&old);
            t.source = Some(make()?);
            i.attach_source(t)?;
            moved += 1;
        }
        Ok(moved)
    }

    /// `MediaStreamTrack.enabled` for a track this connection sends: a disabled audio track
    /// sends silence (Media Capture §4.3.1.1), by muting the branch's `volume`. Unknown track →
    /// `not_found`.
    pub fn set_track_enabled(&self, track_id: &str, enabled: bool) -> EngineResult<()> {
        let mut st = lock(&self.inner.st);
        let mut found = false;
        for t in st.transceivers.iter_mut().filter(|t| t.sender_track.as_deref() == Some(track_id)) {
            found = true;
            t.enabled = enabled;
            if let Some(b) = &t.send {
                b.volume.set_property("mute", !enabled);
            }
        }
        if !found {
            return Err(EngineError::not_found(format!("track {track_id} is not sent by {}", self.inner.id)));
        }
        tracing::info!(track = track_id, enabled, "track enabled changed");
        Ok(())
    }

    /// `RTCRtpSender.setParameters` / `addTransceiver(…, {sendEncodings})` (WebRTC 1.0 §5.2):
    /// `encodings[0].maxBitrate` (bit/s, None = no limit) of the sender `sender_id` caps the
    /// Opus encoder's bitrate, now and in any later send branch. G.722 and G.711 are fixed
    /// 64 kbit/s codecs: the value is kept but cannot lower them. 0 → `invalid_params`
    /// (no encoder sends below 6 kbit/s); unknown sender → `not_found`.
    pub fn set_max_bitrate(&self, sender_id: &str, max_bitrate: Option<u32>) -> EngineResult<()> {
        self.check_open()?;
        if max_bitrate == Some(0) {
            return Err(EngineError::invalid_params("maxBitrate must be positive (bit/s)"));
        }
        let mut st = lock(&self.inner.st);
        let t = st.transceivers.iter_mut().find(|t| t.sender_id == sender_id).ok_or_else(|| {
            EngineError::not_found(format!("sender {sender_id} is not in {}", self.inner.id))
        })?;
        t.max_bitrate = max_bitrate;
        if let Some(b) = &t.send {
            for enc in &b.elements {
                apply_max_bitrate(enc, max_bitrate);
            }
        }
        tracing::info!(sender = sender_id, max_bitrate, "sender maxBitrate set");
        Ok(())
    }

    /// Where a remote track (the receiver's track id) is played: `Some(sink)` = that sink element
    /// (must have a static `sink` pad accepting raw audio), `None` = decoded and discarded. Can
    /// be called before the track has media and at any time mid-call (the sink is swapped while
    /// the pad is idle): this is `setSinkId`. Unknown track → `not_found`.
    pub fn set_playout(&self, remote_track_id: &str, sink: Option<gst::Element>) -> EngineResult<()> {
        self.check_open()?;
        let i = &self.inner;
        // Outside the state lock: a pipewiresink's connect waits for a PipeWire round trip.
        let tail = lock(&i.st)
            .transceivers
            .iter()
            .find(|t| t.receiver_track == remote_track_id)
            .and_then(|t| t.recv.as_ref().map(|r| (r.tail.clone(), r.sink.clone())));
        let prerolled = match (&sink, &tail) {
            (Some(new), Some((tail, current))) if new != current => preroll_sink(&i.pipeline, tail, new),
            _ => false,
        };
        let undo_preroll = |new: &gst::Element| {
            if prerolled {
                let _ = new.set_state(gst::State::Null);
                let _ = i.pipeline.remove(new);
            }
        };
        let mut st = lock(&i.st);
        let Some(t) = st.transceivers.iter_mut().find(|t| t.receiver_track == remote_track_id) else {
            if let Some(s) = &sink {
                undo_preroll(s);
            }
            return Err(EngineError::not_found(format!("no remote track {remote_track_id}")));
        };
        t.playout = sink.clone();
        let Some(recv) = t.recv.as_mut() else {
            if let Some(s) = &sink {
                undo_preroll(s);
            }
            tracing::info!(track = remote_track_id, sink = ?sink.as_ref().map(|s| s.name()), "playout set (no media yet)");
            return Ok(());
        };
        let new_sink = match sink {
            Some(s) => s,
            None => make_fakesink()?,
        };
        if new_sink == recv.sink {
            return Ok(());
        }
        prepare_sink(&new_sink);
        let old = std::mem::replace(&mut recv.sink, new_sink.clone());
        swap_sink(&i.pipeline, &i.id, &recv.tail, old, new_sink, None);
        Ok(())
    }

    /// `getStats()` (WebRTC 1.0 §8.2, webrtc-stats): the W3C `RTCStatsReport` entries built by
    /// [`stats::build_report`] from webrtcbin's reply and the engine's own measurements
    /// (audio levels, RTP sources, transport counters); `timestamp`s in ms since the Unix epoch.
    pub async fn get_stats(&self) -> EngineResult<Vec<serde_json::Value>> {
        let reply = self.get_stats_raw().await?;
        let ctx = self.stats_context();
        Ok(reply.map(|s| stats::build_report(&s, &ctx)).unwrap_or_default())
    }

    /// What [`stats::build_report`] needs besides webrtcbin's reply, read now.
    pub fn stats_context(&self) -> stats::ReportContext {
        let i = &self.inner;
        let local =
            i.webrtc.property::<Option<gst_webrtc::WebRTCSessionDescription>>("current-local-description");
        // Both ends are full ICE agents: the offerer controls (RFC 8445 §6.1.1, RFC 8829 §5.2.1).
        let ice_role = local.as_ref().map(|d| {
            if d.type_() == gst_webrtc::WebRTCSDPType::Offer { "controlling" } else { "controlled" }
        });
        let ufrag = |d: Option<gst_webrtc::WebRTCSessionDescription>| {
            let d = d?;
            let sdp = d.sdp();
            let from_media = sdp.medias().find_map(|m| m.attribute_val("ice-ufrag").map(str::to_string));
            from_media.or_else(|| sdp.attribute_val("ice-ufrag").map(str::to_string))
        };
        let ice_local_ufrag = ufrag(local);
        let ice_remote_ufrag = ufrag(i.webrtc.property("current-remote-description"));
        let mut transport = stats::TransportFacts {
            ice_role,
            ice_local_ufrag,
            ice_remote_ufrag,
            counters: i.counters.snapshot(),
            ..Default::default()
        };
        let st = lock(&i.st);
        let transceivers = st
            .transceivers
            .iter()
            .filter(|t| t.kind_audio)
            .map(|t| {
                if transport.dtls_state.is_none()
                    && let Some(dtls) = t.trans.sender().and_then(|s| s.transport())
                {
                    let state = dtls.state();
                    transport.dtls_state = Some(stats::dtls_state_name(state));
                    if state != gst_webrtc::WebRTCDTLSTransportState::New {
                        transport.dtls_role = Some(if dtls.is_client() { "client" } else { "server" });
                    }
                    transport.ice_state = dtls.transport().map(|ice| stats::ice_state_name(ice.state()));
                    (transport.local_certificate, transport.remote_certificate) =
                        stats::dtls_certificates(&dtls);
                    // The transport's iceState follows consent like iceConnectionState does.
                    match st.consent {
                        Consent::Failed => transport.ice_state = Some("failed"),
                        Consent::Disconnected => transport.ice_state = Some("disconnected"),
                        Consent::Fresh => {}
                    }
                }
                let target_bitrate = t.send.as_ref().and_then(|b| match b.codec {
                    Codec::Opus => b
                        .elements
                        .iter()
                        .find(|e| e.factory().is_some_and(|f| f.name() == "opusenc"))
                        .map(|e| e.property::<i32>("bitrate").max(0) as u32),
                    // G.722, PCMU and PCMA are fixed-rate 64 kbit/s codecs.
                    _ => Some(64_000),
                });
                stats::TransceiverFacts {
                    sender_id: t.sender_id.clone(),
                    mid: t.mid(),
                    mline: t.mline(),
                    sender_track: t.sender_track.clone(),
                    receiver_track: t.receiver_track.clone(),
                    negotiated: t.negotiated,
                    target_bitrate,
                    media_source: t.send.as_ref().map(|b| b.level.snapshot()),
                    receive: t.recv.as_ref().map(|r| r.monitor.snapshot()),
                }
            })
            .collect();
        stats::ReportContext { now_ms: stats::now_ms(), transceivers, transport }
    }

    /// `RTCRtpReceiver.getSynchronizationSources()` / `getContributingSources()` (WebRTC 1.0
    /// §5.3.4) of the receiver `receiver_id`: sources heard in the last 10 s, newest first
    /// (empty before any RTP). Unknown receiver → `not_found`.
    pub fn rtp_sources(&self, receiver_id: &str) -> EngineResult<stats::ReceiveSnapshot> {
        self.check_open()?;
        let st = lock(&self.inner.st);
        let t = st
            .transceivers
            .iter()
            .find(|t| t.receiver_id == receiver_id)
            .ok_or_else(|| EngineError::not_found(format!("no receiver {receiver_id}")))?;
        Ok(t.recv.as_ref().map(|r| r.monitor.snapshot()).unwrap_or_default())
    }

    /// webrtcbin's own `get-stats` reply, unmapped (GStreamer 1.22 field names, one
    /// `GstStructure` per stat id): for tests and diagnostics; pages get [`Self::get_stats`].
    pub async fn get_stats_raw(&self) -> EngineResult<Option<gst::Structure>> {
        self.check_open()?;
        let i = &self.inner;
        i.promise("get-stats", |p| {
            i.webrtc.emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, p]);
        })
        .await
    }

    /// The attributes of the connection now (`PcState` of docs/protocol.md).
    pub fn state(&self) -> PcState {
        let i = &self.inner;
        let st = lock(&i.st);
        // Descriptions stay readable after close(), as in the spec. The engine's own copies:
        // webrtcbin's say sendrecv where the real direction differs (`for_webrtcbin`).
        let Descriptions {
            current_local: cur_l,
            current_remote: cur_r,
            pending_local: pend_l,
            pending_remote: pend_r,
        } = st.descs.clone();
        let local = pend_l.clone().or_else(|| cur_l.clone());
        let remote = pend_r.clone().or_else(|| cur_r.clone());
        PcState {
            signaling_state: st.signaling,
            ice_gathering_state: st.gathering,
            ice_connection_state: st.ice,
            connection_state: st.conn,
            local_description: local,
            remote_description: remote,
            current_local_description: cur_l,
            current_remote_description: cur_r,
            pending_local_description: pend_l,
            pending_remote_description: pend_r,
            transceivers: st.transceivers.iter().filter(|t| t.kind_audio).map(Trans::info).collect(),
        }
    }

    /// The id given at construction.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The connection's `pc{pc}` tracing span (journal field `VDIMEDIA_PC`): run requests on
    /// this connection inside it (or a child of it).
    pub fn span(&self) -> &tracing::Span {
        &self.inner.span
    }

    /// `close()` (WebRTC 1.0 §4.4.1.3): pipeline to NULL (sources and sinks released), states
    /// `closed`, no events fired (as the spec says). Idempotent.
    pub fn close(&self) {
        let i = &self.inner;
        {
            let mut st = lock(&i.st);
            if st.closed {
                return;
            }
            st.closed = true;
            st.signaling = RtcSignalingState::Closed;
            st.ice = RtcIceConnectionState::Closed;
            st.conn = RtcPeerConnectionState::Closed;
        }
        // An element stuck in its state change (pipewiresink's lock inversion, see
        // media/output.rs) must not take the daemon with it: the teardown runs on a thread of
        // its own and the caller waits a bounded time.
        let pipeline = i.pipeline.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("pc-teardown".into()).spawn(move || {
            let _ = pipeline.set_state(gst::State::Null);
            let _ = done_tx.send(());
        });
        match spawned {
            Ok(_) => {
                if done_rx.recv_timeout(std::time::Duration::from_secs(3)).is_err() {
                    tracing::error!(
                        "call pipeline did not stop within 3 s (a GStreamer element is stuck); left behind"
                    );
                }
            }
            Err(_) => {
                let _ = i.pipeline.set_state(gst::State::Null);
            }
        }
        let mut st = lock(&i.st);
        for t in st.transceivers.iter_mut() {
            t.source = None;
            t.send = None;
            t.recv = None;
            t.playout = None;
        }
        tracing::info!("peer connection closed");
    }
}

/// Caps an `opusenc`'s `bitrate` (bit/s) at `max` (within its range), or restores its default
/// for None; other elements are left alone.
fn apply_max_bitrate(enc: &gst::Element, max: Option<u32>) {
    if enc.factory().is_none_or(|f| f.name() != "opusenc") {
        return;
    }
    let Some(spec) = enc.find_property("bitrate").and_then(|p| p.downcast::<glib::ParamSpecInt>().ok())
    else {
        return;
    };
    let default = spec.default_value();
    let rate = max.map_or(default, |m| (m.min(i32::MAX as u32) as i32).clamp(spec.minimum(), default));
    enc.set_property("bitrate", rate);
}

fn set_msid(pad: &gst::Pad, streams: &[String]) {
    // webrtcbin pads have "msid" from 1.24 on; 1.22 writes no a=msid.
    if let Some(s) = streams.first()
        && pad.find_property("msid").is_some()
    {
        pad.set_property("msid", s);
    }
}

/// Replaces the sink hanging off `tail` while the pad is idle (between buffers): unlink, old
/// sink to NULL and out, new sink in and linked, then `then` (used to chain a second swap).
/// `tail` must carry no non-blocking data probes (see the level meter in the receive branch).
fn swap_sink(
    pipeline: &gst::Pipeline,
    pc_id: &str,
    tail: &gst::Pad,
    old: gst::Element,
    new: gst::Element,
    then: Option<Box<dyn FnOnce() + Send>>,
) {
    prepare_sink(&new);
    let pipeline = pipeline.clone();
    // The probe may run later on a streaming thread: log inside the caller's (pc) span, or
    // name the connection when there is none.
    let span = tracing::Span::current();
    let pc_id = if span.is_none() { Some(pc_id.to_string()) } else { None };
    let job = Mutex::new(Some((old, new, then)));
    tail.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
        let _g = span.enter();
        let Some((old, new, then)) = job.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return gst::PadProbeReturn::Remove;
        };
        if let Some(peer) = pad.peer() {
            let _ = pad.unlink(&peer);
        }
        if then.is_some() {
            // The chained swap links `old` again elsewhere: stop it here and now.
            let _ = old.set_state(gst::State::Null);
            let _ = pipeline.remove(&old);
        } else {
            release_sink(&pipeline, old);
        }
        // A prerolled sink (preroll_sink) is in the pipeline and PLAYING already.
        let linked = (new.parent().is_some() || pipeline.add(&new).is_ok())
            && new.static_pad("sink").is_some_and(|sp| pad.link(&sp).is_ok())
            && new.sync_state_with_parent().is_ok();
        if linked {
            tracing::info!(pc = pc_id.as_deref(), sink = %new.name(), "playout sink swapped");
        } else {
            // An unlinked decoder would stop the connection's reception (not-linked): discard.
            tracing::error!(pc = pc_id.as_deref(), sink = %new.name(), "playout sink could not be linked; discarding audio");
            let _ = new.set_state(gst::State::Null);
            let _ = pipeline.remove(&new);
            if let Ok(fake) = make_fakesink() {
                let _ = pipeline.add(&fake);
                if let Some(sp) = fake.static_pad("sink") {
                    let _ = pad.link(&sp);
                }
                let _ = fake.sync_state_with_parent();
            }
        }
        if let Some(then) = then {
            then();
        }
        gst::PadProbeReturn::Remove
    });
}

/// Stops an unlinked playout sink and takes it out of the pipeline off the calling (streaming)
/// thread: a pipewiresink's stream teardown waits for PipeWire (100–150 ms were measured), and
/// the new sink would get no audio for that long (the setSinkId gap).
fn release_sink(pipeline: &gst::Pipeline, old: gst::Element) {
    // Out of the pipeline's state changes from now on; NULL releases its device.
    old.set_locked_state(true);
    let pipeline = pipeline.clone();
    old.call_async(move |old| {
        let _ = old.set_state(gst::State::Null);
        let _ = pipeline.remove(old);
    });
}

/// Opens a playout sink before it is linked, so that a switch (`setSinkId`) only relinks: the
/// sink (a bin, i.e. a `vdimedia-playout` device sink) joins the pipeline, goes to PLAYING and
/// gets `tail`'s sticky events (stream-start, caps, segment). A pipewiresink connects its
/// stream on the caps (its PipeWire node is made and WirePlumber links it) while the old sink
/// still plays; without this the node was made on the first buffer after the swap, and the
/// audio stopped for that long. Returns whether the sink was added (false: nothing done,
/// `swap_sink` adds it as before). Blocks for the device's open (a PipeWire round trip).
fn preroll_sink(pipeline: &gst::Pipeline, tail: &gst::Pad, new: &gst::Element) -> bool {
    if new.downcast_ref::<gst::Bin>().is_none() || new.parent().is_some() || tail.current_caps().is_none() {
        return false;
    }
    prepare_sink(new);
    if pipeline.add(new).is_err() {
        return false;
    }
    let Some(sink_pad) = new.static_pad("sink") else { return true };
    if new.sync_state_with_parent().is_err() {
        tracing::debug!(sink = %new.name(), "playout sink did not start before the switch");
        return true;
    }
    let mut events = Vec::new();
    tail.sticky_events_foreach(|ev| {
        events.push(ev.clone());
        std::ops::ControlFlow::Continue(gst::EventForeachAction::Keep)
    });
    for ev in events {
        let ty = ev.type_();
        if matches!(ty, gst::EventType::StreamStart | gst::EventType::Caps | gst::EventType::Segment)
            && !sink_pad.send_event(ev)
        {
            tracing::debug!(sink = %new.name(), event = ?ty, "playout sink refused an event before the switch");
        }
    }
    // The bin's queue hands the caps to the device sink on its own thread: wait (bounded)
    // until every device sink inside took them, i.e. its stream is connected.
    let sinks: Vec<gst::Element> = new
        .downcast_ref::<gst::Bin>()
        .map(|b| b.iterate_sinks().into_iter().flatten().collect())
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + PREROLL_LIMIT;
    while std::time::Instant::now() < deadline
        && !sinks.iter().all(|s| s.static_pad("sink").is_some_and(|p| p.current_caps().is_some()))
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    true
}

/// Longest wait for a playout sink to open its device before a switch (then it switches
/// anyway, and the device opens on the first buffer).
const PREROLL_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

fn make_fakesink() -> EngineResult<gst::Element> {
    let s = codecs::make("fakesink")?;
    s.set_property("sync", true);
    Ok(s)
}

/// A sink added to a PLAYING pipeline must not wait for preroll, or the pipeline loses its state.
/// Playout sinks are bins (`vdimedia-playout`): the sink elements inside are the ones to set.
fn prepare_sink(sink: &gst::Element) {
    if sink.find_property("async").is_some() {
        sink.set_property("async", false);
    }
    if let Some(bin) = sink.downcast_ref::<gst::Bin>() {
        for e in bin.iterate_sinks().into_iter().flatten() {
            prepare_sink(&e);
        }
    }
}

impl Inner {
    /// Runs a webrtcbin action taking a `GstPromise` and waits for its reply (with a timeout).
    async fn promise(
        &self,
        what: &str,
        emit: impl FnOnce(&gst::Promise),
    ) -> EngineResult<Option<gst::Structure>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let promise = gst::Promise::with_change_func(move |reply| {
            let r = match reply {
                Ok(s) => Ok(s.map(|s| s.to_owned())),
                Err(e) => Err(format!("{e:?}")),
            };
            let _ = tx.send(r);
        });
        emit(&promise);
        let reply = match tokio::time::timeout(PROMISE_TIMEOUT, rx).await {
            Err(_) => {
                tracing::error!(what, "webrtcbin did not answer in time");
                return Err(EngineError::new(ErrorCode::Timeout, format!("{what} timed out")));
            }
            Ok(Err(_)) => return Err(op_err(format!("{what}: promise dropped"))),
            Ok(Ok(Err(e))) => return Err(op_err(format!("{what}: promise {e}"))),
            Ok(Ok(Ok(r))) => r,
        };
        if let Some(s) = &reply
            && let Ok(err) = s.get::<glib::Error>("error")
        {
            return Err(op_err(format!("{what}: {}", err.message())));
        }
        Ok(reply)
    }

    fn webrtc_transceivers(&self) -> Vec<gst_webrtc::WebRTCRTPTransceiver> {
        let mut out = Vec::new();
        for idx in 0..64i32 {
            match self
                .webrtc
                .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&idx])
            {
                Some(t) => out.push(t),
                None => break,
            }
        }
        out
    }

    /// codec-preferences for our offers: every enabled codec with its default payload type.
    fn offer_caps(&self) -> gst::Caps {
        self.offer_caps_for(None)
    }

    /// codec-preferences for an offer of a transceiver with `setCodecPreferences` `prefs`
    /// (None: every enabled codec and telephone-event).
    fn offer_caps_for(&self, prefs: Option<&(Vec<Codec>, bool)>) -> gst::Caps {
        let (codecs, te) = match prefs {
            Some((list, te)) => (list.as_slice(), *te),
            None => (self.options.codecs.as_slice(), true),
        };
        let mut caps = gst::Caps::new_empty();
        {
            let caps = caps.get_mut().expect("new caps are writable");
            for c in codecs {
                caps.append_structure(c.preference_structure(c.default_payload_type()));
            }
            // RFC 4733 events at each offered audio clock rate (for DTMF, WebRTC 1.0 §7).
            let mut rates: Vec<u32> = Vec::new();
            for c in codecs.iter().filter(|_| te) {
                let r = c.clock_rate() as u32;
                if !rates.contains(&r) {
                    rates.push(r);
                    caps.append_structure(dtmf::preference_structure(dtmf::default_payload_type(r), r));
                }
            }
        }
        caps
    }

    /// For each m-line of an offer webrtcbin made (or the page's version of it): the index in
    /// `ts` of the transceiver it belongs to. Known m-lines by index or mid; new m-lines go to
    /// the unassociated transceivers in webrtcbin's own order (the order create-offer adds
    /// them in).
    fn offer_owners(
        order: &[gst_webrtc::WebRTCRTPTransceiver],
        ts: &[Trans],
        msg: &gst_sdp::SDPMessageRef,
    ) -> Vec<Option<usize>> {
        let n = msg.medias_len() as usize;
        let mut owners = vec![None; n];
        let mut taken = vec![false; ts.len()];
        for (idx, media) in msg.medias().enumerate() {
            let mid = sdp::media_mid(media);
            let k = ts.iter().position(|t| t.mline() == Some(idx as u32)).or_else(|| {
                mid.as_deref().and_then(|mid| ts.iter().position(|t| t.mid().as_deref() == Some(mid)))
            });
            if let Some(k) = k
                && !taken[k]
            {
                owners[idx] = Some(k);
                taken[k] = true;
            }
        }
        let fresh: Vec<usize> = order
            .iter()
            .filter_map(|w| ts.iter().position(|t| &t.trans == w))
            .filter(|&k| !taken[k] && ts[k].mline().is_none() && ts[k].mid().is_none())
            .collect();
        let mut fresh = fresh.into_iter();
        for owner in owners.iter_mut().filter(|o| o.is_none()) {
            match fresh.next() {
                Some(k) => *owner = Some(k),
                None => break,
            }
        }
        owners
    }

    /// An offer webrtcbin created, with each audio m-line's direction set to its
    /// transceiver's [[Direction]] (JSEP §5.2.2; webrtcbin wrote sendrecv).
    fn with_offer_directions(&self, text: &str) -> EngineResult<String> {
        let mut msg = sdp::parse(text)?;
        let order = self.webrtc_transceivers();
        let st = lock(&self.st);
        let owners = Self::offer_owners(&order, &st.transceivers, &msg);
        let mut rejected = Vec::new();
        for (idx, owner) in owners.into_iter().enumerate() {
            let Some(t) = owner.map(|k| &st.transceivers[k]) else { continue };
            if t.is_stopping() {
                rejected.push(idx as u32);
                continue;
            }
            if let Some(m) = msg.media_mut(idx as u32)
                && m.media() == Some("audio")
                && !sdp::is_rejected(m)
            {
                sdp::set_media_direction(m, t.direction);
                // webrtcbin 1.22 writes no a=msid (JSEP §5.2.1): without it a far end's track
                // event has no stream.
                let track = t.sender_track.as_deref().unwrap_or(&t.sender_id);
                sdp::set_media_msid(m, sends(Some(t.direction)), &t.local_streams, track);
                if let Some((_, false)) = t.codec_prefs {
                    // setCodecPreferences without telephone-event: not offered (the engine
                    // re-adds it to every offer otherwise, see `with_telephone_event`).
                    for (pt, _) in dtmf::media_telephone_events(m) {
                        sdp::remove_payload_type(m, pt);
                    }
                }
            }
        }
        // RFC 8842 §5.5: a subsequent offer says `actpass` or the role this end has on the
        // established transport. webrtcbin 1.22, after answering a far end's re-offer (our
        // answer's `passive` is the engine's rewrite, see `with_answer_directions`), re-offers
        // `active`, which Chromium rejects ("Offerer must use current negotiated role").
        if let Some(role) = st.descs.dtls_role() {
            for idx in 0..msg.medias_len() {
                if let Some(m) = msg.media_mut(idx)
                    && sdp::media_setup(m).is_some_and(|s| s != "actpass" && s != role)
                {
                    tracing::debug!(mline = idx, role, "re-offer: a=setup kept as established");
                    sdp::set_media_setup(m, role);
                }
            }
        }
        for idx in rejected {
            sdp::reject_media(&mut msg, idx);
        }
        msg.as_text().map_err(|e| op_err(e.to_string()))
    }

    /// An answer webrtcbin created, fixed where webrtcbin 1.22 cannot be told: each audio
    /// m-line's direction is its transceiver's [[Direction]] limited by what the remote offer
    /// allows (JSEP §5.3.1, RFC 3264 §6.1), and on a renegotiation `a=setup` keeps the DTLS
    /// role of the established transport (RFC 8842 §5.5; webrtcbin always answers `active`,
    /// which a far end that is already the DTLS client rejects: "Failed to set SSL role").
    fn with_answer_directions(&self, text: &str) -> EngineResult<String> {
        let mut msg = sdp::parse(text)?;
        let st = lock(&self.st);
        let offer = st.descs.pending_remote.as_ref().and_then(|d| sdp::parse(&d.sdp).ok());
        let mut rejected = Vec::new();
        for idx in 0..msg.medias_len() {
            let Some(t) = st.transceivers.iter().find(|t| t.kind_audio && t.mline() == Some(idx)) else {
                continue;
            };
            if t.is_stopping() {
                rejected.push(idx);
                continue;
            }
            let offered = offer
                .as_ref()
                .and_then(|o| o.media(idx).map(|m| sdp::reverse(sdp::media_direction(m))))
                .unwrap_or(RtcRtpTransceiverDirection::Sendrecv);
            if let Some(m) = msg.media_mut(idx)
                && m.media() == Some("audio")
                && !sdp::is_rejected(m)
            {
                let direction = sdp::intersect(t.direction, offered);
                sdp::set_media_direction(m, direction);
                let track = t.sender_track.as_deref().unwrap_or(&t.sender_id);
                sdp::set_media_msid(m, sends(Some(direction)), &t.local_streams, track);
            }
        }
        if let Some(role) = st.descs.dtls_role() {
            for idx in 0..msg.medias_len() {
                if let Some(m) = msg.media_mut(idx)
                    && sdp::media_setup(m).is_some_and(|s| s != role)
                {
                    tracing::debug!(mline = idx, role, "a=setup kept as established");
                    sdp::set_media_setup(m, role);
                }
            }
        }
        for idx in rejected {
            sdp::reject_media(&mut msg, idx);
        }
        msg.as_text().map_err(|e| op_err(e.to_string()))
    }

    /// JSEP §5.2.1/§4.1.9: setLocalDescription(offer) associates each new transceiver with its
    /// m-line (webrtcbin 1.22 only does so when the answer comes).
    fn associate_local_offer(&self, offer: &gst_sdp::SDPMessage) {
        let order = self.webrtc_transceivers();
        let mut st = lock(&self.st);
        let owners = Self::offer_owners(&order, &st.transceivers, offer);
        for (idx, owner) in owners.into_iter().enumerate() {
            if let Some(t) = owner.map(|k| &mut st.transceivers[k])
                && t.mline().is_none()
            {
                t.pending_mline = Some(idx as u32);
            }
        }
    }

    /// Takes each associated transceiver's mid from the description just applied.
    fn note_mids(&self, msg: &gst_sdp::SDPMessage) {
        let mut st = lock(&self.st);
        for t in st.transceivers.iter_mut() {
            if let Some(mid) = t.mline().and_then(|m| msg.media(m)).and_then(sdp::media_mid) {
                t.mid = Some(mid);
            }
        }
    }

    /// JSEP §5.10 "apply a remote offer": every audio m-line gets a transceiver now (webrtcbin
    /// 1.22 would only make them inside create-answer, too late for `track` events and for
    /// `addTrack` to reuse them): an unassociated audio transceiver if there is one, else a new
    /// recvonly one.
    fn associate_remote_offer(&self, offer: &gst_sdp::SDPMessage) {
        for (idx, media) in offer.medias().enumerate() {
            let idx = idx as u32;
            if media.media() != Some("audio") {
                continue;
            }
            {
                let mut st = lock(&self.st);
                if st.transceivers.iter().any(|t| t.mline() == Some(idx)) {
                    continue;
                }
                if let Some(t) = st
                    .transceivers
                    .iter_mut()
                    .find(|t| t.kind_audio && t.mline().is_none() && !t.is_stopping())
                {
                    t.pending_mline = Some(idx);
                    continue;
                }
            }
            let trans = self.webrtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Sendrecv, &self.offer_caps()],
            );
            let Some(trans) = trans else {
                tracing::error!(mline = idx, "webrtcbin refused add-transceiver");
                continue;
            };
            let mut t = Trans::new(trans);
            t.kind_audio = true;
            t.direction = RtcRtpTransceiverDirection::Recvonly;
            t.pending_mline = Some(idx);
            tracing::debug!(mline = idx, transceiver = %t.id, "transceiver for remote m-line");
            lock(&self.st).transceivers.push(t);
        }
    }

    /// Before answering a remote offer: codec-preferences from the offer's own payload types
    /// (webrtcbin intersects caps, so PTs must match), restricted to our codecs; non-audio
    /// m-lines are set inactive (the engine is audio-only).
    fn prepare_answer(&self, offer: &gst_sdp::SDPMessage) {
        let st = lock(&self.st);
        for t in &st.transceivers {
            let Some(media) = t.mline().and_then(|m| offer.media(m)) else {
                continue;
            };
            if media.media() != Some("audio") {
                t.trans.set_direction(gst_webrtc::WebRTCRTPTransceiverDirection::Inactive);
                continue;
            }
            let mut caps = gst::Caps::new_empty();
            {
                let caps = caps.get_mut().expect("new caps are writable");
                let mut offered = sdp::media_codecs(media);
                if let Some((prefs, _)) = &t.codec_prefs {
                    // setCodecPreferences: only those, in the page's order (JSEP §5.3.1).
                    offered.retain(|(_, c)| prefs.contains(c));
                    offered.sort_by_key(|(_, c)| prefs.iter().position(|p| p == c));
                }
                for (pt, codec) in offered {
                    if !self.options.codecs.contains(&codec) {
                        continue;
                    }
                    let mut s = codec.preference_structure(pt);
                    if codec == Codec::Opus {
                        // Do not contradict an explicit remote fmtp (caps intersection would fail).
                        s.remove_field("useinbandfec");
                        if !sdp::fmtp(media, pt).iter().any(|(k, _)| k == "useinbandfec") {
                            s.set("useinbandfec", "1");
                        }
                    }
                    caps.append_structure(s);
                }
                // The offer's telephone-event at the clock rates of the codecs we accept.
                let rates: Vec<u32> = sdp::media_codecs(media)
                    .into_iter()
                    .filter(|(_, c)| self.options.codecs.contains(c))
                    .map(|(_, c)| c.clock_rate() as u32)
                    .collect();
                let mut added = Vec::new();
                for (pt, rate) in dtmf::media_telephone_events(media) {
                    if rates.contains(&rate) && !added.contains(&rate) {
                        added.push(rate);
                        caps.append_structure(dtmf::preference_structure(pt, rate));
                    }
                }
            }
            if caps.is_empty() {
                tracing::warn!(mline = ?t.mline(), "remote offer has no codec we support");
            }
            t.trans.set_codec_preferences(Some(&caps));
        }
    }

    /// Fires `track` for transceivers whose remote side sends (W3C "process remote tracks").
    /// `Trans::track_fired` is the spec's [[FiredDirection]] including recv (WebRTC 1.0
    /// §4.4.1.6): a remote description that stops the far end's sending clears it ("process
    /// the removal of a remote track"), so the far end resuming after a hold fires `track`
    /// again ("process the addition"), for the same track, as browsers do.
    fn fire_tracks(&self, remote: &gst_sdp::SDPMessage) {
        let mut st = lock(&self.st);
        if st.closed {
            return;
        }
        let mut events = Vec::new();
        for t in st.transceivers.iter_mut() {
            let Some(media) = t.mline().and_then(|m| remote.media(m)) else {
                continue;
            };
            if !t.kind_audio || media.media() != Some("audio") || t.is_stopping() {
                continue;
            }
            t.remote_streams = sdp::media_msid_streams(media);
            let remote_sends = sends(Some(sdp::media_direction(media)));
            if !remote_sends && t.track_fired {
                t.track_fired = false;
                tracing::info!(track = %t.receiver_track, transceiver = %t.id, "remote track no longer sent");
            }
            if remote_sends && !t.track_fired {
                t.track_fired = true;
                events.push(PcEvent::Track {
                    transceiver: t.info(),
                    track: t.track_ref(),
                    streams: t.remote_streams.clone(),
                });
                tracing::info!(track = %t.receiver_track, transceiver = %t.id, "remote track");
            }
        }
        for e in events {
            let _ = self.events.send(e);
        }
    }

    /// After an answer is applied: current directions, negotiated codecs, send branches.
    fn on_negotiated(&self, answer: &gst_sdp::SDPMessage, local_answer: bool) {
        let mut st = lock(&self.st);
        if st.closed {
            return;
        }
        let mut to_link = Vec::new();
        for (idx, t) in st.transceivers.iter_mut().enumerate() {
            let Some(media) = t.mline().and_then(|m| answer.media(m)) else {
                continue;
            };
            let d = sdp::media_direction(media);
            if t.is_stopping() {
                // JSEP §5.10/§5.11: an answer that rejects the m-line completes the stop; RTP
                // stays gated either way.
                t.current_direction = Some(if sdp::is_rejected(media) {
                    RtcRtpTransceiverDirection::Stopped
                } else if local_answer {
                    d
                } else {
                    sdp::reverse(d)
                });
                tracing::info!(transceiver = %t.id, mid = ?t.mid(), current_direction = ?t.current_direction, "negotiated (stopped)");
                continue;
            }
            t.current_direction = Some(if local_answer { d } else { sdp::reverse(d) });
            t.gate.set(t.current_direction);
            let negotiated =
                sdp::media_codecs(media).into_iter().find(|(_, c)| self.options.codecs.contains(c));
            tracing::info!(transceiver = %t.id, mid = ?t.mid(),
                current_direction = ?t.current_direction, codec = %negotiated.map_or("none".into(), |n| n.1.encoding_name().to_ascii_lowercase()),
                pt = ?negotiated.map(|n| n.0), "negotiated");
            t.negotiated = negotiated;
            let te = negotiated.and_then(|(_, c)| {
                let rate = c.clock_rate() as u32;
                dtmf::negotiated_payload_type(media, rate).map(|pt| (pt, rate))
            });
            t.dtmf.set_payload(if sends(t.current_direction) { te } else { None });
            if let Some((pt, codec)) = negotiated
                && sends(t.current_direction)
                && t.source.is_some()
                && t.send.as_ref().is_none_or(|b| b.codec != codec || b.pt != pt)
            {
                to_link.push((idx, pt, codec));
            }
        }
        for (idx, pt, codec) in to_link {
            if let Err(e) = self.link_send(&mut st.transceivers[idx], pt, codec) {
                tracing::error!(error = %e, "cannot link send branch");
            }
        }
    }

    /// Makes sure the encoder branch for (pt, codec) feeds the transceiver's sink pad, then
    /// links the source into it.
    fn link_send(&self, t: &mut Trans, pt: u8, codec: Codec) -> EngineResult<()> {
        if t.send.as_ref().is_some_and(|b| b.codec == codec && b.pt == pt) {
            return self.attach_source(t);
        }
        if let Some(old) = t.send.take() {
            if let Some(source) = &t.source {
                self.detach_source(source);
            }
            self.unlink_send(old, t.sink_pad.as_ref());
        }
        if t.sink_pad.is_none() {
            let mline = t.mline().ok_or_else(|| op_err("transceiver has no m-line"))?;
            // webrtcbin 1.22 adds the sink pad itself when an answer makes a transceiver send.
            let pad = match self.webrtc.static_pad(&format!("sink_{mline}")) {
                Some(p) => p,
                None => self
                    .webrtc
                    .request_pad_simple(&format!("sink_{mline}"))
                    .ok_or_else(|| op_err(format!("webrtcbin gave no sink_{mline} pad")))?,
            };
            let pt_trans = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
            if pt_trans != t.trans {
                tracing::error!(mline, "webrtcbin bound sink pad to another transceiver");
            }
            set_msid(&pad, &t.local_streams);
            t.sink_pad = Some(pad);
        }
        let sink_pad = t.sink_pad.clone().expect("set above");
        let (raw_caps, enc, pay) = codec.make_encoder(pt)?;
        apply_max_bitrate(&enc, t.max_bitrate);
        let queue = codecs::make("queue")?;
        let volume = codecs::make("volume")?;
        volume.set_property("mute", !t.enabled);
        let conv = codecs::make("audioconvert")?;
        let resample = codecs::make("audioresample")?;
        let capsf = codecs::make("capsfilter")?;
        capsf.set_property("caps", &raw_caps);
        let elements = vec![queue.clone(), volume.clone(), conv, resample, capsf, enc, pay.clone()];
        self.pipeline.add_many(&elements).map_err(|e| op_err(e.to_string()))?;
        let built = (|| {
            gst::Element::link_many(&elements).map_err(|e| op_err(format!("send branch: {e}")))?;
            let pay_src = pay.static_pad("src").ok_or_else(|| op_err("payloader has no src pad"))?;
            pay_src.link(&sink_pad).map_err(|e| op_err(format!("payloader → webrtcbin: {e:?}")))?;
            // Held media is dropped *before* the payloader, so no packet is made and the RTP
            // sequence numbers stay continuous across a hold: a gap of thousands of sequence
            // numbers made the far end's jitter buffer wait out its lost-packet timers, and the
            // resumed audio came back only after 5-10 s (soak, issue 7). The timestamp jump
            // that remains is what RFC 3550 §5.1 expects after a pause in sending. DTMF events
            // replace audio packets at the payloader's output, so none go out while held either.
            let pay_sink = pay.static_pad("sink").ok_or_else(|| op_err("payloader has no sink pad"))?;
            t.gate.attach(&pay_sink, true);
            t.dtmf.attach(&pay_src);
            Ok::<_, EngineError>(())
        })();
        if let Err(e) = built {
            for el in &elements {
                let _ = el.set_state(gst::State::Null);
                let _ = self.pipeline.remove(el);
            }
            return Err(e);
        }
        for e in elements.iter().rev() {
            let _ = e.sync_state_with_parent();
        }
        tracing::info!(transceiver = %t.id, codec = %codec.encoding_name().to_ascii_lowercase(), pt, "send branch linked");
        let level = stats::AudioLevelMeter::new();
        // Metered where the raw format is fixed (the capsfilter before the encoder).
        if let Some(pad) = elements
            .iter()
            .find(|e| e.factory().is_some_and(|f| f.name() == "capsfilter"))
            .and_then(|e| e.static_pad("src"))
        {
            level.attach(&pad);
        }
        t.send = Some(SendBranch { codec, pt, elements, volume, level });
        self.attach_source(t)
    }

    /// Links the transceiver's source (if any) into its send branch (if any) and starts it.
    fn attach_source(&self, t: &mut Trans) -> EngineResult<()> {
        let (Some(source), Some(branch)) = (&t.source, &t.send) else {
            return Ok(());
        };
        let queue = &branch.elements[0];
        if queue.static_pad("sink").is_some_and(|p| p.is_linked()) {
            return Ok(());
        }
        if source.parent().is_none() {
            self.pipeline.add(source).map_err(|e| op_err(format!("source: {e}")))?;
        }
        if let Err(e) = source.link(queue) {
            let _ = self.pipeline.remove(source);
            return Err(op_err(format!("source → encoder: {e}")));
        }
        if let Some(bin) = source.downcast_ref::<gst::Bin>() {
            for aec in bin.iterate_all_by_element_factory_name("vdiaec").into_iter().flatten() {
                aec.set_property("probe", &self.aec_ref);
                tracing::info!(transceiver = %t.id, aec = %aec.name(), reference = %self.aec_ref, "echo canceller referenced to this connection's playout");
            }
        }
        source.sync_state_with_parent().map_err(|e| op_err(format!("source did not start: {e}")))?;
        tracing::info!(transceiver = %t.id, track = ?t.sender_track, "sending");
        Ok(())
    }

    /// WebRTC 1.0 §4.4.1.6 (set a remote description): a transceiver whose m-line the remote
    /// offer or answer rejects (port 0) is stopped.
    fn stop_rejected(&self, remote: &gst_sdp::SDPMessage) {
        let mut st = lock(&self.st);
        for (idx, media) in remote.medias().enumerate() {
            if media.media() != Some("audio") || !sdp::is_rejected(media) {
                continue;
            }
            let mid = sdp::media_mid(media);
            if let Some(t) = st.transceivers.iter_mut().find(|t| {
                t.kind_audio
                    && !t.is_stopping()
                    && (t.mline() == Some(idx as u32) || (mid.is_some() && t.mid() == mid))
            }) {
                self.stop_trans(t, "the remote description rejected its m-line");
            }
        }
    }

    /// The description webrtcbin is given: `msg` (the page's `desc`), with the m-lines of stopped
    /// transceivers alive again ([`sdp::revive_for_webrtcbin`]). In a local offer every rejected
    /// audio m-line is ours (webrtcbin never rejects in offers).
    fn webrtcbin_view(
        &self,
        local: bool,
        desc: &RtcSessionDescriptionInit,
        msg: &gst_sdp::SDPMessage,
    ) -> EngineResult<gst_sdp::SDPMessage> {
        let st = lock(&self.st);
        let stopped: Vec<(Option<u32>, Option<String>)> =
            st.transceivers.iter().filter(|t| t.is_stopping()).map(|t| (t.mline(), t.mid())).collect();
        let local_offer = local && desc.sdp_type == RtcSdpType::Offer;
        if stopped.is_empty() {
            return Ok(msg.clone());
        }
        let fallback = if local { None } else { st.descs.current_remote.as_ref().map(|d| d.sdp.clone()) };
        drop(st);
        let text = sdp::revive_for_webrtcbin(
            &desc.sdp,
            |idx, mid| {
                local_offer
                    || stopped
                        .iter()
                        .any(|(ml, m)| *ml == Some(idx) || (mid.is_some() && m.as_deref() == mid))
            },
            !local,
            fallback.as_deref(),
        );
        sdp::parse(&text)
    }

    /// "Stop sending and receiving" (WebRTC 1.0 §5.4) on `t`: [[Direction]] `stopped`, both
    /// RTP directions gated for good, the source stopped (device released), no DTMF. The
    /// m-line is rejected from the next description on (see `stop_transceiver`).
    fn stop_trans(&self, t: &mut Trans, why: &str) {
        t.direction = RtcRtpTransceiverDirection::Stopped;
        t.gate.set(Some(RtcRtpTransceiverDirection::Inactive));
        t.dtmf.set_payload(None);
        if let Some(source) = t.source.take() {
            self.detach_source(&source);
        }
        let _g = self.span.enter();
        tracing::info!(event = "transceiver-stopped", transceiver = %t.id, mid = ?t.mid(), reason = why,
            "transceiver {} stopped: {why}", t.id);
    }

    /// Unlinks and stops a source (NULL releases its device) and takes it out of the pipeline.
    fn detach_source(&self, source: &gst::Element) {
        for pad in source.src_pads() {
            if let Some(peer) = pad.peer() {
                let _ = pad.unlink(&peer);
            }
        }
        let _ = source.set_state(gst::State::Null);
        if source.parent().is_some() {
            let _ = self.pipeline.remove(source);
        }
    }

    /// Unlinks a send branch from webrtcbin and removes its elements.
    fn unlink_send(&self, b: SendBranch, sink_pad: Option<&gst::Pad>) {
        if let (Some(pay), Some(sink_pad)) = (b.elements.last(), sink_pad)
            && let Some(src) = pay.static_pad("src")
        {
            let _ = src.unlink(sink_pad);
        }
        for e in &b.elements {
            let _ = e.set_state(gst::State::Null);
            let _ = self.pipeline.remove(e);
        }
    }

    /// A webrtcbin src pad appeared (remote RTP of a new SSRC arrived): depayload, decode,
    /// play out. On any failure the pad still gets a fakesink: an unlinked src pad would stop
    /// ALL reception of the connection with not-linked.
    fn on_src_pad(&self, pad: &gst::Pad) -> EngineResult<()> {
        let r = self.link_src_pad(pad);
        if r.is_err()
            && !pad.is_linked()
            && let Ok(sink) = codecs::make("fakesink")
        {
            sink.set_property("sync", false);
            sink.set_property("async", false);
            let _ = self.pipeline.add(&sink);
            if let Some(sp) = sink.static_pad("sink") {
                let _ = pad.link(&sp);
            }
            let _ = sink.sync_state_with_parent();
        }
        r
    }

    fn link_src_pad(&self, pad: &gst::Pad) -> EngineResult<()> {
        let caps = pad.current_caps().ok_or_else(|| op_err("src pad without caps"))?;
        let s = caps.structure(0).ok_or_else(|| op_err("empty caps"))?;
        if s.get::<&str>("encoding-name").is_ok_and(|n| n.eq_ignore_ascii_case(dtmf::TELEPHONE_EVENT)) {
            // The remote's RFC 4733 events: recorded and logged, then discarded.
            let rate = s.get::<i32>("clock-rate").unwrap_or(8000).max(1) as u32;
            self.dtmf_received.attach(pad, rate);
            let sink = codecs::make("fakesink")?;
            sink.set_property("sync", false);
            sink.set_property("async", false);
            self.pipeline.add(&sink).map_err(|e| op_err(e.to_string()))?;
            let sp = sink.static_pad("sink").ok_or_else(|| op_err("fakesink has no sink pad"))?;
            pad.link(&sp).map_err(|e| op_err(format!("webrtcbin → telephone-event sink: {e:?}")))?;
            let _ = sink.sync_state_with_parent();
            tracing::info!(pad = %pad.name(), clock_rate = rate, "receiving telephone-event");
            return Ok(());
        }
        let codec = codecs::codec_of_caps(s)
            .ok_or_else(|| op_err(format!("received a stream we cannot decode ({caps}); discarding")))?;
        let trans = pad
            .find_property("transceiver")
            .map(|_| pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver"));
        let mut st = lock(&self.st);
        if st.closed {
            return Err(op_err("closed"));
        }
        let mut t = trans.and_then(|tr| st.transceivers.iter_mut().find(|t| t.trans == tr));
        if let Some(t) = &t {
            t.gate.attach(pad, false);
        }
        let playout = t.as_ref().and_then(|t| t.playout.clone());
        let previous = t.as_mut().and_then(|t| t.recv.take());
        // A second SSRC on the same transceiver (the remote restarted its sender): the new
        // branch starts on a fakesink and the playout sink moves over once the old one lets go.
        let sink = match (&playout, &previous) {
            (Some(p), None) => p.clone(),
            _ => make_fakesink()?,
        };
        prepare_sink(&sink);
        let (depay, dec) = codec.make_decoder()?;
        let conv = codecs::make("audioconvert")?;
        let resample = codecs::make("audioresample")?;
        let mut elements = vec![depay.clone(), dec, conv, resample.clone()];
        // The echo reference of capture sent on this connection: what it plays out (media::aec).
        if self.pipeline.by_name(&self.aec_ref).is_none()
            && let Ok(probe) = gst::ElementFactory::make("vdiaecprobe").name(&self.aec_ref).build()
        {
            elements.push(probe);
        }
        self.pipeline.add_many(&elements).map_err(|e| op_err(e.to_string()))?;
        let tail = elements
            .last()
            .and_then(|e| e.static_pad("src"))
            .expect("audioresample/vdiaecprobe have a src pad");
        let linked = (|| {
            self.pipeline.add(&sink).map_err(|e| op_err(format!("playout sink: {e}")))?;
            gst::Element::link_many(&elements).map_err(|e| op_err(e.to_string()))?;
            let sink_pad = sink.static_pad("sink").ok_or_else(|| op_err("playout sink has no sink pad"))?;
            tail.link(&sink_pad).map_err(|e| op_err(format!("decoder → playout: {e:?}")))?;
            let _ = sink.sync_state_with_parent();
            for e in elements.iter().rev() {
                let _ = e.sync_state_with_parent();
            }
            pad.link(&depay.static_pad("sink").expect("depayloader has a sink pad"))
                .map_err(|e| op_err(format!("webrtcbin → depayloader: {e:?}")))?;
            Ok::<_, EngineError>(())
        })();
        if let Err(e) = linked {
            for el in elements.iter().chain(std::iter::once(&sink)) {
                let _ = el.set_state(gst::State::Null);
                let _ = self.pipeline.remove(el);
            }
            if let (Some(t), Some(prev)) = (t, previous) {
                t.recv = Some(prev);
            }
            return Err(e);
        }
        let monitor = stats::ReceiveMonitor::new();
        // The level meter watches the decoded audio on the sink pad of the branch's last
        // element, not on `tail`: swap_sink relinks `tail` from an IDLE probe, which GStreamer
        // runs at once on the calling thread when no push is registered, and a push still
        // inside a plain BUFFER probe of `tail` then found it unlinked ("not-linked" stops
        // all reception on the connection; seen in sink_switch under load).
        let level_pad = elements.last().and_then(|e| e.static_pad("sink")).unwrap_or_else(|| tail.clone());
        if let Some(rtp) = depay.static_pad("sink") {
            monitor.attach(&rtp, &level_pad);
        }
        tracing::info!(pad = %pad.name(), codec = %codec.encoding_name().to_ascii_lowercase(), sink = %sink.name(), "receiving");
        let Some(t) = t else { return Ok(()) };
        match (previous, playout) {
            (Some(prev), Some(p)) if prev.sink == p => {
                let (pipeline, pc_id) = (self.pipeline.clone(), self.id.clone());
                let (new_tail, new_fake) = (tail.clone(), sink.clone());
                t.recv =
                    Some(RecvBranch { _elements: elements, monitor: monitor.clone(), tail, sink: p.clone() });
                let fake = make_fakesink()?;
                swap_sink(
                    &self.pipeline,
                    &self.id,
                    &prev.tail,
                    prev.sink,
                    fake,
                    Some(Box::new(move || {
                        swap_sink(&pipeline, &pc_id, &new_tail, new_fake, p, None);
                    })),
                );
            }
            _ => t.recv = Some(RecvBranch { _elements: elements, monitor: monitor.clone(), tail, sink }),
        }
        Ok(())
    }

    /// Reads webrtcbin's signaling, ICE connection and connection states and sends the changed
    /// ones, in that order (the spec fires iceconnectionstatechange before connectionstatechange).
    fn sync_states(&self) {
        let sig = signaling_from_gst(self.webrtc.property("signaling-state"));
        let transport_ice = ice_from_gst(self.webrtc.property("ice-connection-state"));
        let transport_conn = conn_from_gst(self.webrtc.property("connection-state"));
        let _g = self.span.enter();
        let mut log_pair = false;
        let mut st = lock(&self.st);
        if st.closed {
            return;
        }
        let (transport_ice, transport_conn) =
            ice::states_during_restart(&mut st.ice_restarting, transport_ice, transport_conn);
        st.transport_ice = transport_ice;
        let (ice, conn) = with_consent(st.consent, transport_ice, transport_conn);
        // webrtcbin holds the remote pranswer as its answer (see `State::early_pranswer`).
        // and the re-offer it does not have yet (`State::deferred_offer`).
        let sig = if st.early_pranswer.is_some() && sig == RtcSignalingState::Stable {
            RtcSignalingState::HaveRemotePranswer
        } else if st.deferred_offer.is_some() && sig == RtcSignalingState::Stable {
            RtcSignalingState::HaveLocalOffer
        } else if st.deferred_remote_offer.is_some() && sig == RtcSignalingState::Stable {
            RtcSignalingState::HaveRemoteOffer
        } else {
            sig
        };
        if st.signaling != sig {
            st.signaling = sig;
            let state = crate::logging::w3c(&sig);
            tracing::info!(event = "signalingstatechange", state = %state, "signalingstatechange: {state}");
            let _ = self.events.send(PcEvent::SignalingStateChange(sig));
        }
        if st.ice != ice {
            st.ice = ice;
            let state = crate::logging::w3c(&ice);
            tracing::info!(event = "iceconnectionstatechange", state = %state, "iceconnectionstatechange: {state}");
            let _ = self.events.send(PcEvent::IceConnectionStateChange(ice));
            if matches!(ice, RtcIceConnectionState::Connected | RtcIceConnectionState::Completed)
                && !st.pair_logged
            {
                st.pair_logged = true;
                log_pair = true;
            }
        }
        if st.conn != conn {
            st.conn = conn;
            let state = crate::logging::w3c(&conn);
            tracing::info!(event = "connectionstatechange", state = %state, "connectionstatechange: {state}");
            let _ = self.events.send(PcEvent::ConnectionStateChange(conn));
        }
        drop(st);
        if log_pair {
            self.log_selected_pair();
        }
    }

    /// One look of the consent watch at `now`: notes whether the far end sent anything since
    /// the last look, and moves [`Consent`] (and so the states the page sees) when the silence
    /// crosses [`CONSENT_DISCONNECTED_AFTER`] or [`CONSENT_FAILED_AFTER`], or ends. Only a
    /// transport webrtcbin calls connected with media negotiated is watched (a call on hold
    /// with every transceiver `inactive` sends nothing, legitimately). Returns false when
    /// there is nothing more to watch (closed, or consent expired).
    fn check_consent(&self, w: &mut ConsentWatch, now: std::time::Instant) -> bool {
        use RtcRtpTransceiverDirection as D;
        let packets = self.counters.packets_received();
        if packets != w.packets {
            w.packets = packets;
            w.heard_at = now;
        }
        let mut st = lock(&self.st);
        if st.closed || st.consent == Consent::Failed {
            return false;
        }
        let connected =
            matches!(st.transport_ice, RtcIceConnectionState::Connected | RtcIceConnectionState::Completed);
        let media = st.transceivers.iter().any(|t| {
            t.kind_audio && matches!(t.current_direction, Some(D::Sendrecv | D::Sendonly | D::Recvonly))
        });
        if !connected || !media {
            w.heard_at = now;
            st.consent = Consent::Fresh;
            return true;
        }
        let silent = now.saturating_duration_since(w.heard_at);
        let next = if silent >= CONSENT_FAILED_AFTER {
            Consent::Failed
        } else if silent >= CONSENT_DISCONNECTED_AFTER {
            Consent::Disconnected
        } else {
            Consent::Fresh
        };
        if next == Consent::Fresh {
            // Halted only by an expired consent; heard again after an ICE restart: resume.
            self.counters.set_sending_halted(false);
        }
        if next == st.consent {
            return true;
        }
        st.consent = next;
        drop(st);
        {
            let _g = self.span.enter();
            let silent_ms = silent.as_millis() as u64;
            match next {
                Consent::Disconnected => tracing::warn!(
                    event = "consent",
                    reason = "far-end-silent",
                    silent_ms,
                    "nothing received from the far end for {silent_ms} ms: ICE disconnected (RFC 7675 consent in doubt)"
                ),
                Consent::Failed => {
                    // RFC 7675 §5.1: without consent, stop sending to that address.
                    self.counters.set_sending_halted(true);
                    tracing::warn!(
                        event = "consent",
                        reason = "consent-expired",
                        silent_ms,
                        "nothing received from the far end for {silent_ms} ms: ICE consent expired (RFC 7675), connection failed; sending stopped"
                    );
                }
                Consent::Fresh => tracing::info!(
                    event = "consent",
                    reason = "far-end-back",
                    silent_ms,
                    "the far end is heard again after {silent_ms} ms: ICE connected again"
                ),
            }
        }
        self.sync_states();
        next != Consent::Failed
    }

    /// WebRTC 1.0 §4.7.3 "update the negotiation-needed flag", with §4.7.2's check reduced to
    /// what an audio-only engine has: a transceiver not yet in a description, or whose
    /// direction differs from the one the current local description says (for an answer, as
    /// limited by the remote offer). Fires `negotiationneeded` only in `stable` and only when
    /// the flag goes from false to true.
    fn update_negotiation_needed(&self) {
        use RtcRtpTransceiverDirection as D;
        let mut st = lock(&self.st);
        if st.closed || st.signaling != RtcSignalingState::Stable {
            return;
        }
        let parse = |d: &Option<RtcSessionDescriptionInit>| {
            d.as_ref().and_then(|d| sdp::parse(&d.sdp).ok().map(|m| (d.sdp_type, m)))
        };
        let local = parse(&st.descs.current_local);
        let remote = parse(&st.descs.current_remote);
        let needed = st.transceivers.iter().filter(|t| t.kind_audio).any(|t| {
            if t.is_stopping() {
                // §4.7.2: a stopping transceiver needs negotiation until an answer stopped it.
                return t.current_direction != Some(D::Stopped);
            }
            let dir = t.direction;
            let (Some(m), Some((local_type, local))) = (t.mline(), &local) else {
                return true;
            };
            let Some(lm) = local.media(m) else {
                return true;
            };
            let ldir = sdp::media_direction(lm);
            if *local_type == RtcSdpType::Offer {
                ldir != dir
            } else {
                let offered = remote
                    .as_ref()
                    .and_then(|(_, r)| r.media(m).map(|rm| sdp::reverse(sdp::media_direction(rm))))
                    .unwrap_or(D::Sendrecv);
                ldir != sdp::intersect(dir, offered)
            }
        });
        if !needed {
            st.negotiation_needed = false;
            return;
        }
        if st.negotiation_needed {
            return;
        }
        st.negotiation_needed = true;
        let _g = self.span.enter();
        tracing::info!(event = "negotiationneeded", "negotiationneeded");
        let _ = self.events.send(PcEvent::NegotiationNeeded);
    }

    fn set_gathering(&self, st: &mut State, g: RtcIceGatheringState) {
        if st.closed || st.gathering == g {
            return;
        }
        st.gathering = g;
        let _g = self.span.enter();
        let state = crate::logging::w3c(&g);
        tracing::info!(event = "icegatheringstatechange", state = %state, "icegatheringstatechange: {state}");
        let _ = self.events.send(PcEvent::IceGatheringStateChange(g));
        if g == RtcIceGatheringState::Complete {
            let _ = self.events.send(PcEvent::IceCandidate(None));
        }
    }

    /// After an ICE restart took new local credentials: libnice gathers nothing new, so its
    /// candidates are signalled again under the new ufrag, gathering `gathering` → `complete`
    /// with the null candidate (WebRTC 1.0 §4.4.1.6: a restart starts a new generation).
    fn signal_candidates_again(&self, candidates: Vec<(u32, String)>) {
        for (mline, candidate) in candidates {
            self.on_local_candidate(mline, candidate);
        }
        let mut st = lock(&self.st);
        self.set_gathering(&mut st, RtcIceGatheringState::Complete);
    }

    fn on_local_candidate(&self, mline: u32, candidate: String) {
        let mut st = lock(&self.st);
        if st.closed || candidate.trim().is_empty() {
            return;
        }
        // The spec has gathering start before the first candidate.
        if st.gathering != RtcIceGatheringState::Gathering {
            self.set_gathering(&mut st, RtcIceGatheringState::Gathering);
        }
        let (mid, ufrag) = st.local_mlines.get(mline as usize).cloned().unwrap_or((None, None));
        let candidate = candidate.trim_start_matches("a=").to_string();
        let _g = self.span.enter();
        let kind = crate::logging::CandidateKind::parse(&candidate);
        tracing::info!(event = "icecandidate", candidate_type = %kind.typ, protocol = %kind.protocol, mline,
            "local ICE candidate gathered: {kind}");
        tracing::debug!(mline, %candidate, "local candidate");
        let _ = self.events.send(PcEvent::IceCandidate(Some(RtcIceCandidateInit {
            candidate,
            sdp_mid: mid,
            sdp_m_line_index: Some(mline),
            username_fragment: ufrag,
        })));
    }

    /// Logs the selected ICE candidate pair (from get-stats) once the connection is up.
    fn log_selected_pair(&self) {
        let span = self.span.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            let _g = span.enter();
            let Ok(Some(reply)) = reply else { return };
            let all = stats::reply_to_json(reply);
            let by_id = |id: &serde_json::Value| all.iter().find(|s| s.get("id") == Some(id)).cloned();
            for pair in all.iter().filter(|s| s["type"] == "candidate-pair") {
                let local = pair.get("localCandidateId").and_then(by_id).unwrap_or_default();
                let remote = pair.get("remoteCandidateId").and_then(by_id).unwrap_or_default();
                let kind = |c: &serde_json::Value| {
                    format!(
                        "{}/{}",
                        c["candidateType"].as_str().unwrap_or("unknown"),
                        c["protocol"].as_str().unwrap_or("unknown").to_ascii_lowercase()
                    )
                };
                let pair = format!("{} -> {}", kind(&local), kind(&remote));
                tracing::info!(event = "candidate-pair", candidate_pair = %pair,
                    local_candidate_type = local["candidateType"].as_str().unwrap_or("unknown"),
                    remote_candidate_type = remote["candidateType"].as_str().unwrap_or("unknown"),
                    "selected ICE candidate pair: {pair}");
                // Addresses identify the user's network: debug only.
                tracing::debug!(
                    local = %format!("{}:{}", local["address"].as_str().unwrap_or("?"), local["port"]),
                    remote = %format!("{}:{}", remote["address"].as_str().unwrap_or("?"), remote["port"]),
                    "selected candidate pair addresses");
            }
        });
        self.webrtc.emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    }
}

/// Whether a description of `sdp_type` may be applied (local or remote) in `signaling`, per
/// the JSEP state machine (RFC 8829 §3.2, WebRTC 1.0 §4.4.1.5). Wrong state → `invalid_state`;
/// rollback (handled before, by `rollback_locked`) → `operation_error`.
fn check_description_state(
    _pc: &str,
    local: bool,
    sdp_type: RtcSdpType,
    signaling: RtcSignalingState,
) -> EngineResult<()> {
    use RtcSignalingState as S;
    let allowed = match (sdp_type, local) {
        (RtcSdpType::Offer, true) => matches!(signaling, S::Stable | S::HaveLocalOffer),
        (RtcSdpType::Offer, false) => matches!(signaling, S::Stable | S::HaveRemoteOffer),
        (RtcSdpType::Answer | RtcSdpType::Pranswer, true) => {
            matches!(signaling, S::HaveRemoteOffer | S::HaveLocalPranswer)
        }
        (RtcSdpType::Answer | RtcSdpType::Pranswer, false) => {
            matches!(signaling, S::HaveLocalOffer | S::HaveRemotePranswer)
        }
        (RtcSdpType::Rollback, _) => {
            tracing::warn!("rollback requested: not supported by webrtcbin 1.22");
            return Err(op_err("rollback is not supported by this engine"));
        }
    };
    if allowed {
        return Ok(());
    }
    let method = if local { "setLocalDescription" } else { "setRemoteDescription" };
    tracing::warn!(?sdp_type, ?signaling, "{method} in wrong state");
    Err(EngineError::invalid_state(format!("{method}({sdp_type:?}) in signaling state {signaling:?}")))
}

#[cfg(test)]
mod consent_tests {
    use super::*;
    use RtcIceConnectionState as I;
    use RtcPeerConnectionState as C;

    #[test]
    fn consent_overlays_only_a_connected_transport_and_failed_always_wins() {
        assert_eq!(with_consent(Consent::Fresh, I::Connected, C::Connected), (I::Connected, C::Connected));
        assert_eq!(
            with_consent(Consent::Disconnected, I::Completed, C::Connected),
            (I::Disconnected, C::Disconnected)
        );
        // Checking, or failed by libnice itself: webrtcbin's word stands.
        assert_eq!(
            with_consent(Consent::Disconnected, I::Checking, C::Connecting),
            (I::Checking, C::Connecting)
        );
        assert_eq!(with_consent(Consent::Failed, I::Connected, C::Connected), (I::Failed, C::Failed));
        assert_eq!(with_consent(Consent::Failed, I::Disconnected, C::Disconnected), (I::Failed, C::Failed));
    }

    #[test]
    fn consent_timing_follows_rfc_7675() {
        assert_eq!(CONSENT_FAILED_AFTER, Duration::from_secs(30));
        assert!(CONSENT_DISCONNECTED_AFTER > Duration::from_millis(7500), "above the worst RTCP interval");
        assert!(CONSENT_DISCONNECTED_AFTER < CONSENT_FAILED_AFTER);
        assert!(CONSENT_TICK <= Duration::from_secs(1));
    }
}
