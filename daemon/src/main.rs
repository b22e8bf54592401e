//! `vdimediad`: the endpoint media engine. See `docs/ARCHITECTURE.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::sync::watch;
use tracing::{error, info, warn};
use vdimediad::config::{BackendChoice, Config, ControlConfig};
use vdimediad::engine::{ENGINE, Engine};
use vdimediad::vc::{VcAddr, transport};
use vdimediad::{control, element_check};

/// vdimedia endpoint media engine: runs the WebRTC calls of pages in a virtual desktop, with
/// this machine's audio devices, and speaks the vdimedia protocol on a virtual channel.
#[derive(Parser, Debug)]
#[command(name = "vdimediad", version, about)]
struct Cli {
    /// Configuration file (TOML). Default: /etc/vdimedia/vdimediad.toml, then
    /// /usr/lib/vdimedia/vdimediad.toml.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Listen for the virtual channel on this Unix socket: unix:/path. Default:
    /// $XDG_RUNTIME_DIR/vdimedia/vc.sock. A socket passed by systemd socket activation wins.
    #[arg(long, value_name = "unix:PATH", conflicts_with = "connect")]
    listen: Option<String>,
    /// Dial a bridge instead of listening: tcp://HOST:PORT or unix:/path.
    #[arg(long, value_name = "ADDR")]
    connect: Option<String>,
    /// Audio device stack.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Also gather ICE candidates on 127.0.0.1 (test rigs on loopback).
    #[arg(long)]
    loopback_ice: bool,
    /// Log filter, e.g. info or vdimediad=debug (VDIMEDIA_LOG overrides).
    #[arg(long)]
    log_level: Option<String>,
    /// Validate the configuration, print it, and exit.
    #[arg(long)]
    check_config: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Backend {
    Auto,
    Pipewire,
    Alsa,
}

fn main() -> ExitCode {
    vdimediad::engine::tune_allocator();
    let cli = Cli::parse();
    let (mut config, path) = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vdimediad: configuration error: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if let Some(l) = cli.listen {
        config.vc.listen = Some(l);
        config.vc.connect = None;
    }
    if let Some(c) = cli.connect {
        config.vc.connect = Some(c);
        config.vc.listen = None;
    }
    if let Some(b) = cli.backend {
        config.audio.backend = match b {
            Backend::Auto => BackendChoice::Auto,
            Backend::Pipewire => BackendChoice::Pipewire,
            Backend::Alsa => BackendChoice::Alsa,
        };
    }
    config.webrtc.loopback_ice |= cli.loopback_ice;
    if cli.log_level.is_some() {
        config.log.level = cli.log_level;
    }
    // Flags go through the same validation as the file.
    let listen = match config.vc.listen.as_deref().map(VcAddr::parse).transpose() {
        Ok(Some(VcAddr::Tcp(_))) => {
            eprintln!("vdimediad: --listen takes unix:/path only");
            return ExitCode::from(64);
        }
        Ok(l) => l,
        Err(e) => {
            eprintln!("vdimediad: --listen: {e}");
            return ExitCode::from(64);
        }
    };
    let connect = match config.vc.connect.as_deref().map(VcAddr::parse).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vdimediad: --connect: {e}");
            return ExitCode::from(64);
        }
    };
    if cli.check_config {
        println!("{config:#?}");
        println!(
            "configuration OK ({})",
            path.map(|p| p.display().to_string()).unwrap_or("built-in defaults".into())
        );
        return ExitCode::SUCCESS;
    }

    let log_target = vdimediad::logging::init(config.log.target, config.log.level.as_deref());
    if std::env::var_os(element_check::CHILD_ENV).is_some() {
        // We are the short-lived child of `element_check::spawn_child`.
        return ExitCode::from(element_check::child_main());
    }
    info!(engine = ENGINE, config = ?path, log = log_target, "starting");
    // The check loads GStreamer's registry (≈ 6 MiB of heap glibc keeps), which a daemon
    // without a page session should not carry: a child does it, and `WELCOME` later uses its
    // report. Where this executable cannot be run again (qemu-user without binfmt_misc: exec
    // of a foreign binary fails), the check runs in-process.
    if !element_check::spawn_child() {
        element_check::log_missing();
    }

    // One thread serves the control plane: calls run on GStreamer's own streaming threads, so
    // a second async worker would only add idle footprint. The blocking pool (warm-up, device
    // probes) lets its threads go after 1 s, so an idle daemon is back to this one thread.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(config, listen, connect))
}

async fn run(config: Config, listen: Option<VcAddr>, connect: Option<VcAddr>) -> ExitCode {
    let redial = Duration::from_secs(config.vc.redial_secs);
    let control = config.control.clone();
    let engine = Engine::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let vc_desc: String;
    let mut vc_path: Option<PathBuf> = None;

    let server = if let Some(addr) = connect {
        info!(vc = %addr, "dialling the bridge");
        vc_desc = addr.to_string();
        tokio::spawn(transport::run_dialler(addr, redial, engine.clone(), stop_rx.clone()))
    } else {
        let listener = match transport::socket_activation_listener() {
            Ok(Some(l)) => {
                info!(vc = "socket-activation", "listening on the socket systemd passed");
                vc_desc = "socket-activation".into();
                l
            }
            Ok(None) | Err(_) => {
                let path = match listen {
                    Some(VcAddr::Unix(p)) => p,
                    _ => match std::env::var_os("XDG_RUNTIME_DIR") {
                        Some(dir) => PathBuf::from(dir).join("vdimedia/vc.sock"),
                        None => {
                            error!("no --listen given and XDG_RUNTIME_DIR is unset");
                            return ExitCode::from(64);
                        }
                    },
                };
                match transport::bind_unix(&path) {
                    Ok(l) => {
                        info!(vc = %format!("unix:{}", path.display()), "listening for the virtual channel");
                        vc_desc = format!("unix:{}", path.display());
                        vc_path = Some(path.clone());
                        l
                    }
                    Err(e) => {
                        error!(path = %path.display(), error = %e, "cannot listen for the virtual channel");
                        return ExitCode::FAILURE;
                    }
                }
            }
        };
        tokio::spawn(transport::run_listener(listener, engine.clone(), stop_rx.clone()))
    };

    let control_task = start_control(&control, vc_path.as_deref(), vc_desc, &engine, &stop_rx);

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().map(|period| {
        // Ping at half the period from the runtime's own thread: a stuck control loop stops the
        // pings and systemd restarts us.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        })
    });

    wait_for_signal().await;
    info!("stopping: closing calls");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some((task, path)) = control_task {
        let _ = task.await;
        let _ = std::fs::remove_file(path);
    }
    engine.tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), engine.tasks.wait()).await.is_err() {
        warn!("sessions did not close within 5 s");
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    info!("stopped");
    ExitCode::SUCCESS
}

/// Binds the control socket (docs/control.md) and serves it on a task; `None` when it is
/// turned off or cannot be bound (the daemon runs on without it, with an error logged).
fn start_control(
    control: &ControlConfig,
    vc_path: Option<&std::path::Path>,
    vc_desc: String,
    engine: &std::sync::Arc<Engine>,
    stop_rx: &watch::Receiver<bool>,
) -> Option<(tokio::task::JoinHandle<()>, PathBuf)> {
    if !control.enabled {
        info!("control socket turned off ([control] enabled = false)");
        return None;
    }
    let Some(path) = control::socket_path(control.socket.as_deref(), vc_path) else {
        error!("no control socket: set [control] socket, or XDG_RUNTIME_DIR / RUNTIME_DIRECTORY");
        return None;
    };
    match control::bind(&path) {
        Ok(listener) => {
            info!(control = %path.display(), "control socket listening");
            let info = control::DaemonInfo::new(vc_desc, std::time::Instant::now());
            let task = tokio::spawn(control::serve(listener, engine.clone(), info, stop_rx.clone()));
            Some((task, path))
        }
        Err(e) => {
            error!(control = %path.display(), error = %e, "cannot listen on the control socket");
            None
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "signal received"),
        _ = int.recv() => info!(signal = "SIGINT", "signal received"),
    }
}
