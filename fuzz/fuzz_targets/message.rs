//! The message layer: arbitrary bytes as one JSON message (docs/protocol.md, "Messages") and as
//! each W3C dictionary / handshake payload the engine deserializes (`protocol/src/api.rs`,
//! `handshake.rs`). Asserts no panic, that a parse failure stays a typed `bad_message` /
//! `invalid_params` with an id only when one is usable, and that what we serialize parses back
//! to the same value (the bridge re-serializes every page message it forwards).
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vdimedia_protocol::api::{
    MediaStreamConstraints, MediaTrackSettings, PcState, RtcConfiguration, RtcIceCandidateInit,
    RtcOfferOptions, RtcSessionDescriptionInit, TrackInfo,
};
use vdimedia_protocol::handshake::{Close, Hello, Open, Reject, Welcome};
use vdimedia_protocol::message::{ErrorBody, ErrorCode, MAX_ID, Message};

/// `T` from `data`; if it parses, its JSON must parse back to an equal `T`.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(data) else { return };
    let json = serde_json::to_vec(&v).expect("a parsed value serializes");
    let back: T = serde_json::from_slice(&json).expect("our own JSON parses");
    assert_eq!(back, v, "round trip changed the value");
}

fuzz_target!(|data: &[u8]| {
    match Message::from_json(data) {
        Ok(m) => {
            let json = m.to_json();
            assert!(std::str::from_utf8(&json).is_ok(), "to_json is not UTF-8");
            let back = Message::from_json(&json).expect("our own message JSON parses");
            assert_eq!(back, m, "message round trip changed it");
        }
        Err(e) => {
            assert!(matches!(e.error.code, ErrorCode::BadMessage | ErrorCode::InvalidParams), "{e:?}");
            if let Some(id) = e.id {
                assert!(id < MAX_ID);
            }
            if let Some(r) = e.to_response() {
                assert!(Message::from_json(&r.to_json()).is_ok());
            }
        }
    }
    round_trip::<ErrorBody>(data);
    round_trip::<RtcConfiguration>(data);
    round_trip::<RtcSessionDescriptionInit>(data);
    round_trip::<RtcIceCandidateInit>(data);
    round_trip::<RtcOfferOptions>(data);
    round_trip::<MediaStreamConstraints>(data);
    round_trip::<MediaTrackSettings>(data);
    round_trip::<TrackInfo>(data);
    round_trip::<PcState>(data);
    round_trip::<Hello>(data);
    round_trip::<Welcome>(data);
    round_trip::<Open>(data);
    round_trip::<Close>(data);
    round_trip::<Reject>(data);
});
