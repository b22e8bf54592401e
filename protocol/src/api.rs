//! W3C dictionaries carried in request params, results and events (docs/protocol.md,
//! "Methods" and "Events").
//!
//! Field names follow the W3C specs exactly (camelCase on the wire): WebRTC 1.0
//! (<https://www.w3.org/TR/webrtc/>) and Media Capture and Streams
//! (<https://www.w3.org/TR/mediacapture-streams/>). Unknown fields are ignored so that newer
//! SDKs can send more than this engine knows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `RTCIceServer` (WebRTC 1.0 §4.2.4). `urls` is one URL or a list (`stun:`, `turn:`, `turns:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcIceServer {
    pub urls: OneOrMany,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A string or a list of strings, as `RTCIceServer.urls` allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The URLs as a list, whichever form was sent.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `RTCIceTransportPolicy` (WebRTC 1.0 §4.2.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcIceTransportPolicy {
    #[default]
    All,
    Relay,
}

/// `RTCBundlePolicy` (WebRTC 1.0 §4.2.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcBundlePolicy {
    #[default]
    Balanced,
    MaxCompat,
    MaxBundle,
}

/// `RTCConfiguration` (WebRTC 1.0 §4.2.1), the members this engine honours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcConfiguration {
    #[serde(default)]
    pub ice_servers: Vec<RtcIceServer>,
    #[serde(default)]
    pub ice_transport_policy: RtcIceTransportPolicy,
    #[serde(default)]
    pub bundle_policy: RtcBundlePolicy,
}

/// `RTCSdpType` (WebRTC 1.0 §4.8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtcSdpType {
    Offer,
    Pranswer,
    Answer,
    Rollback,
}

/// `RTCSessionDescriptionInit` (WebRTC 1.0 §4.8.1). `sdp` is the SDP text (RFC 8866), empty for
/// `rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RtcSessionDescriptionInit {
    #[serde(rename = "type")]
    pub sdp_type: RtcSdpType,
    #[serde(default)]
    pub sdp: String,
}

/// `RTCIceCandidateInit` (WebRTC 1.0 §4.8.2). `candidate` is the `candidate:` attribute value
/// of RFC 8839 §5.1 (with the `candidate:` prefix); an empty string marks end of candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcIceCandidateInit {
    #[serde(default)]
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// `RTCOfferOptions` (WebRTC 1.0 §4.2.7); legacy `offerToReceiveAudio` is honoured as Chromium
/// does (adds a `recvonly` audio transceiver when none exists).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcOfferOptions {
    #[serde(default)]
    pub ice_restart: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_to_receive_audio: Option<Value>,
}

/// `RTCSignalingState` (WebRTC 1.0 §4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcSignalingState {
    Stable,
    HaveLocalOffer,
    HaveRemoteOffer,
    HaveLocalPranswer,
    HaveRemotePranswer,
    Closed,
}

/// `RTCIceGatheringState` (WebRTC 1.0 §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcIceGatheringState {
    New,
    Gathering,
    Complete,
}

/// `RTCIceConnectionState` (WebRTC 1.0 §4.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcIceConnectionState {
    New,
    Checking,
    Connected,
    Completed,
    Disconnected,
    Failed,
    Closed,
}

/// `RTCPeerConnectionState` (WebRTC 1.0 §4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RtcPeerConnectionState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

/// `RTCRtpTransceiverDirection` (WebRTC 1.0 §5.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtcRtpTransceiverDirection {
    Sendrecv,
    Sendonly,
    Recvonly,
    Inactive,
    Stopped,
}

/// `RTCRtpEncodingParameters` (WebRTC 1.0 §5.2.1) as remoted: `sendEncodings` of
/// `addTransceiver` and `encodings` of `RTCRtpSender.setParameters`. Audio has one encoding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcRtpEncodingParameters {
    /// Whether the encoding is sent (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Upper bound of the encoding's bitrate, bit/s (the Opus encoder's `bitrate` is capped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate: Option<u32>,
}

/// A media track as the page sees it (`MediaStreamTrack` id, kind, label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRef {
    pub id: String,
    pub kind: String,
    pub label: String,
}

/// `RTCRtpSender` as remoted: its id and the id of the track it sends, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SenderInfo {
    pub id: String,
    pub track: Option<String>,
}

/// `RTCRtpReceiver` as remoted: its id and its (always present) remote track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverInfo {
    pub id: String,
    pub track: TrackRef,
}

/// `RTCRtpTransceiver` (WebRTC 1.0 §5.4) as remoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransceiverInfo {
    pub id: String,
    pub mid: Option<String>,
    pub direction: RtcRtpTransceiverDirection,
    pub current_direction: Option<RtcRtpTransceiverDirection>,
    pub sender: SenderInfo,
    pub receiver: ReceiverInfo,
}

/// The attributes of an `RTCPeerConnection` after an operation (the `PcState` of
/// docs/protocol.md), so the SDK's getters match the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PcState {
    pub signaling_state: RtcSignalingState,
    pub ice_gathering_state: RtcIceGatheringState,
    pub ice_connection_state: RtcIceConnectionState,
    pub connection_state: RtcPeerConnectionState,
    pub local_description: Option<RtcSessionDescriptionInit>,
    pub remote_description: Option<RtcSessionDescriptionInit>,
    pub current_local_description: Option<RtcSessionDescriptionInit>,
    pub current_remote_description: Option<RtcSessionDescriptionInit>,
    pub pending_local_description: Option<RtcSessionDescriptionInit>,
    pub pending_remote_description: Option<RtcSessionDescriptionInit>,
    pub transceivers: Vec<TransceiverInfo>,
}

/// `MediaDeviceKind` (Media Capture §9.2.1). Only audio devices are remoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaDeviceKind {
    Audioinput,
    Audiooutput,
}

/// `MediaDeviceInfo` (Media Capture §9.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaDeviceInfo {
    pub device_id: String,
    pub kind: MediaDeviceKind,
    pub label: String,
    pub group_id: String,
}

/// `MediaTrackSettings` (Media Capture §4.3.8), audio members. `sample_rate` in Hz.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaTrackSettings {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    pub sample_rate: u32,
    pub channel_count: u32,
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain_control: bool,
}

/// A local (capture) track returned by `media.getUserMedia`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub id: String,
    pub kind: String,
    pub label: String,
    pub settings: MediaTrackSettings,
}

/// `MediaStreamConstraints` (Media Capture §10.1.1). `audio` is `true`/`false` or a
/// `MediaTrackConstraints` object, kept as JSON because constraints have many forms
/// (`exact`, `ideal`, bare values, `advanced`); the media module interprets it. `video` is
/// accepted so the engine can reject it with a clear error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaStreamConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_uses_w3c_names() {
        let c: RtcConfiguration = serde_json::from_str(
            r#"{"iceServers":[{"urls":"stun:127.0.0.1:3478"},
                {"urls":["turn:127.0.0.1:3478?transport=udp"],"username":"u","credential":"p"}],
                "iceTransportPolicy":"relay","bundlePolicy":"max-bundle","certificates":[]}"#,
        )
        .unwrap();
        assert_eq!(c.ice_transport_policy, RtcIceTransportPolicy::Relay);
        assert_eq!(c.bundle_policy, RtcBundlePolicy::MaxBundle);
        assert_eq!(c.ice_servers[0].urls.to_vec(), vec!["stun:127.0.0.1:3478".to_string()]);
        assert_eq!(c.ice_servers[1].username.as_deref(), Some("u"));
    }

    #[test]
    fn candidate_init_round_trips_with_spec_names() {
        let json = r#"{"candidate":"candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host","sdpMid":"0","sdpMLineIndex":0}"#;
        let c: RtcIceCandidateInit = serde_json::from_str(json).unwrap();
        assert_eq!(c.sdp_m_line_index, Some(0));
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["sdpMLineIndex"], 0);
        assert_eq!(back["sdpMid"], "0");
    }

    #[test]
    fn states_serialize_as_spec_strings() {
        assert_eq!(
            serde_json::to_string(&RtcSignalingState::HaveLocalOffer).unwrap(),
            "\"have-local-offer\""
        );
        assert_eq!(serde_json::to_string(&RtcRtpTransceiverDirection::Sendrecv).unwrap(), "\"sendrecv\"");
        let d: RtcSessionDescriptionInit = serde_json::from_str(r#"{"type":"rollback"}"#).unwrap();
        assert_eq!(d.sdp_type, RtcSdpType::Rollback);
    }
}
