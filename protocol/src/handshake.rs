//! JSON payloads of the control frames (docs/protocol.md, "Handshake" and "Sessions").
//! Field names are snake_case on the wire; unknown fields are ignored so newer peers can add
//! fields without a version bump.

use serde::{Deserialize, Serialize};

use crate::message::ErrorCode;

/// The `magic` of every `HELLO`.
pub const MAGIC: &str = "vdimedia";

/// `HELLO` (vda → endpoint, session 0): the vda's version range and frame limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`MAGIC`]; anything else closes the channel with `bad_frame`.
    pub magic: String,
    pub min_version: u16,
    pub max_version: u16,
    /// Product/version of the vda side, e.g. `"vdimedia-bridge/0.1.0"`.
    pub agent: String,
    /// Largest frame (bytes, incl. the 4-byte length) the vda accepts, `256..=65536`.
    pub max_frame: u32,
}

impl Hello {
    /// A `HELLO` with this crate's version range and the given frame limit.
    pub fn new(agent: impl Into<String>, max_frame: u32) -> Self {
        Hello {
            magic: MAGIC.to_string(),
            min_version: crate::MIN_VERSION,
            max_version: crate::MAX_VERSION,
            agent: agent.into(),
            max_frame,
        }
    }
}

/// Device counts in [`Capabilities`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounts {
    #[serde(default)]
    pub audioinput: u32,
    #[serde(default)]
    pub audiooutput: u32,
}

/// What the endpoint can do, reported in `WELCOME` and forwarded to the page as `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Audio codec names as in SDP rtpmap (`"opus"`, `"G722"`, `"PCMU"`, `"PCMA"`).
    #[serde(default)]
    pub codecs: Vec<String>,
    /// `"hardware"`, `"software"` or `"none"`: the echo cancellation of the default capture.
    #[serde(default)]
    pub aec: String,
    /// `"pipewire"`, `"alsa"`, …
    #[serde(default)]
    pub audio_backend: String,
    #[serde(default)]
    pub devices: DeviceCounts,
}

/// `WELCOME` (endpoint → vda, session 0): the negotiated version and frame limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The highest version in both ranges.
    pub version: u16,
    /// Product/version of the endpoint, e.g. `"vdimediad/0.1.0"`.
    pub engine: String,
    /// `std::env::consts::OS` of the endpoint.
    pub os: String,
    /// `std::env::consts::ARCH` of the endpoint.
    pub arch: String,
    /// Negotiated frame limit (bytes): the smaller of both sides' `max_frame`.
    pub max_frame: u32,
    #[serde(default)]
    pub capabilities: Capabilities,
}

impl Welcome {
    /// A `WELCOME` for this machine (`os`/`arch` from `std::env::consts`); `version` and
    /// `max_frame` are overwritten by the channel during negotiation.
    pub fn new(engine: impl Into<String>, capabilities: Capabilities) -> Self {
        Welcome {
            version: crate::PROTOCOL_VERSION,
            engine: engine.into(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            max_frame: crate::frame::DEFAULT_MAX_FRAME as u32,
            capabilities,
        }
    }
}

/// `REJECT` (endpoint → vda, session 0): handshake refused; the endpoint then closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// `version_mismatch` when the version ranges do not meet.
    pub code: ErrorCode,
    pub message: String,
    /// The endpoint's own version range.
    pub min_version: u16,
    pub max_version: u16,
}

/// `OPEN` (vda → endpoint, session N): who the page is. All fields optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// The page's origin, e.g. `"https://softphone.example"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The page's browser, e.g. `"Chromium/156"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The SDK version, e.g. `"0.1.0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// A `resume_token` from an earlier `OPENED` (32 lowercase hex digits, 128 bits): asks the
    /// endpoint to re-bind the session it parked when its channel dropped (docs/protocol.md,
    /// "Sessions"). `OPENED.resumed` says whether it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

/// `OPENED` (endpoint → vda, session N). All fields optional: an empty payload (an endpoint
/// without session resumption) parses as the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// Secret naming this session for a later `OPEN.resume` (32 lowercase hex digits, 128
    /// random bits). Absent when the endpoint cannot park sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// True when `OPEN.resume` named a parked session and this session continues it (its
    /// objects exist, events queued while parked follow); false for a new, empty session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// How long (ms) the endpoint keeps this session parked after its channel drops without a
    /// `CLOSE` (`[vc] session_grace_ms`); 0 or absent: not parked, closed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_grace_ms: Option<u64>,
}

/// `CLOSE` (either way, session N; session 0 closes the whole channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    pub code: ErrorCode,
    #[serde(default)]
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn spec_examples_parse() {
        let h: Hello = serde_json::from_str(
            r#"{"magic":"vdimedia","min_version":1,"max_version":1,
                "agent":"vdimedia-bridge/0.1.0","max_frame":4096}"#,
        )
        .unwrap();
        assert_eq!(h, Hello::new("vdimedia-bridge/0.1.0", 4096));
        let w: Welcome = serde_json::from_str(
            r#"{"version":1,"engine":"vdimediad/0.1.0","os":"linux","arch":"aarch64",
                "max_frame":4096,
                "capabilities":{"codecs":["opus","G722","PCMU","PCMA"],
                                "aec":"software","audio_backend":"pipewire",
                                "devices":{"audioinput":2,"audiooutput":3}}}"#,
        )
        .unwrap();
        assert_eq!(w.capabilities.devices.audiooutput, 3);
        assert_eq!(w.capabilities.codecs.len(), 4);
        let r: Reject = serde_json::from_str(
            r#"{"code":"version_mismatch","message":"no","min_version":1,"max_version":1}"#,
        )
        .unwrap();
        assert_eq!(r.code, ErrorCode::VersionMismatch);
        let o: Open = serde_json::from_str(
            r#"{"origin":"https://softphone.example","agent":"Chromium/156","sdk":"0.1.0"}"#,
        )
        .unwrap();
        assert_eq!(o.sdk.as_deref(), Some("0.1.0"));
        assert_eq!(serde_json::from_str::<Open>("{}").unwrap(), Open::default());
        let c: Close = serde_json::from_str(r#"{"code":"normal","reason":"page closed"}"#).unwrap();
        assert_eq!(c.code, ErrorCode::Normal);
    }

    #[test]
    fn serializes_snake_case() {
        let v = serde_json::to_value(Hello::new("a", 256)).unwrap();
        assert_eq!(
            v,
            json!({"magic":"vdimedia","min_version":1,"max_version":1,"agent":"a","max_frame":256})
        );
        let v: Value = serde_json::to_value(Open::default()).unwrap();
        assert_eq!(v, json!({}));
        assert_eq!(serde_json::to_value(Opened::default()).unwrap(), json!({}));
    }

    #[test]
    fn resume_fields_are_optional() {
        let o: Open = serde_json::from_str(r#"{"sdk":"0.1.0","resume":"00ff"}"#).unwrap();
        assert_eq!(o.resume.as_deref(), Some("00ff"));
        let d: Opened =
            serde_json::from_str(r#"{"resume_token":"ab","resumed":true,"resume_grace_ms":30000,"x":1}"#)
                .unwrap();
        assert_eq!(
            d,
            Opened { resume_token: Some("ab".into()), resumed: true, resume_grace_ms: Some(30000) }
        );
        let v =
            serde_json::to_value(Opened { resume_token: Some("ab".into()), ..Opened::default() }).unwrap();
        assert_eq!(v, json!({"resume_token":"ab"}));
    }
}
