//! Device hot-plug on a real, private PipeWire graph (tests/rig/pipewire.sh) through the real
//! `vdimediad` and its virtual channel: a page session gets `devices.change` when a device node
//! is created and when it is destroyed, `devices.enumerate` follows, `deviceId`s are the same
//! after a daemon restart, and no watcher (`pw-dump --monitor` child) exists while no page
//! session is open. Skips (with a printed reason) only when PipeWire is not installed.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vdimedia_protocol::{ChannelEvent, Message, SessionId};

mod common;
use common::{Page, Reaper, Rig, tempdir, wait_for_path};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
/// node.name of the device the test plugs in and pulls out.
const NODE: &str = "vdimedia_hotplug_headset";
const LABEL: &str = "Hotplug Test Headset";

/// Command names of the daemon's child processes.
fn children(pid: u32) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return vec![];
    };
    text.split_whitespace()
        .filter_map(|c| std::fs::read_to_string(format!("/proc/{c}/comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn labels(devices: &Value) -> Vec<String> {
    devices["devices"].as_array().unwrap().iter().map(|d| d["label"].as_str().unwrap().to_string()).collect()
}

/// Waits for the session's next `devices.change`; returns how long it took.
async fn next_device_change(page: &mut Page, sid: SessionId, since: Instant) -> Duration {
    page.wait_for("devices.change", |e| {
        matches!(e, ChannelEvent::Message { session, message: Message::Event(ev) }
            if *session == sid && ev.event == "devices.change")
    })
    .await;
    since.elapsed()
}

#[tokio::test(flavor = "current_thread")]
async fn devicechange_on_plug_and_unplug_and_stable_ids_across_restart() {
    let dir = tempdir("hotplug");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };

    let daemon = rig.start_daemon(DAEMON, &dir, "vc1");
    let pid = daemon.0.id();
    assert!(
        !children(pid).iter().any(|c| c == "pw-dump"),
        "a watcher runs with no page: {:?}",
        children(pid)
    );

    let mut page = Page::connect(&dir.join("vc1.sock"), "hotplug-test/1").await;
    let sid = page.open().await;
    let before = page.request(sid, "devices.enumerate", json!({})).await;
    assert!(!labels(&before).iter().any(|l| l == LABEL), "{before:#}");
    // The watcher starts with the session (its baseline enumeration may still run).
    wait_until("the device watcher starts", Duration::from_secs(5), || {
        children(pid).iter().any(|c| c == "pw-dump")
    });
    page.pump(Duration::from_millis(500)).await;
    assert!(
        !page.events.iter().any(|e| matches!(e, ChannelEvent::Message { message: Message::Event(ev), .. } if ev.event == "devices.change")),
        "devices.change with no change: {:#?}",
        page.events
    );

    // Plug: a new output device (a null sink, as a USB headset's sink node would appear).
    let plugged = Instant::now();
    rig.pw(&[
        "pw-cli",
        "create-node",
        "adapter",
        &format!(
            "{{ factory.name=support.null-audio-sink node.name={NODE} node.description=\"{LABEL}\" \
                 media.class=Audio/Sink object.linger=true audio.position=[FL FR] }}"
        ),
    ]);
    let took = next_device_change(&mut page, sid, plugged).await;
    eprintln!("devices.change after plugging: {} ms", took.as_millis());
    assert!(
        took < Duration::from_secs(2),
        "devices.change took {took:?} (want < 1 s; 2 s allowed for CI load)"
    );
    let after_plug = page.request(sid, "devices.enumerate", json!({})).await;
    let entry = after_plug["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == LABEL)
        .unwrap_or_else(|| panic!("plugged device missing: {after_plug:#}"))
        .clone();
    assert_eq!(entry["kind"], "audiooutput", "{entry:#}");

    // Unplug.
    let id = rig.node_id(NODE).expect("the plugged node exists");
    let pulled = Instant::now();
    rig.pw(&["pw-cli", "destroy", &id.to_string()]);
    let took = next_device_change(&mut page, sid, pulled).await;
    eprintln!("devices.change after unplugging: {} ms", took.as_millis());
    assert!(took < Duration::from_secs(2), "devices.change took {took:?}");
    let after_pull = page.request(sid, "devices.enumerate", json!({})).await;
    assert_eq!(after_pull, before, "the list is back to what it was");

    // Closing the last session stops the watcher.
    page.ch.close_session(sid, vdimedia_protocol::ErrorCode::Normal, "test done");
    page.pump(Duration::from_millis(200)).await;
    wait_until("the device watcher stops", Duration::from_secs(5), || {
        !children(pid).iter().any(|c| c == "pw-dump")
    });
    drop(page);
    drop(daemon);

    // A restarted daemon gives every device the same deviceId and groupId.
    let _daemon = rig.start_daemon(DAEMON, &dir, "vc2");
    let mut page = Page::connect(&dir.join("vc2.sock"), "hotplug-test/2").await;
    let sid = page.open().await;
    let again = page.request(sid, "devices.enumerate", json!({})).await;
    assert_eq!(again, before, "deviceIds changed across a daemon restart");
}

/// ALSA kiosks: a PCM defined in `~/.asoundrc` after the page opened (an admin adding a device,
/// as a USB card appearing under /dev/snd would) gives `devices.change`, and so does its removal.
#[tokio::test(flavor = "current_thread")]
async fn devicechange_on_alsa_configuration_change() {
    let home = tempdir("hotplug-alsa");
    let asoundrc = home.join(".asoundrc");
    let base = "pcm.nullspk {\n  type null\n  hint { show on description \"Null speaker\" }\n}\n";
    std::fs::write(&asoundrc, base).unwrap();
    let vc = home.join("vc.sock");
    let log = home.join("daemon.log");
    let mut daemon = Reaper(
        Command::new(DAEMON)
            .env("HOME", &home)
            .env("VDIMEDIA_LOG", "info,media=debug")
            .env_remove("JOURNAL_STREAM")
            .args(["--listen", &format!("unix:{}", vc.display()), "--backend", "alsa", "--loopback-ice"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_path(&vc, &mut daemon.0, Some(&log));
    let mut page = Page::connect(&vc, "hotplug-test/alsa").await;
    let sid = page.open().await;
    let before = page.request(sid, "devices.enumerate", json!({})).await;
    assert!(labels(&before).iter().any(|l| l == "Null speaker"), "{before:#}");
    // Let the watcher take its baseline before the change.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let added = Instant::now();
    std::fs::write(
        &asoundrc,
        format!("{base}pcm.usbmic {{\n  type null\n  hint {{ show on description \"USB mic\" }}\n}}\n"),
    )
    .unwrap();
    let took = next_device_change(&mut page, sid, added).await;
    eprintln!("ALSA devices.change after adding a PCM: {} ms", took.as_millis());
    let after = page.request(sid, "devices.enumerate", json!({})).await;
    assert!(labels(&after).iter().any(|l| l == "USB mic"), "{after:#}");

    let removed = Instant::now();
    std::fs::write(&asoundrc, base).unwrap();
    next_device_change(&mut page, sid, removed).await;
    let back = page.request(sid, "devices.enumerate", json!({})).await;
    assert_eq!(back, before, "{}", std::fs::read_to_string(&log).unwrap_or_default());
}
