//! Which GStreamer elements are installed, known without loading GStreamer's registry into the
//! daemon (issue 8: an idle daemon carries no GStreamer).
//!
//! Initialising GStreamer loads its whole plugin registry (≈ 6 MiB of heap that glibc keeps).
//! The daemon needs the registry only for calls, but `WELCOME` (at channel connect) and the
//! control socket's `status`/`elements` need to know which codecs and elements exist. So a
//! short-lived child — this executable again, same arguments and environment, [`CHILD_ENV`]
//! set — initialises GStreamer, looks the elements up, logs the missing ones and prints one
//! JSON [`Report`] line on stdout, then exits. The daemon keeps the last report and asks a new
//! child when a plugin folder's mtime changed (a package installed or removed since).
//!
//! Once the daemon's own GStreamer is initialised (the first page session warms it up), its
//! registry is asked directly: that costs nothing more then.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::control::{ELEMENTS, ElementCheck};

/// Set (to any value) in the environment of the element-check child.
pub const CHILD_ENV: &str = "VDIMEDIAD_ELEMENT_CHECK_CHILD";

/// Longest wait for a running child before the caller checks in-process instead. Generous:
/// a first boot rebuilds the registry cache, which takes seconds on a slow ARM thin client.
const CHILD_WAIT: Duration = Duration::from_secs(20);

/// What one check found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Factory names found in the registry, among [`ELEMENTS`] and the codecs' elements
    /// ([`crate::engine::codec_elements`]).
    pub present: BTreeSet<String>,
    /// Folders plugins are loaded from (those of the registry's plugins, and
    /// `GST_PLUGIN_PATH`/`GST_PLUGIN_SYSTEM_PATH`), each with its mtime at check time
    /// (ns since the Unix epoch; `None` when it cannot be read).
    pub plugin_dirs: Vec<(PathBuf, Option<u128>)>,
}

fn mtime_ns(dir: &std::path::Path) -> Option<u128> {
    let t = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    t.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_nanos())
}

/// Every factory name a check looks up: [`ELEMENTS`] and the codecs' encoders/decoders.
fn wanted() -> BTreeSet<&'static str> {
    ELEMENTS.iter().map(|e| e.name).chain(crate::engine::codec_elements()).collect()
}

impl Report {
    /// Checks in this process: initialises GStreamer (loads the registry; no plugin is loaded).
    /// `None` when GStreamer cannot start.
    pub fn in_process() -> Option<Report> {
        crate::webrtc::init_gstreamer().ok()?;
        let present = wanted()
            .into_iter()
            .filter(|n| gst::ElementFactory::find(n).is_some())
            .map(str::to_string)
            .collect();
        let mut dirs: BTreeSet<PathBuf> = gst::Registry::get()
            .plugins()
            .into_iter()
            .filter_map(|p| p.filename())
            .filter_map(|f| f.parent().map(|d| d.to_path_buf()))
            .collect();
        for var in
            ["GST_PLUGIN_PATH", "GST_PLUGIN_SYSTEM_PATH", "GST_PLUGIN_PATH_1_0", "GST_PLUGIN_SYSTEM_PATH_1_0"]
        {
            if let Some(v) = std::env::var_os(var) {
                dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
            }
        }
        let plugin_dirs = dirs.into_iter().map(|d| (d.clone(), mtime_ns(&d))).collect();
        Some(Report { present, plugin_dirs })
    }

    /// No plugin folder changed since the check.
    pub fn is_current(&self) -> bool {
        self.plugin_dirs.iter().all(|(d, t)| mtime_ns(d) == *t)
    }

    /// [`ELEMENTS`] with their presence per this report.
    pub fn checks(&self) -> Vec<ElementCheck> {
        ELEMENTS
            .iter()
            .map(|e| ElementCheck { element: *e, present: self.present.contains(e.name) })
            .collect()
    }
}

enum State {
    /// No child was started (tests, or this executable cannot be run again).
    None,
    Running {
        since: Instant,
    },
    Ready(Report),
    Failed,
}

static STATE: Mutex<State> = Mutex::new(State::None);
static CHANGED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The child's whole job: check, log what is missing (naming its Debian package), print the
/// [`Report`] as one JSON line on stdout. Returns the process exit code (0 even when elements
/// are missing: that is a finding, not a failure of the check).
pub fn child_main() -> u8 {
    log_missing();
    match Report::in_process() {
        Some(r) => {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            0
        }
        None => 1,
    }
}

/// Logs every element calls need that is missing, with its Debian package (docs/control.md;
/// `vdimediactl diagnose` reports the same). Initialises GStreamer in this process.
pub fn log_missing() {
    match crate::control::check_elements() {
        Ok(checks) => {
            for c in checks.iter().filter(|c| c.is_failure(&checks)) {
                let e = &c.element;
                if e.required {
                    error!(
                        element = e.name,
                        package = e.package,
                        purpose = e.purpose,
                        "GStreamer element missing: calls will fail; install {}",
                        e.package
                    );
                } else {
                    warn!(
                        element = e.name,
                        package = e.package,
                        purpose = e.purpose,
                        "GStreamer element missing: {} unavailable; install {}",
                        e.purpose,
                        e.package
                    );
                }
            }
        }
        Err(e) => error!(error = %e.message, "GStreamer cannot start: install gstreamer1.0-plugins-base"),
    }
}

/// Starts a check child and a thread that reaps it and keeps its report. Returns false when
/// this executable cannot be run again (e.g. qemu-user without binfmt_misc); callers then
/// check in-process.
pub fn spawn_child() -> bool {
    let mut st = state();
    spawn_locked(&mut st)
}

fn spawn_locked(st: &mut State) -> bool {
    let child = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(CHILD_ENV, "1")
            // The child must not answer systemd's socket activation or readiness protocol.
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
    });
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            debug!(error = %e, "cannot re-run this executable for the element check");
            *st = State::Failed;
            return false;
        }
    };
    let started = Instant::now();
    *st = State::Running { since: started };
    let reaper = std::thread::Builder::new().name("element-check".into()).spawn(move || {
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        let status = child.wait();
        let report = out.lines().rev().find_map(|l| serde_json::from_str::<Report>(l).ok());
        let mut st = state();
        *st = match (status, report) {
            (Ok(s), Some(r)) if s.success() => {
                debug!(
                    ms = started.elapsed().as_millis() as u64,
                    present = r.present.len(),
                    "element check child done"
                );
                State::Ready(r)
            }
            (Ok(s), _) => {
                warn!(status = %s, "element check child failed; checking in-process when asked");
                State::Failed
            }
            (Err(e), _) => {
                warn!(error = %e, "element check child: wait failed");
                State::Failed
            }
        };
        CHANGED.notify_all();
    });
    if let Err(e) = reaper {
        warn!(error = %e, "cannot start the element-check reaper thread");
        *st = State::Failed;
        return false;
    }
    true
}

/// The elements installed now. Blocking (call from `spawn_blocking`). In order: the daemon's
/// own registry when GStreamer is already initialised here; else the child's report, after a
/// new child when a plugin folder changed; else (no child, or it failed or took longer than
/// 20 s) an in-process check, which initialises GStreamer in the daemon.
pub fn present_elements() -> Report {
    if !crate::webrtc::gstreamer_initialised() {
        let mut st = state();
        loop {
            match &*st {
                State::Ready(r) if r.is_current() => return r.clone(),
                State::Ready(_) => {
                    info!("GStreamer plugin folders changed; checking elements again");
                    if !spawn_locked(&mut st) {
                        break;
                    }
                }
                State::Running { since } => {
                    let Some(left) = CHILD_WAIT.checked_sub(since.elapsed()) else {
                        warn!("element check child still running after 20 s; checking in-process");
                        break;
                    };
                    st = CHANGED.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
                }
                State::None | State::Failed => break,
            }
        }
    }
    Report::in_process().unwrap_or_default()
}
