//! The daemon's journal as an admin reads it: a real call (two peer connections of one page,
//! capture from the PipeWire rig's virtual mic, loopback ICE) through the virtual channel of
//! the real `vdimediad` binary logging to a real `systemd-journald`, read back with
//! `journalctl -o json`.
//!
//! journald needs `/run/systemd/journal/socket`; on a machine without systemd as PID 1 the test
//! gives it one in a private mount namespace (FIELD-NOTES, "systemd and journald without
//! systemd as PID 1"): the outer test re-runs this binary under `unshare -m --propagation
//! private`, where the inner test mounts tmpfs on `/run/systemd`, `/run/log` (and
//! `/var/log/journal`, so nothing persists on the host) and starts journald. It skips, with a
//! printed reason, only when `unshare` is impossible.
//!
//! Asserts: `VDIMEDIA_SESSION`/`VDIMEDIA_PC` on the call's lines (each once), a state-change
//! line, ICE candidate and candidate-pair lines, device and AEC fields, the end-of-call summary
//! with its figures, and no SDP, ICE credentials or candidate address at the default level.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vdimedia_protocol::{ChannelEvent, ErrorCode, Message};

mod common;
use common::{Page, Reaper, Rig, wait_for_path};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
/// Set by the outer test for the re-run inside the private mount namespace.
const INNER_ENV: &str = "VDIMEDIA_JOURNALD_TEST_IN_NAMESPACE";
const INNER_TEST: &str = "journal_of_a_call_inside_a_private_mount_namespace";

#[test]
fn journal_fields_of_a_real_call() {
    let probe = Command::new("unshare").args(["-m", "--propagation", "private", "true"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "SKIP journal_fields_of_a_real_call: unshare -m is not permitted here ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIP journal_fields_of_a_real_call: unshare is not runnable ({e})");
            return;
        }
    }
    assert!(Path::new("/lib/systemd/systemd-journald").exists(), "systemd-journald is not installed");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&exe)
        .args(["--exact", INNER_TEST, "--ignored", "--nocapture", "--test-threads=1"])
        .env(INNER_ENV, "1")
        .output()
        .expect("run the test binary under unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inner test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    // Guard against a filter that matched nothing (the inner test would "pass" by not running).
    assert!(stdout.contains("1 passed"), "inner test did not run\n{stdout}\n{stderr}");
    eprintln!("{stderr}");
}

fn mount_tmpfs(dir: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "tmpfs", dir]).status().unwrap();
    assert!(st.success(), "mount tmpfs on {dir} failed");
}

#[test]
#[ignore = "run by journal_fields_of_a_real_call inside a private mount namespace"]
fn journal_of_a_call_inside_a_private_mount_namespace() {
    if std::env::var_os(INNER_ENV).is_none() {
        // Never mount over the host's /run/systemd.
        eprintln!("not inside the test's mount namespace; nothing to do");
        return;
    }
    let dir = std::env::temp_dir().join(format!("vdimedia-journald-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // A private journald: volatile storage only, on tmpfs that disappears with the namespace.
    mount_tmpfs("/run/systemd");
    // WirePlumber's logind monitor watches these once /run/systemd exists, and exits if they
    // are missing.
    for d in ["seats", "sessions", "users", "machines"] {
        std::fs::create_dir_all(Path::new("/run/systemd").join(d)).unwrap();
    }
    mount_tmpfs("/run/log");
    if Path::new("/var/log/journal").exists() {
        mount_tmpfs("/var/log/journal");
    }
    let jlog = std::fs::File::create(dir.join("journald.log")).unwrap();
    let mut journald = Reaper(
        Command::new("/lib/systemd/systemd-journald")
            .stdout(jlog.try_clone().unwrap())
            .stderr(jlog)
            .spawn()
            .expect("start systemd-journald"),
    );
    wait_for_path(Path::new("/run/systemd/journal/socket"), &mut journald.0, None);

    let rig = Rig::start(dir.join("rig")).expect("PipeWire is installed (checked above)");
    let sock = dir.join("vc.sock");
    let config = dir.join("vdimediad.toml");
    std::fs::write(
        &config,
        format!(
            "[vc]\nlisten = \"unix:{}\"\n[audio]\nbackend = \"pipewire\"\n[webrtc]\nloopback_ice = true\n[log]\ntarget = \"journald\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let mut daemon = Reaper(
        Command::new(DAEMON)
            .args(["--config", config.to_str().unwrap()])
            .envs(rig.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("JOURNAL_STREAM")
            .env_remove("VDIMEDIA_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vdimediad"),
    );
    wait_for_path(&sock, &mut daemon.0, None);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let secrets = rt.block_on(call(&sock));

    // SIGTERM: the daemon closes what is left and exits; its last lines reach the journal.
    assert!(Command::new("kill").args(["-TERM", &daemon.0.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "vdimediad did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }

    let lines = read_journal(&dir);
    check_journal(&lines, &secrets);
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
}

/// journalctl's JSON of every vdimediad line, once the last (the `stopped` line) is there.
fn read_journal(dir: &Path) -> Vec<HashMap<String, Value>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("journalctl")
            .args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=vdimediad"])
            .output()
            .expect("run journalctl");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<HashMap<String, Value>> =
            text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if lines.iter().any(|l| l.get("MESSAGE") == Some(&json!("stopped"))) {
            std::fs::write(dir.join("journal.json"), text.as_bytes()).unwrap();
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's lines never reached the journal ({} lines; journalctl stderr: {})",
            lines.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn field<'a>(l: &'a HashMap<String, Value>, k: &str) -> Option<&'a str> {
    l.get(k).and_then(Value::as_str)
}

fn num(l: &HashMap<String, Value>, k: &str) -> f64 {
    field(l, k).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{k} is not a number in {l:?}"))
}

fn check_journal(lines: &[HashMap<String, Value>], secrets: &[String]) {
    let dump = || {
        lines
            .iter()
            .map(|l| {
                format!(
                    "{:?} {:?} {:?}",
                    field(l, "VDIMEDIA_PC"),
                    field(l, "VDIMEDIA_EVENT"),
                    l.get("MESSAGE")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let find = |pc: &str, event: &str| {
        lines
            .iter()
            .find(|l| field(l, "VDIMEDIA_PC") == Some(pc) && field(l, "VDIMEDIA_EVENT") == Some(event))
            .unwrap_or_else(|| panic!("no {event} line of {pc}; journal:\n{}", dump()))
    };

    // Every line of a peer connection carries its session and its id, each exactly once (a
    // field written twice comes back as a JSON array).
    let pc_lines: Vec<_> = lines.iter().filter(|l| l.contains_key("VDIMEDIA_PC")).collect();
    assert!(pc_lines.len() > 10, "few peer-connection lines:\n{}", dump());
    for l in &pc_lines {
        assert!(l["VDIMEDIA_PC"].is_string(), "VDIMEDIA_PC repeated: {l:?}");
        assert!(
            l.get("VDIMEDIA_SESSION").is_some_and(Value::is_string),
            "a peer-connection line without one VDIMEDIA_SESSION: {l:?}"
        );
    }
    let session = field(pc_lines[0], "VDIMEDIA_SESSION").unwrap();
    assert!(pc_lines.iter().all(|l| field(l, "VDIMEDIA_SESSION") == Some(session)));

    // State changes with W3C state strings.
    let connected = lines
        .iter()
        .find(|l| {
            field(l, "VDIMEDIA_PC") == Some("caller")
                && field(l, "VDIMEDIA_EVENT") == Some("connectionstatechange")
                && field(l, "VDIMEDIA_STATE") == Some("connected")
        })
        .unwrap_or_else(|| panic!("no connectionstatechange → connected line:\n{}", dump()));
    assert_eq!(field(connected, "PRIORITY"), Some("6"));
    find("caller", "iceconnectionstatechange");
    find("caller", "icegatheringstatechange");
    find("caller", "signalingstatechange");

    // ICE: gathered candidates by type, the selected pair by type (no addresses).
    let cand = find("caller", "icecandidate");
    assert_eq!(field(cand, "VDIMEDIA_CANDIDATE_TYPE"), Some("host"));
    assert_eq!(field(cand, "VDIMEDIA_PROTOCOL"), Some("udp"));
    find("callee", "remote-icecandidate");
    let pair = find("caller", "candidate-pair");
    assert_eq!(field(pair, "VDIMEDIA_CANDIDATE_PAIR"), Some("host/udp -> host/udp"), "{pair:?}");

    // Device choice and AEC mode of the capture track (inside the session).
    let gum = lines
        .iter()
        .find(|l| l.contains_key("VDIMEDIA_DEVICE") && l.contains_key("VDIMEDIA_AEC"))
        .unwrap_or_else(|| panic!("no device/AEC line:\n{}", dump()));
    assert_eq!(field(gum, "VDIMEDIA_SESSION"), Some(session));
    assert!(field(gum, "VDIMEDIA_DEVICE").is_some_and(|d| d.contains("virt_mic")), "{gum:?}");
    // virt_mic has no AEC of its own, so the engine's canceller runs, and the reason is logged.
    assert_eq!(field(gum, "VDIMEDIA_AEC"), Some("software"), "{gum:?}");
    assert!(field(gum, "VDIMEDIA_AEC_REASON").is_some_and(|r| !r.is_empty()), "{gum:?}");
    let sending = lines
        .iter()
        .find(|l| field(l, "VDIMEDIA_PC") == Some("caller") && l.contains_key("VDIMEDIA_CODEC"))
        .unwrap_or_else(|| panic!("no codec line:\n{}", dump()));
    assert_eq!(field(sending, "VDIMEDIA_CODEC"), Some("opus"), "{sending:?}");

    // One summary per call, with its figures.
    for pc in ["caller", "callee"] {
        let n = lines
            .iter()
            .filter(|l| {
                field(l, "VDIMEDIA_PC") == Some(pc) && field(l, "VDIMEDIA_EVENT") == Some("call-summary")
            })
            .count();
        assert_eq!(n, 1, "{pc}: {n} summary lines:\n{}", dump());
    }
    let caller = find("caller", "call-summary");
    for l in lines.iter().filter(|l| {
        matches!(field(l, "VDIMEDIA_EVENT"), Some("call-summary" | "network-thresholds" | "candidate-pair"))
    }) {
        eprintln!(
            "journal: {} {}: {}",
            field(l, "VDIMEDIA_PC").unwrap_or("-"),
            field(l, "PRIORITY").unwrap_or("-"),
            field(l, "MESSAGE").unwrap_or("-")
        );
    }
    let callee = find("callee", "call-summary");
    for s in [caller, callee] {
        assert_eq!(field(s, "VDIMEDIA_CODEC"), Some("opus"), "{s:?}");
        assert!(num(s, "VDIMEDIA_DURATION_S") > 0.5, "{s:?}");
        let mos = num(s, "VDIMEDIA_MOS");
        assert!((1.0..=4.5).contains(&mos), "{s:?}");
        assert!(num(s, "VDIMEDIA_LOSS_PCT") >= 0.0);
        for k in ["VDIMEDIA_JITTER_MS", "VDIMEDIA_RTT_MS", "VDIMEDIA_PACKETS_LOST", "VDIMEDIA_R_FACTOR"] {
            assert!(s.contains_key(k), "{k} missing: {s:?}");
        }
        assert!(field(s, "MESSAGE").is_some_and(|m| m.starts_with("call summary:")), "{s:?}");
    }
    assert!(num(caller, "VDIMEDIA_PACKETS_SENT") > 20.0, "{caller:?}");
    assert!(num(callee, "VDIMEDIA_PACKETS_RECEIVED") > 20.0, "{callee:?}");
    assert!(mos_ok(callee), "a clean loopback call should score well: {callee:?}");

    // Privacy at the default level: no debug lines, no SDP, ICE credentials or addresses.
    for l in lines {
        for (k, v) in l {
            let v = v.to_string();
            for bad in ["127.0.0.1", "a=ice-pwd", "ice-ufrag", "v=0", "candidate:", "fingerprint"] {
                assert!(!v.contains(bad), "{k} leaks {bad:?}: {l:?}");
            }
            for s in secrets {
                assert!(!v.contains(s.as_str()), "{k} leaks the ICE credential {s:?}: {l:?}");
            }
        }
    }
    for l in lines {
        assert_ne!(field(l, "PRIORITY"), Some("7"), "debug line at the default level: {l:?}");
    }
}

fn mos_ok(s: &HashMap<String, Value>) -> bool {
    num(s, "VDIMEDIA_MOS") > 4.0
}

impl Page {
    /// Takes the `pc.*` events received so far: (name, params).
    fn take_pc_events(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            ChannelEvent::Message { message: Message::Event(ev), .. } => {
                out.push((ev.event.clone(), ev.params.clone()));
                false
            }
            _ => true,
        });
        out
    }
}

/// The ICE ufrag/pwd values of an SDP (they must not reach the journal).
fn ice_credentials(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=ice-ufrag:").or_else(|| l.strip_prefix("a=ice-pwd:")))
        .map(|v| v.trim().to_string())
        .filter(|v| v.len() >= 4)
        .collect()
}

/// One page's call between two of its peer connections: `caller` sends the virtual mic,
/// `callee` receives; then the page closes `caller` and goes away. Returns the ICE credentials
/// that were used.
async fn call(sock: &Path) -> Vec<String> {
    let mut vda = Page::connect(sock, "journald-test/1").await;
    let s = vda.open().await;

    let gum = vda.request(s, "media.getUserMedia", json!({"constraints": {"audio": true}})).await;
    let track = gum["tracks"][0]["id"].as_str().expect("a capture track").to_string();
    vda.request(s, "pc.create", json!({"pc": "caller", "configuration": {}})).await;
    vda.request(s, "pc.create", json!({"pc": "callee", "configuration": {}})).await;
    vda.request(s, "pc.addTrack", json!({"pc": "caller", "track": track, "streams": ["s1"]})).await;
    let offer = vda.request(s, "pc.createOffer", json!({"pc": "caller"})).await;
    vda.request(s, "pc.setLocalDescription", json!({"pc": "caller", "description": offer})).await;
    vda.request(s, "pc.setRemoteDescription", json!({"pc": "callee", "description": offer})).await;
    let answer = vda.request(s, "pc.createAnswer", json!({"pc": "callee"})).await;
    vda.request(s, "pc.setLocalDescription", json!({"pc": "callee", "description": answer})).await;
    vda.request(s, "pc.setRemoteDescription", json!({"pc": "caller", "description": answer})).await;
    let mut secrets = ice_credentials(offer["sdp"].as_str().unwrap());
    secrets.extend(ice_credentials(answer["sdp"].as_str().unwrap()));
    assert!(secrets.len() >= 4, "offer/answer without ICE credentials?");

    // Trickle candidates across, as a signalling server would, until both are connected.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut connected = HashMap::new();
    while connected.len() < 2 {
        assert!(Instant::now() < deadline, "the call never connected: {connected:?}");
        vda.pump(Duration::from_millis(100)).await;
        for (name, p) in vda.take_pc_events() {
            let pc = p["pc"].as_str().unwrap_or_default().to_string();
            match name.as_str() {
                "pc.icecandidate" if !p["candidate"].is_null() => {
                    let other = if pc == "caller" { "callee" } else { "caller" };
                    vda.request(s, "pc.addIceCandidate", json!({"pc": other, "candidate": p["candidate"]}))
                        .await;
                }
                "pc.connectionstatechange" if p["state"] == "connected" => {
                    connected.insert(pc, true);
                }
                "pc.connectionstatechange" if p["state"] == "failed" => panic!("{pc} failed"),
                _ => {}
            }
        }
    }
    // Long enough for RTCP sender/receiver reports (RTT, jitter) to flow both ways.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        vda.pump(Duration::from_millis(200)).await;
        vda.take_pc_events();
    }
    vda.request(s, "pc.close", json!({"pc": "caller"})).await;
    // The page goes away: the session closes `callee` (its summary comes from close_all).
    vda.ch.close_session(s, ErrorCode::Normal, "page closed");
    vda.flush().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    secrets
}
