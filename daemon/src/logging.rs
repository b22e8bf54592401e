//! Logging: journald with structured fields when systemd runs the daemon, stderr otherwise.
//!
//! Under journald every `tracing` field becomes a journal field with the `VDIMEDIA_` prefix:
//! the session span gives `VDIMEDIA_SESSION`, peer-connection events `VDIMEDIA_PC`, ICE state
//! changes `VDIMEDIA_ICE_STATE`, so `journalctl -u vdimediad VDIMEDIA_SESSION=3` shows one
//! page's story.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogTarget;

/// Environment variable that overrides the configured filter (a `tracing` EnvFilter).
pub const LOG_ENV: &str = "VDIMEDIA_LOG";

/// Installs the global subscriber. `level` is the configured filter (default `info`).
/// Returns which target was chosen, for the start-up log line.
pub fn init(target: LogTarget, level: Option<&str>) -> &'static str {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level.unwrap_or("info")));
    // systemd sets JOURNAL_STREAM when stdout/stderr go to the journal (systemd.exec(5)).
    let want_journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    if want_journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some("VDIMEDIA".into()))
                    .with_syslog_identifier("vdimediad".into());
                tracing_subscriber::registry().with(filter).with(layer).init();
                return "journald";
            }
            Err(e) => eprintln!("vdimediad: journald not reachable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false))
        .init();
    "stderr"
}
