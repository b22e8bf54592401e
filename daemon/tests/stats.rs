//! getStats fidelity (webrtc-stats, <https://www.w3.org/TR/webrtc-stats/>): two real peer
//! connections of the daemon call each other over loopback ICE with `audiotestsrc` tones, then
//! each side's `getStats()` report must carry the W3C types a softphone reads, with the spec's
//! field names, JSON types and units, and ids that resolve inside the same report.
//! Also the raw webrtcbin reply goes through the same mapping (no hand-made structures), and
//! `getSynchronizationSources()` reports the far end's SSRC with a level.
//!
//! `STATS_DUMP=DIR` writes the raw webrtcbin reply (`raw-A.txt`, GstStructure text) and our
//! report (`report-A.json`) of the offerer there, for fixtures and comparisons.

use std::time::{Duration, Instant};

use serde_json::Value;
use vdimedia_protocol::api::*;
use vdimediad::webrtc::Codec;

mod common;
use common::loopback::{Peer, peer, pump, tone};

/// A offers a 440 Hz tone at peak 0.5, B answers with 880 Hz at peak 0.25; both play out into
/// fakesinks (the engine's default).
async fn call(codec: Codec) -> (Peer, Peer) {
    vdimediad::webrtc::prewarm().unwrap();
    let mut a = peer("stats-a", vec![codec]);
    let mut b = peer("stats-b", vec![codec]);
    a.pc.add_track("trackA", tone(440.0, 0.5), vec!["streamA".into()]).unwrap();
    let offer = a.pc.create_offer(&RtcOfferOptions::default()).await.unwrap();
    a.pc.set_local_description(Some(offer.clone())).await.unwrap();
    b.pc.set_remote_description(offer).await.unwrap();
    b.pc.add_track("trackB", tone(880.0, 0.25), vec!["streamB".into()]).unwrap();
    b.pc.set_local_description(None).await.unwrap();
    a.pc.set_remote_description(b.pc.state().local_description.unwrap()).await.unwrap();
    // Long enough for media both ways and the first RTCP reports (RFC 3550: first one within
    // ~1 s at our rates; webrtcbin's rtpbin sends its first after 0.5–1.5 s).
    pump(&mut a, &mut b, Duration::from_millis(3500)).await;
    (a, b)
}

fn dump_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("STATS_DUMP").map(std::path::PathBuf::from)
}

/// Polls `getStats()` until the RTCP-derived stats exist (both sides have sent an SR and an RR).
async fn report_with_rtcp(a: &mut Peer, b: &mut Peer) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = a.pc.get_stats().await.unwrap();
        let has = |t: &str| r.iter().any(|s| s["type"] == t);
        if has("remote-inbound-rtp") && has("remote-outbound-rtp") {
            return r;
        }
        assert!(Instant::now() < deadline, "no RTCP-derived stats after 15 s: {r:#?}");
        pump(a, b, Duration::from_millis(300)).await;
    }
}

fn of_type<'a>(r: &'a [Value], t: &str) -> Vec<&'a Value> {
    r.iter().filter(|s| s["type"] == t).collect()
}

fn one<'a>(r: &'a [Value], t: &str) -> &'a Value {
    let v = of_type(r, t);
    assert_eq!(v.len(), 1, "want one {t}: {r:#?}");
    v[0]
}

fn by_id<'a>(r: &'a [Value], id: &Value) -> &'a Value {
    r.iter().find(|s| s["id"] == *id).unwrap_or_else(|| panic!("{id} does not resolve: {r:#?}"))
}

fn uint(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} must be an unsigned integer: {v:#}"))
}

fn float(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} must be a number: {v:#}"))
}

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// The report shape every side must have (webrtc-stats names, types, units, references).
fn check_report(r: &[Value], who: &str, send_rms: f64, recv_rms: f64, ice_role: &str) {
    eprintln!("{who}: {}", serde_json::to_string_pretty(r).unwrap());
    let now = now_ms();
    let mut ids: Vec<&str> = r.iter().map(|s| s["id"].as_str().expect("string id")).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "{who}: stat ids must be unique");
    for s in r {
        // DOMHighResTimeStamp, ms since the Unix epoch.
        let ts = float(s, "timestamp");
        assert!((ts - now).abs() < 10_000.0, "{who}: timestamp {ts} is not epoch ms (now {now}): {s:#}");
        assert!(s["type"].is_string());
        for (k, v) in s.as_object().unwrap() {
            if k.ends_with("Id") && k != "trackIdentifier" {
                by_id(r, v);
            }
            assert!(!k.contains('-') && !k.contains('_'), "{who}: {k} is not camelCase");
        }
    }
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
        assert!(!of_type(r, t).is_empty(), "{who}: no {t}");
    }

    let out = one(r, "outbound-rtp");
    assert_eq!(out["kind"], "audio");
    assert!(uint(out, "packetsSent") > 50, "{who}: {out:#}");
    assert!(uint(out, "bytesSent") > uint(out, "packetsSent"), "{who}: {out:#}");
    // 12-byte RTP headers, no extensions or CSRCs from webrtcbin 1.22.
    assert_eq!(uint(out, "headerBytesSent"), 12 * uint(out, "packetsSent"), "{who}: {out:#}");
    assert!(out.get("firCount").is_none() && out.get("pliCount").is_none(), "video-only members");
    assert!(uint(out, "targetBitrate") >= 6000);
    let codec = by_id(r, &out["codecId"]);
    assert_eq!(codec["mimeType"], "audio/opus");
    assert_eq!(uint(codec, "clockRate"), 48000);
    assert_eq!(uint(codec, "channels"), 2);
    assert_eq!(uint(codec, "payloadType"), 111);
    let fmtp = codec["sdpFmtpLine"].as_str().unwrap_or("");
    // The a=fmtp parameters only (webrtcbin 1.22 prefixes the payload type).
    assert!(fmtp.contains('=') && !fmtp.starts_with("111"), "{who}: fmtp {fmtp:?}");
    assert!(codec.get("ssrc").is_none() && codec.get("codecType").is_none(), "{codec:#}");
    let ms = by_id(r, &out["mediaSourceId"]);
    assert_eq!(ms["type"], "media-source");
    assert_eq!(ms["kind"], "audio");
    let level = float(ms, "audioLevel");
    assert!((level - send_rms).abs() < 0.03, "{who}: media-source audioLevel {level}, want ~{send_rms}");
    let dur = float(ms, "totalSamplesDuration");
    let energy = float(ms, "totalAudioEnergy");
    assert!(dur > 1.0, "{who}: totalSamplesDuration {dur} s");
    // Energy / duration is the mean square: the tone's RMS squared.
    assert!(((energy / dur).sqrt() - send_rms).abs() < 0.03, "{who}: energy {energy} over {dur} s");
    let rin = by_id(r, &out["remoteId"]);
    assert_eq!(rin["type"], "remote-inbound-rtp");
    assert_eq!(rin["localId"], out["id"]);
    assert_eq!(rin["ssrc"], out["ssrc"]);
    let rtt = float(rin, "roundTripTime");
    assert!(rtt > 0.0 && rtt < 1.0, "{who}: roundTripTime {rtt} must be seconds");
    let j = float(rin, "jitter");
    assert!((0.0..0.5).contains(&j), "{who}: remote jitter {j} must be seconds");
    assert!(rin["packetsLost"].is_i64(), "{rin:#}");
    // Every RTCP report block about our stream is one measurement (RFC 3550 §6.4.1).
    let n = uint(rin, "roundTripTimeMeasurements");
    assert!(n >= 1, "{who}: {rin:#}");
    let mean = float(rin, "totalRoundTripTime") / n as f64;
    assert!((0.0..0.5).contains(&mean), "{who}: mean RTT {mean} s on loopback");
    let fl = float(rin, "fractionLost");
    assert!((0.0..=1.0).contains(&fl));

    let inb = one(r, "inbound-rtp");
    assert_eq!(inb["kind"], "audio");
    assert!(uint(inb, "packetsReceived") > 50, "{who}: {inb:#}");
    assert!(inb["packetsLost"].is_i64(), "{who}: packetsLost {inb:#}");
    assert_eq!(uint(inb, "headerBytesReceived"), 12 * uint(inb, "packetsReceived"), "{who}: {inb:#}");
    let j = float(inb, "jitter");
    assert!((0.0..0.5).contains(&j), "{who}: jitter {j} must be seconds");
    let last = float(inb, "lastPacketReceivedTimestamp");
    assert!((now - last).abs() < 2000.0, "{who}: lastPacketReceivedTimestamp {last} vs now {now}");
    assert!(inb["trackIdentifier"].is_string() && inb["mid"].is_string(), "{inb:#}");
    let level = float(inb, "audioLevel");
    // Decoded Opus: within 20 % of the far end's tone.
    assert!((level - recv_rms).abs() < recv_rms * 0.2, "{who}: inbound audioLevel {level}, want ~{recv_rms}");
    assert!(float(inb, "totalSamplesDuration") > 1.0 && float(inb, "totalAudioEnergy") > 0.0);
    assert!(uint(inb, "totalSamplesReceived") > 48_000);
    // Jitter buffer (webrtcbin latency 50 ms): seconds × samples, samples at 48 kHz.
    let emitted = uint(inb, "jitterBufferEmittedCount") as f64;
    let received = uint(inb, "totalSamplesReceived") as f64;
    assert!((emitted - received).abs() < received * 0.25, "{who}: emitted {emitted} vs decoded {received}");
    let avg = float(inb, "jitterBufferDelay") / emitted;
    assert!((0.0..1.0).contains(&avg), "{who}: mean jitter-buffer delay {avg} s");
    let target = float(inb, "jitterBufferTargetDelay") / emitted;
    assert!((target - 0.05).abs() < 1e-6, "{who}: target delay {target} s (latency 50 ms)");
    assert!(inb["concealedSamples"].is_u64() && inb["concealmentEvents"].is_u64(), "{inb:#}");
    assert_eq!(by_id(r, &inb["codecId"])["mimeType"], "audio/opus");
    let rout = by_id(r, &inb["remoteId"]);
    assert_eq!(rout["type"], "remote-outbound-rtp");
    assert_eq!(rout["localId"], inb["id"]);
    let rts = float(rout, "remoteTimestamp");
    // Same machine, same clock: the far end's SR time is a recent epoch ms.
    assert!((now - rts).abs() < 15_000.0, "{who}: remoteTimestamp {rts} is not epoch ms (now {now})");
    assert!(uint(rout, "packetsSent") > 0 && uint(rout, "bytesSent") > 0);
    assert!(uint(rout, "reportsSent") >= 1, "{who}: {rout:#}");
    assert_eq!(uint(rout, "roundTripTimeMeasurements"), 0);

    let tr = by_id(r, &out["transportId"]);
    assert_eq!(tr["type"], "transport");
    assert_eq!(tr["dtlsState"], "connected", "{tr:#}");
    assert!(matches!(tr["iceState"].as_str(), Some("connected" | "completed")), "{tr:#}");
    assert_eq!(tr["iceRole"], ice_role, "{who}: {tr:#}");
    assert!(matches!(tr["dtlsRole"].as_str(), Some("client" | "server")), "{tr:#}");
    assert!(tr["iceLocalUsernameFragment"].is_string(), "{tr:#}");
    assert!(
        uint(tr, "bytesSent") > uint(out, "bytesSent"),
        "transport bytes include SRTP/DTLS overhead: {tr:#}"
    );
    assert!(uint(tr, "packetsReceived") >= uint(inb, "packetsReceived"), "{tr:#}");
    let pair = by_id(r, &tr["selectedCandidatePairId"]);
    assert_eq!(pair["type"], "candidate-pair");
    assert_eq!(pair["state"], "succeeded");
    assert_eq!(pair["nominated"], true);
    assert_eq!(pair["transportId"], tr["id"]);
    assert!(uint(pair, "bytesSent") > 0 && uint(pair, "bytesReceived") > 0, "{pair:#}");
    let crtt = float(pair, "currentRoundTripTime");
    assert!(crtt > 0.0 && crtt < 1.0, "currentRoundTripTime {crtt} must be seconds");
    for (k, t) in [("localCandidateId", "local-candidate"), ("remoteCandidateId", "remote-candidate")] {
        let c = by_id(r, &pair[k]);
        assert_eq!(c["type"], t, "{who}: {c:#}");
        assert_eq!(c["address"], "127.0.0.1");
        assert!(uint(c, "port") > 0 && uint(c, "priority") > 0);
        assert_eq!(c["protocol"], "udp");
        assert_eq!(c["candidateType"], "host");
        assert_eq!(c["transportId"], tr["id"]);
        assert!(c["usernameFragment"].is_string(), "{c:#}");
    }
    assert_eq!(by_id(r, &pair["localCandidateId"])["usernameFragment"], tr["iceLocalUsernameFragment"]);

    // WebRTC 1.0 §8.5 stats selection: a sender's report holds its outbound-rtp and what it
    // references, never the receiving side.
    let mid = out["mid"].as_str().unwrap();
    let sel = vdimediad::webrtc::stats::select(r, mid, true);
    let types: Vec<&str> = sel.iter().map(|s| s["type"].as_str().unwrap()).collect();
    for t in ["outbound-rtp", "codec", "media-source", "remote-inbound-rtp", "transport", "candidate-pair"] {
        assert!(types.contains(&t), "{who}: sender selection lacks {t}: {types:?}");
    }
    assert!(!types.contains(&"inbound-rtp"), "{who}: sender selection has inbound-rtp: {types:?}");
    let sel = vdimediad::webrtc::stats::select(r, mid, false);
    let types: Vec<&str> = sel.iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"inbound-rtp") && types.contains(&"remote-outbound-rtp"), "{types:?}");
    assert!(!types.contains(&"outbound-rtp") && !types.contains(&"media-source"), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemon_peers_report_w3c_stats() {
    let (mut a, mut b) = call(Codec::Opus).await;
    let ra = report_with_rtcp(&mut a, &mut b).await;
    let rb = report_with_rtcp(&mut b, &mut a).await;
    // A sine's RMS is its peak / √2.
    check_report(&ra, "A", 0.5 / 2f64.sqrt(), 0.25 / 2f64.sqrt(), "controlling");
    check_report(&rb, "B", 0.25 / 2f64.sqrt(), 0.5 / 2f64.sqrt(), "controlled");
    let (ta, tb) = (one(&ra, "transport"), one(&rb, "transport"));
    assert_ne!(ta["dtlsRole"], tb["dtlsRole"], "one DTLS client, one server");
    // The two reports describe the same streams from both ends.
    assert_eq!(one(&ra, "outbound-rtp")["ssrc"], one(&rb, "inbound-rtp")["ssrc"]);
    assert_eq!(one(&ra, "inbound-rtp")["ssrc"], one(&rb, "outbound-rtp")["ssrc"]);
    assert_eq!(one(&ra, "media-source")["trackIdentifier"], "trackA");
    assert_eq!(one(&rb, "media-source")["trackIdentifier"], "trackB");
    let st = a.pc.state();
    assert_eq!(
        one(&ra, "inbound-rtp")["trackIdentifier"].as_str(),
        Some(st.transceivers[0].receiver.track.id.as_str())
    );
    assert_eq!(one(&ra, "inbound-rtp")["mid"].as_str(), st.transceivers[0].mid.as_deref());

    // getSynchronizationSources: B's SSRC, recent, with an RFC 6464 level near B's tone.
    let src = a.pc.rtp_sources(&st.transceivers[0].receiver.id).unwrap();
    assert_eq!(src.ssrcs.len(), 1, "{src:?}");
    let s = &src.ssrcs[0];
    assert_eq!(Some(s.source as u64), one(&ra, "inbound-rtp")["ssrc"].as_u64());
    assert!((now_ms() - s.timestamp).abs() < 1000.0, "{s:?}");
    let level = s.audio_level.expect("a level");
    let want = 0.25 / 2f64.sqrt();
    assert!((level - want).abs() < want * 0.25, "source audioLevel {level}, want ~{want}");
    // Whole-dB steps, as read from the RFC 6464 header extension.
    let db = -20.0 * level.log10();
    assert!((db - db.round()).abs() < 1e-9, "{level} is not a whole dBov step");
    assert!(src.csrcs.is_empty());
    let rtp_ts_1 = s.rtp_timestamp;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rtp_ts_2 = a.pc.rtp_sources(&st.transceivers[0].receiver.id).unwrap().ssrcs[0].rtp_timestamp;
    let advanced = rtp_ts_2.wrapping_sub(rtp_ts_1);
    assert!((4800..=48_000).contains(&advanced), "RTP clock (48 kHz) advanced {advanced} in 200 ms");
    assert_eq!(a.pc.rtp_sources("nope").unwrap_err().code, vdimedia_protocol::message::ErrorCode::NotFound);

    if let Some(dir) = dump_dir() {
        std::fs::create_dir_all(&dir).unwrap();
        let raw = a.pc.get_stats_raw().await.unwrap().expect("a get-stats reply");
        std::fs::write(dir.join("raw-A.txt"), raw.to_string()).unwrap();
        std::fs::write(dir.join("report-A.json"), serde_json::to_string_pretty(&ra).unwrap()).unwrap();
    }
    a.pc.close();
    b.pc.close();
    assert!(a.pc.get_stats().await.is_err(), "getStats on a closed connection");
}

/// The protocol side (docs/protocol.md): `pc.getStats` carries the daemon's `now`, and
/// `pc.getSynchronizationSources` answers a receiver's sources or a typed error, through the
/// real session dispatcher on an in-memory virtual channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_methods_on_the_virtual_channel() {
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use vdimedia_protocol::{Channel, ChannelConfig, ChannelEvent, ErrorCode, Message, Open, Response};

    let mut config = vdimediad::config::Config::default();
    config.audio.backend = vdimediad::config::BackendChoice::Alsa; // no devices needed
    config.webrtc.loopback_ice = true;
    let engine = vdimediad::engine::Engine::new(config);
    let (mut io, b) = tokio::io::duplex(1 << 20);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let _server = tokio::spawn(vdimediad::vc::endpoint::serve_channel(b, engine, stop_rx));
    let mut ch = Channel::new(ChannelConfig::vda("stats-test/1"), Instant::now());
    let mut events: Vec<ChannelEvent> = Vec::new();
    let mut buf = vec![0u8; 65536];
    // Reads until an event matches, returning it.
    macro_rules! wait_for {
        ($pred:expr) => {{
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                while let Some(f) = ch.poll_transmit() {
                    io.write_all(&f).await.unwrap();
                }
                while let Some(ev) = ch.poll_event() {
                    events.push(ev);
                }
                if let Some(i) = events.iter().position($pred) {
                    break events.remove(i);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let n = tokio::time::timeout(left, io.read(&mut buf)).await.expect("timed out").unwrap();
                assert!(n > 0, "daemon closed the channel");
                ch.handle_input(&buf[..n], Instant::now());
            }
        }};
    }
    wait_for!(|e: &ChannelEvent| matches!(e, ChannelEvent::Ready(_)));
    let sid = ch.open_session(Open::default()).unwrap();
    wait_for!(|e: &ChannelEvent| matches!(e, ChannelEvent::SessionOpened { session, .. } if *session == sid));
    let mut next_id = 0u64;
    macro_rules! request {
        ($method:expr, $params:expr) => {{
            next_id += 1;
            ch.send(sid, &Message::request(next_id, $method, $params)).unwrap();
            next_id
        }};
    }
    macro_rules! response {
        ($id:expr) => {{
            let id = $id;
            let ev = wait_for!(|e: &ChannelEvent| matches!(e,
                ChannelEvent::Message { message: Message::Response(Response { id: rid, .. }), .. } if *rid == id));
            let ChannelEvent::Message { message: Message::Response(r), .. } = ev else { unreachable!() };
            r.outcome
        }};
    }

    let id = request!("pc.create", json!({"pc": "pc1", "configuration": {}}));
    response!(id).unwrap();
    let id = request!(
        "pc.addTransceiver",
        json!({"pc": "pc1", "kind": "audio", "init": {"direction": "recvonly"}})
    );
    let t = response!(id).unwrap();
    let receiver = t["transceiver"]["receiver"]["id"].as_str().unwrap().to_string();

    let before = now_ms();
    let id = request!("pc.getStats", json!({"pc": "pc1"}));
    let r = response!(id).unwrap();
    let now = r["now"].as_f64().expect("now: epoch ms");
    assert!(now >= before - 1.0 && now <= now_ms() + 1.0, "now {now}");
    assert!(r["stats"].is_array(), "{r}");
    for s in r["stats"].as_array().unwrap() {
        assert!((s["timestamp"].as_f64().unwrap() - now).abs() < 5000.0, "{s}");
    }

    let id = request!("pc.getSynchronizationSources", json!({"pc": "pc1", "receiver": receiver}));
    let r = response!(id).unwrap();
    assert_eq!(r["synchronizationSources"], json!([]), "no RTP yet: {r}");
    assert_eq!(r["contributingSources"], json!([]));
    assert!(r["now"].is_f64());

    let id = request!("pc.getSynchronizationSources", json!({"pc": "pc1", "receiver": "rcv-nope"}));
    let e = response!(id).unwrap_err();
    assert_eq!((e.code, e.name.as_str()), (ErrorCode::NotFound, "NotFoundError"));
    let id = request!("pc.getSynchronizationSources", json!({"pc": "pc1"}));
    let e = response!(id).unwrap_err();
    assert_eq!((e.code, e.name.as_str()), (ErrorCode::InvalidParams, "TypeError"));
    let id = request!("pc.close", json!({"pc": "pc1"}));
    response!(id).unwrap();
}
