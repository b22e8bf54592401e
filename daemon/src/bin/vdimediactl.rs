//! `vdimediactl`: the admin CLI of vdimediad, for troubleshooting on the endpoint. Talks to the
//! running daemon over its control socket (docs/control.md); human output by default, `--json`
//! for scripts.
//!
//! - `status`: engine version, sessions and their calls (state, codec, packets), devices, AEC
//!   mode. `--vc ADDR` instead performs a virtual-channel handshake as a VDA peer would.
//! - `devices`: the audio devices pages see (the daemon's view; in-process when it is not
//!   running or with `--local`).
//! - `diagnose` (alias `check`): every prerequisite with `PASS|FAIL name — detail — fix: …`;
//!   exit 1 on any FAIL.
//! - `test-call`: a loopback call through the real engine and devices; exit 1 unless audio
//!   flowed both ways.
//! - `check-config FILE`: validates a configuration file (`FILE:LINE:COLUMN: reason`).

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytecodec::{DecodeExt, EncodeExt};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use stun_codec::rfc5389::attributes::{
    ErrorCode as StunErrorCode, MessageIntegrity, Nonce, Realm, Username, XorMappedAddress,
};
use stun_codec::rfc5766::attributes::{Lifetime, RequestedTransport, XorRelayAddress};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vdimedia_protocol::channel::{Channel, ChannelConfig, ChannelEvent};
use vdimediad::config::{BackendChoice, Config};
use vdimediad::control::{self, ClientError, TestCallOptions, TestCallReport};
use vdimediad::media::MediaDevices;
use vdimediad::vc::VcAddr;

stun_codec::define_attribute_enums!(
    StunAttr,
    StunAttrDecoder,
    StunAttrEncoder,
    [
        XorMappedAddress,
        StunErrorCode,
        Realm,
        Nonce,
        Username,
        MessageIntegrity,
        RequestedTransport,
        Lifetime,
        XorRelayAddress
    ]
);

#[derive(Parser)]
#[command(name = "vdimediactl", version, about = "Inspect and troubleshoot vdimediad")]
struct Cli {
    /// The daemon's control socket. Default: $RUNTIME_DIRECTORY/control.sock, else
    /// $XDG_RUNTIME_DIR/vdimedia/control.sock.
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Version, sessions, calls (state, codec, packets), devices and AEC mode of the running
    /// daemon (exit 1 if unreachable).
    Status {
        /// Instead of the control socket, handshake on the virtual channel (unix:/path or
        /// tcp://HOST:PORT) and print the engine's announcement.
        #[arg(long)]
        vc: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the audio devices pages would see (enumerateDevices).
    Devices {
        /// auto, pipewire or alsa (in-process listing only).
        #[arg(long, default_value = "auto")]
        backend: String,
        /// List in this process instead of asking the daemon.
        #[arg(long)]
        local: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check every prerequisite of a call; one PASS/FAIL line each, with a fix (exit 1 on FAIL).
    #[command(alias = "check")]
    Diagnose {
        /// A STUN server to probe with a binding request: stun:HOST[:PORT] (repeatable).
        #[arg(long, value_name = "URL")]
        stun: Vec<String>,
        /// A TURN server to probe with an allocation: turn:USER:PASS@HOST[:PORT] (repeatable).
        #[arg(long, value_name = "URL")]
        turn: Vec<String>,
        /// The virtual-channel socket to check. Default: unix:$XDG_RUNTIME_DIR/vdimedia/vc.sock.
        #[arg(long)]
        vc: Option<String>,
        /// auto, pipewire or alsa.
        #[arg(long, default_value = "auto")]
        backend: String,
        #[arg(long)]
        json: bool,
    },
    /// Place a loopback call through the real engine and devices; report whether audio flows.
    TestCall {
        /// Seconds of audio after set-up (0.5..=30).
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// opus, G722, PCMU or PCMA (default: the engine's preference).
        #[arg(long)]
        codec: Option<String>,
        /// Run in this process even if the daemon is running.
        #[arg(long)]
        local: bool,
        /// Configuration for an in-process run (default: the daemon's lookup order).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli.socket.or_else(control::default_socket_path);
    match cli.cmd {
        Cmd::Status { vc: Some(vc), json } => vc_status(vc, json),
        Cmd::Status { vc: None, json } => status(socket, json),
        Cmd::Devices { backend, local, json } => devices(socket, &backend, local, json),
        Cmd::Diagnose { stun, turn, vc, backend, json } => diagnose(socket, &stun, &turn, vc, &backend, json),
        Cmd::TestCall { seconds, codec, local, config, json } => {
            test_call(socket, TestCallOptions { seconds, codec }, local, config, json)
        }
        Cmd::CheckConfig { file } => match Config::load(Some(&file)) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(78)
            }
        },
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// One request to the daemon's control socket.
fn ask(
    socket: &Option<PathBuf>,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let Some(path) = socket else {
        return Err(ClientError::Connect {
            path: PathBuf::from("control.sock"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no --socket given and neither RUNTIME_DIRECTORY nor XDG_RUNTIME_DIR is set",
            ),
        });
    };
    runtime().block_on(control::request(path, method, params, timeout))
}

fn pretty(v: &impl Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn status(socket: Option<PathBuf>, json: bool) -> ExitCode {
    let s = match ask(&socket, "status", Value::Null, Duration::from_secs(15)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vdimediactl: {e}");
            if matches!(e, ClientError::Connect { .. }) {
                eprintln!("is vdimediad running? (--socket PATH, or `status --vc ADDR` for a VC handshake)");
            }
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{}", pretty(&s));
        return ExitCode::SUCCESS;
    }
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "engine:   {} ({}/{}), pid {}, up {} s",
        text(&s["engine"]),
        text(&s["os"]),
        text(&s["arch"]),
        s["pid"],
        s["uptimeSecs"]
    );
    println!("protocol: {}", s["protocol"]);
    println!("vc:       {}", text(&s["vc"]));
    println!("codecs:   {}", list(&s["codecs"]));
    println!("audio:    {} (aec: {})", text(&s["audioBackend"]), text(&s["aec"]));
    match s["devices"].as_array() {
        Some(devs) => {
            println!("devices:  {}", devs.len());
            for d in devs {
                println!("  {:<12} {:<40} {}", text(&d["kind"]), text(&d["deviceId"]), text(&d["label"]));
            }
        }
        None => println!("devices:  unavailable: {}", text(&s["devices"]["error"])),
    }
    let sessions = s["sessions"].as_array().cloned().unwrap_or_default();
    println!("sessions: {}", sessions.len());
    for sess in &sessions {
        let pcs = sess["peerConnections"].as_array().cloned().unwrap_or_default();
        println!(
            "  session {} (open {} s): {} peer connection(s)",
            sess["session"],
            sess["openedSecsAgo"],
            pcs.len()
        );
        for pc in &pcs {
            let packets = if pc["packetsSent"].is_null() {
                String::new()
            } else {
                format!(
                    ", packets sent {} received {} lost {}",
                    pc["packetsSent"], pc["packetsReceived"], pc["packetsLost"]
                )
            };
            println!(
                "    {:<12} {:<10} ice {:<10} signaling {:<18} codec {}{packets}",
                text(&pc["id"]),
                text(&pc["connectionState"]),
                text(&pc["iceConnectionState"]),
                text(&pc["signalingState"]),
                pc["codec"].as_str().unwrap_or("(not negotiated)"),
            );
        }
    }
    ExitCode::SUCCESS
}

fn parse_backend(backend: &str) -> Option<BackendChoice> {
    match backend {
        "auto" => Some(BackendChoice::Auto),
        "pipewire" => Some(BackendChoice::Pipewire),
        "alsa" => Some(BackendChoice::Alsa),
        other => {
            eprintln!("unknown backend {other:?}: use auto, pipewire or alsa");
            None
        }
    }
}

fn devices(socket: Option<PathBuf>, backend: &str, local: bool, json: bool) -> ExitCode {
    let Some(choice) = parse_backend(backend) else { return ExitCode::from(64) };
    let (backend_name, list) = match (local, ask(&socket, "devices", Value::Null, Duration::from_secs(10))) {
        (false, Ok(v)) => (v["backend"].as_str().unwrap_or("-").to_string(), v["devices"].clone()),
        (_, res) => {
            if let (false, Err(e)) = (local, &res) {
                eprintln!("vdimediactl: daemon not reachable ({e}); listing in this process");
            }
            if let Err(e) = vdimediad::webrtc::init_gstreamer() {
                eprintln!("GStreamer cannot start: {e}");
                return ExitCode::FAILURE;
            }
            let devices = MediaDevices::new(choice.resolve());
            match devices.enumerate() {
                Ok(list) => {
                    (devices.backend().as_str().to_string(), serde_json::to_value(list).unwrap_or_default())
                }
                Err(e) => {
                    eprintln!("cannot list devices: {}", e.message);
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    if json {
        println!("{}", pretty(&list));
        return ExitCode::SUCCESS;
    }
    println!("backend: {backend_name}");
    for d in list.as_array().into_iter().flatten() {
        let t = |k: &str| d[k].as_str().unwrap_or("").to_string();
        println!("{:<12} {:<44} {:<20} {}", t("kind"), t("deviceId"), t("groupId"), t("label"));
    }
    ExitCode::SUCCESS
}

// ---- diagnose ----

/// One line of `diagnose`.
#[derive(Debug, Serialize)]
struct Check {
    name: String,
    passed: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
    Check { name: name.into(), passed: true, detail: detail.into(), fix: None }
}

fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), passed: false, detail: detail.into(), fix: Some(fix.into()) }
}

fn diagnose(
    socket: Option<PathBuf>,
    stun: &[String],
    turn: &[String],
    vc: Option<String>,
    backend: &str,
    json: bool,
) -> ExitCode {
    let Some(choice) = parse_backend(backend) else { return ExitCode::from(64) };
    let mut checks = Vec::new();

    // GStreamer and its elements.
    match control::check_elements() {
        Ok(els) => {
            checks.push(pass("gstreamer", gst::version_string().to_string()));
            for c in &els {
                let e = &c.element;
                let name = format!("element {}", e.name);
                if c.present {
                    checks.push(pass(name, format!("{} ({})", e.purpose, e.package)));
                } else if !c.is_failure(&els) {
                    checks.push(pass(
                        name,
                        format!("not installed; {} does its job", e.fallback.unwrap_or_default()),
                    ));
                } else {
                    let effect = if e.required { "calls cannot work" } else { "lost" };
                    checks.push(fail(
                        name,
                        format!("missing: {} {effect}", e.purpose),
                        format!("apt install {}", e.package.split(' ').next().unwrap_or(e.package)),
                    ));
                }
            }
        }
        Err(e) => checks.push(fail("gstreamer", e.message, "apt install gstreamer1.0-plugins-base")),
    }

    // Audio server or ALSA.
    let pw = pipewire_socket();
    let pw_ok = pw.as_ref().is_some_and(|p| std::os::unix::net::UnixStream::connect(p).is_ok());
    let resolved = choice.resolve();
    let alsa_cards = std::fs::read_to_string("/proc/asound/cards")
        .map(|s| s.lines().filter(|l| l.starts_with(' ') && l.contains('[')).count())
        .unwrap_or(0);
    let pw_name = pw.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "pipewire-0".into());
    match (resolved, pw_ok) {
        (vdimediad::media::AudioBackend::PipeWire, true) => {
            checks.push(pass("audio server", format!("PipeWire answers at {pw_name}")))
        }
        (vdimediad::media::AudioBackend::PipeWire, false) => checks.push(fail(
            "audio server",
            format!("PipeWire does not answer at {pw_name}"),
            "start PipeWire for this user (systemctl --user start pipewire wireplumber), or use --backend alsa",
        )),
        (vdimediad::media::AudioBackend::Alsa, _) if alsa_cards > 0 => {
            checks.push(pass("audio server", format!("ALSA, {alsa_cards} sound card(s); no PipeWire at {pw_name}")))
        }
        (vdimediad::media::AudioBackend::Alsa, _) => checks.push(fail(
            "audio server",
            format!("no PipeWire at {pw_name} and no ALSA sound card (/proc/asound/cards)"),
            "start PipeWire for this user, or check the sound card driver and /dev/snd permissions (audio group)",
        )),
    }

    // Devices, as the engine would enumerate them.
    let devices = MediaDevices::new(resolved);
    match devices.enumerate() {
        Ok(list) => {
            for (kind, what) in [("audioinput", "microphone"), ("audiooutput", "speaker")] {
                let of_kind: Vec<_> = list
                    .iter()
                    .filter(|d| {
                        serde_json::to_value(d.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .as_deref()
                            == Some(kind)
                    })
                    .map(|d| d.label.clone())
                    .collect();
                if of_kind.is_empty() {
                    checks.push(fail(
                        format!("{kind} devices"),
                        format!("no {what} on {}", resolved.as_str()),
                        format!("connect a {what} or headset; see `wpctl status` or `aplay -L`"),
                    ));
                } else {
                    checks.push(pass(
                        format!("{kind} devices"),
                        format!("{}: {}", of_kind.len(), of_kind.join(", ")),
                    ));
                }
            }
        }
        Err(e) => checks.push(fail(
            "devices",
            format!("cannot enumerate: {}", e.message),
            "check the audio server above",
        )),
    }

    // The virtual channel and the control socket of the running daemon.
    let vc =
        vc.or_else(|| std::env::var("XDG_RUNTIME_DIR").ok().map(|d| format!("unix:{d}/vdimedia/vc.sock")));
    match vc.as_deref().map(VcAddr::parse) {
        Some(Ok(addr)) => match runtime()
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), handshake(&addr)).await })
        {
            Ok(Ok(w)) => {
                checks.push(pass("vc socket", format!("{addr}: {} speaks protocol {}", w.engine, w.version)))
            }
            Ok(Err(e)) => checks.push(fail(
                "vc socket",
                format!("{addr}: {e}"),
                "start vdimediad (systemctl --user start vdimediad.socket), or pass --vc ADDR",
            )),
            Err(_) => {
                checks.push(fail("vc socket", format!("{addr}: no answer within 10 s"), "restart vdimediad"))
            }
        },
        Some(Err(e)) => checks.push(fail("vc socket", e, "pass --vc unix:/path")),
        None => checks.push(fail("vc socket", "XDG_RUNTIME_DIR is unset", "pass --vc unix:/path")),
    }
    match ask(&socket, "status", Value::Null, Duration::from_secs(15)) {
        Ok(s) => checks.push(pass(
            "control socket",
            format!(
                "{}: {} pid {}, {} session(s)",
                socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                s["engine"].as_str().unwrap_or("-"),
                s["pid"],
                s["sessions"].as_array().map(Vec::len).unwrap_or(0)
            ),
        )),
        Err(ClientError::Refused(e)) if e.code == "permission_denied" => {
            checks.push(fail("control socket", e.message, "run vdimediactl as the daemon's user or root"))
        }
        Err(e) => {
            checks.push(fail("control socket", e.to_string(), "start vdimediad, or pass --socket PATH"))
        }
    }

    for url in stun {
        checks.push(match parse_ice_url(url, "stun") {
            Ok((_, host, port)) => stun_check(url, &host, port),
            Err(e) => fail(format!("stun {url}"), e, "use stun:HOST[:PORT]"),
        });
    }
    for url in turn {
        checks.push(match parse_ice_url(url, "turn") {
            Ok((Some((user, pass)), host, port)) => turn_check(url, &host, port, &user, &pass),
            Ok((None, ..)) => fail(format!("turn {url}"), "no credentials", "use turn:USER:PASS@HOST[:PORT]"),
            Err(e) => fail(format!("turn {url}"), e, "use turn:USER:PASS@HOST[:PORT]"),
        });
    }

    let passed = checks.iter().all(|c| c.passed);
    if json {
        println!("{}", pretty(&json!({ "passed": passed, "checks": checks })));
    } else {
        for c in &checks {
            match &c.fix {
                None => println!("PASS {} — {}", c.name, c.detail),
                Some(fix) => println!("FAIL {} — {} — fix: {fix}", c.name, c.detail),
            }
        }
        let failed = checks.iter().filter(|c| !c.passed).count();
        println!("{} checks, {failed} failed", checks.len());
    }
    if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The PipeWire socket libpipewire would use (`PIPEWIRE_REMOTE`, else `pipewire-0` in
/// `PIPEWIRE_RUNTIME_DIR` or `XDG_RUNTIME_DIR`), as the engine's backend detection does.
fn pipewire_socket() -> Option<PathBuf> {
    let name = std::env::var("PIPEWIRE_REMOTE").ok().filter(|r| !r.is_empty()).unwrap_or("pipewire-0".into());
    if Path::new(&name).is_absolute() {
        return Some(PathBuf::from(name));
    }
    let dir = std::env::var_os("PIPEWIRE_RUNTIME_DIR").or_else(|| std::env::var_os("XDG_RUNTIME_DIR"))?;
    Some(PathBuf::from(dir).join(name))
}

/// `stun:HOST[:PORT]` / `turn:USER:PASS@HOST[:PORT][?transport=udp]` (RFC 7064/7065; UDP
/// only; default port 3478) → (credentials, host, port).
/// Credentials (user, password), host, port of a `stun:`/`turn:` URL.
type IceUrl = (Option<(String, String)>, String, u16);

fn parse_ice_url(url: &str, scheme: &str) -> Result<IceUrl, String> {
    let rest = url
        .strip_prefix(&format!("{scheme}:"))
        .ok_or_else(|| format!("{url:?} does not start with {scheme}:"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !query.is_empty() && query != "transport=udp" {
        return Err(format!("only UDP is probed, not {query}"));
    }
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => {
            let (u, p) = c.split_once(':').ok_or("credentials must be USER:PASS")?;
            (Some((u.to_string(), p.to_string())), h)
        }
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
        _ => (hostport, 3478),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((creds, host.to_string(), port))
}

/// Sends `msg` over UDP to `server` and waits for the response with the same transaction id,
/// retransmitting at 250, 500, 1000 ms (RFC 5389 §7.2.1, shortened for a diagnostic).
fn stun_exchange(
    sock: &UdpSocket,
    server: SocketAddr,
    msg: Message<StunAttr>,
) -> Result<Message<StunAttr>, String> {
    let tid = msg.transaction_id();
    let bytes = MessageEncoder::new().encode_into_bytes(msg).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    for wait in [250u64, 500, 1000] {
        sock.send_to(&bytes, server).map_err(|e| format!("send to {server}: {e}"))?;
        let deadline = Instant::now() + Duration::from_millis(wait);
        while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            sock.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
            let n = match sock.recv_from(&mut buf) {
                Ok((n, from)) if from == server => n,
                Ok(_) => continue,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break;
                }
                Err(e) => return Err(format!("{server}: {e}")),
            };
            match MessageDecoder::<StunAttr>::new().decode_from_bytes(&buf[..n]) {
                Ok(Ok(m)) if m.transaction_id() == tid => return Ok(m),
                Ok(Ok(_)) => continue,
                Ok(Err(broken)) => return Err(format!("malformed STUN answer: {:?}", broken.error())),
                Err(e) => return Err(format!("not a STUN answer: {e}")),
            }
        }
    }
    Err(format!("no answer from {server} within 1.75 s"))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{host} has no IPv4 address"))
}

fn udp_for(server: SocketAddr) -> Result<UdpSocket, String> {
    let local = if server.ip().is_loopback() { "127.0.0.1:0" } else { "0.0.0.0:0" };
    UdpSocket::bind(local).map_err(|e| format!("cannot open a UDP socket: {e}"))
}

fn stun_fix(port: u16) -> String {
    format!(
        "check the server name and port, and that outbound UDP to port {port} is allowed (firewall, proxy)"
    )
}

/// A STUN binding request (RFC 5389 §7): reachable when a success response with
/// XOR-MAPPED-ADDRESS comes back.
fn stun_check(url: &str, host: &str, port: u16) -> Check {
    let name = format!("stun {url}");
    let run = || -> Result<String, String> {
        let server = resolve(host, port)?;
        let sock = udp_for(server)?;
        let t0 = Instant::now();
        let req = Message::new(
            MessageClass::Request,
            stun_codec::rfc5389::methods::BINDING,
            TransactionId::new(rand_tid()),
        );
        let resp = stun_exchange(&sock, server, req)?;
        if resp.class() != MessageClass::SuccessResponse {
            let e =
                resp.get_attribute::<StunErrorCode>().map(|e| format!("{} {}", e.code(), e.reason_phrase()));
            return Err(format!("binding refused: {}", e.unwrap_or_default()));
        }
        let mapped =
            resp.get_attribute::<XorMappedAddress>().map(|a| a.address().to_string()).unwrap_or("?".into());
        Ok(format!("{server} answered in {} ms; mapped address {mapped}", t0.elapsed().as_millis()))
    };
    match run() {
        Ok(d) => pass(name, d),
        Err(e) => fail(name, e, stun_fix(port)),
    }
}

/// A TURN allocation (RFC 5766 §6): an unauthenticated Allocate must get 401 with REALM and
/// NONCE, the authenticated one a relayed address, which is then released (Refresh, lifetime 0).
fn turn_check(url: &str, host: &str, port: u16, user: &str, password: &str) -> Check {
    let shown = url.replacen(&format!(":{password}@"), ":***@", 1);
    let name = format!("turn {shown}");
    let mut credentials_bad = false;
    let mut run = || -> Result<String, String> {
        let server = resolve(host, port)?;
        let sock = udp_for(server)?;
        let t0 = Instant::now();
        let allocate = || {
            let mut m = Message::new(
                MessageClass::Request,
                stun_codec::rfc5766::methods::ALLOCATE,
                TransactionId::new(rand_tid()),
            );
            m.add_attribute(StunAttr::RequestedTransport(RequestedTransport::new(17))); // UDP
            m
        };
        let first = stun_exchange(&sock, server, allocate())?;
        let (realm, nonce) = match (first.get_attribute::<Realm>(), first.get_attribute::<Nonce>()) {
            (Some(r), Some(n)) if first.class() == MessageClass::ErrorResponse => (r.clone(), n.clone()),
            _ => {
                return Err(format!(
                    "{server} is not asking for TURN credentials (class {:?})",
                    first.class()
                ));
            }
        };
        let username = Username::new(user.to_string()).map_err(|e| e.to_string())?;
        let mut req = allocate();
        req.add_attribute(StunAttr::Username(username.clone()));
        req.add_attribute(StunAttr::Realm(realm.clone()));
        req.add_attribute(StunAttr::Nonce(nonce.clone()));
        let mi = MessageIntegrity::new_long_term_credential(&req, &username, &realm, password)
            .map_err(|e| e.to_string())?;
        req.add_attribute(StunAttr::MessageIntegrity(mi));
        let resp = stun_exchange(&sock, server, req)?;
        if resp.class() != MessageClass::SuccessResponse {
            let code = resp.get_attribute::<StunErrorCode>();
            credentials_bad = code.is_some_and(|c| c.code() == 401 || c.code() == 441);
            let e = code.map(|e| format!("{} {}", e.code(), e.reason_phrase())).unwrap_or_default();
            return Err(format!("allocation refused by {server}: {e}"));
        }
        let relay =
            resp.get_attribute::<XorRelayAddress>().map(|a| a.address().to_string()).unwrap_or("?".into());
        let ms = t0.elapsed().as_millis();
        // Release the allocation at once; a failure here only costs the server a timeout.
        let mut refresh = Message::new(
            MessageClass::Request,
            stun_codec::rfc5766::methods::REFRESH,
            TransactionId::new(rand_tid()),
        );
        if let Ok(l) = Lifetime::new(Duration::from_secs(0)) {
            refresh.add_attribute(StunAttr::Lifetime(l));
        }
        refresh.add_attribute(StunAttr::Username(username.clone()));
        refresh.add_attribute(StunAttr::Realm(realm.clone()));
        refresh.add_attribute(StunAttr::Nonce(nonce));
        if let Ok(mi) = MessageIntegrity::new_long_term_credential(&refresh, &username, &realm, password) {
            refresh.add_attribute(StunAttr::MessageIntegrity(mi));
            let _ = stun_exchange(&sock, server, refresh);
        }
        Ok(format!("{server} allocated relay {relay} in {ms} ms (realm {})", realm.text()))
    };
    match run() {
        Ok(d) => pass(name, d),
        Err(e) if credentials_bad => {
            fail(name, e, "check the TURN username and credential (and the realm's user database)")
        }
        Err(e) => fail(name, e, stun_fix(port)),
    }
}

/// 96 random bits for a STUN transaction id (RFC 5389 §6), from the OS.
fn rand_tid() -> [u8; 12] {
    let mut b = [0u8; 12];
    b.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..12]);
    b
}

// ---- test-call ----

fn test_call(
    socket: Option<PathBuf>,
    opts: TestCallOptions,
    local: bool,
    config: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    if let Err(e) = opts.validate() {
        eprintln!("vdimediactl: {e}");
        return ExitCode::from(64);
    }
    let timeout = Duration::from_secs_f64(opts.seconds + 40.0);
    let params = serde_json::to_value(&opts).unwrap_or_default();
    let daemon = if local { None } else { Some(ask(&socket, "test-call", params, timeout)) };
    let report: TestCallReport = match daemon {
        Some(Ok(v)) => match serde_json::from_value(v) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("vdimediactl: unreadable test-call report: {e}");
                return ExitCode::FAILURE;
            }
        },
        Some(Err(ClientError::Connect { path, source })) | Some(Err(ClientError::Io { path, source }))
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            eprintln!(
                "vdimediactl: daemon not running ({}: {source}); running the call in this process",
                path.display()
            );
            in_process(&opts, config)
        }
        Some(Err(e)) => {
            eprintln!("vdimediactl: {e}");
            return ExitCode::FAILURE;
        }
        None => in_process(&opts, config),
    };
    if json {
        println!("{}", pretty(&report));
    } else {
        println!(
            "{} test-call ({}, {}, {}, set up in {})",
            if report.passed { "PASS" } else { "FAIL" },
            report.ran_in,
            report.backend,
            report.codec.as_deref().unwrap_or("no codec negotiated"),
            report.setup_ms.map(|m| format!("{m} ms")).unwrap_or("-".into())
        );
        for d in [&report.uplink, &report.downlink] {
            println!(
                "  {} → {}: {} packets sent, {} received, {:.2} s decoded at {:.1} dBFS",
                d.source, d.sink, d.packets_sent, d.packets_received, d.audio_secs, d.level_dbfs
            );
        }
        for n in &report.notes {
            println!("  note: {n}");
        }
    }
    if report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn in_process(opts: &TestCallOptions, config: Option<PathBuf>) -> TestCallReport {
    let config = match Config::load(config.as_deref()) {
        Ok((c, _)) => c,
        Err(e) => {
            return TestCallReport {
                ran_in: "in-process".into(),
                notes: vec![e.to_string()],
                ..Default::default()
            };
        }
    };
    let engine = vdimediad::engine::Engine::new(config);
    let mut report = runtime().block_on(control::test_call(&engine, opts));
    report.ran_in = "in-process".into();
    report
}

// ---- status --vc: a virtual-channel handshake ----

fn vc_status(vc: String, json: bool) -> ExitCode {
    let addr = match VcAddr::parse(&vc) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("--vc: {e}");
            return ExitCode::from(64);
        }
    };
    match runtime().block_on(async { tokio::time::timeout(Duration::from_secs(10), handshake(&addr)).await })
    {
        Ok(Ok(welcome)) => {
            if json {
                println!("{}", pretty(&welcome));
            } else {
                println!("engine:   {} ({}/{})", welcome.engine, welcome.os, welcome.arch);
                println!("protocol: {}", welcome.version);
                println!("codecs:   {}", welcome.capabilities.codecs.join(", "));
                println!(
                    "audio:    {} (aec: {})",
                    welcome.capabilities.audio_backend, welcome.capabilities.aec
                );
                println!(
                    "devices:  {} inputs, {} outputs",
                    welcome.capabilities.devices.audioinput, welcome.capabilities.devices.audiooutput
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("{addr}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("{addr}: no answer within 10 s");
            ExitCode::FAILURE
        }
    }
}

async fn handshake(addr: &VcAddr) -> Result<vdimedia_protocol::handshake::Welcome, String> {
    let stream = vdimediad::vc::transport::dial(addr).await.map_err(|e| e.to_string())?;
    handshake_on(stream).await
}

async fn handshake_on<S>(mut s: S) -> Result<vdimedia_protocol::handshake::Welcome, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let agent = concat!("vdimediactl/", env!("CARGO_PKG_VERSION"));
    let mut ch = Channel::new(ChannelConfig::vda(agent), Instant::now());
    let mut buf = vec![0u8; 8192];
    loop {
        while let Some(frame) = ch.poll_transmit() {
            s.write_all(&frame).await.map_err(|e| e.to_string())?;
        }
        while let Some(ev) = ch.poll_event() {
            match ev {
                ChannelEvent::Ready(w) => {
                    ch.close(vdimedia_protocol::message::ErrorCode::Normal, "status query done");
                    while let Some(frame) = ch.poll_transmit() {
                        let _ = s.write_all(&frame).await;
                    }
                    return Ok(w);
                }
                ChannelEvent::Rejected(r) => return Err(format!("rejected: {:?}: {}", r.code, r.message)),
                ChannelEvent::Closed { code, reason } => return Err(format!("closed: {code:?}: {reason}")),
                _ => {}
            }
        }
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the daemon closed the channel".into());
        }
        ch.handle_input(&buf[..n], Instant::now());
    }
}
