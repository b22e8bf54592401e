//! `turns:` through the daemon's loopback TLS forwarder (webrtc/ice.rs) against a real coturn
//! (tests/turn/coturn.sh) with a self-signed certificate trusted through `SSL_CERT_FILE`: a STUN
//! Binding request (RFC 8489 §6, over TCP framing) sent in plain text to the forwarder comes
//! back as a Binding success from the server, and coturn logs the session as TLS. The ICE
//! mapping (`turns:` → `turn://…@127.0.0.1:<port>?transport=tcp`) is checked as well, and a
//! server name the certificate does not carry is refused (connection closed, nothing relayed).
//! Skips (with a note) when coturn is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vdimedia_protocol::api::{OneOrMany, RtcConfiguration, RtcIceServer, RtcIceTransportPolicy};
use vdimediad::webrtc::ice;

struct Coturn {
    dir: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/turn/coturn.sh")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn turns_goes_through_tls_to_coturn() {
    if Command::new("sh")
        .args(["-c", "command -v turnserver"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!("SKIP: turnserver (coturn) is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("vdimedia-turn-test-{}", std::process::id()));
    let (port, tls_port) = (free_port(), free_port());
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg(&dir)
        .env("TURN_PORT", port.to_string())
        .env("TURN_TLS_PORT", tls_port.to_string())
        .output()
        .expect("run coturn.sh");
    assert!(out.status.success(), "coturn.sh start: {}", String::from_utf8_lossy(&out.stderr));
    let _coturn = Coturn { dir: dir.clone() };
    // Read once by the forwarder's TLS configuration, before the first turns: server.
    // SAFETY: no other thread of this test binary reads the environment at this point.
    unsafe { std::env::set_var("SSL_CERT_FILE", dir.join("ca-cert.pem")) };

    let config = RtcConfiguration {
        ice_servers: vec![RtcIceServer {
            urls: OneOrMany::One(format!("turns:127.0.0.1:{tls_port}?transport=tcp")),
            username: Some("vdimedia".into()),
            credential: Some("s3cret-turn-pass".into()),
        }],
        ice_transport_policy: RtcIceTransportPolicy::Relay,
        ..Default::default()
    };
    let settings = ice::settings(&config).expect("settings");
    let local = ice::turns_forwarder(&format!("127.0.0.1:{tls_port}")).unwrap();
    assert_eq!(
        settings.turn_servers,
        vec![format!("turn://vdimedia:s3cret-turn-pass@{local}?transport=tcp")]
    );

    // STUN Binding request: type 0x0001, length 0, magic cookie, 96-bit transaction id.
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    req.extend_from_slice(b"vdimediaturn");
    let mut s = TcpStream::connect(local).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&req).unwrap();
    let mut head = [0u8; 20];
    s.read_exact(&mut head).expect("a STUN response through the forwarder");
    assert_eq!(&head[0..2], &[0x01, 0x01], "Binding success response");
    assert_eq!(&head[8..20], b"vdimediaturn", "same transaction id");
    drop(s);

    // coturn accepts plain TCP on its TLS port too: only its log tells a TLS session ("TLS/TCP"
    // on the session's lines) from a plain one ("TCP"). The session ends when we hang up.
    let tls_session = |log: &str| log.lines().any(|l| l.contains(": session ") && l.contains("TLS/TCP"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while std::time::Instant::now() < deadline {
        log = std::fs::read_to_string(dir.join("turnserver.log")).unwrap_or_default();
        if tls_session(&log) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        tls_session(&log),
        "coturn logged no TLS session:\n{}",
        log.lines().filter(|l| l.contains("session")).collect::<Vec<_>>().join("\n")
    );

    // The same server by a name its certificate does not carry (IP SAN 127.0.0.1 only): the
    // forwarder refuses the handshake and closes libnice's connection, so no allocation (and
    // under the relay policy, no candidate) comes of it.
    let wrong = ice::turns_forwarder(&format!("localhost:{tls_port}")).unwrap();
    let mut s = TcpStream::connect(wrong).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&req).unwrap();
    let mut buf = [0u8; 20];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a certificate for another name was accepted: {other:?} {buf:?}"),
    }
    drop(_coturn);
    let _ = std::fs::remove_dir_all(&dir);
}
