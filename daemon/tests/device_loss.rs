//! Unplugging the capture device mid-call on a real, private PipeWire graph
//! (tests/rig/pipewire.sh) through the real `vdimediad`: the page gets `devices.change`, the
//! call keeps sending (capture falls back to the default device), and the track does not end
//! while a device is left. Skips (with a printed reason) only when PipeWire is not installed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use vdimedia_protocol::{ChannelEvent, Message, SessionId};

mod common;
use common::{Page, Reaper, Rig, tempdir};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
const NODE: &str = "vdimedia_usb_headset_mic";
const LABEL: &str = "USB Headset Mic";

/// `packetsSent` of pc "a"'s outbound-rtp.
async fn packets_sent(page: &mut Page, sid: SessionId) -> u64 {
    let stats = page.request(sid, "pc.getStats", json!({"pc": "a"})).await;
    stats["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "outbound-rtp")
        .and_then(|s| s["packetsSent"].as_u64())
        .unwrap_or(0)
}

fn has_event(page: &Page, name: &str) -> bool {
    page.events
        .iter()
        .any(|e| matches!(e, ChannelEvent::Message { message: Message::Event(ev), .. } if ev.event == name))
}

#[tokio::test(flavor = "current_thread")]
async fn unplugging_the_capture_device_mid_call_keeps_the_call() {
    let dir = tempdir("device-loss");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    // The headset: a loopback whose playback side is an Audio/Source node, as the rig's own
    // mic is made; killing it is the unplug.
    let mut headset = Reaper(
        Command::new("pw-loopback")
            .envs(&rig.env)
            .arg(format!("--capture-props=media.class=Audio/Sink node.name={NODE}_feed"))
            .arg(format!(
                "--playback-props=media.class=Audio/Source node.name={NODE} node.description=\"{LABEL}\""
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.node_id(NODE).is_none() {
        assert!(Instant::now() < deadline, "the headset node never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _daemon = rig.start_daemon(DAEMON, &dir, "vc");
    let (vc, log) = (dir.join("vc.sock"), dir.join("vc.log"));
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut page = Page::connect(&vc, "device-loss-test/1").await;
    let sid = page.open().await;
    let devices = page.request(sid, "devices.enumerate", json!({})).await;
    let mic = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == LABEL && d["kind"] == "audioinput")
        .unwrap_or_else(|| panic!("the headset mic is not listed: {devices:#}"))["deviceId"]
        .as_str()
        .unwrap()
        .to_string();
    let gum = page
        .request(sid, "media.getUserMedia", json!({"constraints": {"audio": {"deviceId": {"exact": mic}}}}))
        .await;
    assert_eq!(gum["tracks"][0]["settings"]["deviceId"], mic, "{gum:#}");
    let track = gum["tracks"][0]["id"].as_str().unwrap().to_string();
    page.negotiate_loopback(sid, &track).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while packets_sent(&mut page, sid).await < 25 {
        assert!(Instant::now() < deadline, "the call never sent media\n{}", daemon_log());
        page.pump(Duration::from_millis(200)).await;
        page.trickle(sid).await;
    }

    // Unplug the headset's mic.
    let _ = headset.0.kill();
    let _ = headset.0.wait();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !has_event(&page, "devices.change") {
        assert!(Instant::now() < deadline, "no devices.change after unplugging: {:#?}", page.events);
        page.pump(Duration::from_millis(100)).await;
    }
    // Give the fallback a moment, then the call must still be sending: 2 s is 100 packets of
    // 20 ms; half of that allows for a loaded machine.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = packets_sent(&mut page, sid).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let after = packets_sent(&mut page, sid).await;
    assert!(
        after >= before + 50,
        "capture stopped after the unplug: packetsSent {before} → {after} in 2 s\n{}",
        daemon_log()
    );
    page.pump(Duration::from_millis(100)).await;
    assert!(
        !has_event(&page, "track.ended"),
        "the track ended though the default mic is left: {:#?}",
        page.events
    );
    assert!(
        daemon_log().contains("capture device gone"),
        "no journal line for the fallback\n{}",
        daemon_log()
    );
}
