//! `MediaStreamTrack.applyConstraints` (Media Capture §4.3.8) through the real `vdimediad` on a
//! private PipeWire graph (tests/rig/pipewire.sh) with a second microphone: mid-call the track
//! moves to the other device (the capture stream is re-linked to it and the call keeps
//! sending), an impossible constraint is an OverconstrainedError naming it and changes nothing,
//! and `echoCancellation: false` turns the canceller off (journal: aec=off). Skips (with a
//! printed reason) only when PipeWire is not installed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vdimedia_protocol::SessionId;

mod common;
use common::{Page, Reaper, Rig, tempdir};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
const NODE: &str = "vdimedia_second_mic";
const LABEL: &str = "Second Mic";

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

/// Every object `pw-dump` lists (it may print more than one JSON array while the graph changes).
fn pw_objects(rig: &Rig) -> Vec<Value> {
    let text = rig.pw(&["pw-dump", "--no-colors"]);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .collect()
}

/// The PipeWire id of the node named `name`.
fn node_id(rig: &Rig, name: &str) -> Option<u64> {
    pw_objects(rig)
        .iter()
        .find_map(|o| (o["info"]["props"]["node.name"] == name).then(|| o["id"].as_u64()).flatten())
}

/// Whether some PipeWire link runs from node `from` into a vdimediad capture stream.
fn linked_to_daemon(rig: &Rig, from: &str) -> bool {
    let Some(src) = node_id(rig, from) else { return false };
    let objs = pw_objects(rig);
    let is_daemon = |id: u64| {
        objs.iter()
            .any(|o| o["id"].as_u64() == Some(id) && o["info"]["props"].to_string().contains("vdimediad"))
    };
    objs.iter().any(|o| {
        o["type"] == "PipeWire:Interface:Link"
            && o["info"]["output-node-id"].as_u64() == Some(src)
            && o["info"]["input-node-id"].as_u64().is_some_and(is_daemon)
    })
}

#[tokio::test(flavor = "current_thread")]
async fn apply_constraints_moves_the_track_rejects_the_impossible_and_turns_aec_off() {
    let dir = tempdir("apply-constraints");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    let _mic2 = Reaper(
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
    while node_id(&rig, NODE).is_none() {
        assert!(Instant::now() < deadline, "the second mic never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _daemon = rig.start_daemon(DAEMON, &dir, "vc");
    let (vc, log) = (dir.join("vc.sock"), dir.join("vc.log"));
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let lines = |what: &str| daemon_log().lines().filter(|l| l.contains(what)).count();

    let mut page = Page::connect(&vc, "apply-constraints-test/1").await;
    let sid = page.open().await;
    let devices = page.request(sid, "devices.enumerate", json!({})).await;
    let mic2 = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == LABEL && d["kind"] == "audioinput")
        .unwrap_or_else(|| panic!("the second mic is not listed: {devices:#}"))["deviceId"]
        .as_str()
        .unwrap()
        .to_string();
    let gum = page.request(sid, "media.getUserMedia", json!({"constraints": {"audio": true}})).await;
    assert_eq!(gum["tracks"][0]["settings"]["deviceId"], "default", "{gum:#}");
    let track = gum["tracks"][0]["id"].as_str().unwrap().to_string();
    page.negotiate_loopback(sid, &track).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while packets_sent(&mut page, sid).await < 25 {
        assert!(Instant::now() < deadline, "the call never sent media\n{}", daemon_log());
        page.pump(Duration::from_millis(200)).await;
        page.trickle(sid).await;
    }
    assert!(!linked_to_daemon(&rig, NODE), "capture is on the second mic before any constraint");

    // 1. deviceId exact: the capture moves to the second mic, the call goes on.
    let r = page
        .request(
            sid,
            "track.applyConstraints",
            json!({"track": track, "constraints": {"deviceId": {"exact": mic2}}}),
        )
        .await;
    assert_eq!(r["settings"]["deviceId"], mic2.as_str(), "{r:#}");
    assert_eq!(r["label"], LABEL, "{r:#}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !linked_to_daemon(&rig, NODE) {
        assert!(
            Instant::now() < deadline,
            "no PipeWire link from the second mic to the daemon\n{}",
            daemon_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = packets_sent(&mut page, sid).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let after = packets_sent(&mut page, sid).await;
    assert!(
        after >= before + 50,
        "the call stopped sending after the switch: {before} → {after}\n{}",
        daemon_log()
    );
    assert_eq!(lines("applyConstraints:"), 1, "{}", daemon_log());
    assert!(daemon_log().contains("deviceId default→"), "the journal names the change\n{}", daemon_log());

    // 2. Impossible: OverconstrainedError naming the constraint, nothing changes.
    let e = page
        .try_request(
            sid,
            "track.applyConstraints",
            json!({"track": track, "constraints": {"sampleRate": {"exact": 192000}}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.name.as_str(), e.constraint.as_deref()),
        ("OverconstrainedError", Some("sampleRate")),
        "{e:?}"
    );
    assert_eq!(
        lines("applyConstraints:"),
        1,
        "an overconstrained request changed the track\n{}",
        daemon_log()
    );
    assert!(linked_to_daemon(&rig, NODE), "the capture left the second mic");

    // 3. echoCancellation off: settings say so, the device stays, the journal says aec=off.
    let r = page
        .request(
            sid,
            "track.applyConstraints",
            json!({"track": track, "constraints": {"echoCancellation": false}}),
        )
        .await;
    assert_eq!(r["settings"]["echoCancellation"], false, "{r:#}");
    assert_eq!(
        r["settings"]["deviceId"],
        mic2.as_str(),
        "constraints without deviceId keep the device: {r:#}"
    );
    assert!(
        daemon_log().lines().any(|l| l.contains("applyConstraints:") && l.contains("aec=off")),
        "no aec=off journal line\n{}",
        daemon_log()
    );
    // 4. No argument: the defaults again (processing requested on).
    let r = page.request(sid, "track.applyConstraints", json!({"track": track})).await;
    assert_eq!(r["settings"]["sampleRate"], 48000, "{r:#}");
    assert_eq!(r["settings"]["deviceId"], mic2.as_str(), "{r:#}");
    let unknown = page.try_request(sid, "track.applyConstraints", json!({"track": "nope"})).await;
    assert_eq!(unknown.unwrap_err().name, "NotFoundError");
}
