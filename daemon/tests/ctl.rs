//! `vdimediactl` against the real `vdimediad` over its control socket (docs/control.md), with
//! the private PipeWire graph of tests/rig/pipewire.sh for devices and coturn on 127.0.0.1 for
//! STUN/TURN: `status` while a call runs, `diagnose` passing and failing with a fix,
//! `test-call` through the daemon, the socket refusing another uid, and configuration and
//! missing-element errors at startup.
//!
//! The rig test is one function on purpose: it starts one daemon and one rig and walks through
//! the commands an admin would run. It skips (with a printed reason) only when PipeWire is not
//! installed; coturn-dependent steps skip when `turnserver` is missing.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{Page, Reaper, Rig, tempdir, wait_for_path};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
const CTL: &str = env!("CARGO_BIN_EXE_vdimediactl");

/// coturn on 127.0.0.1 with one long-term-credential user.
fn start_turn(user: &str, pass: &str) -> Option<(Reaper, u16)> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--allow-loopback-peers",
            "--lt-cred-mech",
            "--realm=vdimedia.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
        ])
        .arg(format!("--listening-port={port}"))
        .arg(format!("--user={user}:{pass}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some((Reaper(child), port))
}

fn ctl(env: &HashMap<String, String>, sock: &Path, args: &[&str]) -> Output {
    Command::new(CTL).envs(env).arg("--socket").arg(sock).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn status_json(env: &HashMap<String, String>, sock: &Path) -> Value {
    let out = ctl(env, sock, &["status", "--json"]);
    assert!(out.status.success(), "status failed: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status JSON: {e}: {}", text(&out)))
}

#[test]
fn ctl_status_diagnose_test_call_and_permissions_on_the_real_daemon() {
    let Some(rig) = Rig::start(tempdir("rig")) else { return };
    let dir = tempdir("daemon");
    let vc = dir.join("vc.sock");
    let sock = dir.join("control.sock");
    let log = dir.join("daemon.log");
    let mut daemon = Reaper(
        Command::new(DAEMON)
            .envs(&rig.env)
            .env("VDIMEDIA_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .args(["--listen", &format!("unix:{}", vc.display()), "--loopback-ice"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_path(&sock, &mut daemon.0, Some(&log));
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");
    let env = &rig.env;

    // status with no session.
    let s = status_json(env, &sock);
    assert!(s["engine"].as_str().unwrap().starts_with("vdimediad/"), "{s:#}");
    assert_eq!(s["audioBackend"], "pipewire", "{s:#}");
    assert_eq!(s["sessions"], json!([]), "{s:#}");
    assert!(s["aec"].is_string(), "{s:#}");
    let labels: Vec<&str> =
        s["devices"].as_array().unwrap().iter().filter_map(|d| d["label"].as_str()).collect();
    assert!(labels.iter().any(|l| l.contains("virt_mic")), "rig mic missing: {labels:?}");

    // A call through the VC: the page's mic on pc "a", answered by pc "b" in the same page.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut page = rt.block_on(Page::connect(&vc, "ctl-test/1"));
    let sid = rt.block_on(async {
        let sid = page.open().await;
        let gum = page.request(sid, "media.getUserMedia", json!({"constraints": {"audio": true}})).await;
        let track = gum["tracks"][0]["id"].as_str().unwrap().to_string();
        page.negotiate_loopback(sid, &track).await;
        sid
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        rt.block_on(async {
            page.pump(Duration::from_millis(200)).await;
            page.trickle(sid).await;
        });
        let s = status_json(env, &sock);
        let pcs = &s["sessions"][0]["peerConnections"];
        // Sender and receiver counters are sampled by different elements at different moments
        // (rtpsession vs the jitterbuffer), so wait for each side on its own.
        let sent = pcs[0]["packetsSent"].as_u64().unwrap_or(0);
        let received = pcs[1]["packetsReceived"].as_u64().unwrap_or(0);
        if pcs[0]["connectionState"] == "connected" && sent > 10 && received > 10 {
            break s;
        }
        assert!(Instant::now() < deadline, "the call never connected with media: {s:#}");
    };
    let sessions = s["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{s:#}");
    let pcs = sessions[0]["peerConnections"].as_array().unwrap();
    assert_eq!(pcs.iter().map(|p| p["id"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b"], "{s:#}");
    for pc in pcs {
        assert_eq!(pc["signalingState"], "stable", "{pc:#}");
        assert!(pc["codec"].as_str().unwrap().to_lowercase().starts_with("opus/48000"), "{pc:#}");
    }
    assert!(pcs[0]["packetsSent"].as_u64().unwrap() > 10, "{s:#}");
    let human = ctl(env, &sock, &["status"]);
    let h = text(&human);
    assert!(human.status.success() && h.contains("sessions: 1") && h.contains("connected"), "{h}");
    eprintln!("--- vdimediactl status ---\n{h}");

    // Closing the page's session drops it from status.
    rt.block_on(async {
        page.ch.close_session(sid, vdimedia_protocol::ErrorCode::Normal, "test done");
        page.pump(Duration::from_millis(300)).await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_json(env, &sock)["sessions"] != json!([]) {
        assert!(Instant::now() < deadline, "closed session still listed");
        std::thread::sleep(Duration::from_millis(100));
    }

    // diagnose: everything passes on the rig, with a STUN and a TURN server that answer …
    let vc_arg = format!("unix:{}", vc.display());
    let turn = start_turn("agent", "s3cret");
    let mut args = vec!["diagnose".to_string(), "--vc".into(), vc_arg.clone()];
    if let Some((_, port)) = &turn {
        args.extend([
            "--stun".into(),
            format!("stun:127.0.0.1:{port}"),
            "--turn".into(),
            format!("turn:agent:s3cret@127.0.0.1:{port}"),
        ]);
    } else {
        eprintln!("SKIP (STUN/TURN pass): turnserver (coturn) is not installed");
    }
    let out = ctl(env, &sock, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let d = text(&out);
    eprintln!("--- vdimediactl diagnose ---\n{d}");
    assert!(out.status.success(), "diagnose failed on a working rig:\n{d}");
    for name in ["element webrtcbin", "audio server", "audioinput devices", "vc socket", "control socket"] {
        assert!(d.contains(&format!("PASS {name} — ")), "no PASS line for {name}:\n{d}");
    }
    if turn.is_some() {
        assert!(d.contains("PASS stun ") && d.contains("PASS turn turn:agent:***@"), "{d}");
        assert!(!d.contains("s3cret"), "the TURN password must not be printed:\n{d}");
    }
    // … and FAIL with a fix, exit 1, for a STUN server that does not answer and wrong TURN
    // credentials.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap(); // bound, never answers
    let dead_url = format!("stun:127.0.0.1:{}", dead.local_addr().unwrap().port());
    let mut args = vec!["diagnose", "--vc", &vc_arg, "--stun", &dead_url];
    let bad_turn = turn.as_ref().map(|(_, port)| format!("turn:agent:wrong@127.0.0.1:{port}"));
    if let Some(t) = &bad_turn {
        args.extend(["--turn", t]);
    }
    let out = ctl(env, &sock, &args);
    let d = text(&out);
    assert_eq!(out.status.code(), Some(1), "{d}");
    let line =
        d.lines().find(|l| l.starts_with(&format!("FAIL stun {dead_url}"))).unwrap_or_else(|| panic!("{d}"));
    assert!(line.contains("no answer") && line.contains("— fix: "), "{line}");
    if bad_turn.is_some() {
        let line = d.lines().find(|l| l.starts_with("FAIL turn")).unwrap_or_else(|| panic!("{d}"));
        assert!(line.contains("401") && line.contains("credential"), "{line}");
    }
    let out = ctl(env, &sock, &["diagnose", "--vc", &vc_arg, "--json", "--stun", &dead_url]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["passed"], false);
    assert!(
        j["checks"].as_array().unwrap().iter().any(|c| c["passed"] == false && c["fix"].is_string()),
        "{j:#}"
    );
    drop(turn);

    // test-call through the daemon: the rig's mic to pc A → B, B's tone → the rig's speaker.
    let out = ctl(env, &sock, &["test-call", "--seconds", "1.5", "--json"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert!(out.status.success(), "test-call failed: {r:#}");
    assert_eq!(r["ranIn"], "daemon");
    assert_eq!(r["passed"], true, "{r:#}");
    assert!(r["uplink"]["packetsReceived"].as_u64().unwrap() > 20, "{r:#}");
    assert!(r["downlink"]["packetsReceived"].as_u64().unwrap() > 20, "{r:#}");
    assert!(r["downlink"]["levelDbfs"].as_f64().unwrap() > -30.0, "{r:#}");
    let out = ctl(env, &sock, &["test-call", "--seconds", "1"]);
    eprintln!("--- vdimediactl test-call ---\n{}", text(&out));
    assert!(text(&out).starts_with("PASS test-call (daemon, pipewire"), "{}", text(&out));

    // Another uid: the 0600 socket keeps it out, and with the socket opened up (a mistaken
    // chmod), SO_PEERCRED still refuses it with a reason and a log line.
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", CTL, "--socket"])
            .arg(&sock)
            .args(args)
            .output()
    };
    match as_nobody(&["status"]) {
        Err(e) => eprintln!("SKIP (other uid): setpriv cannot run: {e}"),
        Ok(out) if !Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false) => {
            eprintln!("SKIP (other uid): not root ({})", text(&out));
        }
        Ok(out) => {
            assert!(!out.status.success());
            assert!(text(&out).contains("Permission denied"), "{}", text(&out));
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
            let out = as_nobody(&["status"]).unwrap();
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(text(&out).contains("permission_denied: uid 65534 may not control"), "{}", text(&out));
            std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
            let l = std::fs::read_to_string(&log).unwrap();
            assert!(l.contains("control connection refused"), "no log line for the refusal:\n{l}");
        }
    }
    drop(page);
    drop(daemon);
}

#[test]
fn broken_config_names_file_line_and_reason_at_startup_and_in_check_config() {
    let dir = tempdir("config");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "# vdimediad\n[vc]\nredial_secs = 2\nmax_frame = 7\n").unwrap();
    let want = format!("{}:4:13: vc.max_frame: 7 is outside 256..=65536", bad.display());
    let start = Command::new(DAEMON)
        .args([
            "--config",
            bad.to_str().unwrap(),
            "--listen",
            &format!("unix:{}", dir.join("vc.sock").display()),
        ])
        .output()
        .unwrap();
    assert_eq!(start.status.code(), Some(78), "{}", text(&start));
    assert!(text(&start).contains(&want), "startup: {}", text(&start));
    let check =
        Command::new(DAEMON).args(["--config", bad.to_str().unwrap(), "--check-config"]).output().unwrap();
    assert_eq!(check.status.code(), Some(78));
    assert_eq!(String::from_utf8_lossy(&check.stderr), String::from_utf8_lossy(&start.stderr));
    let ctl = Command::new(CTL).args(["check-config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(ctl.status.code(), Some(78));
    assert!(text(&ctl).contains(&want), "{}", text(&ctl));

    // Broken TOML: the parser's line.
    std::fs::write(&bad, "[audio]\nbackend = \"alsa\"\n[log\n").unwrap();
    let out =
        Command::new(DAEMON).args(["--config", bad.to_str().unwrap(), "--check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains(&format!("{}:3:", bad.display())), "{}", text(&out));
}

#[test]
fn missing_gstreamer_elements_are_named_with_their_package() {
    // An empty plugin path: GStreamer starts, but no element is installed.
    let dir = tempdir("noplugins");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let env = [
        ("GST_PLUGIN_SYSTEM_PATH", plugins.to_str().unwrap().to_string()),
        ("GST_PLUGIN_PATH", plugins.to_str().unwrap().to_string()),
        ("GST_REGISTRY", dir.join("registry.bin").to_str().unwrap().to_string()),
        ("XDG_RUNTIME_DIR", dir.to_str().unwrap().to_string()),
    ];
    let out = Command::new(CTL)
        .envs(env.iter().cloned())
        .args(["diagnose", "--backend", "alsa", "--vc", &format!("unix:{}", dir.join("none.sock").display())])
        .output()
        .unwrap();
    let d = text(&out);
    assert_eq!(out.status.code(), Some(1), "{d}");
    let line = d.lines().find(|l| l.starts_with("FAIL element webrtcbin")).unwrap_or_else(|| panic!("{d}"));
    assert!(line.ends_with("fix: apt install gstreamer1.0-plugins-bad"), "{line}");
    assert!(d.contains("FAIL element nicesrc") && d.contains("apt install gstreamer1.0-nice"), "{d}");
    assert!(d.contains("FAIL vc socket"), "{d}");

    // The daemon says the same at startup, and runs on.
    let vc = dir.join("vc.sock");
    let log = dir.join("daemon.log");
    let mut daemon = Reaper(
        Command::new(DAEMON)
            .envs(env.iter().cloned())
            .env("VDIMEDIA_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .args(["--listen", &format!("unix:{}", vc.display()), "--backend", "alsa"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_path(&dir.join("control.sock"), &mut daemon.0, Some(&log));
    std::thread::sleep(Duration::from_millis(100));
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(
        l.lines().any(|x| x.contains("GStreamer element missing")
            && x.contains("webrtcbin")
            && x.contains("gstreamer1.0-plugins-bad")),
        "{l}"
    );
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon must keep running");
}
