//! The daemon's SDP handling for `pc.setRemoteDescription` / `pc.setLocalDescription`
//! (daemon/src/webrtc/sdp.rs, dtmf.rs): the strict line check, libgstsdp's parser, the
//! per-m-line readers the engine uses (codecs, fmtp, direction, mid, ice-ufrag, msid) and the
//! telephone-event munging applied to descriptions we create. No pipeline is built.
//!
//! Input: the SDP text (as it arrives inside the JSON string, so UTF-8; other bytes skipped).
//! Asserts: no panic; a refusal is `invalid_sdp` or `limit_exceeded`; a munged description
//! still passes our own parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdimedia_fuzz::webrtc::{dtmf, sdp};
use vdimedia_protocol::message::ErrorCode;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let msg = match sdp::parse(text) {
        Ok(m) => m,
        Err(e) => {
            assert!(matches!(e.code, ErrorCode::InvalidSdp | ErrorCode::LimitExceeded), "{e:?}");
            return;
        }
    };
    for idx in 0..msg.medias_len() {
        let Some(media) = msg.media(idx) else { continue };
        for (pt, codec) in sdp::media_codecs(media) {
            let _ = sdp::fmtp(media, pt);
            let _ = codec.clock_rate();
        }
        let d = sdp::media_direction(media);
        let _ = sdp::intersect(d, sdp::reverse(d));
        let _ = sdp::media_mid(media);
        let _ = sdp::media_msid_streams(media);
        let _ = sdp::ufrag(&msg, idx);
        let _ = dtmf::media_telephone_events(media);
    }
    // As an offer we answer (remote offer given) and as a description we created (none). When
    // libgstsdp's own text of the description passes our check, the munged text must too.
    let base_ok = msg.as_text().is_ok_and(|t| sdp::parse(&t).is_ok());
    for remote in [Some(&*msg), None] {
        let mut local = msg.clone();
        let changed = dtmf::ensure_telephone_event(&mut local, remote);
        if base_ok && changed {
            let text = local.as_text().expect("a munged description prints");
            if let Err(e) = sdp::parse(&text) {
                panic!("munged SDP refused by our own parser: {e:?}\n{text}");
            }
        }
    }
});
