//! The `vdimedia-bridge` binary: configuration refusals, startup log, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vdimedia-bridge");

#[test]
fn insecure_ws_on_a_non_loopback_address_is_refused() {
    for addr in ["0.0.0.0:0", "192.0.2.1:9002", "[::]:0"] {
        let out = Command::new(BIN).args(["--insecure-ws", "--listen", addr]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{addr}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback"), "{addr}: {err}");
    }
}

#[test]
fn bad_config_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("vdimedia-bridge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bridge.toml");
    std::fs::write(&cfg, "vc_connect = \"ftp://x\"\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vc_connect") && err.contains("unix:PATH"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--vc-listen", "--vc-connect", "--insecure-ws", "--cert", "--key", "--state-dir", "--config"]
    {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn logs_spki_pin_and_exits_0_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("vdimedia-bridge-cli-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--vc-listen", "tcp://127.0.0.1:0", "--state-dir"])
        .arg(&dir)
        .env("VDIMEDIA_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pin = None;
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(i) = line.find("--ignore-certificate-errors-spki-list=") {
            pin = Some(line[i + 38..].split_whitespace().next().unwrap_or("").to_string());
            break;
        }
    }
    let pin = pin.expect("startup log names the SPKI pin");
    assert_eq!(pin.len(), 44, "{pin}");
    assert!(dir.join("bridge-cert.pem").exists());
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
            break;
        }
        assert!(Instant::now() < deadline, "bridge did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(&dir).ok();
}
