//! `MediaDevices` (Media Capture and Streams §9): `enumerateDevices`, `getUserMedia` for audio,
//! and playout outputs, on PipeWire or ALSA.
//!
//! Nothing runs while idle: every call probes the devices afresh (no device monitor, no
//! thread, no PipeWire connection held), which costs a few tens of ms and keeps the answer
//! current after hot-plug. Calls block; async callers use `spawn_blocking`.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use uuid::Uuid;
use vdimedia_protocol::api::{MediaDeviceInfo, MediaDeviceKind, MediaStreamConstraints, MediaTrackSettings};

use super::aec::{self, AecConfig, AecDecision, AecMode, DeviceFacts};
use super::constraints::{self, Candidate, CaptureCapabilities};
use super::output::AudioOutput;
use super::track::{LocalTrack, ProcessingPolicy};
use super::{backend_alsa, backend_pipewire};
use crate::error::{EngineError, EngineResult};

/// The W3C `deviceId` (and `groupId`) of the default input and output entries.
pub const DEFAULT_DEVICE_ID: &str = "default";

/// Namespace of the name-based (v5) UUIDs that make `deviceId`/`groupId` stable across daemon
/// restarts: the same stable device properties always hash to the same id.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d0b_4a57_9e1c_4f0e_b7a2_3c5d_1e8f_9a60);

/// Which audio system the endpoint's devices live in. Serialized `"pipewire"` / `"alsa"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioBackend {
    /// The user's PipeWire (also serves PulseAudio and JACK clients).
    PipeWire,
    /// Plain ALSA PCMs (kiosk images without a sound server).
    Alsa,
}

impl AudioBackend {
    /// PipeWire when a PipeWire daemon accepts connections for this user (the socket named by
    /// `PIPEWIRE_REMOTE`, else `$PIPEWIRE_RUNTIME_DIR` or `$XDG_RUNTIME_DIR`/`pipewire-0`),
    /// else ALSA.
    pub fn detect() -> Self {
        let backend =
            if backend_pipewire::daemon_answers() { AudioBackend::PipeWire } else { AudioBackend::Alsa };
        info!(target: "media", backend = %backend, socket = ?backend_pipewire::socket_path(), "audio backend detected");
        backend
    }

    /// `"pipewire"` or `"alsa"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioBackend::PipeWire => "pipewire",
            AudioBackend::Alsa => "alsa",
        }
    }
}

impl fmt::Display for AudioBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AudioBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pipewire" => Ok(AudioBackend::PipeWire),
            "alsa" => Ok(AudioBackend::Alsa),
            _ => Err(format!("unknown audio backend {s:?} (expected pipewire or alsa)")),
        }
    }
}

/// What a capture or playout element opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A PipeWire node by `node.name`; `None` lets PipeWire route to its current default.
    PipeWire(Option<String>),
    /// An ALSA PCM name (`default`, `plughw:CARD=…`, a `.asoundrc` PCM).
    Alsa(String),
}

/// One enumerated device and what opens it. `props` are its PipeWire node properties (for the
/// "default" entry, those of the real default device; empty on ALSA), read by the AEC policy.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub info: MediaDeviceInfo,
    pub endpoint: Endpoint,
    pub props: std::collections::HashMap<String, String>,
}

impl Device {
    /// What the AEC policy matches: label (without the "Default - " prefix of the default
    /// entry), opening name, PipeWire properties.
    fn aec_facts(&self) -> DeviceFacts<'_> {
        let label = self.info.label.strip_prefix("Default - ").unwrap_or(&self.info.label);
        let name = match &self.endpoint {
            Endpoint::PipeWire(n) => n.as_deref().or_else(|| self.props.get("node.name").map(String::as_str)),
            Endpoint::Alsa(pcm) => Some(pcm.as_str()),
        };
        DeviceFacts { label, name, props: &self.props }
    }
}

/// What [`MediaDevices::select_track`] opened, for its callers' journal lines.
struct SelectedDevice {
    endpoint: Endpoint,
}

/// The engine's `MediaDevices`: one per daemon, cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct MediaDevices {
    backend: AudioBackend,
    processing: ProcessingPolicy,
    /// The echo-cancellation policy; `None` until [`MediaDevices::with_aec`] (no processing).
    aec: Option<Arc<AecConfig>>,
    /// Serializes probes: device providers are per-process singletons in GStreamer.
    probe_lock: Arc<Mutex<()>>,
}

impl MediaDevices {
    /// A handle on `backend`'s devices. Starts nothing: probing happens on each call.
    pub fn new(backend: AudioBackend) -> Self {
        Self {
            backend,
            processing: ProcessingPolicy::default(),
            aec: None,
            probe_lock: Arc::new(Mutex::new(())),
        }
    }

    /// Turns on the echo-cancellation policy of [`super::aec`] with `config` (`[aec]` of the
    /// daemon's configuration): devices with built-in AEC get none from us, others get `vdiaec`
    /// (AEC3, plus noise suppression and AGC2 as the track asks) unless `config.software` is
    /// false. Without this call tracks get no processing and report none.
    pub fn with_aec(mut self, config: AecConfig) -> Self {
        self.processing = ProcessingPolicy {
            echo_cancellation: true,
            noise_suppression: config.software,
            auto_gain_control: config.software,
        };
        self.aec = Some(Arc::new(config));
        self
    }

    /// The AEC the default input gets with default constraints (`WELCOME.capabilities.aec`):
    /// `"hardware"`, `"software"` or `"none"` (also when there is no input or probing fails).
    pub fn default_input_aec(&self) -> &'static str {
        let Ok(devs) = self.devices() else { return "none" };
        let Some(dev) = devs.iter().find(|d| d.info.kind == MediaDeviceKind::Audioinput) else {
            return "none";
        };
        match self.aec_decision(dev, true).mode {
            AecMode::Hardware => "hardware",
            AecMode::Software => "software",
            AecMode::Off | AecMode::None => "none",
        }
    }

    fn aec_decision(&self, dev: &Device, requested: bool) -> AecDecision {
        match &self.aec {
            Some(config) => aec::decide(config, dev.aec_facts(), requested),
            None => AecDecision { mode: AecMode::None, reason: "no AEC policy in this engine".into() },
        }
    }

    /// Sets which audio processing the engine can apply to capture (what
    /// `getCapabilities()` and constraint selection see; [`MediaDevices::with_aec`] sets it
    /// from the AEC policy). Tracks report
    /// `echoCancellation` etc. as requested AND applicable; `exact: true` for processing
    /// that cannot be applied is an `OverconstrainedError`.
    pub fn with_processing(mut self, processing: ProcessingPolicy) -> Self {
        self.processing = processing;
        self
    }

    /// The backend chosen at construction.
    pub fn backend(&self) -> AudioBackend {
        self.backend
    }

    /// W3C `enumerateDevices()` for audio: all `audioinput` entries, then all `audiooutput`
    /// entries, each kind led by its `"default"` entry (present whenever the kind has a device).
    /// Labels are the real device names; `deviceId` is a v5 UUID of stable device properties
    /// (PipeWire `node.name`, ALSA PCM name), so it survives daemon restarts; `groupId` is
    /// shared by the input and output of one physical device. Blocks for a few tens of ms.
    pub fn enumerate(&self) -> EngineResult<Vec<MediaDeviceInfo>> {
        Ok(self.devices()?.into_iter().map(|d| d.info).collect())
    }

    /// Counts of real (non-"default") inputs and outputs, for the handshake's capabilities.
    /// `(0, 0)` when probing fails (logged).
    pub fn capabilities(&self) -> (u32, u32) {
        match self.devices() {
            Ok(devs) => {
                let count = |k| {
                    devs.iter().filter(|d| d.info.kind == k && d.info.device_id != DEFAULT_DEVICE_ID).count()
                        as u32
                };
                (count(MediaDeviceKind::Audioinput), count(MediaDeviceKind::Audiooutput))
            }
            Err(e) => {
                warn!(target: "media", error = %e, "device probe failed; reporting no devices");
                (0, 0)
            }
        }
    }

    /// W3C `getUserMedia()` for audio. Returns one audio [`LocalTrack`]. Errors, as Chromium:
    /// neither audio nor video requested → `TypeError`; video requested, or no input device →
    /// `NotFoundError`; a required constraint no device meets (e.g. `deviceId: {exact: unknown}`,
    /// `sampleRate: {exact: 192000}`) → `OverconstrainedError` naming it. Opens nothing: the
    /// device opens when a source element from [`LocalTrack::make_source`] starts playing.
    pub fn get_user_media(&self, constraints: &MediaStreamConstraints) -> EngineResult<Vec<LocalTrack>> {
        let parsed = constraints::parse_stream_constraints(constraints)?;
        let (track, sel) = self.select_track(&parsed, None)?;
        let aec = track.aec();
        info!(target: "media", track = %track.id, device = %track.label, endpoint = ?sel.endpoint,
              sample_rate = track.settings.sample_rate, channels = track.settings.channel_count,
              aec = aec.mode.as_str(), aec_reason = %aec.reason,
              noise_suppression = track.settings.noise_suppression,
              auto_gain_control = track.settings.auto_gain_control,
              "getUserMedia: track created on {}: aec={} reason={}", track.label, aec.mode, aec.reason);
        Ok(vec![track])
    }

    /// `MediaStreamTrack.applyConstraints(constraints)` (Media Capture §4.3.8, the
    /// ApplyConstraints algorithm) for `track`: SelectSettings runs again over the inputs with
    /// the track's device first (constraints that do not name a device keep it), and the
    /// result is the reconfigured track (same id: device, label, `sampleRate` Hz,
    /// `channelCount`, processing and AEC decision as the new settings say). `constraints` is a
    /// `MediaTrackConstraints` object; null or `{}` = the defaults (48 kHz mono, processing on
    /// where the policy allows). Errors: not an object / malformed → `TypeError`; a required
    /// constraint no device meets → `OverconstrainedError` naming it (the caller keeps the old
    /// track: nothing changes); no input → `NotFoundError`. Opens nothing: the caller rebuilds
    /// the capture elements ([`LocalTrack::make_source`]) where the settings changed.
    pub fn apply_constraints(
        &self,
        track: &LocalTrack,
        constraints: &serde_json::Value,
    ) -> EngineResult<LocalTrack> {
        let parsed = match constraints {
            serde_json::Value::Null => constraints::AudioConstraints::default(),
            serde_json::Value::Object(map) => constraints::parse_track_constraints(map)?,
            other => {
                warn!(target: "media", track = %track.id, "applyConstraints: constraints are not an object");
                return Err(EngineError::invalid_params(format!(
                    "MediaTrackConstraints must be an object, got {other}"
                )));
            }
        };
        let (mut next, _) = self.select_track(&parsed, Some(&track.settings.device_id))?;
        next.id = track.id.clone();
        Ok(next)
    }

    /// SelectSettings over the inputs (in enumeration order, or with `current`'s device first)
    /// and the AEC policy's decision: a new track (fresh id) and what opens it.
    fn select_track(
        &self,
        parsed: &constraints::AudioConstraints,
        current: Option<&str>,
    ) -> EngineResult<(LocalTrack, SelectedDevice)> {
        let mut inputs: Vec<Device> =
            self.devices()?.into_iter().filter(|d| d.info.kind == MediaDeviceKind::Audioinput).collect();
        if inputs.is_empty() {
            warn!(target: "media", backend = %self.backend, "getUserMedia: no audio input device");
            return Err(EngineError::not_found("Requested device not found"));
        }
        if let Some(pos) = current.and_then(|id| inputs.iter().position(|d| d.info.device_id == id)) {
            // Ties in fitness go to the first candidate: the track's own device.
            let dev = inputs.remove(pos);
            inputs.insert(0, dev);
        }
        let candidates: Vec<Candidate<'_>> = inputs
            .iter()
            .map(|d| Candidate { device_id: &d.info.device_id, group_id: &d.info.group_id })
            .collect();
        let caps = self.capture_capabilities();
        let sel = constraints::select(parsed, &candidates, &caps)?;
        let dev = &inputs[sel.index];
        let decision = self.aec_decision(dev, sel.echo_cancellation_requested);
        // vdiaec runs for software AEC, and without AEC when the page still wants noise
        // suppression or AGC; a device with its own AEC is trusted with the rest too.
        let processing = self.processing.noise_suppression
            && match decision.mode {
                AecMode::Software => true,
                AecMode::Off | AecMode::None => {
                    sel.noise_suppression_requested || sel.auto_gain_control_requested
                }
                AecMode::Hardware => false,
            };
        let settings = MediaTrackSettings {
            device_id: dev.info.device_id.clone(),
            group_id: Some(dev.info.group_id.clone()),
            sample_rate: sel.sample_rate,
            channel_count: sel.channel_count,
            echo_cancellation: decision.mode.cancels(),
            noise_suppression: processing && sel.noise_suppression_requested,
            auto_gain_control: processing && sel.auto_gain_control_requested,
        };
        let track = LocalTrack::new(dev.info.label.clone(), settings, dev.endpoint.clone(), self.backend)
            .with_aec(decision, processing);
        Ok((track, SelectedDevice { endpoint: dev.endpoint.clone() }))
    }

    /// The playout output for `setSinkId`/`playout.attach`: `None`, `""` or `"default"` is the
    /// default output; any other id must be an enumerated `audiooutput` (`NotFoundError` if not).
    pub fn output(&self, sink_id: Option<&str>) -> EngineResult<AudioOutput> {
        let wanted = match sink_id {
            None | Some("") => DEFAULT_DEVICE_ID,
            Some(id) => id,
        };
        let dev = self
            .devices()?
            .into_iter()
            .find(|d| d.info.kind == MediaDeviceKind::Audiooutput && d.info.device_id == wanted);
        match dev {
            Some(d) => Ok(AudioOutput::new(d.info.device_id, d.info.label, d.endpoint, self.backend)),
            None => {
                warn!(target: "media", sink_id = wanted, "no such audio output");
                Err(EngineError::not_found(format!("Requested audio output {wanted:?} not found")))
            }
        }
    }

    /// `MediaTrackCapabilities` of capture on this engine (same for every device: capture runs
    /// through audioconvert/audioresample): 8–96 kHz, 1–2 channels, processing per the policy.
    pub fn capture_capabilities(&self) -> CaptureCapabilities {
        CaptureCapabilities {
            sample_rate: (8_000, 96_000),
            channel_count: (1, 2),
            echo_cancellation: self.processing.echo_cancellation,
            noise_suppression: self.processing.noise_suppression,
            auto_gain_control: self.processing.auto_gain_control,
        }
    }

    /// Probes the backend: inputs (default first), then outputs (default first).
    /// Needs no GStreamer (PipeWire: a `pw-dump` child; ALSA: alsa-lib's hints), so `WELCOME`
    /// can count devices in a daemon that has not loaded GStreamer.
    pub(crate) fn devices(&self) -> EngineResult<Vec<Device>> {
        let _guard = self.probe_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let devices = match self.backend {
            AudioBackend::PipeWire => pipewire_devices()?,
            AudioBackend::Alsa => alsa_devices(),
        };
        debug!(target: "media", backend = %self.backend, count = devices.len(),
               elapsed_ms = started.elapsed().as_millis() as u64, "devices probed");
        Ok(devices)
    }
}

/// A stable id: the v5 UUID of `key`, in the simple (32 hex digit) form.
fn stable_id(key: &str) -> String {
    Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).simple().to_string()
}

fn kind_str(kind: MediaDeviceKind) -> &'static str {
    match kind {
        MediaDeviceKind::Audioinput => "audioinput",
        MediaDeviceKind::Audiooutput => "audiooutput",
    }
}

/// Orders one kind's devices: the "default" entry (pointing at `default_endpoint`, labelled
/// "Default - <real default>" and sharing its `groupId` when the real default is known, else
/// "Default"), then the devices by label.
fn with_default(
    kind: MediaDeviceKind,
    mut devs: Vec<Device>,
    default_endpoint: Endpoint,
    default_real: Option<usize>,
    default_exists: bool,
) -> Vec<Device> {
    if devs.is_empty() && !default_exists {
        return devs;
    }
    let (label, group_id) = match default_real.and_then(|i| devs.get(i)) {
        Some(real) => (format!("Default - {}", real.info.label), real.info.group_id.clone()),
        None => ("Default".to_string(), stable_id(&format!("group:default:{}", kind_str(kind)))),
    };
    // before sorting: `default_real` indexes the unsorted list
    let props = default_real.and_then(|i| devs.get(i)).map(|d| d.props.clone()).unwrap_or_default();
    devs.sort_by(|a, b| a.info.label.cmp(&b.info.label).then(a.info.device_id.cmp(&b.info.device_id)));
    let default = Device {
        info: MediaDeviceInfo { device_id: DEFAULT_DEVICE_ID.to_string(), kind, label, group_id },
        endpoint: default_endpoint,
        props,
    };
    std::iter::once(default).chain(devs).collect()
}

fn pipewire_devices() -> EngineResult<Vec<Device>> {
    let nodes = backend_pipewire::nodes()?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let defaults = backend_pipewire::defaults();
    let mut out = Vec::new();
    for (kind, is_source, default_name) in [
        (MediaDeviceKind::Audioinput, true, &defaults.source),
        (MediaDeviceKind::Audiooutput, false, &defaults.sink),
    ] {
        let mut devs = Vec::new();
        let mut default_real = None;
        for n in nodes.iter().filter(|n| n.is_source == is_source) {
            if default_name.as_deref() == Some(n.node_name.as_str()) {
                default_real = Some(devs.len());
            }
            devs.push(Device {
                info: MediaDeviceInfo {
                    device_id: stable_id(&format!("pipewire:{}:{}", kind_str(kind), n.node_name)),
                    kind,
                    label: n.label.clone(),
                    group_id: stable_id(&format!("group:{}", backend_pipewire::group_key(n))),
                },
                endpoint: Endpoint::PipeWire(Some(n.node_name.clone())),
                props: n.props.clone(),
            });
        }
        // `None` target: PipeWire follows its default even if it changes mid-call.
        out.extend(with_default(kind, devs, Endpoint::PipeWire(None), default_real, false));
    }
    Ok(out)
}

fn alsa_devices() -> Vec<Device> {
    let (default, pcms) = backend_alsa::pcms();
    let mut out = Vec::new();
    for kind in [MediaDeviceKind::Audioinput, MediaDeviceKind::Audiooutput] {
        let wants = |p: &backend_alsa::AlsaPcm| match kind {
            MediaDeviceKind::Audioinput => p.capture,
            MediaDeviceKind::Audiooutput => p.playback,
        };
        let devs: Vec<Device> = pcms
            .iter()
            .filter(|p| wants(p))
            .map(|p| Device {
                info: MediaDeviceInfo {
                    device_id: stable_id(&format!("alsa:{}:{}", kind_str(kind), p.name)),
                    kind,
                    label: p.description.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| p.name.clone()),
                    group_id: stable_id(&format!("group:{}", backend_alsa::group_key(&p.name))),
                },
                endpoint: Endpoint::Alsa(p.name.clone()),
                props: Default::default(),
            })
            .collect();
        let default_exists = default.as_ref().is_some_and(wants);
        out.extend(with_default(kind, devs, Endpoint::Alsa("default".into()), None, default_exists));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_backend_names() {
        assert_eq!(serde_json::to_string(&AudioBackend::PipeWire).unwrap(), "\"pipewire\"");
        assert_eq!(serde_json::from_str::<AudioBackend>("\"alsa\"").unwrap(), AudioBackend::Alsa);
        assert_eq!("PipeWire".parse::<AudioBackend>().unwrap(), AudioBackend::PipeWire);
        assert!("oss".parse::<AudioBackend>().is_err());
    }

    /// ALSA-only mode against an `.asoundrc` with `type null` and `type file` PCMs. alsa-lib
    /// reads `~/.asoundrc` once per process, so the checks run in a child process of this test
    /// binary with `HOME` pointed at a fresh directory.
    #[test]
    fn media_alsa_mode_with_asoundrc() {
        let home = std::env::temp_dir().join(format!("vdimedia-alsa-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let out_file = home.join("spk.raw");
        std::fs::write(
            home.join(".asoundrc"),
            format!(
                "pcm.nullmic {{\n  type null\n}}\n\
                 pcm.nullspk {{\n  type null\n  hint {{ show on description \"Null speaker\" }}\n}}\n\
                 pcm.filespk {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n}}\n",
                out_file.display()
            ),
        )
        .unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "media::devices::tests::media_alsa_child_checks",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HOME", &home)
            .env("VDIMEDIA_ALSA_CHILD", out_file.as_os_str())
            .status()
            .expect("re-run the test binary");
        let _ = std::fs::remove_dir_all(&home);
        assert!(status.success(), "ALSA checks failed in the child process (see its output above)");
    }

    /// The child half of [`media_alsa_mode_with_asoundrc`]; does nothing when run directly.
    #[test]
    fn media_alsa_child_checks() {
        let Some(out_file) = std::env::var_os("VDIMEDIA_ALSA_CHILD") else {
            return;
        };
        use gst::prelude::*;
        let md = MediaDevices::new(AudioBackend::Alsa);
        let devs = md.enumerate().unwrap();
        eprintln!("ALSA devices: {devs:#?}");
        let find = |kind, label: &str| devs.iter().find(|d| d.kind == kind && d.label == label).cloned();
        let mic = find(MediaDeviceKind::Audioinput, "nullmic").expect("type null PCM listed as input");
        assert!(find(MediaDeviceKind::Audiooutput, "nullmic").is_some(), "a null PCM is also an output");
        let spk = find(MediaDeviceKind::Audiooutput, "filespk").expect("type file PCM listed as output");
        assert!(
            find(MediaDeviceKind::Audiooutput, "Null speaker").is_some(),
            "hint description is the label"
        );
        assert!(!devs.iter().any(|d| d.label == "null"), "alsa-lib's own null PCM is hidden");
        assert_eq!(devs, MediaDevices::new(AudioBackend::Alsa).enumerate().unwrap(), "stable ids");
        let (inputs, outputs) = md.capabilities();
        assert!(inputs >= 1 && outputs >= 3, "capabilities ({inputs}, {outputs})");

        let c = serde_json::from_value(
            serde_json::json!({"audio": {"deviceId": {"exact": mic.device_id}, "sampleRate": 16000}}),
        )
        .unwrap();
        let track = md.get_user_media(&c).unwrap().remove(0);
        assert_eq!((track.label.as_str(), track.settings.sample_rate), ("nullmic", 16_000));

        // Capture from the null PCM: silence, but real buffers at the asked rate.
        let src = track.make_source().unwrap();
        let pipeline = gst::Pipeline::new();
        let sink = gst::ElementFactory::make("fakesink").property("sync", false).build().unwrap();
        pipeline.add_many([&src, &sink]).unwrap();
        src.link(&sink).unwrap();
        let buffers = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let b2 = buffers.clone();
        sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            b2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        let caps = sink.static_pad("sink").unwrap().current_caps().expect("negotiated");
        pipeline.set_state(gst::State::Null).unwrap();
        let s = caps.structure(0).unwrap();
        assert_eq!(s.get::<i32>("rate").unwrap(), 16_000);
        assert!(buffers.load(std::sync::atomic::Ordering::Relaxed) > 0, "alsasrc produced buffers");

        // Playout into the file PCM: the tone lands in the file. A null slave has no clock of
        // its own (it drains instantly, so a syncing sink would find every buffer late and
        // write only silence); unsynchronized, the tone goes straight through.
        let out = md.output(Some(&spk.device_id)).unwrap();
        let pipeline = gst::Pipeline::new();
        let tone = gst::ElementFactory::make("audiotestsrc")
            .property("num-buffers", 20)
            .property("volume", 0.5f64)
            .build()
            .unwrap();
        let sink = out.make_sink().unwrap();
        let alsasink = sink.downcast_ref::<gst::Bin>().unwrap().iterate_sinks().next().unwrap().unwrap();
        assert_eq!(alsasink.factory().unwrap().name(), "alsasink");
        alsasink.set_property("sync", false);
        pipeline.add_many([&tone, &sink]).unwrap();
        tone.link(&sink).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(
            matches!(msg.as_ref().map(|m| m.view()), Some(gst::MessageView::Eos(_))),
            "playout ran to EOS: {msg:?}"
        );
        let data = std::fs::read(&out_file).expect("file PCM written");
        assert!(
            data.len() > 1000 && data.iter().any(|b| *b != 0),
            "tone written to the file PCM ({} bytes)",
            data.len()
        );
        assert_eq!(
            md.output(Some("nope")).unwrap_err().code,
            vdimedia_protocol::message::ErrorCode::NotFound
        );
    }

    #[test]
    fn media_stable_ids_are_deterministic() {
        let a = stable_id("pipewire:audioinput:virt_mic");
        assert_eq!(a, stable_id("pipewire:audioinput:virt_mic"));
        assert_ne!(a, stable_id("pipewire:audiooutput:virt_mic"));
        assert_eq!(a.len(), 32);
    }
}
