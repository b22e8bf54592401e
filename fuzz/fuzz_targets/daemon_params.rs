//! The daemon's pure parameter handling: `media.getUserMedia` constraints
//! (daemon/src/media/constraints.rs: parsing and SelectSettings), `pc.create` configurations
//! (daemon/src/webrtc/ice.rs: STUN/TURN URLs), `pc.addIceCandidate` inits and
//! `pc.insertDTMF` tone buffers (dtmf.rs). The input is the request's JSON `params`.
//!
//! Asserts: no panic; refusals carry the spec's error codes; a selection is a real candidate
//! with settings inside the device's capabilities.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vdimedia_fuzz::media::constraints::{self, Candidate, CaptureCapabilities};
use vdimedia_fuzz::webrtc::{dtmf, ice};
use vdimedia_protocol::api::{MediaStreamConstraints, RtcConfiguration, RtcIceCandidateInit};
use vdimedia_protocol::message::ErrorCode;

const CAPS: CaptureCapabilities = CaptureCapabilities {
    sample_rate: (8_000, 96_000),
    channel_count: (1, 2),
    echo_cancellation: true,
    noise_suppression: true,
    auto_gain_control: false,
};

const CANDIDATES: [Candidate<'static>; 3] = [
    Candidate { device_id: "default", group_id: "g0" },
    Candidate { device_id: "alsa_input.pci-0000_00_1f.3.analog-stereo", group_id: "g1" },
    Candidate { device_id: "vdimedia-test-source", group_id: "g2" },
];

fuzz_target!(|data: &[u8]| {
    let Ok(params) = serde_json::from_slice::<Value>(data) else { return };

    // media.getUserMedia {constraints}
    let c = params.get("constraints").unwrap_or(&params);
    if let Ok(c) = serde_json::from_value::<MediaStreamConstraints>(c.clone()) {
        match constraints::parse_stream_constraints(&c) {
            Ok(ac) => match constraints::select(&ac, &CANDIDATES, &CAPS) {
                Ok(s) => {
                    assert!(s.index < CANDIDATES.len());
                    assert!((CAPS.sample_rate.0..=CAPS.sample_rate.1).contains(&s.sample_rate), "{s:?}");
                    assert!(
                        (CAPS.channel_count.0..=CAPS.channel_count.1).contains(&s.channel_count),
                        "{s:?}"
                    );
                }
                Err(e) => assert_eq!(e.code, ErrorCode::Overconstrained, "{e:?}"),
            },
            Err(e) => assert!(matches!(e.code, ErrorCode::InvalidParams | ErrorCode::NotFound), "{e:?}"),
        }
    }

    // pc.create {pc, configuration}
    let cfg = params.get("configuration").unwrap_or(&params);
    if let Ok(cfg) = serde_json::from_value::<RtcConfiguration>(cfg.clone()) {
        match ice::settings(&cfg) {
            Ok(s) => {
                for u in s.stun_server.iter().chain(&s.turn_servers) {
                    assert!(
                        u.starts_with("stun://") || u.starts_with("turn://") || u.starts_with("turns://"),
                        "{u}"
                    );
                }
            }
            Err(e) => assert!(matches!(e.code, ErrorCode::InvalidParams | ErrorCode::InvalidAccess), "{e:?}"),
        }
    }

    // pc.addIceCandidate {pc, candidate}
    let cand = params.get("candidate").unwrap_or(&params);
    let _ = serde_json::from_value::<Option<RtcIceCandidateInit>>(cand.clone());

    // pc.insertDTMF {tones, duration, interToneGap}
    if let Some(tones) = params.get("tones").and_then(Value::as_str) {
        let n = |k: &str| {
            params.get(k).and_then(Value::as_u64).map_or(100, |v| v.min(u64::from(u32::MAX)) as u32)
        };
        if let Ok(steps) = dtmf::parse_tones(tones, n("duration"), n("interToneGap")) {
            assert!(steps.len() <= dtmf::MAX_TONES);
        }
    }
});
