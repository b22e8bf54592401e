//! Channel behaviour against docs/protocol.md: two `Channel`s wired back to back, or one
//! channel fed hand-built frames.

use std::time::{Duration, Instant};

use serde_json::json;
use vdimedia_protocol::SessionId;
use vdimedia_protocol::channel::*;
use vdimedia_protocol::frame::*;
use vdimedia_protocol::handshake::*;
use vdimedia_protocol::message::*;

fn welcome() -> Welcome {
    Welcome {
        version: 1,
        engine: "vdimediad/0.1.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        max_frame: 4096,
        capabilities: Capabilities {
            codecs: vec!["opus".into(), "PCMU".into()],
            aec: "software".into(),
            audio_backend: "pipewire".into(),
            devices: DeviceCounts { audioinput: 1, audiooutput: 2 },
        },
    }
}

/// Moves every queued frame from `from` to `to`; returns the raw frames moved.
fn flush(from: &mut Channel, to: &mut Channel, now: Instant) -> Vec<Vec<u8>> {
    let mut moved = Vec::new();
    while let Some(f) = from.poll_transmit() {
        assert!(f.len() <= from.max_frame().max(DEFAULT_MAX_FRAME), "frame over max_frame");
        to.handle_input(&f, now);
        moved.push(f);
    }
    moved
}

fn pump(a: &mut Channel, b: &mut Channel, now: Instant) {
    loop {
        let n = flush(a, b, now).len() + flush(b, a, now).len();
        if n == 0 {
            break;
        }
    }
}

fn events(ch: &mut Channel) -> Vec<ChannelEvent> {
    std::iter::from_fn(|| ch.poll_event()).collect()
}

fn frames(ch: &mut Channel) -> Vec<Frame> {
    let mut d = FrameDecoder::new(MAX_MAX_FRAME);
    while let Some(b) = ch.poll_transmit() {
        d.push(&b);
    }
    std::iter::from_fn(|| d.next_frame().unwrap()).collect()
}

fn connected(vda_max: usize, ep_max: usize, now: Instant) -> (Channel, Channel) {
    let mut vc = ChannelConfig::vda("vdimedia-bridge/0.1.0");
    vc.max_frame = vda_max;
    let mut ec = ChannelConfig::endpoint(welcome());
    ec.max_frame = ep_max;
    let mut vda = Channel::new(vc, now);
    let mut ep = Channel::new(ec, now);
    pump(&mut vda, &mut ep, now);
    assert!(vda.is_ready() && ep.is_ready());
    assert!(matches!(&events(&mut vda)[..], [ChannelEvent::Ready(_)]));
    assert!(matches!(&events(&mut ep)[..], [ChannelEvent::Hello(_)]));
    (vda, ep)
}

fn open(vda: &mut Channel, ep: &mut Channel, now: Instant) -> SessionId {
    let id = vda
        .open_session(Open {
            origin: Some("https://softphone.example".into()),
            agent: None,
            sdk: Some("0.1.0".into()),
            resume: None,
        })
        .unwrap();
    pump(vda, ep, now);
    id
}

#[test]
fn handshake_both_roles() {
    let now = Instant::now();
    let mut vc = ChannelConfig::vda("vdimedia-bridge/0.1.0");
    vc.max_frame = 8192;
    let mut ec = ChannelConfig::endpoint(welcome());
    ec.max_frame = 2048;
    let mut vda = Channel::new(vc, now);
    let mut ep = Channel::new(ec, now);
    assert!(!vda.is_ready() && !ep.is_ready());
    assert_eq!(ep.poll_transmit(), None, "endpoint waits for HELLO");

    let hello = frames(&mut vda);
    assert_eq!(hello.len(), 1);
    assert_eq!((hello[0].kind, hello[0].session), (FrameKind::Hello, 0));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&hello[0].payload).unwrap(),
        json!({"magic":"vdimedia","min_version":1,"max_version":1,"agent":"vdimedia-bridge/0.1.0","max_frame":8192})
    );
    ep.handle_input(&hello[0].to_bytes(), now);
    assert!(ep.is_ready());
    let ev = events(&mut ep);
    assert!(matches!(&ev[..], [ChannelEvent::Hello(h)] if h.agent == "vdimedia-bridge/0.1.0"));
    let w = frames(&mut ep);
    assert_eq!(w[0].kind, FrameKind::Welcome);
    vda.handle_input(&w[0].to_bytes(), now);
    let ev = events(&mut vda);
    let [ChannelEvent::Ready(got)] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!(got.max_frame, 2048, "negotiated = smaller max_frame");
    assert_eq!(got.version, 1);
    assert_eq!(got.capabilities, welcome().capabilities);
    assert_eq!(vda.welcome(), ep.welcome());
    assert_eq!((vda.max_frame(), ep.max_frame()), (2048, 2048));
    assert!(vda.is_ready());
}

#[test]
fn version_mismatch_rejects_and_closes_both() {
    let now = Instant::now();
    let mut vc = ChannelConfig::vda("future-bridge");
    vc.min_version = 2;
    vc.max_version = 3;
    let mut vda = Channel::new(vc, now);
    let mut ep = Channel::new(ChannelConfig::endpoint(welcome()), now);
    flush(&mut vda, &mut ep, now);
    assert!(ep.is_closed());
    let ev = events(&mut ep);
    assert!(matches!(&ev[..], [ChannelEvent::Closed { code: ErrorCode::VersionMismatch, .. }]), "{ev:?}");
    let out = frames(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, FrameKind::Reject);
    let reject: Reject = serde_json::from_slice(&out[0].payload).unwrap();
    assert_eq!((reject.code, reject.min_version, reject.max_version), (ErrorCode::VersionMismatch, 1, 1));

    vda.handle_input(&out[0].to_bytes(), now);
    assert!(vda.is_closed());
    let ev = events(&mut vda);
    assert!(matches!(&ev[0], ChannelEvent::Rejected(r) if r.code == ErrorCode::VersionMismatch));
    assert!(matches!(&ev[1], ChannelEvent::Closed { code: ErrorCode::VersionMismatch, .. }));
    assert_eq!(vda.open_session(Open::default()), Err(ChannelError::Closed));
}

#[test]
fn overlapping_ranges_pick_highest_common_version() {
    let now = Instant::now();
    let mut vc = ChannelConfig::vda("b");
    vc.min_version = 1;
    vc.max_version = 5;
    let mut ec = ChannelConfig::endpoint(welcome());
    ec.min_version = 0;
    ec.max_version = 3;
    let mut vda = Channel::new(vc, now);
    let mut ep = Channel::new(ec, now);
    pump(&mut vda, &mut ep, now);
    assert_eq!(vda.welcome().unwrap().version, 3);
}

#[test]
fn frames_before_handshake_close_the_channel() {
    let now = Instant::now();
    let mut ep = Channel::new(ChannelConfig::endpoint(welcome()), now);
    ep.handle_input(&Frame::new(FrameKind::Open, 1, b"{}".to_vec()).to_bytes(), now);
    assert!(ep.is_closed());
    let ev = events(&mut ep);
    assert!(matches!(&ev[..], [ChannelEvent::Closed { code: ErrorCode::BadFrame, .. }]), "{ev:?}");
    let out = frames(&mut ep);
    assert_eq!((out[0].kind, out[0].session), (FrameKind::Close, 0));

    // A HELLO that is not a Hello, or has the wrong magic.
    for payload in
        [&b"nope"[..], br#"{"magic":"x","min_version":1,"max_version":1,"agent":"a","max_frame":4096}"#]
    {
        let mut ep = Channel::new(ChannelConfig::endpoint(welcome()), now);
        ep.handle_input(&Frame::new(FrameKind::Hello, 0, payload.to_vec()).to_bytes(), now);
        assert!(ep.is_closed());
    }
}

#[test]
fn fragmentation_of_100k_message_at_max_frame_256() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(256, 256, now);
    let s = open(&mut vda, &mut ep, now);
    assert!(vda.is_session_open(s));
    events(&mut ep);
    let blob: String = (0..100_000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let msg = Message::request(
        42,
        "pc.setRemoteDescription",
        json!({"pc":"pc1","description":{"type":"offer","sdp":blob}}),
    );
    vda.send(s, &msg).unwrap();
    let mut raw = Vec::new();
    let mut n = 0;
    while let Some(f) = vda.poll_transmit() {
        assert!(f.len() <= 256);
        raw.extend_from_slice(&f);
        n += 1;
    }
    assert!(n > 400, "{n} fragments");
    // Byte-at-a-time delivery.
    for b in &raw {
        ep.handle_input(std::slice::from_ref(b), now);
    }
    let ev = events(&mut ep);
    assert_eq!(ev, vec![ChannelEvent::Message { session: s, message: msg.clone() }]);

    // And the reverse direction in one big write.
    let resp = Message::response_ok(42, json!({"sdp": blob}));
    ep.send(s, &resp).unwrap();
    pump(&mut ep, &mut vda, now);
    assert_eq!(events(&mut vda).last(), Some(&ChannelEvent::Message { session: s, message: resp }));
}

#[test]
fn oversize_message_is_discarded_with_message_too_large() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(65536, 65536, now);
    let s = open(&mut vda, &mut ep, now);
    events(&mut ep);
    let chunk = vec![b' '; 65000];
    let frag = Frame { kind: FrameKind::Data, flags: FLAG_MORE, session: s, payload: chunk };
    for _ in 0..20 {
        ep.handle_input(&frag.to_bytes(), now);
    }
    ep.handle_input(&Frame::new(FrameKind::Data, s, b"{}".to_vec()).to_bytes(), now);
    let ev = events(&mut ep);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        matches!(&ev[0], ChannelEvent::ProtocolError { session, error } if *session == s && error.code == ErrorCode::MessageTooLarge)
    );
    let out = frames(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, FrameKind::Error);
    // The session still works afterwards.
    let ok = Message::request(1, "devices.enumerate", json!({}));
    vda.send(s, &ok).unwrap();
    pump(&mut vda, &mut ep, now);
    assert_eq!(events(&mut ep), vec![ChannelEvent::Message { session: s, message: ok }]);
    // Sending side refuses an over-limit message outright.
    let huge = Message::event("x", json!({"b": "y".repeat(MAX_MESSAGE)}));
    assert!(matches!(ep.send(s, &huge), Err(ChannelError::MessageTooLarge { .. })));
}

#[test]
fn garbage_in_one_session_closes_only_that_session_after_8() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(4096, 4096, now);
    let a = open(&mut vda, &mut ep, now);
    let b = open(&mut vda, &mut ep, now);
    assert_ne!(a, b);
    events(&mut ep);
    events(&mut vda);

    let garbage = Frame::new(FrameKind::Data, a, b"\xff{not json".to_vec()).to_bytes();
    for i in 0..8u64 {
        ep.handle_input(&garbage, now);
        let m = Message::request(i, "devices.enumerate", json!({}));
        vda.send(b, &m).unwrap();
        flush(&mut vda, &mut ep, now);
        let ev = events(&mut ep);
        assert!(
            matches!(&ev[0], ChannelEvent::ProtocolError { session, error } if *session == a && error.code == ErrorCode::BadMessage)
        );
        assert!(ev.contains(&ChannelEvent::Message { session: b, message: m }));
        if i < 7 {
            assert_eq!(ev.len(), 2, "{ev:?}");
        } else {
            assert!(ev.contains(&ChannelEvent::SessionClosed {
                session: a,
                code: ErrorCode::BadMessage,
                reason: "8 bad messages in a row".into(),
                by_peer: false
            }));
        }
    }
    assert_eq!(ep.sessions().collect::<Vec<_>>(), vec![b]);
    let out = frames(&mut ep);
    assert_eq!(out.iter().filter(|f| f.kind == FrameKind::Error && f.session == a).count(), 8);
    let close = out.last().unwrap();
    assert_eq!((close.kind, close.session), (FrameKind::Close, a));
    assert_eq!(serde_json::from_slice::<Close>(&close.payload).unwrap().code, ErrorCode::BadMessage);

    // The vda learns it from the CLOSE.
    for f in &out {
        vda.handle_input(&f.to_bytes(), now);
    }
    let ev = events(&mut vda);
    assert_eq!(
        ev.iter().filter(|e| matches!(e, ChannelEvent::PeerError { session, .. } if *session == a)).count(),
        8
    );
    assert!(
        matches!(ev.last(), Some(ChannelEvent::SessionClosed { session, by_peer: true, .. }) if *session == a)
    );
    assert_eq!(vda.sessions().collect::<Vec<_>>(), vec![b]);
    // Garbage on an unknown (closed) session is ignored silently.
    ep.handle_input(&garbage, now);
    assert!(events(&mut ep).is_empty());
    assert!(ep.poll_transmit().is_none());
}

#[test]
fn good_message_resets_the_bad_count() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(4096, 4096, now);
    let a = open(&mut vda, &mut ep, now);
    let garbage = Frame::new(FrameKind::Data, a, b"[]".to_vec()).to_bytes();
    for _ in 0..7 {
        ep.handle_input(&garbage, now);
    }
    vda.send(a, &Message::event("x", json!({}))).unwrap();
    flush(&mut vda, &mut ep, now);
    for _ in 0..7 {
        ep.handle_input(&garbage, now);
    }
    assert!(ep.is_session_open(a));
    ep.handle_input(&garbage, now);
    assert!(!ep.is_session_open(a));
}

#[test]
fn bad_request_with_id_gets_error_response_for_that_id() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(4096, 4096, now);
    let s = open(&mut vda, &mut ep, now);
    events(&mut vda);
    let bad = br#"{"type":"request","id":77,"method":"pc.close","params":"pc1"}"#;
    ep.handle_input(&Frame::new(FrameKind::Data, s, bad.to_vec()).to_bytes(), now);
    pump(&mut ep, &mut vda, now);
    let ev = events(&mut vda);
    let [ChannelEvent::Message { session, message: Message::Response(r) }] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!((*session, r.id), (s, 77));
    assert_eq!(r.outcome.as_ref().unwrap_err().code, ErrorCode::InvalidParams);
}

#[test]
fn oversize_frame_closes_channel() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(256, 4096, now);
    let s = open(&mut vda, &mut ep, now);
    events(&mut ep);
    events(&mut vda);
    // 257 bytes: one over the negotiated 256.
    let f = Frame::new(FrameKind::Data, s, vec![b'x'; 247]);
    ep.handle_input(&f.to_bytes(), now);
    assert!(ep.is_closed());
    let ev = events(&mut ep);
    assert!(
        matches!(&ev[0], ChannelEvent::SessionClosed { session, code: ErrorCode::BadFrame, by_peer: false, .. } if *session == s)
    );
    assert!(matches!(&ev[1], ChannelEvent::Closed { code: ErrorCode::BadFrame, .. }));
    // Later input is ignored, and the peer learns about it through CLOSE on session 0.
    ep.handle_input(&Frame::new(FrameKind::Ping, 0, vec![0; 8]).to_bytes(), now);
    pump(&mut ep, &mut vda, now);
    assert!(vda.is_closed());
    let ev = events(&mut vda);
    assert!(matches!(&ev[0], ChannelEvent::SessionClosed { by_peer: true, code: ErrorCode::BadFrame, .. }));
    assert!(matches!(&ev[1], ChannelEvent::Closed { code: ErrorCode::BadFrame, .. }));
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn bad_length_field_closes_channel() {
    let now = Instant::now();
    let (_vda, mut ep) = connected(4096, 4096, now);
    ep.handle_input(&[0, 0, 0, 2, 0x20, 0], now);
    assert!(ep.is_closed());
}

#[test]
fn skippable_frame_faults_get_error_bad_frame() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(4096, 4096, now);
    let s = open(&mut vda, &mut ep, now);
    events(&mut ep);
    let mut unknown = Frame::new(FrameKind::Data, s, vec![]).to_bytes();
    unknown[4] = 0x7e;
    let mut flags = Frame::new(FrameKind::Data, s, b"{}".to_vec()).to_bytes();
    flags[5] = 0x80;
    ep.handle_input(&unknown, now);
    ep.handle_input(&flags, now);
    ep.handle_input(&Frame::new(FrameKind::Hello, 0, b"{}".to_vec()).to_bytes(), now);
    ep.handle_input(&Frame::new(FrameKind::Ping, 0, vec![1, 2, 3]).to_bytes(), now);
    let out = frames(&mut ep);
    assert_eq!(out.len(), 4);
    for (f, session) in out.iter().zip([s, s, 0, 0]) {
        assert_eq!((f.kind, f.session), (FrameKind::Error, session));
        assert_eq!(serde_json::from_slice::<ErrorBody>(&f.payload).unwrap().code, ErrorCode::BadFrame);
    }
    assert_eq!(events(&mut ep).len(), 4);
    assert!(ep.is_ready() && ep.is_session_open(s));
}

#[test]
fn open_in_use_and_over_the_cap() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(4096, 4096, now);
    let s = open(&mut vda, &mut ep, now);
    events(&mut ep);
    ep.handle_input(&Frame::new(FrameKind::Open, s, b"{}".to_vec()).to_bytes(), now);
    let out = frames(&mut ep);
    assert_eq!((out[0].kind, out[0].session), (FrameKind::Error, s));
    assert_eq!(serde_json::from_slice::<ErrorBody>(&out[0].payload).unwrap().code, ErrorCode::SessionExists);
    assert!(ep.is_session_open(s));

    // The vda allows 100, the endpoint 64.
    let mut vc = ChannelConfig::vda("b");
    vc.max_sessions = 100;
    let mut vda = Channel::new(vc, now);
    let mut ep = Channel::new(ChannelConfig::endpoint(welcome()), now);
    pump(&mut vda, &mut ep, now);
    let ids: Vec<_> = (0..65).map(|_| vda.open_session(Open::default()).unwrap()).collect();
    pump(&mut vda, &mut ep, now);
    assert_eq!(ep.sessions().count(), 64);
    let ev = events(&mut vda);
    let last = ids[64];
    assert!(ev.iter().any(|e| matches!(e, ChannelEvent::PeerError { session, error } if *session == last && error.code == ErrorCode::LimitExceeded)));
    assert!(
        matches!(ev.last(), Some(ChannelEvent::SessionClosed { session, code: ErrorCode::LimitExceeded, by_peer: true, .. }) if *session == last)
    );
    assert_eq!(vda.sessions().count(), 64);
    // And the vda's own cap.
    let mut vc = ChannelConfig::vda("b");
    vc.max_sessions = 2;
    let mut vda = Channel::new(vc, now);
    let mut ep = Channel::new(ChannelConfig::endpoint(welcome()), now);
    pump(&mut vda, &mut ep, now);
    vda.open_session(Open::default()).unwrap();
    vda.open_session(Open::default()).unwrap();
    assert_eq!(vda.open_session(Open::default()), Err(ChannelError::TooManySessions(2)));
    assert_eq!(ep.open_session(Open::default()), Err(ChannelError::WrongRole(Role::Vda)));
}

#[test]
fn close_session_and_close_channel() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(4096, 4096, now);
    let a = open(&mut vda, &mut ep, now);
    let b = open(&mut vda, &mut ep, now);
    events(&mut ep);
    events(&mut vda);
    vda.close_session(a, ErrorCode::Normal, "page closed");
    assert_eq!(
        events(&mut vda),
        vec![ChannelEvent::SessionClosed {
            session: a,
            code: ErrorCode::Normal,
            reason: "page closed".into(),
            by_peer: false
        }]
    );
    pump(&mut vda, &mut ep, now);
    assert_eq!(
        events(&mut ep),
        vec![ChannelEvent::SessionClosed {
            session: a,
            code: ErrorCode::Normal,
            reason: "page closed".into(),
            by_peer: true
        }]
    );
    assert_eq!(vda.send(a, &Message::event("x", json!({}))), Err(ChannelError::UnknownSession(a)));

    ep.close(ErrorCode::Internal, "shutting down");
    ep.close(ErrorCode::Internal, "again"); // idempotent
    let ev = events(&mut ep);
    assert_eq!(ev.len(), 2, "{ev:?}");
    pump(&mut ep, &mut vda, now);
    assert!(vda.is_closed());
    assert_eq!(
        events(&mut vda),
        vec![
            ChannelEvent::SessionClosed {
                session: b,
                code: ErrorCode::Internal,
                reason: "shutting down".into(),
                by_peer: true
            },
            ChannelEvent::Closed { code: ErrorCode::Internal, reason: "shutting down".into() },
        ]
    );
}

#[test]
fn keepalive_and_idle_timeout() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let (mut vda, mut ep) = connected(4096, 4096, t0);
    assert_eq!(vda.poll_timeout(), Some(t0 + s(10)));
    vda.handle_timeout(t0 + s(9));
    assert!(vda.poll_transmit().is_none());
    vda.handle_timeout(t0 + s(10));
    let ping = frames(&mut vda);
    assert_eq!(ping.len(), 1);
    assert_eq!(ping[0].kind, FrameKind::Ping);
    assert_eq!(ping[0].payload.len(), 8);
    ep.handle_input(&ping[0].to_bytes(), t0 + s(10));
    let pong = frames(&mut ep);
    assert_eq!(pong, vec![Frame::new(FrameKind::Pong, 0, ping[0].payload.clone())]);
    vda.handle_input(&pong[0].to_bytes(), t0 + s(10));
    assert!(events(&mut vda).is_empty());
    // Both sides now count from t0+10.
    assert_eq!(vda.poll_timeout(), Some(t0 + s(20)));
    assert_eq!(ep.poll_timeout(), Some(t0 + s(20)));

    // Two peers with running timers keep each other alive.
    let mut t = t0 + s(10);
    for _ in 0..20 {
        t += s(5);
        vda.handle_timeout(t);
        ep.handle_timeout(t);
        pump(&mut vda, &mut ep, t);
    }
    assert!(vda.is_ready() && ep.is_ready());

    // A silent peer: the endpoint hears nothing for 30 s.
    let quiet = t;
    ep.handle_timeout(quiet + s(29));
    assert!(ep.is_ready());
    assert_eq!(frames(&mut ep).len(), 1, "one PING while waiting");
    assert_eq!(ep.poll_timeout(), Some(quiet + s(30)));
    ep.handle_timeout(quiet + s(30));
    assert!(ep.is_closed());
    let ev = events(&mut ep);
    assert!(matches!(ev.last(), Some(ChannelEvent::Closed { code: ErrorCode::Timeout, .. })), "{ev:?}");

    // Idle timeout also applies before the handshake, and no PING is sent then.
    let mut lonely = Channel::new(ChannelConfig::endpoint(welcome()), t0);
    lonely.handle_timeout(t0 + s(15));
    assert!(lonely.poll_transmit().is_none());
    lonely.handle_timeout(t0 + s(30));
    assert!(lonely.is_closed());
}

#[test]
fn long_error_messages_are_shortened_to_fit_a_frame() {
    let now = Instant::now();
    let (mut vda, mut ep) = connected(256, 256, now);
    let s = open(&mut vda, &mut ep, now);
    ep.send_error(s, ErrorBody::new(ErrorCode::Internal, "é".repeat(1000)));
    ep.close_session(s, ErrorCode::Internal, &"\u{1}".repeat(1000));
    let out = frames(&mut ep);
    for f in &out {
        assert!(f.encoded_len() <= 256);
    }
    assert_eq!(serde_json::from_slice::<ErrorBody>(&out[0].payload).unwrap().code, ErrorCode::Internal);
    assert_eq!(serde_json::from_slice::<Close>(&out[1].payload).unwrap().code, ErrorCode::Internal);
    // A body that cannot be shortened enough is dropped rather than sent oversize.
    ep.send_error(
        0,
        ErrorBody { constraint: Some("c".repeat(1000)), ..ErrorBody::new(ErrorCode::Overconstrained, "x") },
    );
    assert!(ep.poll_transmit().is_none());
}

/// xorshift64*: deterministic, seedable, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Up to `max - 1` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const KINDS: [u8; 12] = [0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x20, 0x30, 0x31, 0x40, 0x00, 0xff];

/// Random but mostly well-framed input, so the state machine behind the decoder is reached.
fn random_stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(12) {
        match rng.below(6) {
            0 => out.extend(rng.bytes(40)),
            _ => {
                let payload = match rng.below(5) {
                    0 => rng.bytes(64),
                    1 => br#"{"type":"request","id":1,"method":"m","params":{}}"#.to_vec(),
                    2 => {
                        br#"{"magic":"vdimedia","min_version":1,"max_version":1,"agent":"a","max_frame":256}"#
                            .to_vec()
                    }
                    3 => br#"{"code":"normal","reason":"r"}"#.to_vec(),
                    _ => br#"{"name":"x","code":"limit_exceeded","message":"m"}"#.to_vec(),
                };
                let f = Frame {
                    kind: FrameKind::Data,
                    flags: [0u8, 1, 2][rng.below(3)],
                    session: [0u32, 1, 2, 3, u32::MAX][rng.below(5)],
                    payload,
                };
                let mut b = f.to_bytes();
                b[4] = KINDS[rng.below(KINDS.len())];
                out.extend(b);
            }
        }
    }
    out
}

#[test]
fn random_input_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let now = Instant::now();
    for round in 0..3000 {
        let input = if round % 3 == 0 { rng.bytes(300) } else { random_stream(&mut rng) };
        // Bare decoder.
        let mut d = FrameDecoder::new(256 + rng.below(1000));
        d.push(&input);
        for _ in 0..100 {
            match d.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if e.is_fatal() => break,
                Err(_) => {}
            }
        }
        // Fresh endpoint, ready endpoint with sessions, ready vda; input in random splits.
        let mut fresh = Channel::new(ChannelConfig::endpoint(welcome()), now);
        let (mut vda, mut ep) = connected(256, 256, now);
        open(&mut vda, &mut ep, now);
        for ch in [&mut fresh, &mut ep, &mut vda] {
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                ch.handle_input(&rest[..n], now);
                rest = &rest[n..];
            }
            ch.handle_timeout(now + Duration::from_secs(rng.below(40) as u64));
            let limit = ch.max_frame().max(DEFAULT_MAX_FRAME);
            while let Some(f) = ch.poll_transmit() {
                assert!(f.len() <= limit);
            }
            while ch.poll_event().is_some() {}
        }
    }
}
