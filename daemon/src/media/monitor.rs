//! Device hot-plug: the source of the page's `devicechange` event (Media Capture and Streams
//! §9.2, "devicechange": fired when the set of media devices available to the page changes).
//!
//! Runs only while at least one page session listens ([`DeviceWatch::subscribe`]); with no
//! page there is no watcher, child or task. What it watches:
//! - PipeWire: a `pw-dump --monitor` child (the same reason [`super::backend_pipewire`] probes
//!   through `pw-dump`: no libpipewire loop inside the daemon). Any output — a node, port or
//!   metadata change — is a hint only: after 150 ms of quiet the devices are enumerated again
//!   and a change is announced only when the list of `MediaDeviceInfo` really differs (nodes
//!   going running/idle during a call change nothing). A child that exits (PipeWire restarted)
//!   is started again after 1 s.
//! - ALSA: inotify on `/dev/snd` (cards plugged or pulled) and on the ALSA configuration files
//!   that define PCMs (`~/.asoundrc`, `/etc/asound.conf`).
//!
//! Announcements bump a generation counter in a `tokio::sync::watch` channel; each session
//! turns a change into one `devices.change` event (docs/protocol.md) and one journal line
//! names the devices added and removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use vdimedia_protocol::api::MediaDeviceInfo;

use super::{AudioBackend, MediaDevices};

/// Quiet time (ms) after the last hint before enumerating: a plugged headset adds several
/// nodes and ports in a burst, and one enumeration should see them all.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// Wait (ms) before starting a watcher again after it ended (PipeWire restarting).
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Shared by every session of the daemon; cheap to clone.
#[derive(Clone)]
pub struct DeviceWatch {
    tx: Arc<watch::Sender<u64>>,
    /// Whether the watcher task runs; taken by subscribers and by the task when it stops, so a
    /// subscriber never finds a task that is about to leave.
    running: Arc<Mutex<bool>>,
    devices: MediaDevices,
}

impl DeviceWatch {
    pub fn new(devices: MediaDevices) -> Self {
        Self { tx: Arc::new(watch::channel(0).0), running: Arc::new(Mutex::new(false)), devices }
    }

    /// A receiver whose `changed()` resolves each time the device list changes. Starts the
    /// watcher when it is the first; the watcher stops once every receiver is dropped. Needs a
    /// tokio runtime.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        if !*running {
            *running = true;
            tokio::spawn(self.clone().run());
        }
        rx
    }

    async fn run(self) {
        debug!(target: "media", backend = %self.devices.backend(), "device watcher started");
        let mut known = self.enumerate().await;
        loop {
            let (hint_tx, mut hints) = mpsc::channel::<()>(16);
            let source = tokio::spawn(watch_source(self.devices.backend(), hint_tx));
            loop {
                tokio::select! {
                    _ = self.tx.closed() => break,
                    hint = hints.recv() => {
                        let ended = hint.is_none();
                        if !ended {
                            // Coalesce the burst.
                            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, hints.recv()).await {}
                        }
                        self.check(&mut known).await;
                        if ended {
                            break;
                        }
                    }
                }
            }
            // Closing the hint channel makes the source end (and reap its child).
            drop(hints);
            if tokio::time::timeout(Duration::from_secs(2), source).await.is_err() {
                warn!(target: "media", "device watcher source did not stop in 2 s");
            }
            if self.stop_if_unwatched() {
                return;
            }
            tokio::select! {
                _ = self.tx.closed() => {}
                _ = tokio::time::sleep(RESTART_DELAY) => {}
            }
            if self.stop_if_unwatched() {
                return;
            }
            self.check(&mut known).await;
        }
    }

    /// Ends the task when nobody listens (under the subscribers' lock).
    fn stop_if_unwatched(&self) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if self.tx.receiver_count() == 0 {
            *running = false;
            debug!(target: "media", "device watcher stopped (no page listens)");
            true
        } else {
            false
        }
    }

    async fn enumerate(&self) -> Option<Vec<MediaDeviceInfo>> {
        let devices = self.devices.clone();
        match tokio::task::spawn_blocking(move || devices.enumerate()).await {
            Ok(Ok(list)) => Some(list),
            Ok(Err(e)) => {
                debug!(target: "media", error = %e.message, "enumeration after a device hint failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn check(&self, known: &mut Option<Vec<MediaDeviceInfo>>) {
        let now = self.enumerate().await.unwrap_or_default();
        let before = known.as_deref().unwrap_or_default();
        if now.as_slice() == before {
            return;
        }
        let label = |d: &MediaDeviceInfo| format!("{:?} {}", d.kind, d.label).to_lowercase();
        let added: Vec<String> = now.iter().filter(|d| !before.contains(d)).map(label).collect();
        let removed: Vec<String> = before.iter().filter(|d| !now.contains(d)).map(label).collect();
        info!(target: "media", EVENT = "devicechange", added = ?added, removed = ?removed,
              devices = now.len(), "audio devices changed");
        *known = Some(now);
        self.tx.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// Sends a hint for each change the backend reports; returns when the source ends.
async fn watch_source(backend: AudioBackend, hints: mpsc::Sender<()>) {
    let r = match backend {
        AudioBackend::PipeWire => watch_pipewire(&hints).await,
        AudioBackend::Alsa => watch_alsa(&hints).await,
    };
    if let Err(e) = r {
        warn!(target: "media", backend = %backend, error = %e, "device watcher failed; retrying in 1 s");
    }
}

async fn watch_pipewire(hints: &mpsc::Sender<()>) -> std::io::Result<()> {
    let mut child = tokio::process::Command::new("pw-dump")
        .args(["--monitor", "--no-colors"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    // The first dump describes the graph as it is: the baseline was enumerated already.
    let mut seen_first = false;
    loop {
        tokio::select! {
            _ = hints.closed() => {
                // Nobody listens: kill and reap, so no zombie outlives the watcher.
                child.kill().await?;
                return Ok(());
            }
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                if !seen_first {
                    seen_first = line.starts_with(']');
                    continue;
                }
                let _ = hints.try_send(());
            }
        }
    }
    let status = child.wait().await?;
    debug!(target: "media", %status, "pw-dump --monitor ended");
    Ok(())
}

/// The ALSA configuration files that may define PCMs, as (directory, file name).
fn alsa_config_files() -> Vec<(PathBuf, String)> {
    let mut files = vec![(PathBuf::from("/etc"), "asound.conf".to_string())];
    if let Some(home) = std::env::var_os("HOME") {
        files.push((PathBuf::from(home), ".asoundrc".to_string()));
    }
    files
}

async fn watch_alsa(hints: &mpsc::Sender<()>) -> std::io::Result<()> {
    use futures_util::StreamExt;
    use inotify::{Inotify, WatchMask};

    let inotify = Inotify::init()?;
    let mut watched = 0;
    let snd = Path::new("/dev/snd");
    if snd.is_dir() {
        inotify.watches().add(snd, WatchMask::CREATE | WatchMask::DELETE)?;
        watched += 1;
    }
    let files = alsa_config_files();
    for (dir, _) in &files {
        let mask = WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::DELETE | WatchMask::CREATE;
        if inotify.watches().add(dir, mask).is_ok() {
            watched += 1;
        }
    }
    if watched == 0 {
        // Nothing can change: keep the task parked instead of restarting it every second.
        hints.closed().await;
        return Ok(());
    }
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    loop {
        let ev = tokio::select! {
            _ = hints.closed() => return Ok(()),
            ev = events.next() => match ev {
                Some(ev) => ev?,
                None => return Ok(()),
            },
        };
        let name = ev.name.as_ref().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // /dev/snd: any node; configuration directories: only the ALSA files.
        let relevant = name.is_empty()
            || name.starts_with("pcm")
            || name.starts_with("control")
            || files.iter().any(|(_, f)| *f == name);
        if relevant {
            let _ = hints.try_send(());
        }
    }
}
