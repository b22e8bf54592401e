//! `vdimedia-bridge` binary: CLI, logging (journald with structured fields under systemd,
//! else stderr), systemd readiness, SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use vdimedia_bridge::{Bridge, Cli, Config};

/// Where the bridge looks when no `--config` is given, most specific first: an administrator's
/// override, then the packaged defaults (packaging/config/, installed by the Debian package).
const DEFAULT_CONFIG_PATHS: &[&str] =
    &["/etc/vdimedia/vdimedia-bridge.toml", "/usr/lib/vdimedia/vdimedia-bridge.toml"];

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.config.is_none() {
        cli.config = DEFAULT_CONFIG_PATHS.iter().map(std::path::PathBuf::from).find(|p| p.exists());
    }
    init_logging();
    let config = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            error!("configuration refused: {e}");
            eprintln!("vdimedia-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.make_cert {
        return make_cert(&config);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(config))
}

/// journald when systemd runs the bridge (it sets `JOURNAL_STREAM`, systemd.exec(5)), with
/// every tracing field as a `VDIMEDIA_`-prefixed journal field (`VDIMEDIA_PAGE`,
/// `VDIMEDIA_SESSION` — the same session id the daemon logs —, `VDIMEDIA_REASON` =
/// `not_allowed`, `version_mismatch`, …), as vdimediad does (daemon/src/logging.rs);
/// stderr otherwise. `VDIMEDIA_LOG` is the filter (default `info`).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || EnvFilter::try_from_env("VDIMEDIA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some("VDIMEDIA".into()))
                    .with_syslog_identifier("vdimedia-bridge".into())
                    // As vdimediad: INFO 6, DEBUG/TRACE 7 (the crate's default puts INFO at 5).
                    .with_priority_mappings(tracing_journald::PriorityMappings {
                        error: tracing_journald::Priority::Error,
                        warn: tracing_journald::Priority::Warning,
                        info: tracing_journald::Priority::Informational,
                        debug: tracing_journald::Priority::Debug,
                        trace: tracing_journald::Priority::Debug,
                    });
                tracing_subscriber::registry().with(filter()).with(layer).init();
                return;
            }
            Err(e) => eprintln!("vdimedia-bridge: journald not reachable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        // Plain text for log files; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `--make-cert`: create or renew the generated certificate (at install, and as the unit's
/// `ExecStartPre=`), print one line `ACTION CERT not_after=RFC3339 spki_sha256=PIN` on stdout.
/// With `cert`/`key` configured, only reports on that certificate. Exit 0, or 1 on error.
fn make_cert(config: &Config) -> ExitCode {
    use vdimedia_bridge::WsSecurity;
    use vdimedia_bridge::tls;
    let rfc3339 = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| t.to_string())
    };
    let (action, cert, key) = match &config.security {
        WsSecurity::Tls { cert: Some(c), key: Some(k) } => ("configured", c.clone(), k.clone()),
        _ => match tls::ensure_generated(&config.state_dir, time::OffsetDateTime::now_utc()) {
            Ok(st) => (st.action.as_str(), st.cert_path, st.key_path),
            Err(e) => {
                error!("--make-cert: {e}");
                eprintln!("vdimedia-bridge: --make-cert: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // Loading it the way the service will proves the pair is usable.
    match tls::load_or_generate(Some(&cert), Some(&key), &config.state_dir) {
        Ok(m) => {
            println!(
                "{action} {} not_after={} spki_sha256={}",
                m.cert_path.display(),
                rfc3339(m.not_after),
                m.spki_sha256
            );
            info!(action, cert = %m.cert_path.display(), not_after = %rfc3339(m.not_after), spki_sha256 = %m.spki_sha256, "certificate ready");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("--make-cert: {e}");
            eprintln!("vdimedia-bridge: --make-cert: {e}");
            ExitCode::FAILURE
        }
    }
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
    // WatchdogSec= in the unit: ping at half the period from the runtime itself, so a stuck
    // event loop (not just a live process) makes systemd restart the bridge.
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec).then(|| {
        let period = std::time::Duration::from_micros(watchdog_usec / 2);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        })
    });
    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    if let Some(w) = watchdog {
        w.abort();
    }
    info!(signal = sig, "stopping: closing sessions and pages");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    bridge.shutdown();
    bridge.wait().await;
    info!("stopped");
    ExitCode::SUCCESS
}
