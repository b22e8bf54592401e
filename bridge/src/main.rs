//! `vdimedia-bridge` binary: CLI, logging to stderr, systemd readiness, SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use vdimedia_bridge::{Bridge, Cli, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("VDIMEDIA_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Plain text for journald and log files; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            error!("configuration refused: {e}");
            eprintln!("vdimedia-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bridge = match Bridge::start(config).await {
        Ok(b) => b,
        Err(e) => {
            error!("{e}");
            eprintln!("vdimedia-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    // No-op without $NOTIFY_SOCKET (not started by systemd with Type=notify).
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        warn!("sd_notify READY=1 failed: {e}");
    }
    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = sig, "stopping: closing sessions and pages");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    bridge.shutdown();
    bridge.wait().await;
    info!("stopped");
    ExitCode::SUCCESS
}
