//! `vdimediactl`: the admin CLI of vdimediad, for troubleshooting on the endpoint.
//!
//! - `status`: connects to the daemon's virtual-channel socket as a VDA peer would, performs the
//!   protocol handshake, and prints what the engine announces (version, codecs, devices).
//! - `devices`: lists the audio devices the engine would offer to pages.
//! - `check`: verifies that every GStreamer element a call needs is installed, naming the
//!   Debian package of each missing one.
//! - `check-config`: validates a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vdimedia_protocol::channel::{Channel, ChannelConfig, ChannelEvent};
use vdimediad::config::{BackendChoice, Config};
use vdimediad::media::MediaDevices;
use vdimediad::vc::VcAddr;

#[derive(Parser)]
#[command(name = "vdimediactl", version, about = "Inspect and troubleshoot vdimediad")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Handshake with the running daemon and print its announcement (exit 1 if unreachable).
    Status {
        /// The daemon's socket: unix:/path or tcp://HOST:PORT. Default:
        /// unix:$XDG_RUNTIME_DIR/vdimedia/vc.sock.
        #[arg(long)]
        vc: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the audio devices pages would see (enumerateDevices).
    Devices {
        /// auto, pipewire or alsa.
        #[arg(long, default_value = "auto")]
        backend: String,
        #[arg(long)]
        json: bool,
    },
    /// Check that the GStreamer elements calls need are installed.
    Check,
    /// Validate a configuration file.
    CheckConfig { file: PathBuf },
}

/// Elements a call needs, with the Debian package that ships each.
const ELEMENTS: &[(&str, &str, bool)] = &[
    ("webrtcbin", "gstreamer1.0-plugins-bad", true),
    ("nicesrc", "gstreamer1.0-nice", true),
    ("dtlssrtpenc", "gstreamer1.0-plugins-bad", true),
    ("srtpenc", "gstreamer1.0-plugins-bad", true),
    ("rtpbin", "gstreamer1.0-plugins-good", true),
    ("opusenc", "gstreamer1.0-plugins-base", true),
    ("opusdec", "gstreamer1.0-plugins-base", true),
    ("rtpopuspay", "gstreamer1.0-plugins-good", true),
    ("mulawenc", "gstreamer1.0-plugins-good", true),
    ("alawenc", "gstreamer1.0-plugins-good", true),
    ("avenc_g722", "gstreamer1.0-libav", false),
    ("avdec_g722", "gstreamer1.0-libav", false),
    ("audioconvert", "gstreamer1.0-plugins-base", true),
    ("audioresample", "gstreamer1.0-plugins-base", true),
    ("pipewiresrc", "gstreamer1.0-pipewire", false),
    ("pipewiresink", "gstreamer1.0-pipewire", false),
    ("alsasrc", "gstreamer1.0-alsa", false),
    ("alsasink", "gstreamer1.0-alsa", false),
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Status { vc, json } => status(vc, json),
        Cmd::Devices { backend, json } => devices(&backend, json),
        Cmd::Check => check(),
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

fn devices(backend: &str, json: bool) -> ExitCode {
    let choice = match backend {
        "auto" => BackendChoice::Auto,
        "pipewire" => BackendChoice::Pipewire,
        "alsa" => BackendChoice::Alsa,
        other => {
            eprintln!("unknown backend {other:?}: use auto, pipewire or alsa");
            return ExitCode::from(64);
        }
    };
    if let Err(e) = gst::init() {
        eprintln!("GStreamer cannot start: {e}");
        return ExitCode::FAILURE;
    }
    let devices = MediaDevices::new(choice.resolve());
    match devices.enumerate() {
        Ok(list) if json => {
            println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(list) => {
            println!("backend: {:?}", devices.backend());
            for d in list {
                println!(
                    "{:<12} {:<44} {:<20} {}",
                    format!("{:?}", d.kind).to_lowercase(),
                    d.device_id,
                    d.group_id,
                    d.label
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot list devices: {}", e.message);
            ExitCode::FAILURE
        }
    }
}

fn check() -> ExitCode {
    if let Err(e) = gst::init() {
        eprintln!("GStreamer cannot start: {e}");
        return ExitCode::FAILURE;
    }
    let mut missing_required = false;
    for (element, package, required) in ELEMENTS {
        let ok = gst::ElementFactory::find(element).is_some();
        let mark = if ok {
            "ok"
        } else if *required {
            "MISSING"
        } else {
            "missing (optional)"
        };
        println!("{element:<14} {mark:<20} {package}");
        missing_required |= !ok && *required;
    }
    if missing_required {
        eprintln!("some required elements are missing: install the packages named above");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn status(vc: Option<String>, json: bool) -> ExitCode {
    let addr = match vc {
        Some(s) => s,
        None => match std::env::var("XDG_RUNTIME_DIR") {
            Ok(d) => format!("unix:{d}/vdimedia/vc.sock"),
            Err(_) => {
                eprintln!("--vc not given and XDG_RUNTIME_DIR unset");
                return ExitCode::from(64);
            }
        },
    };
    let addr = match VcAddr::parse(&addr) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("--vc: {e}");
            return ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), handshake(&addr)).await }) {
        Ok(Ok(welcome)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&welcome).unwrap_or_default());
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
