//! Feeds arbitrary bytes to `FrameDecoder` and to an endpoint-role `Channel`, both before and
//! after a completed handshake, in input-chosen splits. Any panic is a bug: docs/protocol.md
//! requires malformed input to become typed errors, never a crash.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use vdimedia_protocol::channel::{Channel, ChannelConfig};
use vdimedia_protocol::frame::{DEFAULT_MAX_FRAME, Frame, FrameDecoder, FrameKind};
use vdimedia_protocol::handshake::{Capabilities, Hello, Open, Welcome};

fn endpoint(now: Instant) -> Channel {
    let mut cfg = ChannelConfig::endpoint(Welcome::new("fuzz", Capabilities::default()));
    cfg.max_frame = 256;
    Channel::new(cfg, now)
}

fn drain(ch: &mut Channel) {
    let limit = ch.max_frame().max(DEFAULT_MAX_FRAME);
    while let Some(f) = ch.poll_transmit() {
        assert!(f.len() <= limit, "transmitted frame over max_frame");
    }
    while ch.poll_event().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    // First byte picks split size and the decoder limit so both vary with the input.
    let (split, rest) = match data.split_first() {
        Some((b, rest)) => (usize::from(*b % 64) + 1, rest),
        None => (1, data),
    };

    let mut d = FrameDecoder::new(256 + split * 17);
    for chunk in rest.chunks(split) {
        d.push(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if e.is_fatal() => break,
                Err(_) => {}
            }
        }
    }

    let now = Instant::now();
    // Fresh endpoint: the input is the very first thing it hears.
    let mut fresh = endpoint(now);
    for chunk in rest.chunks(split) {
        fresh.handle_input(chunk, now);
    }
    fresh.handle_timeout(now + Duration::from_secs(31));
    drain(&mut fresh);

    // Ready endpoint with session 1 open: the input reaches sessions and reassembly.
    let mut ready = endpoint(now);
    let hello = serde_json_hello();
    ready.handle_input(&Frame::new(FrameKind::Hello, 0, hello).to_bytes(), now);
    let open = serde_json::to_vec(&Open::default()).unwrap();
    ready.handle_input(&Frame::new(FrameKind::Open, 1, open).to_bytes(), now);
    for chunk in rest.chunks(split) {
        ready.handle_input(chunk, now);
    }
    ready.handle_timeout(now + Duration::from_secs(11));
    drain(&mut ready);
});

fn serde_json_hello() -> Vec<u8> {
    serde_json::to_vec(&Hello::new("fuzz", 256)).unwrap()
}
