//! `vdimediad` killed with SIGKILL mid-call (issue 7, "Faults"): the real bridge (in process),
//! the real daemon binary on a private PipeWire graph (tests/rig/pipewire.sh), a real page
//! WebSocket. The page learns `channel_lost` within 2 s, the restarted daemon does not know the
//! old session (final `channel_lost`, calls ended), and the next call on it works.
//!
//! Needs the `vdimediad` binary next to this test's (`cargo build -p vdimediad`, which
//! `cargo test --workspace` does); skips only when PipeWire is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use vdimedia_bridge::{VcMode, VcTarget};

struct Reaper(Child);
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// tests/rig/pipewire.sh's private graph; stopped on drop.
struct Rig {
    dir: PathBuf,
    script: PathBuf,
    env: Vec<(String, String)>,
}

impl Rig {
    fn start(dir: PathBuf) -> Option<Rig> {
        if Command::new("pipewire").arg("--version").output().is_err() {
            eprintln!("SKIP: pipewire is not installed (scripts/install-deps.sh)");
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rig/pipewire.sh");
        let out = Command::new("bash").arg(&script).arg("start").arg(&dir).output().unwrap();
        assert!(out.status.success(), "rig: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(dir.join("env")).unwrap();
        let env = text
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
            .filter(|(k, _)| k != "PIPEWIRE_REMOTE" && k != "PULSE_SERVER")
            .collect();
        Some(Rig { dir, script, env })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("stop").arg(&self.dir).status();
    }
}

/// The `vdimediad` binary built with this test (target/PROFILE/vdimediad).
fn daemon_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("vdimediad");
    assert!(bin.exists(), "{} is missing: run `cargo build -p vdimediad` first", bin.display());
    bin
}

fn start_daemon(rig: &Rig, vc: &Path, log: &Path) -> Reaper {
    let child = Command::new(daemon_bin())
        .envs(rig.env.iter().cloned())
        .env("VDIMEDIA_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .args(["--listen", &format!("unix:{}", vc.display()), "--backend", "pipewire", "--loopback-ice"])
        .stdin(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::os::unix::net::UnixStream::connect(vc).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon socket never answered:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Reaper(child)
}

/// Sends a request and reads until its response; events that arrive meanwhile are kept.
async fn request(p: &mut PlainPage, events: &mut Vec<Value>, id: u64, method: &str, params: Value) -> Value {
    p.send(json!({"type":"request","id":id,"method":method,"params":params})).await;
    loop {
        let m = p.recv().await;
        if m["type"] == "response" && m["id"] == id {
            assert!(m.get("error").is_none_or(Value::is_null), "{method} failed: {m}");
            return m["result"].clone();
        }
        events.push(m);
    }
}

/// Hello until redirected (the bridge may still be dialling the daemon).
async fn redirect(p: &mut PlainPage) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = p.hello().await;
        if st["redirected"] == true {
            return st;
        }
        assert!(Instant::now() < deadline, "never redirected: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A loopback call a → b in the page's session, until both directions carry packets.
async fn call(p: &mut PlainPage, next_id: &mut u64) {
    let mut events = Vec::new();
    let mut id = || {
        *next_id += 1;
        *next_id
    };
    let gum =
        request(p, &mut events, id(), "media.getUserMedia", json!({"constraints": {"audio": true}})).await;
    let track = gum["tracks"][0]["id"].as_str().unwrap().to_string();
    request(p, &mut events, id(), "pc.create", json!({"pc": "a"})).await;
    request(p, &mut events, id(), "pc.create", json!({"pc": "b"})).await;
    request(p, &mut events, id(), "pc.addTrack", json!({"pc": "a", "track": track, "streams": ["s"]})).await;
    let offer = request(p, &mut events, id(), "pc.createOffer", json!({"pc": "a"})).await;
    request(p, &mut events, id(), "pc.setLocalDescription", json!({"pc": "a", "description": offer})).await;
    request(p, &mut events, id(), "pc.setRemoteDescription", json!({"pc": "b", "description": offer})).await;
    let answer = request(p, &mut events, id(), "pc.createAnswer", json!({"pc": "b"})).await;
    request(p, &mut events, id(), "pc.setLocalDescription", json!({"pc": "b", "description": answer})).await;
    request(p, &mut events, id(), "pc.setRemoteDescription", json!({"pc": "a", "description": answer})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cands: Vec<(String, Value)> = events
            .drain(..)
            .filter(|e| e["event"] == "pc.icecandidate" && !e["params"]["candidate"].is_null())
            .map(|e| (e["params"]["pc"].as_str().unwrap().to_string(), e["params"]["candidate"].clone()))
            .collect();
        for (from, c) in cands {
            let to = if from == "a" { "b" } else { "a" };
            request(p, &mut events, id(), "pc.addIceCandidate", json!({"pc": to, "candidate": c})).await;
        }
        let s = request(p, &mut events, id(), "pc.getStats", json!({"pc": "b"})).await;
        let received = s["stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == "inbound-rtp")
            .and_then(|s| s["packetsReceived"].as_u64())
            .unwrap_or(0);
        if received > 20 {
            return;
        }
        assert!(Instant::now() < deadline, "the call never carried media");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads until a `status` message (events before it are skipped).
async fn next_status(p: &mut PlainPage) -> Value {
    loop {
        let m = p.recv().await;
        if m["type"] == "status" {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_sigkill_mid_call_page_told_within_2s_and_next_call_works() {
    let dir = temp_dir("daemon-restart");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    let vc = dir.join("vc.sock");
    let log = dir.join("daemon.log");
    let mut daemon = start_daemon(&rig, &vc, &log);

    let mut config = test_config();
    config.vc = VcMode::Connect(VcTarget::Unix(vc.clone()));
    let bridge = start(config).await;
    let mut p = page(bridge.ws_addr(), "https://softphone.example").await;
    redirect(&mut p).await;
    let mut id = 0;
    call(&mut p, &mut id).await;

    // SIGKILL mid-call.
    daemon.0.kill().unwrap();
    let killed = Instant::now();
    let _ = daemon.0.wait();
    let st = tokio::time::timeout(Duration::from_secs(2), next_status(&mut p))
        .await
        .expect("no status within 2 s of SIGKILL");
    let to_status = killed.elapsed();
    eprintln!("status {:.0} ms after SIGKILL: {st}", to_status.as_secs_f64() * 1000.0);
    assert_eq!(st["redirected"], false, "{st}");
    assert_eq!(st["reason"], "channel_lost", "{st}");
    assert_eq!(st["resuming"], true, "{st}");
    assert!(st["message"].as_str().is_some_and(|m| !m.is_empty()), "{st}");
    // Requests meanwhile get a typed error, not silence.
    id += 1;
    p.send(json!({"type":"request","id":id,"method":"pc.getStats","params":{"pc":"a"}})).await;
    let r = p.recv().await;
    assert_eq!(r["id"], id, "{r}");
    assert_eq!(r["error"]["code"], "invalid_state", "{r}");

    // Restart (as systemd's Restart= would): the new process does not know the session.
    let restarted = Instant::now();
    let _daemon = start_daemon(&rig, &vc, &log);
    let st =
        tokio::time::timeout(Duration::from_secs(15), next_status(&mut p)).await.expect("no final status");
    eprintln!("final status {:.0} ms after the restart: {st}", restarted.elapsed().as_secs_f64() * 1000.0);
    assert_eq!(st["redirected"], false, "{st}");
    assert_eq!(st["reason"], "channel_lost", "{st}");
    assert!(st.get("resuming").is_none(), "{st}");
    assert!(st["message"].as_str().unwrap().contains("calls ended"), "{st}");

    // The next call on the same page connection works.
    let st = redirect(&mut p).await;
    assert_eq!(st["redirected"], true);
    call(&mut p, &mut id).await;
    assert!(to_status < Duration::from_secs(2));
    drop(p);
    bridge.shutdown();
    bridge.wait().await;
}
