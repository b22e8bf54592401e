//! Daemon-wide state shared by every channel and session: configuration, the device stack,
//! and the one-time GStreamer/DTLS warm-up.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::sync::OnceCell;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use vdimedia_protocol::handshake::{Capabilities, DeviceCounts, Welcome};

use crate::config::Config;
use crate::error::{EngineError, EngineResult};
use crate::media::{AudioBackend, DeviceWatch, MediaDevices};

/// Engine name and version as sent in `WELCOME.engine`.
pub const ENGINE: &str = concat!("vdimediad/", env!("CARGO_PKG_VERSION"));

/// Encoders that back each codec name the engine can offer (RFC 7587 Opus, G.722, RFC 3551
/// PCMU/PCMA). A codec is advertised only when its elements are installed.
const CODECS: &[(&str, &[&str])] = &[
    ("opus", &["opusenc", "opusdec"]),
    ("G722", &["g722enc", "g722dec"]),
    ("PCMU", &["mulawenc", "mulawdec"]),
    ("PCMA", &["alawenc", "alawdec"]),
];

/// Every element some codec of [`CODECS`] needs (what the element check looks up besides
/// `control::ELEMENTS`).
pub fn codec_elements() -> impl Iterator<Item = &'static str> {
    CODECS.iter().flat_map(|(_, elements)| elements.iter().copied())
}

pub struct Engine {
    pub config: Config,
    pub devices: MediaDevices,
    /// Hot-plug watching for `devicechange`; runs only while a page session subscribes.
    pub device_watch: DeviceWatch,
    /// Every session task, so shutdown can wait until all calls are closed.
    pub tasks: TaskTracker,
    /// Peer connections alive in all sessions (their pipelines exist).
    pub peer_connections: AtomicUsize,
    /// Sessions and their peer connections, for `vdimediactl status` (docs/control.md).
    pub registry: Registry,
    /// Sessions whose channel dropped, waiting to be resumed (docs/protocol.md, "Sessions").
    pub parked: crate::vc::endpoint::ParkedSessions,
    warm: OnceCell<Result<(), EngineError>>,
}

impl Engine {
    pub fn new(config: Config) -> Arc<Self> {
        let backend: AudioBackend = config.audio.backend.resolve();
        info!(backend = ?backend, "audio backend chosen");
        let devices = MediaDevices::new(backend).with_aec(config.aec.clone());
        Arc::new(Self {
            device_watch: DeviceWatch::new(devices.clone()),
            devices,
            config,
            tasks: TaskTracker::new(),
            peer_connections: AtomicUsize::new(0),
            registry: Registry::default(),
            parked: Default::default(),
            warm: OnceCell::new(),
        })
    }

    /// Initialises GStreamer and generates the DTLS certificate once per process, off the
    /// async threads. Started by [`Engine::start_warm_up`] when a page session opens, and
    /// awaited by whatever needs GStreamer (`pc.create`, `test-call`): an idle daemon with a
    /// channel but no page session carries neither GStreamer's registry nor OpenSSL. GStreamer
    /// 1.22's `dtlsdec` always generates its process-wide RSA-2048 certificate when first
    /// instantiated (a `pem` set later does not avoid it), so this cost cannot be left to the
    /// first call. Afterwards the heap is trimmed (issue 8; docs/benchmarks.md, Footprint).
    pub async fn warm_up(&self) -> EngineResult<()> {
        self.warm
            .get_or_init(|| async {
                let started = std::time::Instant::now();
                let r = tokio::task::spawn_blocking(|| {
                    let r = crate::webrtc::prewarm();
                    trim_heap();
                    r
                })
                .await
                .unwrap_or_else(|e| Err(EngineError::operation(format!("warm-up panicked: {e}"))));
                match &r {
                    Ok(()) => info!(
                        ms = started.elapsed().as_millis() as u64,
                        "GStreamer and DTLS certificate ready"
                    ),
                    Err(e) => warn!(error = %e, "warm-up failed; calls will fail"),
                }
                r
            })
            .await
            .clone()
    }

    /// Starts [`Engine::warm_up`] in the background and returns at once; a no-op once warm.
    /// Called when a logical session opens (a page loaded the SDK): the RSA key generation
    /// and registry load then run while the page sets up, ahead of its first `pc.create`.
    pub fn start_warm_up(self: &Arc<Self>) {
        if self.warm.initialized() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.warm_up().await;
        });
    }

    /// The `WELCOME` payload: engine identity and capabilities (installed codecs, AEC kind,
    /// device counts). Does not initialise GStreamer here: the installed elements come from
    /// the element-check child's report ([`crate::element_check::present_elements`]), the
    /// device counts from the backend's probe (a `pw-dump` child, or ALSA's hints).
    pub async fn welcome(self: &Arc<Self>) -> Welcome {
        let this = self.clone();
        let (codecs, (inputs, outputs), aec) = tokio::task::spawn_blocking(move || {
            let present = crate::element_check::present_elements().present;
            let codecs: Vec<String> = CODECS
                .iter()
                .filter(|(_, elements)| elements.iter().all(|e| present.contains(*e)))
                .map(|(name, _)| name.to_string())
                .collect();
            let counts = this.devices.capabilities();
            let aec = this.devices.default_input_aec();
            trim_heap();
            (codecs, counts, aec)
        })
        .await
        .unwrap_or_default();
        Welcome {
            version: vdimedia_protocol::PROTOCOL_VERSION,
            engine: ENGINE.to_string(),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            max_frame: self.config.vc.max_frame,
            capabilities: Capabilities {
                codecs,
                // What the default input gets (media::aec): "hardware", "software" or "none".
                aec: aec.to_string(),
                audio_backend: match self.devices.backend() {
                    AudioBackend::PipeWire => "pipewire".to_string(),
                    AudioBackend::Alsa => "alsa".to_string(),
                },
                devices: DeviceCounts { audioinput: inputs, audiooutput: outputs },
            },
        }
    }
}

/// Returns freed heap to the kernel. GStreamer's init (registry load) and the certificate
/// generation free most of what they allocate, but glibc keeps freed pages in its arenas
/// (one per thread that allocated: the blocking pool's), so without this an idle daemon
/// keeps several MiB of free heap resident.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes their locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Ends the threads GStreamer keeps once its last pipeline is gone (issue 8: no extra thread
/// while idle), to be called when no peer connection exists:
/// - the default system clock's thread (`GstSystemClock`): GStreamer starts it at the first
///   asynchronous clock wait (`gst_clock_id_wait_async`; in a call, the DTLS retransmission
///   timers) and keeps it for the clock's life, which for the process-wide default clock is the
///   process's. Resetting the default (`gst_system_clock_set_default(NULL)`) drops GStreamer's
///   own reference; the old clock is disposed, joining its thread, as soon as nothing else
///   holds it (a pipeline still running keeps it, and its thread, until it is freed), and the
///   next pipeline gets a new default clock;
/// - GLib's idle pool threads (`g_thread_pool_stop_unused_threads`), which GLib otherwise keeps
///   up to 15 s after GStreamer's task pool last used them.
///
/// A no-op while GStreamer is not initialised.
pub fn release_gstreamer_threads() {
    if !gst::INITIALIZED.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    gst::SystemClock::set_default(None::<&gst::Clock>);
    gst::glib::ThreadPool::stop_unused_threads();
}

/// glibc's `M_MMAP_THRESHOLD` the daemon sets (bytes): allocations from this size up get their
/// own `mmap` and go back to the kernel when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 256 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD_BYTES`]; call first thing in `main`, before
/// any thread starts. glibc raises the threshold by itself (up to 32 MiB) each time a mmapped
/// block is freed, after which the buffers every new PipeWire stream allocates (its client-side
/// `audioconvert`, about 0.7–0.9 MiB a stream) come from the per-thread arenas instead and
/// fragment them: in the soak (`bench/soak/soak.mjs`, one call switching devices every 10 s)
/// anonymous RSS was 48.8 MiB after 2 min with glibc's default and 22.0 MiB with the threshold
/// fixed. An administrator's `MALLOC_MMAP_THRESHOLD_` in the environment wins (mallopt(3)).
///
/// Also caps glibc's arenas at [`ARENA_MAX`] (default: 8 per core). A call runs about 25
/// threads (GStreamer streaming threads, libnice, the DTLS timers), and each thread that
/// allocates gets its own arena, whose free pages are reused only by that thread: in the soak
/// (two calls, no actions) anonymous RSS grew 17.9 MiB/h while heaptrack saw the live heap flat
/// between minutes 3 and 7; with two arenas it grew 3.0 MiB/h and sat 2 MiB lower. glibc's
/// per-thread caches (tcache) keep most small allocations off the arena locks.
/// `MALLOC_ARENA_MAX` in the environment wins.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt only sets glibc's allocator parameters; called before other threads.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            }
        }
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
            }
        }
    }
}

/// glibc's `M_ARENA_MAX` the daemon sets: the number of malloc arenas all threads share.
pub const ARENA_MAX: i32 = 2;

/// What the control socket reports about live sessions: each logical session (one page) with
/// the peer connections it created, registered by the session task at `OPEN` / `pc.create` and
/// removed when the session closes. Keyed by the session task's tokio id and the channel's
/// session id, since session ids are unique per channel only.
#[derive(Default)]
pub struct Registry {
    sessions: std::sync::Mutex<std::collections::BTreeMap<RegistryKey, SessionEntry>>,
    /// Bumped whenever a peer connection is registered: a pending idle release (see
    /// [`Registry::release_when_idle`]) that sees it changed gives up.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

/// How long after the last peer connection went away the heap is trimmed (ms): long enough
/// for the closed pipelines' threads to finish their teardown.
pub const IDLE_RELEASE_DELAY_MS: u64 = 2000;

type RegistryKey = (Option<tokio::task::Id>, vdimedia_protocol::SessionId);

/// One registered session: its channel session id, when it opened, and its peer connections
/// in creation order.
#[derive(Clone)]
pub struct SessionEntry {
    pub session: vdimedia_protocol::SessionId,
    pub opened: std::time::Instant,
    pub peer_connections: Vec<crate::webrtc::PeerConnection>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<RegistryKey, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(id: vdimedia_protocol::SessionId) -> RegistryKey {
        (tokio::task::try_id(), id)
    }

    /// A session opened (idempotent). Called from the session's own task.
    pub fn open_session(&self, id: vdimedia_protocol::SessionId) {
        self.lock().entry(Self::key(id)).or_insert_with(|| SessionEntry {
            session: id,
            opened: std::time::Instant::now(),
            peer_connections: Vec::new(),
        });
    }

    /// A peer connection was created in session `id`. Called from the session's own task.
    pub fn add_peer_connection(&self, id: vdimedia_protocol::SessionId, pc: crate::webrtc::PeerConnection) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.open_session(id);
        if let Some(s) = self.lock().get_mut(&Self::key(id)) {
            s.peer_connections.push(pc);
        }
    }

    /// The page closed peer connection `pc` of session `id`: forget it (its pipeline is freed
    /// once no one else holds it). Called from the session's own task.
    pub fn remove_peer_connection(&self, id: vdimedia_protocol::SessionId, pc: &str) {
        if let Some(s) = self.lock().get_mut(&Self::key(id)) {
            s.peer_connections.retain(|p| p.id() != pc);
        }
        self.release_when_idle();
    }

    /// The session closed: forget it and its peer connections. Called from its own task.
    pub fn close_session(&self, id: vdimedia_protocol::SessionId) {
        self.lock().remove(&Self::key(id));
        self.release_when_idle();
    }

    /// Once no session holds a peer connection, and none was created for
    /// [`IDLE_RELEASE_DELAY_MS`], ends GStreamer's idle threads ([`release_gstreamer_threads`])
    /// and returns the heap's free pages to the system ([`trim_heap`]) on the blocking pool: a
    /// call's pipelines free tens of MiB that glibc would otherwise keep (issue 8). A no-op
    /// outside a tokio runtime or while a peer connection remains.
    fn release_when_idle(&self) {
        if self.lock().values().any(|s| !s.peer_connections.is_empty()) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let generation = self.generation.clone();
        let seen = generation.load(std::sync::atomic::Ordering::Acquire);
        rt.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(IDLE_RELEASE_DELAY_MS)).await;
            if generation.load(std::sync::atomic::Ordering::Acquire) != seen {
                return;
            }
            let _ = tokio::task::spawn_blocking(|| {
                release_gstreamer_threads();
                trim_heap();
            })
            .await;
        });
    }

    /// The sessions now, oldest first.
    pub fn snapshot(&self) -> Vec<SessionEntry> {
        let mut v: Vec<SessionEntry> = self.lock().values().cloned().collect();
        v.sort_by_key(|s| s.opened);
        v
    }
}
