//! The virtual channel dropping mid-call (issue 7, "Faults"), on the real `vdimediad` with a
//! private PipeWire graph (tests/rig/pipewire.sh) and real webrtcbin calls: the session is
//! parked with its call running, resumed by `OPEN.resume` on a new channel with the events of
//! the time away, or closed (streams and devices released) when the grace period passes.
//! Skips (with a printed reason) only when PipeWire is not installed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vdimedia_protocol::handshake::Opened;
use vdimedia_protocol::{ChannelEvent, Message, Open, SessionId};

mod common;
use common::{Page, Reaper, Rig, tempdir, wait_for_path};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
const CTL: &str = env!("CARGO_BIN_EXE_vdimediactl");

/// Starts the daemon on the rig with `[vc] session_grace_ms = grace_ms`, its VC socket at
/// `DIR/vc.sock`, control socket at `DIR/control.sock` and log at `DIR/daemon.log`.
fn start_daemon(rig: &Rig, dir: &Path, grace_ms: u64) -> Reaper {
    let cfg = dir.join("vdimediad.toml");
    std::fs::write(
        &cfg,
        format!(
            "[vc]\nsession_grace_ms = {grace_ms}\n[control]\nsocket = \"{}\"\n",
            dir.join("control.sock").display()
        ),
    )
    .unwrap();
    let vc = dir.join("vc.sock");
    let log = dir.join("daemon.log");
    let mut child = Reaper(
        Command::new(DAEMON)
            .envs(&rig.env)
            .env("VDIMEDIA_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .arg("--config")
            .arg(&cfg)
            .args(["--listen", &format!("unix:{}", vc.display()), "--backend", "pipewire", "--loopback-ice"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_path(&vc, &mut child.0, Some(&log));
    wait_for_path(&dir.join("control.sock"), &mut child.0, Some(&log));
    child
}

/// Opens a session (resuming `resume` if given) and returns its id and `OPENED` payload.
async fn open_with(page: &mut Page, resume: Option<String>) -> (SessionId, Opened) {
    let sid = page.ch.open_session(Open { resume, ..Open::default() }).unwrap();
    let ev = page
        .wait_for("OPENED", |e| matches!(e, ChannelEvent::SessionOpened { session, .. } if *session == sid))
        .await;
    let ChannelEvent::SessionOpened { opened: Some(opened), .. } = ev else { panic!("{ev:?}") };
    (sid, opened)
}

/// `packetsSent` of pc "a" and `packetsReceived` of pc "b" from their getStats.
async fn packets(page: &mut Page, sid: SessionId) -> (u64, u64) {
    let get = |v: &Value, kind: &str, field: &str| {
        v["stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == kind)
            .and_then(|s| s[field].as_u64())
            .unwrap_or(0)
    };
    let a = page.request(sid, "pc.getStats", json!({"pc": "a"})).await;
    let b = page.request(sid, "pc.getStats", json!({"pc": "b"})).await;
    (get(&a, "outbound-rtp", "packetsSent"), get(&b, "inbound-rtp", "packetsReceived"))
}

/// A loopback call a → b in a new session of `page`, connected with media flowing.
async fn call(page: &mut Page) -> (SessionId, Opened) {
    let (sid, opened) = open_with(page, None).await;
    let gum = page.request(sid, "media.getUserMedia", json!({"constraints": {"audio": true}})).await;
    let track = gum["tracks"][0]["id"].as_str().unwrap().to_string();
    page.negotiate_loopback(sid, &track).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        page.trickle(sid).await;
        page.pump(Duration::from_millis(200)).await;
        let (sent, received) = packets(page, sid).await;
        if sent > 20 && received > 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the call never carried media ({sent} sent, {received} received)");
    }
    (sid, opened)
}

/// `packetsSent` of the first peer connection of the only session, from `vdimediactl status`.
fn ctl_packets_sent(rig: &Rig, dir: &Path) -> u64 {
    let out = Command::new(CTL)
        .envs(&rig.env)
        .arg("--socket")
        .arg(dir.join("control.sock"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    s["sessions"][0]["peerConnections"][0]["packetsSent"].as_u64().unwrap_or_else(|| panic!("{s:#}"))
}

/// PipeWire stream nodes on the rig: the daemon's capture and playout streams (the rig's own
/// nodes are devices, not streams). `pid` only documents whose they are.
fn streams_of(rig: &Rig, _pid: u32) -> usize {
    // pw-dump prints more than one array when the graph changes while it runs, and an array
    // printed during a change can lack nodes: take the largest count.
    let text = rig.pw(&["pw-dump", "--no-colors"]);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .map(|dump| {
            dump.as_array()
                .map(|objects| {
                    objects
                        .iter()
                        .filter(|o| {
                            let p = &o["info"]["props"];
                            p["media.class"].as_str().is_some_and(|c| c.starts_with("Stream/"))
                        })
                        .count()
                })
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// The daemon's stream count once two reads 200 ms apart agree (a playout sink swap replaces
/// a stream: the graph changes for a moment after `playout.attach`).
async fn settled_streams_of(rig: &Rig, pid: u32) -> usize {
    let mut last = streams_of(rig, pid);
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = streams_of(rig, pid);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn has_event(page: &Page, sid: SessionId, name: &str) -> bool {
    page.events.iter().any(|e| {
        matches!(e, ChannelEvent::Message { session, message: Message::Event(ev) } if *session == sid && ev.event == name)
    })
}

#[tokio::test(flavor = "current_thread")]
async fn call_survives_a_virtual_channel_drop_and_resumes() {
    let dir = tempdir("vc-resume");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    let _daemon = start_daemon(&rig, &dir, 30_000);
    let log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let vc = dir.join("vc.sock");

    let mut page = Page::connect(&vc, "vc-resume-test/1").await;
    let (_sid, opened) = call(&mut page).await;
    let token = opened.resume_token.clone().expect("OPENED carries a resume token");
    assert_eq!(token.len(), 32, "128-bit hex token: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(opened.resume_grace_ms, Some(30_000));
    assert!(!opened.resumed);

    // Cut the channel: the transport ends without a CLOSE.
    drop(page);
    let cut = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log().contains("session parked") {
        assert!(Instant::now() < deadline, "no 'session parked' journal line:\n{}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Media keeps flowing on the endpoint while the channel is away.
    let before = ctl_packets_sent(&rig, &dir);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = ctl_packets_sent(&rig, &dir);
    assert!(after >= before + 25, "packets did not keep flowing while cut: {before} → {after}");
    // Something happens meanwhile: a capture device is plugged in (devices.change).
    let _headset = Reaper(
        Command::new("pw-loopback")
            .envs(&rig.env)
            .arg("--capture-props=media.class=Audio/Sink node.name=vdimedia_resume_feed")
            .arg("--playback-props=media.class=Audio/Source node.name=vdimedia_resume_mic")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The channel returns; an unknown token gets a new, empty session.
    let mut page = Page::connect(&vc, "vc-resume-test/2").await;
    let (other, o) = open_with(&mut page, Some("00".repeat(16))).await;
    assert!(!o.resumed, "{o:?}");
    page.ch.close_session(other, vdimedia_protocol::ErrorCode::Normal, "test");
    let (sid, o) = open_with(&mut page, Some(token.clone())).await;
    assert!(o.resumed, "the parked session was not resumed: {o:?}\n{}", log());
    let new_token = o.resume_token.clone().unwrap();
    assert_ne!(new_token, token, "a resume issues a fresh token");
    // The event of the time away is delivered on the new session.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !has_event(&page, sid, "devices.change") {
        assert!(
            Instant::now() < deadline,
            "devices.change raised while cut was not delivered: {:#?}",
            page.events
        );
        page.pump(Duration::from_millis(100)).await;
    }
    // The same peer connections answer, and they carried media all along.
    let (sent, received) = packets(&mut page, sid).await;
    let away = cut.elapsed().as_secs_f64();
    eprintln!("after {away:.1} s away: {sent} sent, {received} received");
    assert!(sent as f64 >= 40.0 * away, "{sent} packets after {away:.1} s away");
    assert!(received > 20);
    let s = page.request(sid, "pc.getStats", json!({"pc": "b"})).await;
    assert!(s["stats"].as_array().is_some_and(|a| !a.is_empty()));
    // The old token is spent.
    assert!(log().contains("logical session resumed"), "{}", log());
    page.request(sid, "pc.close", json!({"pc": "a"})).await;
    page.request(sid, "pc.close", json!({"pc": "b"})).await;
}

#[tokio::test(flavor = "current_thread")]
async fn parked_session_is_closed_after_the_grace_period() {
    let dir = tempdir("vc-grace");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    let daemon = start_daemon(&rig, &dir, 1500);
    let pid = daemon.0.id();
    let log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let vc = dir.join("vc.sock");

    let mut page = Page::connect(&vc, "vc-grace-test/1").await;
    let (sid, opened) = call(&mut page).await;
    page.request(sid, "playout.attach", json!({"element": "el1", "stream": "s"})).await;
    assert_eq!(opened.resume_grace_ms, Some(1500));
    let token = opened.resume_token.unwrap();
    let streams = settled_streams_of(&rig, pid).await;
    assert!(streams >= 1, "the call has no PipeWire stream of the daemon");

    drop(page);
    let cut = Instant::now();
    // Still running inside the grace period.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Reads 100 ms apart until one shows them, all begun inside the 1.5 s grace: one pw-dump
    // taken while PipeWire is busy can miss nodes (seen once in CI: 0 of 2, session parked).
    let mut inside = vec![streams_of(&rig, pid)];
    while inside.last() != Some(&streams) && cut.elapsed() < Duration::from_millis(1200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        inside.push(streams_of(&rig, pid));
    }
    assert_eq!(inside.last(), Some(&streams), "streams went away inside the grace period: {inside:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log().contains("virtual channel did not return within 1.5 s") {
        assert!(Instant::now() < deadline, "no grace-expiry journal line:\n{}", log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_after = cut.elapsed();
    assert!(closed_after >= Duration::from_millis(1400), "closed after {closed_after:?}, before the grace");
    let deadline = Instant::now() + Duration::from_secs(5);
    while streams_of(&rig, pid) != 0 {
        assert!(
            Instant::now() < deadline,
            "PipeWire streams not released after the grace:\n{}",
            rig.pw(&["pw-dump", "--no-colors"])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The token is no longer known: a new, empty session.
    let mut page = Page::connect(&vc, "vc-grace-test/2").await;
    let (sid, o) = open_with(&mut page, Some(token)).await;
    assert!(!o.resumed);
    let st: Value = {
        page.ch.send(sid, &Message::request(99, "pc.getStats", json!({"pc": "a"}))).unwrap();
        let ev = page
            .wait_for("getStats", |e| {
                matches!(e, ChannelEvent::Message { message: Message::Response(_), .. })
            })
            .await;
        let ChannelEvent::Message { message: Message::Response(r), .. } = ev else { unreachable!() };
        json!({"ok": r.outcome.is_ok()})
    };
    assert_eq!(st["ok"], false, "the old pc must be gone in a new session");
}
