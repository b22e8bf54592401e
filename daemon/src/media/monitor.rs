//! Device hot-plug: the source of the page's `devicechange` event (Media Capture and Streams
//! §9.2, "devicechange": fired when the set of media devices available to the page changes).
//!
//! Runs only while at least one page session listens ([`DeviceWatch::subscribe`]); with no
//! page there is no watcher, child or task. What it watches:
//! - PipeWire: a `pw-dump --monitor` child (the same reason [`super::backend_pipewire`] probes
//!   through `pw-dump`: no libpipewire loop inside the daemon). Any output — a node, port or
//!   metadata change — is a hint only: after 150 ms of quiet the devices are enumerated again
//!   and a change is announced only when the list of `MediaDeviceInfo` really differs (nodes
//!   going running/idle during a call change nothing). A child that exits is started again
//!   after 1 s.
//! - PipeWire restarts: `pw-dump` exits when its connection breaks (EPIPE). When the socket
//!   then no longer answers, or answers as another daemon (a new socket file), every stream of
//!   the process was on the old daemon: [`PipeWireStatus`] goes down, the watcher polls the
//!   socket every 100 ms until PipeWire answers (warning after [`PIPEWIRE_RETURN_LIMIT`]),
//!   waits until its devices settle (WirePlumber), then announces it up with a new
//!   generation; sessions rebuild their calls' capture and playout on it; then one
//!   `devicechange` follows (while PipeWire was away the page saw no device). A pipeline ERROR from
//!   a PipeWire element ([`pipewire_element_failed`]) makes the watcher look at once.
//! - ALSA: inotify on `/dev/snd` (cards plugged or pulled) and on the ALSA configuration files
//!   that define PCMs (`~/.asoundrc`, `/etc/asound.conf`).
//!
//! Announcements bump a generation counter in a `tokio::sync::watch` channel; each session
//! turns a change into one `devices.change` event (docs/protocol.md) and one journal line
//! names the devices added and removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
/// How long PipeWire may be away before a warning says calls go on without devices; the
/// watcher keeps looking (every 1 s instead of every 100 ms) after it.
pub const PIPEWIRE_RETURN_LIMIT: Duration = Duration::from_secs(10);
/// Socket poll interval while PipeWire is away.
const PIPEWIRE_POLL: Duration = Duration::from_millis(100);
/// Once PipeWire answers again: the device list must stay the same this long (WirePlumber
/// and the virtual devices come up after the daemon) …
const SETTLE_QUIET: Duration = Duration::from_millis(300);
/// … but streams are rebuilt after this long at the latest.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);

/// The user's PipeWire daemon as the watcher sees it (PipeWire backend only; always up on
/// ALSA). `generation` is bumped each time PipeWire came back after a loss: every PipeWire
/// stream made before was on the old daemon and is dead. `lost_at`: when the last loss was
/// noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeWireStatus {
    pub up: bool,
    pub generation: u64,
    pub lost_at: Option<Instant>,
}

/// Pipeline ERRORs of PipeWire elements wake the watcher (see [`pipewire_element_failed`]).
fn pipewire_nudge() -> &'static tokio::sync::Notify {
    static NUDGE: OnceLock<tokio::sync::Notify> = OnceLock::new();
    NUDGE.get_or_init(tokio::sync::Notify::new)
}

/// A `pipewiresrc`/`pipewiresink` of a call posted an ERROR: the watcher checks at once
/// whether PipeWire is still the daemon it was (callable from any thread, cheap).
pub fn pipewire_element_failed() {
    pipewire_nudge().notify_one();
}

/// Shared by every session of the daemon; cheap to clone.
#[derive(Clone)]
pub struct DeviceWatch {
    tx: Arc<watch::Sender<u64>>,
    /// Whether the watcher task runs; taken by subscribers and by the task when it stops, so a
    /// subscriber never finds a task that is about to leave.
    running: Arc<Mutex<bool>>,
    devices: MediaDevices,
    pw: Arc<watch::Sender<PipeWireStatus>>,
}

impl DeviceWatch {
    pub fn new(devices: MediaDevices) -> Self {
        let pw = PipeWireStatus { up: true, generation: 0, lost_at: None };
        Self {
            tx: Arc::new(watch::channel(0).0),
            running: Arc::new(Mutex::new(false)),
            devices,
            pw: Arc::new(watch::channel(pw).0),
        }
    }

    /// A receiver of [`PipeWireStatus`] changes. Updated only while the watcher runs, i.e.
    /// while some [`subscribe`](Self::subscribe) receiver lives (every page session holds one).
    pub fn pipewire_status(&self) -> watch::Receiver<PipeWireStatus> {
        self.pw.subscribe()
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
        let on_pipewire = self.devices.backend() == AudioBackend::PipeWire;
        loop {
            let pw_before = if on_pipewire { pipewire_identity().await } else { None };
            if pw_before.is_some() && !self.pw.borrow().up {
                // Came back while no page listened.
                self.pw.send_modify(|s| {
                    s.up = true;
                    s.generation += 1;
                });
            }
            let (hint_tx, mut hints) = mpsc::channel::<()>(16);
            let source = tokio::spawn(watch_source(self.devices.backend(), hint_tx));
            loop {
                tokio::select! {
                    _ = self.tx.closed() => break,
                    _ = pipewire_nudge().notified(), if on_pipewire => {
                        if pipewire_identity().await != pw_before {
                            debug!(target: "media", "a PipeWire element failed and PipeWire changed; following it");
                            break;
                        }
                    }
                    hint = hints.recv() => {
                        let ended = hint.is_none();
                        if !ended {
                            // Coalesce the burst.
                            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, hints.recv()).await {}
                        }
                        if ended {
                            // PipeWire's own restart is followed below, not announced as
                            // every device gone.
                            if !on_pipewire {
                                self.check(&mut known).await;
                            }
                            break;
                        }
                        self.check(&mut known).await;
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
            if on_pipewire {
                let came_back = self.follow_pipewire(pw_before).await;
                if self.stop_if_unwatched() {
                    return;
                }
                if came_back {
                    self.announce_return(&mut known).await;
                }
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

    /// After the `pw-dump` child ended: when PipeWire no longer answers, or answers as another
    /// daemon than `before` (the child's start), announces it down, waits until it answers and
    /// its devices settle, and announces it up with a new generation. Returns at once when the
    /// same daemon still answers (the child ended for another reason), or when nobody listens.
    /// True when PipeWire was announced up again after a loss.
    async fn follow_pipewire(&self, before: Option<(u64, u64)>) -> bool {
        let now = pipewire_identity().await;
        if now.is_some() && (now == before || before.is_none()) {
            return false;
        }
        let lost_at = Instant::now();
        warn!(target: "media", EVENT = "pipewire-lost", answers = now.is_some(),
              "PipeWire connection lost (PipeWire stopped or restarted); waiting for it");
        self.pw.send_modify(|s| {
            s.up = false;
            s.lost_at = Some(lost_at);
        });
        let mut warned = false;
        while pipewire_identity().await.is_none() {
            if !warned && lost_at.elapsed() >= PIPEWIRE_RETURN_LIMIT {
                warned = true;
                warn!(target: "media", limit_s = PIPEWIRE_RETURN_LIMIT.as_secs(),
                      "PipeWire did not come back in time; calls go on without audio devices");
            }
            let poll = if warned { Duration::from_secs(1) } else { PIPEWIRE_POLL };
            tokio::select! {
                _ = self.tx.closed() => return false,
                _ = tokio::time::sleep(poll) => {}
            }
        }
        // WirePlumber and the devices come up after the daemon: wait for a quiet device list.
        let answered_at = Instant::now();
        let mut last = None;
        while answered_at.elapsed() < SETTLE_LIMIT {
            tokio::select! {
                _ = self.tx.closed() => return false,
                _ = tokio::time::sleep(SETTLE_QUIET) => {}
            }
            let list = self.enumerate().await;
            if list.as_ref().is_some_and(|l| !l.is_empty()) && list == last {
                break;
            }
            last = list;
        }
        info!(target: "media", EVENT = "pipewire-back", after_ms = lost_at.elapsed().as_millis() as u64,
              settle_ms = answered_at.elapsed().as_millis() as u64, "PipeWire answers again");
        self.pw.send_modify(|s| {
            s.up = true;
            s.generation += 1;
        });
        true
    }

    /// PipeWire is back after a loss: one `devicechange`, even when the devices that came back
    /// are the ones that left. While PipeWire was away, `enumerateDevices` listed no device at
    /// all, so the set the page may have seen did change (§9.2); and a device that did not come
    /// back must be noticed (the session moves its tracks to the default). Announced after
    /// [`PipeWireStatus`] went up, so sessions reopen their streams first.
    async fn announce_return(&self, known: &mut Option<Vec<MediaDeviceInfo>>) {
        let now = self.enumerate().await;
        let before = known.as_deref().unwrap_or_default();
        let label = |d: &MediaDeviceInfo| format!("{:?} {}", d.kind, d.label).to_lowercase();
        let missing: Vec<String> = match &now {
            Some(now) => before.iter().filter(|d| !now.contains(d)).map(label).collect(),
            None => Vec::new(),
        };
        info!(target: "media", EVENT = "devicechange", reason = "pipewire-back", missing = ?missing,
              devices = now.as_ref().map(Vec::len), "audio devices back with PipeWire");
        if now.is_some() {
            *known = now;
        }
        self.tx.send_modify(|g| *g = g.wrapping_add(1));
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
        if self.devices.backend() == AudioBackend::PipeWire && pipewire_identity().await.is_none() {
            // PipeWire going away lists nothing: that is no unplug of every device.
            debug!(target: "media", "PipeWire does not answer; device list kept");
            return;
        }
        // A failed probe is no list (PipeWire dying makes pw-dump print nothing).
        let Some(now) = self.enumerate().await else { return };
        if self.devices.backend() == AudioBackend::PipeWire && pipewire_identity().await.is_none() {
            return;
        }
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

/// A stand-in capture element while PipeWire is away: a `gst::Bin` with one always "src" ghost
/// pad producing live digital silence, `audio/x-raw` F32LE at `rate` Hz and `channels`, in
/// 20 ms buffers (`audiotestsrc wave=silence is-live=true`). A sender fed by it keeps sending
/// RTP (so the far end hears silence, not a stalled stream) and it opens no device.
pub fn silence_source(rate: u32, channels: u32) -> crate::error::EngineResult<gst::Element> {
    use super::track::{element_name, gst_err};
    use gst::prelude::*;
    super::ensure_gst()?;
    let rate = rate.clamp(8_000, 192_000) as i32;
    let channels = channels.clamp(1, 8) as i32;
    let bin = gst::Bin::builder().name(element_name("vdimedia-silence")).build();
    let src = super::make_element("audiotestsrc", "gstreamer1.0-plugins-base")?;
    src.set_property_from_str("wave", "silence");
    src.set_property("is-live", true);
    src.set_property("samplesperbuffer", rate / 50);
    let caps = super::f32_capsfilter(rate, channels)?;
    bin.add_many([&src, &caps]).map_err(gst_err)?;
    src.link(&caps).map_err(gst_err)?;
    let target = caps.static_pad("src").expect("capsfilter has a src pad");
    let ghost = gst::GhostPad::builder_with_target(&target).map_err(gst_err)?.name("src").build();
    bin.add_pad(&ghost).map_err(gst_err)?;
    Ok(bin.upcast())
}

/// [`super::backend_pipewire::daemon_identity`] off the async threads (a socket connect).
async fn pipewire_identity() -> Option<(u64, u64)> {
    tokio::task::spawn_blocking(super::backend_pipewire::daemon_identity).await.ok().flatten()
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
