//! The channel's resource limits (issue 7, "Limits"; docs/robustness.md): each breach is a
//! typed error on the wire, never growth. Two `Channel`s wired back to back.

use std::time::Instant;

use serde_json::json;
use vdimedia_protocol::SessionId;
use vdimedia_protocol::channel::*;
use vdimedia_protocol::handshake::*;
use vdimedia_protocol::message::*;

fn pump(a: &mut Channel, b: &mut Channel, now: Instant) {
    loop {
        let mut n = 0;
        while let Some(f) = a.poll_transmit() {
            b.handle_input(&f, now);
            n += 1;
        }
        while let Some(f) = b.poll_transmit() {
            a.handle_input(&f, now);
            n += 1;
        }
        if n == 0 {
            break;
        }
    }
}

fn events(ch: &mut Channel) -> Vec<ChannelEvent> {
    std::iter::from_fn(|| ch.poll_event()).collect()
}

/// A ready vda/endpoint pair with one open session; the endpoint allows `max_pending` requests.
fn session(max_pending: usize, now: Instant) -> (Channel, Channel, SessionId) {
    let mut ec = ChannelConfig::endpoint(Welcome::new("vdimediad/test", Capabilities::default()));
    ec.max_pending_requests = max_pending;
    let mut vda = Channel::new(ChannelConfig::vda("vdimedia-bridge/test"), now);
    let mut ep = Channel::new(ec, now);
    pump(&mut vda, &mut ep, now);
    let sid = vda.open_session(Open::default()).unwrap();
    pump(&mut vda, &mut ep, now);
    events(&mut vda);
    events(&mut ep);
    (vda, ep, sid)
}

fn requests_delivered(ep: &mut Channel) -> Vec<u64> {
    events(ep)
        .into_iter()
        .filter_map(|e| match e {
            ChannelEvent::Message { message: Message::Request(r), .. } => Some(r.id),
            _ => None,
        })
        .collect()
}

fn responses(vda: &mut Channel) -> Vec<(u64, Result<(), ErrorCode>)> {
    events(vda)
        .into_iter()
        .filter_map(|e| match e {
            ChannelEvent::Message { message: Message::Response(r), .. } => {
                Some((r.id, r.outcome.map(|_| ()).map_err(|e| e.code)))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn requests_over_the_pending_limit_get_limit_exceeded_and_are_not_delivered() {
    let now = Instant::now();
    let (mut vda, mut ep, sid) = session(3, now);
    for id in 1..=5 {
        vda.send(sid, &Message::request(id, "pc.getStats", json!({"pc": "pc1"}))).unwrap();
    }
    pump(&mut vda, &mut ep, now);
    assert_eq!(requests_delivered(&mut ep), vec![1, 2, 3]);
    assert_eq!(
        responses(&mut vda),
        vec![(4, Err(ErrorCode::LimitExceeded)), (5, Err(ErrorCode::LimitExceeded))]
    );

    // Answering one frees one slot; events and errors from the engine do not.
    ep.send(sid, &Message::event("pc.negotiationneeded", json!({"pc": "pc1"}))).unwrap();
    ep.send(sid, &Message::response_ok(1, json!({}))).unwrap();
    for id in 6..=7 {
        vda.send(sid, &Message::request(id, "pc.close", json!({"pc": "pc1"}))).unwrap();
    }
    pump(&mut vda, &mut ep, now);
    assert_eq!(requests_delivered(&mut ep), vec![6]);
    assert_eq!(responses(&mut vda), vec![(1, Ok(())), (7, Err(ErrorCode::LimitExceeded))]);
    // The session stays open: a refusal is not a protocol fault of the page.
    assert!(ep.is_session_open(sid) && vda.is_session_open(sid));
}

#[test]
fn the_pending_limit_is_per_session() {
    let now = Instant::now();
    let (mut vda, mut ep, a) = session(1, now);
    let b = vda.open_session(Open::default()).unwrap();
    pump(&mut vda, &mut ep, now);
    events(&mut ep);
    events(&mut vda);
    vda.send(a, &Message::request(1, "pc.getStats", json!({}))).unwrap();
    vda.send(b, &Message::request(1, "pc.getStats", json!({}))).unwrap();
    pump(&mut vda, &mut ep, now);
    assert_eq!(requests_delivered(&mut ep), vec![1, 1]);
    assert!(responses(&mut vda).is_empty());
}

#[test]
fn a_request_flood_is_reported_once_per_episode() {
    let now = Instant::now();
    let (mut vda, mut ep, sid) = session(1, now);
    let flood = |vda: &mut Channel, ids: std::ops::Range<u64>| {
        for id in ids {
            vda.send(sid, &Message::request(id, "devices.enumerate", json!({}))).unwrap();
        }
    };
    let reports = |ep: &mut Channel| {
        events(ep).iter().filter(|e| matches!(e, ChannelEvent::ProtocolError { .. })).count()
    };
    flood(&mut vda, 1..51);
    pump(&mut vda, &mut ep, now);
    assert_eq!(reports(&mut ep), 1, "49 refusals, one report");
    assert_eq!(responses(&mut vda).len(), 49);
    // Once a request is served again, the next flood is a new episode.
    ep.send(sid, &Message::response_ok(1, json!({}))).unwrap();
    flood(&mut vda, 51..60);
    pump(&mut vda, &mut ep, now);
    assert_eq!(reports(&mut ep), 1);
}

/// A ready pair whose endpoint allows a burst of `burst` requests, then `rate` per second (and
/// any number pending).
fn rate_session(burst: u32, rate: u32, now: Instant) -> (Channel, Channel, SessionId) {
    let mut ec = ChannelConfig::endpoint(Welcome::new("vdimediad/test", Capabilities::default()));
    ec.max_pending_requests = usize::MAX;
    ec.request_burst = burst;
    ec.request_rate = rate;
    let mut vda = Channel::new(ChannelConfig::vda("vdimedia-bridge/test"), now);
    let mut ep = Channel::new(ec, now);
    pump(&mut vda, &mut ep, now);
    let sid = vda.open_session(Open::default()).unwrap();
    pump(&mut vda, &mut ep, now);
    events(&mut vda);
    events(&mut ep);
    (vda, ep, sid)
}

fn send_requests(vda: &mut Channel, sid: SessionId, ids: std::ops::Range<u64>) {
    for id in ids {
        vda.send(sid, &Message::request(id, "pc.getStats", json!({"pc": "pc1"}))).unwrap();
    }
}

#[test]
fn requests_over_the_rate_get_limit_exceeded_and_the_budget_refills() {
    use std::time::Duration;
    let t0 = Instant::now();
    let (mut vda, mut ep, sid) = rate_session(10, 5, t0);
    send_requests(&mut vda, sid, 1..16);
    pump(&mut vda, &mut ep, t0);
    assert_eq!(requests_delivered(&mut ep), (1..11).collect::<Vec<_>>(), "the burst is served");
    let refused = responses(&mut vda);
    assert_eq!(refused, (11..16).map(|id| (id, Err(ErrorCode::LimitExceeded))).collect::<Vec<_>>());

    // 1 s later 5 tokens are back (rate 5/s): 5 served, the 6th refused.
    let t1 = t0 + Duration::from_secs(1);
    send_requests(&mut vda, sid, 16..22);
    pump(&mut vda, &mut ep, t1);
    assert_eq!(requests_delivered(&mut ep), (16..21).collect::<Vec<_>>());
    assert_eq!(responses(&mut vda), vec![(21, Err(ErrorCode::LimitExceeded))]);

    // Idle for a long time: the bucket holds at most the burst, not 5 × 100 s.
    let t2 = t1 + Duration::from_secs(100);
    send_requests(&mut vda, sid, 22..34);
    pump(&mut vda, &mut ep, t2);
    assert_eq!(requests_delivered(&mut ep).len(), 10);
    assert_eq!(responses(&mut vda).len(), 2);
    // A refusal is not a protocol fault: the session stays open.
    assert!(ep.is_session_open(sid) && vda.is_session_open(sid));
}

#[test]
fn the_rate_limit_is_per_session_and_reported_once_per_episode() {
    let now = Instant::now();
    let (mut vda, mut ep, a) = rate_session(3, 1, now);
    let b = vda.open_session(Open::default()).unwrap();
    pump(&mut vda, &mut ep, now);
    events(&mut ep);
    events(&mut vda);
    send_requests(&mut vda, a, 1..51);
    pump(&mut vda, &mut ep, now);
    let evs = events(&mut ep);
    let served = evs.iter().filter(|e| matches!(e, ChannelEvent::Message { .. })).count();
    let reports: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            ChannelEvent::ProtocolError { session, error } => Some((*session, error.code)),
            _ => None,
        })
        .collect();
    assert_eq!(served, 3);
    assert_eq!(reports, vec![(a, ErrorCode::LimitExceeded)], "47 refusals, one report");
    assert_eq!(responses(&mut vda).len(), 47);

    // Session b has its own budget, untouched by a's flood.
    send_requests(&mut vda, b, 1..4);
    pump(&mut vda, &mut ep, now);
    let delivered: Vec<_> = events(&mut ep)
        .into_iter()
        .filter_map(|e| match e {
            ChannelEvent::Message { session, .. } => Some(session),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, vec![b, b, b]);
    assert!(responses(&mut vda).is_empty());
}

#[test]
fn a_zero_rate_turns_the_limit_off_and_the_default_is_generous() {
    let now = Instant::now();
    let (mut vda, mut ep, sid) = rate_session(1, 0, now);
    send_requests(&mut vda, sid, 1..501);
    pump(&mut vda, &mut ep, now);
    assert_eq!(requests_delivered(&mut ep).len(), 500);
    let d = ChannelConfig::endpoint(Welcome::new("x", Capabilities::default()));
    assert_eq!((d.request_burst, d.request_rate), (DEFAULT_REQUEST_BURST, DEFAULT_REQUEST_RATE));
    // At least the bridge's page budget (200, then 100/s).
    const _: () = assert!(DEFAULT_REQUEST_BURST >= 200 && DEFAULT_REQUEST_RATE >= 100);
}
