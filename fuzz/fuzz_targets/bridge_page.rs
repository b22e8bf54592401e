//! The bridge's page path (bridge/src/page.rs `on_text` → bridge/src/vc.rs `VcCommand::Send`):
//! WebSocket text messages from a page are parsed with `Message::from_json` and re-framed onto
//! the page's logical session with a vda-role `Channel`; the endpoint-role `Channel` (the
//! daemon's) reassembles them, and its answers travel back and are re-serialized for the page.
//!
//! Input: page texts separated by 0xFF (never valid UTF-8, so never inside a text); a text
//! that is not UTF-8 is skipped, as tungstenite refuses it before the bridge sees it. The
//! first byte picks the negotiated `max_frame` so fragmentation varies.
//!
//! Asserts: no panic; a refused text yields an error the bridge can send (UTF-8 JSON, an
//! error response only for a usable id); an accepted message crosses the channel in frames
//! within `max_frame` and arrives unchanged; the daemon's answer comes back unchanged.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vdimedia_protocol::SessionId;
use vdimedia_protocol::channel::{Channel, ChannelConfig, ChannelError, ChannelEvent};
use vdimedia_protocol::frame::MAX_MESSAGE;
use vdimedia_protocol::handshake::{Capabilities, Open, Welcome};
use vdimedia_protocol::message::{Message, MessageError};

/// Moves every queued frame from `from` to `to`, checking each against `from`'s limit.
fn pump(from: &mut Channel, to: &mut Channel, now: Instant) {
    let limit = from.max_frame();
    while let Some(f) = from.poll_transmit() {
        assert!(f.len() <= limit, "frame of {} bytes over max_frame {limit}", f.len());
        to.handle_input(&f, now);
    }
}

/// The messages of `session` that arrived on `ch`, other events dropped.
fn received(ch: &mut Channel, session: SessionId) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(ev) = ch.poll_event() {
        match ev {
            ChannelEvent::Message { session: s, message } if s == session => out.push(message),
            ChannelEvent::SessionClosed { .. } | ChannelEvent::Closed { .. } => {
                panic!("a well-formed message closed the session or channel: {ev:?}")
            }
            _ => {}
        }
    }
    out
}

/// What the bridge writes on the WebSocket for a message (page.rs `send_message`).
fn page_text(m: &Message) -> String {
    String::from_utf8(m.to_json()).expect("bridge → page text is UTF-8")
}

fuzz_target!(|data: &[u8]| {
    let (sel, rest) = match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => return,
    };
    let now = Instant::now();
    let mut vda_cfg = ChannelConfig::vda("vdimedia-bridge/fuzz");
    vda_cfg.max_frame = 256 + usize::from(sel) * 16;
    let mut vda = Channel::new(vda_cfg, now);
    let mut ep = Channel::new(ChannelConfig::endpoint(Welcome::new("fuzz", Capabilities::default())), now);
    pump(&mut vda, &mut ep, now);
    pump(&mut ep, &mut vda, now);
    assert!(vda.is_ready() && ep.is_ready());
    let sid = vda.open_session(Open::default()).expect("first session opens");
    pump(&mut vda, &mut ep, now);
    pump(&mut ep, &mut vda, now);
    while ep.poll_event().is_some() {}
    while vda.poll_event().is_some() {}

    for text in rest.split(|b| *b == 0xFF) {
        let Ok(text) = std::str::from_utf8(text) else { continue };
        let message = match Message::from_json(text.as_bytes()) {
            Ok(m) => m,
            Err(MessageError { id, error }) => {
                // page.rs answers on the WebSocket and forwards nothing.
                match id {
                    Some(id) => drop(page_text(&Message::response_err(id, error))),
                    None => drop(serde_json::json!({"type": "error", "error": error}).to_string()),
                }
                continue;
            }
        };
        match vda.send(sid, &message) {
            Ok(()) => {}
            Err(ChannelError::MessageTooLarge { size }) => {
                assert!(size > MAX_MESSAGE);
                continue;
            }
            Err(e) => panic!("send of a parsed page message failed: {e}"),
        }
        pump(&mut vda, &mut ep, now);
        assert_eq!(received(&mut ep, sid), vec![message.clone()], "re-framing changed the message");

        // The daemon answers a request (which frees its pending slot) with its params as the
        // result, and sends anything else back as is: engine → page traffic of the same shape.
        let answer = match &message {
            Message::Request(r) => Message::response_ok(r.id, r.params.clone()),
            other => other.clone(),
        };
        ep.send(sid, &answer).expect("endpoint sends back");
        pump(&mut ep, &mut vda, now);
        let back = received(&mut vda, sid);
        assert_eq!(back, vec![answer], "engine → page changed the message");
        page_text(&back[0]);
    }
});
