//! Helpers shared by the daemon's integration tests that drive a real `vdimediad` process.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vdimedia_protocol::{Channel, ChannelConfig, ChannelEvent, Message, Open, Response, SessionId};

/// Kills and reaps a child when the test ends, failed or not.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A page on the virtual channel: the VDA side of the real protocol over the daemon's VC socket.
pub struct Page {
    pub ch: Channel,
    io: UnixStream,
    /// Events received and not yet taken by [`Page::wait_for`].
    pub events: Vec<ChannelEvent>,
    next_id: u64,
}

impl Page {
    /// Connects to the VC socket at `vc` as `engine` (e.g. `"ctl-test/1"`) and waits for WELCOME.
    pub async fn connect(vc: &Path, engine: &str) -> Page {
        let io = UnixStream::connect(vc).await.unwrap();
        let mut p = Page {
            ch: Channel::new(ChannelConfig::vda(engine), Instant::now()),
            io,
            events: vec![],
            next_id: 0,
        };
        p.wait_for("WELCOME", |e| matches!(e, ChannelEvent::Ready(_))).await;
        p
    }

    /// Writes every frame the channel has queued.
    pub async fn flush(&mut self) {
        while let Some(f) = self.ch.poll_transmit() {
            self.io.write_all(&f).await.unwrap();
        }
    }

    /// Sends what is queued, reads for up to `wait` and keeps the events that arrive.
    pub async fn pump(&mut self, wait: Duration) {
        self.flush().await;
        let mut buf = vec![0u8; 65536];
        if let Ok(r) = tokio::time::timeout(wait, self.io.read(&mut buf)).await {
            let n = r.unwrap();
            assert!(n > 0, "daemon closed the channel");
            self.ch.handle_input(&buf[..n], Instant::now());
        }
        while let Some(ev) = self.ch.poll_event() {
            self.events.push(ev);
        }
        self.flush().await;
    }

    /// Takes the first event matching `pred`, pumping for up to 20 s.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&ChannelEvent) -> bool) -> ChannelEvent {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i);
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:#?}", self.events);
            self.pump(Duration::from_millis(100)).await;
        }
    }

    /// Opens a logical session and waits until the daemon confirms it.
    pub async fn open(&mut self) -> SessionId {
        let sid = self.ch.open_session(Open::default()).unwrap();
        self.wait_for(
            "OPENED",
            |e| matches!(e, ChannelEvent::SessionOpened { session, .. } if *session == sid),
        )
        .await;
        sid
    }

    /// Sends a request and returns its result; panics on an error response.
    pub async fn request(&mut self, sid: SessionId, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ch.send(sid, &Message::request(id, method, params)).unwrap();
        let ev = self
            .wait_for(method, |e| {
                matches!(e, ChannelEvent::Message { session, message: Message::Response(Response { id: rid, .. }) }
                    if *session == sid && *rid == id)
            })
            .await;
        let ChannelEvent::Message { message: Message::Response(r), .. } = ev else { unreachable!() };
        r.outcome.unwrap_or_else(|e| panic!("{method} failed: {e:?}"))
    }
}
